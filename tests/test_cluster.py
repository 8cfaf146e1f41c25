"""Several ``csms serve`` processes on one PostgreSQL database act as one central system
(DESIGN 8): real processes, real sockets, the machine's PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import websockets
from standardwebhooks import Webhook
from websockets.asyncio.client import ClientConnection

from tests.conftest import PASSWORD, RawCharger, basic_auth, wait_for
from tests.helpers import ServerProcess, api_client, events_of, start_server_process
from tests.test_webhook_support import receiver
from webhooks.partitions import partition_of

LEASE_TTL = 2
pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def nodes(tmp_path: Path, pg_url: str, count: int) -> AsyncIterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for n in range(1, count + 1):
            workdir = tmp_path / f"node{n}"
            workdir.mkdir()
            started.append(
                await start_server_process(
                    workdir,
                    pg_url,
                    webhooks={"allow_private_targets": True, "retry_schedule": ["1s"]},
                    cluster={"node_id": f"node-{n}", "lease_ttl": LEASE_TTL},
                )
            )
        yield started
    finally:
        for node in started:
            if node.process.returncode is None:
                node.process.terminate()
        for node in started:
            with contextlib.suppress(TimeoutError):
                await node.wait(15)


async def connect(node: ServerProcess, charger_id: str) -> RawCharger:
    ws: ClientConnection = await websockets.connect(
        f"{node.ocpp_url}/{charger_id}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic_auth(charger_id, PASSWORD),
        open_timeout=5,
    )
    return RawCharger(ws)


async def answer_next_call(charger: RawCharger, answer: dict[str, Any]) -> list[Any]:
    """Receive the CSMS's next CALL and answer it; the CALL."""
    call = await charger.receive(timeout=10)
    assert call[0] == 2, call
    await charger.send_raw(json.dumps([3, call[1], answer]))
    return call


def assert_gapless(events: list[dict[str, Any]]) -> None:
    sequences = [e["sequence"] for e in events if e["sequence"] is not None]
    assert sequences == list(range(1, len(sequences) + 1)), sequences


async def test_two_nodes_act_as_one_central_system(tmp_path: Path, pg_url: str) -> None:
    async with (
        nodes(tmp_path, pg_url, 2) as (one, two),
        api_client(one.api_url) as api1,
        api_client(two.api_url) as api2,
        receiver() as hooks,
    ):
        health = await api1.get("/api/v1/health")
        assert health["node"] == "node-1"
        assert [n["id"] for n in health["nodes"]] == ["node-1", "node-2"]

        # A webhook registered on node 2 gets the events of a charger on node 1, signed.
        created = await api2.post(
            "/api/v1/webhooks", {"url": hooks.url, "enabledEvents": ["charger.*"]}
        )
        secret = created["secret"]
        await api1.post("/api/v1/chargers", {"id": "CP-C", "password": PASSWORD})
        first = await connect(one, "CP-C")
        booted = await first.call(
            "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
        )
        assert booted[2]["status"] == "Accepted"
        seen = await api2.get("/api/v1/chargers/CP-C")
        assert seen["connected"] is True and seen["node"] == "node-1"

        # Commanded through node 2's API, sent by node 1, ?wait answered on node 2.
        sent = asyncio.create_task(
            api2.request("POST", "/api/v1/chargers/CP-C/commands/ClearCache?wait=10", json_body={})
        )
        call = await answer_next_call(first, {"status": "Accepted"})
        assert call[2] == "ClearCache"
        status, body = await sent
        assert status == 200, body
        assert body["data"]["status"] == "accepted" and body["data"]["id"] == call[1]

        # The newest connection wins across nodes: node 1 closes its socket within 2 s.
        second = await connect(two, "CP-C")
        await asyncio.wait_for(first.ws.wait_closed(), 2.5)
        assert (await second.call("Heartbeat", {}))[0] == 3
        moved = await api1.get("/api/v1/chargers/CP-C")
        assert moved["connected"] is True and moved["node"] == "node-2"
        events = await events_of(api1, "CP-C")
        ends = [e for e in events if e["type"] == "charger.disconnected"]
        assert [e["data"]["reason"] for e in ends] == ["replaced"]
        assert_gapless(events)

        # A command queued while the charger is away goes out when it connects to any node.
        await second.close()

        async def offline() -> bool:
            return (await api1.get("/api/v1/chargers/CP-C"))["node"] is None

        await wait_for(offline, timeout=5)
        status, queued = await api1.request(
            "POST", "/api/v1/chargers/CP-C/commands/ClearCache?queue=true", json_body={}
        )
        assert status == 202, queued
        third = await connect(two, "CP-C")
        call = await answer_next_call(third, {"status": "Accepted"})
        assert call[1] == queued["data"]["id"]

        async def accepted() -> bool:
            command = await api1.get(f"/api/v1/commands/{call[1]}")
            return command["status"] == "accepted"

        await wait_for(accepted, timeout=5)
        await third.close()
        assert_gapless(await events_of(api2, "CP-C"))

        # Every charger event reached node 2's endpoint, signed with its secret.
        wanted = {
            e["id"] for e in await events_of(api1, "CP-C") if e["type"].startswith("charger.")
        }
        await hooks.wait_for(lambda: wanted <= {r.json["id"] for r in hooks.requests}, 15)
        for request in hooks.requests:
            Webhook(secret).verify(request.body, request.headers)


async def test_a_killed_node_s_chargers_are_lost_once_and_come_back_elsewhere(
    tmp_path: Path, pg_url: str
) -> None:
    async with (
        nodes(tmp_path, pg_url, 2) as (one, two),
        api_client(two.api_url) as api,
    ):
        await api.post("/api/v1/chargers", {"id": "CP-K", "password": PASSWORD})
        charger = await connect(one, "CP-K")
        boot = {"chargePointVendor": "V", "chargePointModel": "M"}
        assert (await charger.call("BootNotification", boot))[0] == 3
        one.kill()
        await one.wait()

        async def lost() -> bool:
            events = await events_of(api, "CP-K")
            return any(e["data"].get("reason") == "node_lost" for e in events)

        # Silent for the lease, then found by node 2's next sweep.
        await wait_for(lost, timeout=LEASE_TTL * 3)
        health = await api.get("/api/v1/health")
        assert [n["id"] for n in health["nodes"]] == ["node-2"]
        back = await connect(two, "CP-K")
        assert (await back.call("Heartbeat", {}))[0] == 3
        await back.close()
        events = await events_of(api, "CP-K")
        ends = [e["data"]["reason"] for e in events if e["type"] == "charger.disconnected"]
        assert ends[0] == "node_lost"
        assert_gapless(events)


async def _session(
    charger_id: str, home: ServerProcess, refuge: ServerProcess, meters: int, acked: list[int]
) -> None:
    """A charging session that survives its node: every CALL is sent until it is answered,
    reconnecting to ``refuge`` when the socket is lost."""
    node, charger = home, await connect(home, charger_id)

    async def call(action: str, payload: dict[str, Any]) -> list[Any]:
        nonlocal node, charger
        for _ in range(5):
            try:
                answer = await charger.call(action, payload, timeout=5)
            except (websockets.ConnectionClosed, TimeoutError, OSError):
                await charger.close()
                node = refuge
                charger = await connect(node, charger_id)
                continue
            assert answer[0] == 3, answer
            acked.append(1)
            return answer
        raise AssertionError(f"{charger_id}: {action} never answered")

    await call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    stamp = "2026-12-07T10:00:00Z"
    started = await call(
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG-1", "meterStart": 0, "timestamp": stamp},
    )
    transaction_id = started[2]["transactionId"]
    for n in range(1, meters + 1):
        value = {
            "timestamp": f"2026-12-07T10:{n // 60:02d}:{n % 60:02d}Z",
            "sampledValue": [
                {"value": str(n * 100), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
            ],
        }
        await call(
            "MeterValues",
            {"connectorId": 1, "transactionId": transaction_id, "meterValue": [value]},
        )
    await call(
        "StopTransaction",
        {
            "transactionId": transaction_id,
            "meterStop": meters * 100,
            "timestamp": "2026-12-07T11:00:00Z",
        },
    )
    await charger.close()


async def test_kill_9_mid_sessions_loses_no_acknowledged_event_and_keeps_order(
    tmp_path: Path, pg_url: str
) -> None:
    chargers = [f"CP-S{n:02d}" for n in range(20)]
    async with (
        nodes(tmp_path, pg_url, 2) as (one, two),
        api_client(two.api_url) as api,
        receiver() as hooks,
    ):
        await api.post("/api/v1/webhooks", {"url": hooks.url, "enabledEvents": ["*"]})
        await api.post("/api/v1/id-tags", {"idTag": "TAG-1", "status": "Accepted"})
        for charger_id in chargers:
            await api.post("/api/v1/chargers", {"id": charger_id, "password": PASSWORD})
        acked: list[int] = []
        sessions = [
            asyncio.create_task(
                _session(c, one if n % 2 == 0 else two, two, meters=30, acked=acked)
            )
            for n, c in enumerate(chargers)
        ]

        async def midway() -> bool:
            return len(acked) >= 20 * 12

        await wait_for(midway, timeout=30)
        one.kill()
        await asyncio.gather(*sessions)

        stored = {c: await events_of(api, c) for c in chargers}
        for charger_id, events in stored.items():
            assert_gapless(events)
            assert events[-1]["type"] in ("transaction.stopped", "charger.disconnected"), charger_id
        moved = [
            c
            for c, events in stored.items()
            if any(e["data"].get("reason") in ("replaced", "node_lost") for e in events)
        ]
        assert moved == chargers[0::2]  # the killed node's ten, each back on the survivor
        wanted = {e["id"] for events in stored.values() for e in events}
        await hooks.wait_for(lambda: wanted <= {e["id"] for e in hooks.delivered()}, 30)
        # In order per charger: a new event only after its predecessor arrived (a re-delivery
        # after the take-over may repeat what was delivered; it never skips ahead).
        highest: dict[str, int] = {}
        for envelope in hooks.delivered():
            charger_id, sequence = envelope.get("chargerId"), envelope.get("sequence")
            if charger_id not in stored or sequence is None:
                continue
            last = highest.get(charger_id, 0)
            assert sequence <= last + 1, (charger_id, sequence, last)
            highest[charger_id] = max(last, sequence)


async def test_a_node_paused_past_its_lease_posts_and_records_nothing_stale(
    tmp_path: Path, pg_url: str
) -> None:
    """SIGSTOP a node while the receiver holds its POST of a charger's event; the other node
    takes the charger's stream over; the held POST is answered 200 while the node is stopped.
    Continued, the node posts nothing more for that stream and records no outcome of it."""
    release, held = asyncio.Event(), asyncio.Event()
    charger_id = ""

    async def respond(envelope: dict[str, Any], nth: int) -> tuple[int, dict[str, str]]:
        if envelope.get("chargerId") == charger_id and envelope.get("sequence") == 3 and nth == 1:
            held.set()
            await release.wait()
        return 200, {}

    async with (
        nodes(tmp_path, pg_url, 2) as (one, two),
        api_client(two.api_url) as api,
        receiver(respond) as hooks,
    ):
        mine = await _partitions_settled(pg_url)
        charger_id = next(
            c for c in (f"CP-Z{n:03d}" for n in range(1000)) if partition_of(c) in mine
        )
        hook = await api.post("/api/v1/webhooks", {"url": hooks.url, "enabledEvents": ["*"]})
        await api.post("/api/v1/chargers", {"id": charger_id, "password": PASSWORD})
        charger = await connect(one, charger_id)
        boot = {"chargePointVendor": "V", "chargePointModel": "M"}
        assert (await charger.call("BootNotification", boot))[0] == 3
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        assert (await charger.call("StatusNotification", status))[0] == 3  # sequence 3
        await asyncio.wait_for(held.wait(), 10)  # node 1 posted it; its answer is held
        one.process.send_signal(signal.SIGSTOP)
        paused_at = asyncio.get_running_loop().time()
        try:
            # The charger gives up on the frozen node and comes back through node 2.
            back = await connect(two, charger_id)
            assert (await back.call("StatusNotification", {**status, "status": "Preparing"}))[
                0
            ] == 3
            stored = await events_of(api, charger_id)
            assert_gapless(stored)
            wanted = [e["sequence"] for e in stored]
            # Node 2 takes the stream over once node 1's lease ran out, and delivers it all.
            await hooks.wait_for(lambda: _delivered_sequences(hooks, charger_id) >= set(wanted), 40)
            release.set()  # node 1's POST is answered while it is stopped
            before = len(hooks.requests)
        finally:
            one.process.send_signal(signal.SIGCONT)
        assert asyncio.get_running_loop().time() - paused_at > LEASE_TTL

        async def node_one_back() -> bool:
            health = await api.get("/api/v1/health")
            return [n["id"] for n in health["nodes"]] == ["node-1", "node-2"]

        await wait_for(node_one_back, timeout=15)
        await _partitions_settled(pg_url)  # node 1 renewed (or lost) and balanced again
        # Nothing more posted for the charger by the node that woke up (the held request is
        # recorded by the receiver once answered: it is the only one after ``before``).
        late = [r.json for r in hooks.requests[before:] if r.json.get("chargerId") == charger_id]
        assert [e["sequence"] for e in late] == [3], late
        # Its held answer (200 after a pause of seconds) was not recorded as an attempt.
        attempts = await api.get(f"/api/v1/webhooks/{hook['id']}/deliveries?limit=100")
        ours = {e["id"] for e in stored}
        recorded = [a for a in attempts["items"] if a["eventId"] in ours]
        assert recorded and all((a["latencyMs"] or 0) < 1500 for a in recorded), recorded
        assert_gapless(await events_of(api, charger_id))
        await back.close()


def _delivered_sequences(hooks: Any, charger_id: str) -> set[int]:
    return {
        r.json["sequence"]
        for r in hooks.requests
        if r.json.get("chargerId") == charger_id and 200 <= r.status < 300
    }


async def _partitions_settled(pg_url: str) -> set[int]:
    """Once both nodes hold delivery partitions (and none is free): those of node 1."""
    conn = await asyncpg.connect(pg_url)
    try:
        held: set[int] = set()

        async def split() -> bool:
            nonlocal held
            rows = await conn.fetch("SELECT partition, node_id FROM delivery_leases")
            owners = {row["node_id"] for row in rows}
            held = {row["partition"] for row in rows if row["node_id"] == "node-1"}
            return owners == {"node-1", "node-2"}

        await wait_for(split, timeout=20)
        return held
    finally:
        await conn.close()
