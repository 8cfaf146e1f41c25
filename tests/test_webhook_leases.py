"""Delivery leases on PostgreSQL: two engines (each its own store and node id) on one
database, a real aiohttp receiver. A partition's streams move to the other node when its
holder stops renewing; order per (endpoint, charger) holds across the handover, with the
same webhook-id; an answer the old holder gets after the take-over is refused by the fence."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from tests.test_webhook_support import FAST, EventSource, Receiver, receiver, webhook_service
from webhooks import WebhookService
from webhooks.partitions import PARTITIONS

pytest_plugins = ["tests.pg"]

TTL = 1.0
# retention 0: the test events are dated months ago, and a node starting prunes them
CONFIG = dataclasses.replace(FAST, lease_ttl=TTL, retry_schedule=(0.1,) * 100, retention=0)


def node(name: str, **changes: Any) -> Any:
    return dataclasses.replace(CONFIG, node_id=name, **changes)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition of another engine's state (no event to wait on), bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


def held(service: WebhookService) -> int:
    return len(service.engine.partitions_held())


def in_order(rec: Receiver, chargers: list[str], count: int) -> None:
    """Every charger's events reached the receiver (2xx) in order: a repeat (at least once,
    across a handover) may only follow its own first delivery, never come after a later
    event; and every request carries its event's id as webhook-id."""
    for r in rec.requests:
        assert r.headers["webhook-id"] == r.json["id"]
    for charger in chargers:
        got = [e["sequence"] for e in rec.delivered() if e["chargerId"] == charger]
        assert sorted(set(got)) == list(range(1, count + 1)), (charger, got)
        assert got == sorted(got), (charger, got)


async def test_a_dead_nodes_partitions_continue_on_the_other_in_order(pg_url, caplog):
    """Node A delivers alone, with one stream failing (its rows pending); A dies without
    giving anything back; B takes every partition once A's leases run out and goes on from
    the durable cursors and rows: in order, same webhook-id, the failed head included."""
    healthy = False

    async def respond(envelope: dict[str, Any], nth: int) -> tuple[int, dict[str, str]]:
        return (500, {}) if envelope["chargerId"] == "CP-0" and not healthy else (200, {})

    chargers = [f"CP-{n}" for n in range(6)]
    caplog.set_level(logging.INFO, logger="webhooks.leases")
    async with receiver(respond) as rec, webhook_service(pg_url, node("A")) as (store_a, a):
        assert held(a) == PARTITIONS  # alone: every partition
        await a.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store_a)
        for charger in chargers:
            await source.emit(charger, 3)
        await rec.wait_for(lambda: len(rec.delivered()) == 15)  # all but CP-0's
        async with webhook_service(pg_url, node("B")) as (store_b, b):
            assert held(b) == 0  # A holds everything, and B is not in cluster_nodes
            await a.halt()  # dies: no release, no last flush
            died = time.monotonic()
            source.store = store_b  # the chargers' events now come through B's store
            for charger in chargers:
                await source.emit(charger, 2)
            healthy = True
            await until(lambda: held(b) == PARTITIONS, timeout=8 * TTL)
            # Within the lease ttl and a balancing round (ttl / 3), with room for a loaded CI.
            assert time.monotonic() - died < 5 * TTL
            await rec.wait_for(lambda: len({(e["id"]) for e in rec.delivered()}) == 30, 10)
            in_order(rec, chargers, 5)
    assert "took over partition" in caplog.text and "from A" in caplog.text


async def test_an_answer_after_the_take_over_is_refused_by_the_fence(pg_url):
    """A's clock is made to believe its lease still holds while the database let it run
    out (a pause is what does that for real, between the check and the write): its POST
    answered after B took the partition over writes nothing (the fence), B delivers the
    stream in order from the durable cursor, and A's next renewal drops the partition."""
    release = asyncio.Event()
    held_first: list[str] = []

    async def respond(envelope: dict[str, Any], nth: int) -> tuple[int, dict[str, str]]:
        if envelope["sequence"] == 1 and not held_first:
            held_first.append(envelope["id"])
            await release.wait()  # A's POST of event 1, answered once B has taken over
            return 202, {}
        return 200, {}

    slow = node("A", timeout=30.0)  # A's POST outlives its lease (the fence must hold)
    async with receiver(respond) as rec, webhook_service(pg_url, slow) as (store_a, a):
        await a.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        keeper = a.engine.leases
        assert keeper is not None
        await keeper.close(release=False)  # A stops renewing...
        frozen = time.monotonic() - 100.0
        keeper._monotonic = lambda: frozen  # ...and its clock says the lease still holds
        for lease in keeper.leases.values():
            lease.valid_until = frozen + 100.0
        source = EventSource(store_a)
        await source.emit("CP-1", 3)
        await until(lambda: bool(held_first))  # A's POST of event 1 waits at the receiver
        async with webhook_service(pg_url, node("B")) as (_, b):
            await until(lambda: held(b) == PARTITIONS, timeout=8 * TTL)
            await rec.wait_for(lambda: len(rec.delivered()) == 3)  # B: 1, 2, 3
            assert [e["sequence"] for e in rec.delivered()] == [1, 2, 3]
            release.set()  # A's answer comes now, after the take-over
            await rec.wait_for(lambda: len(rec.requests) == 4)
            await until(lambda: a.engine.scheduler.in_flight == 0)
            await a.engine.settled()  # A's journal tried to write its outcome
            await b.engine.settled()  # and B's wrote its own
            stale = await store_a.fetch_all(
                "SELECT * FROM webhook_attempts WHERE status_code = 202"
            )
            assert stale == []  # the stale holder's outcome was not recorded
            rows = await store_a.fetch_all(
                "SELECT event_id, status, attempts FROM webhook_deliveries ORDER BY id"
            )
            assert [(r["status"], r["attempts"]) for r in rows] == [("succeeded", 1)] * 3
            assert rows[0]["event_id"] == held_first[0]  # same webhook-id as A's POST
            await keeper.renew()  # A learns: every partition is B's now
            assert held(a) == 0 and a.engine.scheduler.pending == 0


async def test_two_live_nodes_share_the_partitions_and_keep_order(pg_url):
    """With both nodes live (cluster_nodes heartbeats), A gives half its partitions back
    (after writing their state) and B takes them; every stream is delivered once, in order,
    whichever node holds it. A replay through B queues every event, those of A's
    partitions handed over to A through the store."""
    async with receiver() as rec, webhook_service(pg_url, node("A")) as (store_a, a):
        endpoint = await a.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store_a)
        chargers = [f"CP-{n}" for n in range(12)]
        for charger in chargers:
            await source.emit(charger, 2)
        await rec.wait_for(lambda: len(rec.delivered()) == 24)
        for name in ("A", "B"):  # both live for an hour: as the cluster's heartbeat says
            await store_a.fetch_all(
                "INSERT INTO cluster_nodes (node_id, incarnation, heartbeat_at)"
                " VALUES (?, 'test', now() + interval '1 hour')",
                (name,),
            )
        async with webhook_service(pg_url, node("B")) as (_, b):
            await until(lambda: held(a) == held(b) == PARTITIONS // 2, timeout=8 * TTL)
            for charger in chargers:
                await source.emit(charger, 2)  # through A's store: B finds them in the log
            await rec.wait_for(lambda: len(rec.delivered()) == 48)
            in_order(rec, chargers, 4)
            assert len(rec.delivered()) == 48  # a clean handover: nothing twice
            queued = await b.replay(
                endpoint.id, since="2026-01-01T00:00:00.000Z", until=None, only_failed=False
            )
            assert queued == 48
            await rec.wait_for(lambda: len(rec.delivered()) == 96)
            for charger in chargers:
                got = [e["sequence"] for e in rec.delivered() if e["chargerId"] == charger]
                assert got == [1, 2, 3, 4] * 2, (charger, got)  # replays behind, in order


async def test_a_node_past_its_lease_by_its_own_clock_posts_nothing(pg_url):
    """A stops renewing (what a pause does) but runs on: once its leases ran out by its own
    clock it posts nothing more, so B, taking over, is the only one to post each event; A's
    next renewal finds every partition taken and drops them."""
    async with receiver() as rec, webhook_service(pg_url, node("A")) as (store_a, a):
        await a.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        keeper = a.engine.leases
        assert keeper is not None
        await keeper.close(release=False)
        await until(lambda: not any(keeper.valid(p) for p in range(PARTITIONS)), 3 * TTL)
        await EventSource(store_a).emit("CP-1", 3)  # A fans them out, but may not post them
        async with webhook_service(pg_url, node("B")) as (_, b):
            await until(lambda: held(b) == PARTITIONS, timeout=8 * TTL)
            await rec.wait_for(lambda: len(rec.delivered()) == 3)
            await b.engine.settled()
            await keeper.renew()
            assert held(a) == 0 and a.engine.scheduler.pending == 0
        assert [e["sequence"] for e in rec.delivered()] == [1, 2, 3]
        assert len(rec.requests) == 3  # none of them from A
