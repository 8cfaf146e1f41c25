"""Paging with a real receiver, on SQLite and PostgreSQL: a backlog larger than the window
waits in the store, and is delivered in order per charger, none lost, across window
boundaries and across a restart."""

from __future__ import annotations

import asyncio
import dataclasses

from tests.conftest import wait_for
from tests.test_webhook_support import FAST, EventSource, receiver, settled, webhook_service
from webhooks import DeliveryConfig

CHARGERS = ("CP-1", "CP-2", "CP-3")
PER_CHARGER = 25
# A window of 4 per stream, retries every 50 ms for as long as the receiver is down.
PAGED = dataclasses.replace(FAST, retry_schedule=(0.05,) * 400, stream_window=4)


def assert_in_order(delivered: list[dict], per_charger: int) -> None:
    for charger in CHARGERS:
        got = [e["sequence"] for e in delivered if e["chargerId"] == charger]
        assert got == list(range(1, per_charger + 1)), charger


async def test_a_backlog_over_the_window_waits_in_the_store_and_comes_in_order(store_url):
    healthy = False

    async def outage(envelope, nth):
        return (200, {}) if healthy else (503, {})

    async with (
        receiver(outage) as rec,
        webhook_service(store_url, PAGED) as (store, service),
    ):
        scheduler = service.engine.scheduler
        endpoint = await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store)
        for _ in range(PER_CHARGER):
            for charger in CHARGERS:
                await source.emit(charger)
        await settled(service, lambda: scheduler.pending == len(CHARGERS) * PER_CHARGER)
        assert scheduler.in_memory <= len(CHARGERS) * 4
        # What the pending gauges show counts the stored ones; the oldest is a head in memory.
        count, oldest = service.engine.pending_snapshot()[endpoint.id]
        first = await store.fetch_one("SELECT MIN(pos) FROM events")
        assert count == len(CHARGERS) * PER_CHARGER and first is not None and oldest == first[0]
        assert scheduler.stored >= len(CHARGERS) * (PER_CHARGER - 4)
        await service.engine.settled()  # the spilled rows' writes are durable
        rows = await store.fetch_one(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'"
        )
        assert rows is not None and rows[0] >= scheduler.stored
        healthy = True
        await rec.wait_for(lambda: len(rec.delivered()) == len(CHARGERS) * PER_CHARGER, 30)
        assert_in_order(rec.delivered(), PER_CHARGER)

        async def emptied() -> bool:  # the last read of a window finds the store empty
            return scheduler.pending == 0

        await wait_for(emptied, timeout=10)
        assert scheduler.in_memory == 0 and scheduler.stored == 0


async def test_a_spilled_backlog_survives_a_restart_in_order(store_url):
    """Stopped with most of each stream only in the store; the next run reads them back by
    window, and new events go behind them."""
    healthy = False

    async def outage(envelope, nth):
        return (200, {}) if healthy else (503, {})

    async with receiver(outage) as rec:
        async with webhook_service(store_url, PAGED) as (store, service):
            scheduler = service.engine.scheduler
            await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
            source = EventSource(store)
            for _ in range(PER_CHARGER):
                for charger in CHARGERS:
                    await source.emit(charger)
            await settled(service, lambda: scheduler.stored >= len(CHARGERS) * (PER_CHARGER - 4))
        healthy = True
        async with webhook_service(store_url, PAGED) as (store, service):
            scheduler = service.engine.scheduler
            assert scheduler.in_memory <= len(CHARGERS) * 4
            source = EventSource(
                store, first_id=1000, sequences=dict.fromkeys(CHARGERS, PER_CHARGER)
            )
            for charger in CHARGERS:
                await source.emit(charger, 2)
            total = len(CHARGERS) * (PER_CHARGER + 2)
            await rec.wait_for(lambda: len({e["id"] for e in rec.delivered()}) == total, 30)
            # At least once: an answer lost in the stop may come again, never out of order.
            firsts: list[dict] = []
            seen: set[str] = set()
            for envelope in rec.delivered():
                if envelope["id"] not in seen:
                    seen.add(envelope["id"])
                    firsts.append(envelope)
            assert_in_order(firsts, PER_CHARGER + 2)


async def test_memory_cap_spills_every_stream_beyond_its_floor(store_url):
    """With the cap reached, a stream keeps its floor (8) and no more; all still arrive."""
    healthy = False
    config = dataclasses.replace(PAGED, stream_window=64, pending_in_memory=10)

    async def outage(envelope, nth):
        return (200, {}) if healthy else (503, {})

    async with (
        receiver(outage) as rec,
        webhook_service(store_url, config) as (store, service),
    ):
        scheduler = service.engine.scheduler
        await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store)
        for _ in range(PER_CHARGER):
            for charger in CHARGERS:
                await source.emit(charger)
        await settled(service, lambda: scheduler.pending == len(CHARGERS) * PER_CHARGER)
        assert scheduler.in_memory <= 10 + len(CHARGERS) * 8
        healthy = True
        await rec.wait_for(lambda: len(rec.delivered()) == len(CHARGERS) * PER_CHARGER, 30)
        assert_in_order(rec.delivered(), PER_CHARGER)


async def test_a_spilled_backlog_moves_to_the_node_that_takes_over_in_order(pg_url):
    """PostgreSQL, two nodes: A holds every partition with most of each stream in the store
    only, and dies; B takes the partitions over, counts the stored rows per stream and reads
    them back by window: in order, none lost, events made after the death behind them."""
    from tests.test_webhook_leases import TTL, held, in_order, until
    from webhooks.partitions import PARTITIONS

    healthy = False

    async def outage(envelope, nth):
        return (200, {}) if healthy else (503, {})

    def node(name: str) -> DeliveryConfig:
        return dataclasses.replace(PAGED, node_id=name, lease_ttl=TTL, retention=0)

    async with receiver(outage) as rec, webhook_service(pg_url, node("A")) as (store_a, a):
        await a.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store_a)
        for _ in range(PER_CHARGER):
            for charger in CHARGERS:
                await source.emit(charger)
        scheduler = a.engine.scheduler
        await settled(a, lambda: scheduler.stored >= len(CHARGERS) * (PER_CHARGER - 4))
        async with webhook_service(pg_url, node("B")) as (store_b, b):
            await a.halt()
            source.store = store_b
            for charger in CHARGERS:
                await source.emit(charger, 2)
            await until(lambda: held(b) == PARTITIONS, timeout=8 * TTL)
            taken = b.engine.scheduler
            assert taken.stored > 0 and taken.in_memory <= len(CHARGERS) * 4  # paged there too
            healthy = True
            total = len(CHARGERS) * (PER_CHARGER + 2)
            await rec.wait_for(lambda: len({e["id"] for e in rec.delivered()}) == total, 30)
            in_order(rec, list(CHARGERS), PER_CHARGER + 2)


async def test_what_waited_in_memory_is_written_when_its_stream_spills(store_url):
    """A stream flowing through memory (its head posted, not answered: nothing written yet)
    spills: the deliveries it held in memory only are written first, so that after a stop
    they come back before the stored ones (a restart fans out again only what has no row,
    with new ids: after the stored ones)."""
    release = asyncio.Event()

    async def hang(envelope, nth):
        await release.wait()  # answers only once released (never in the first run)
        return 200, {}

    async with receiver(hang) as rec:
        async with webhook_service(store_url, PAGED) as (store, service):
            scheduler = service.engine.scheduler
            await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
            source = EventSource(store)
            for _ in range(PER_CHARGER):
                for charger in CHARGERS:
                    await source.emit(charger)
            await settled_on(lambda: scheduler.stored >= len(CHARGERS) * (PER_CHARGER - 4))
        release.set()
        async with webhook_service(store_url, PAGED) as (store, service):
            total = len(CHARGERS) * PER_CHARGER
            await rec.wait_for(lambda: len({e["id"] for e in rec.delivered()}) == total, 30)
            firsts: list[dict] = []
            seen: set[str] = set()
            for envelope in rec.delivered():
                if envelope["id"] not in seen:
                    seen.add(envelope["id"])
                    firsts.append(envelope)
            assert_in_order(firsts, PER_CHARGER)


async def settled_on(predicate) -> None:
    """Poll the engine's state (no answer comes to wait on), bounded."""

    async def holds() -> bool:
        return predicate()

    await wait_for(holds, timeout=10)
