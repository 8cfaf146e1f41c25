"""kill -9 in the middle of a stream (issue 2, must show; DESIGN 5: "a crash loses nothing that
was acknowledged to a charger").

The real ``csms serve`` runs as a child process. A raw charger starts a transaction and then
streams MeterValues with a window of unanswered messages in flight; once enough replies are
in, the server gets SIGKILL while messages are still going out. The SQLite file it leaves must
hold, for every message that got a reply, its state and its event, with a gapless sequence;
a server started on that file then records ``charger.disconnected`` with reason "restart",
and the charger re-sending what lost its answer is answered without anything counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import PASSWORD, RawCharger, basic_auth, open_socket, register
from tests.helpers import ServerProcess, api_client, events_of, start_server_process

CHARGER = "CP-CRASH"
TOTAL = 400  # MeterValues the charger means to send
KILL_AFTER = 60  # replies received before the kill
WINDOW = 16  # MeterValues sent and not yet answered, at most
START = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-02-06T14:00:00Z"}


def meter_frame(k: int, tx_id: int) -> str:
    minute, second = divmod(k, 60)
    payload = {
        "connectorId": 1,
        "transactionId": tx_id,
        "meterValue": [
            {
                "timestamp": f"2026-02-06T{14 + minute // 60:02d}:{minute % 60:02d}:{second:02d}Z",
                "sampledValue": [{"value": str(1000 + k), "unit": "Wh"}],
            }
        ],
    }
    return json.dumps([2, f"mv-{k}", "MeterValues", payload])


class Stream:
    """Sends MeterValues 1..TOTAL with at most WINDOW unanswered; kills the server at the
    KILL_AFTER-th reply."""

    def __init__(self, ws: Any, tx_id: int, server: ServerProcess) -> None:
        self.ws = ws
        self.tx_id = tx_id
        self.server = server
        self.sent = 0
        self.acked: list[int] = []
        self.sent_at_kill: int | None = None
        self.closed = False
        self._room = asyncio.Condition()

    async def send_all(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            for k in range(1, TOTAL + 1):
                async with self._room:
                    await self._room.wait_for(
                        lambda: self.closed or self.sent - len(self.acked) < WINDOW
                    )
                if self.closed:
                    return
                await self.ws.send(meter_frame(k, self.tx_id))
                self.sent = k

    async def receive_all(self) -> None:
        try:
            await self._receive()
        finally:
            async with self._room:
                self.closed = True
                self._room.notify_all()

    async def _receive(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in self.ws:
                answer = json.loads(text)
                assert answer[0] == 3 and answer[2] == {}, answer
                k = int(answer[1].removeprefix("mv-"))
                assert k == len(self.acked) + 1, (k, self.acked[-3:])  # answered in order
                self.acked.append(k)
                if len(self.acked) == KILL_AFTER:
                    self.sent_at_kill = self.sent
                    self.server.kill()
                async with self._room:
                    self._room.notify_all()


_QUERIES = {
    "events": "SELECT * FROM events WHERE charger_id = ? ORDER BY pos",
    "state": "SELECT * FROM charger_state WHERE charger_id = ?",
    "transactions": "SELECT * FROM transactions",
    "samples": "SELECT sampled_value FROM meter_values WHERE charger_id = ? ORDER BY id",
}


async def read_store(url: str) -> dict[str, Any]:
    """What the killed server left, read with the plain driver (SQLite recovers its WAL on
    open), not through our store."""
    found: dict[str, list[dict[str, Any]]] = {}
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.row_factory = sqlite3.Row
        try:
            for name, sql in _QUERIES.items():
                params = (CHARGER,) if "?" in sql else ()
                found[name] = [dict(row) for row in conn.execute(sql, params)]
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(url)
        try:
            for name, sql in _QUERIES.items():
                args = (CHARGER,) if "?" in sql else ()
                found[name] = [dict(r) for r in await pg.fetch(sql.replace("?", "$1"), *args)]
        finally:
            await pg.close()
    return {
        "events": [{**e, "data": json.loads(e["data"])} for e in found["events"]],
        "state": found["state"][0],
        "transactions": found["transactions"],
        "samples": [json.loads(r["sampled_value"])[0]["value"] for r in found["samples"]],
    }


@pytest.fixture(params=["all-cpus", "one-cpu"])
async def server(tmp_path: Path, store_url: str, request: pytest.FixtureRequest) -> Any:
    """On one CPU the loops write to SQLite themselves, not through the writer thread
    (``storage.sqlite.Writer``): both ways are killed mid-stream."""
    cpus = None if request.param == "all-cpus" else {min(os.sched_getaffinity(0))}
    # the store csms_factory uses
    process = await start_server_process(tmp_path, store_url, cpus=cpus)
    try:
        yield process
    finally:
        process.kill()
        await process.wait()


async def test_sigkill_mid_stream_loses_nothing_acknowledged(
    server: ServerProcess, store_url: str, csms_factory: Any
) -> None:
    async with api_client(server.api_url) as api:
        await register(api, CHARGER)
        await api.post("/api/v1/id-tags", {"idTag": "TAG1"})
    ws = await websockets.connect(
        f"{server.ocpp_url}/{CHARGER}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic_auth(CHARGER, PASSWORD),
        open_timeout=5,
    )
    charger = RawCharger(ws)
    boot = await charger.call(
        "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
    )
    assert boot[2]["status"] == "Accepted"
    started = await charger.call("StartTransaction", START)
    tx_id = started[2]["transactionId"]

    stream = Stream(ws, tx_id, server)
    await asyncio.wait_for(asyncio.gather(stream.send_all(), stream.receive_all()), 30)
    assert await server.wait() == -9  # SIGKILL, no shutdown code ran
    await charger.close()
    acked = stream.acked
    assert len(acked) >= KILL_AFTER
    assert stream.sent_at_kill is not None and stream.sent_at_kill > KILL_AFTER  # mid-stream
    assert stream.sent < TOTAL  # the stream was cut short

    # -- what the database holds -------------------------------------------------------------
    store = await read_store(store_url)
    events = store["events"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    # The events carry their sequence; the state row's copy is written only with other
    # changes (connect, boot, status, ...), so it may lag, never lead.
    assert store["state"]["last_sequence"] <= len(events)
    assert store["state"]["connected"] == 1  # nobody got to record the disconnection
    assert [e["type"] for e in events[:3]] == [
        "charger.connected",
        "charger.boot",
        "transaction.started",
    ]
    updates = events[3:]
    assert all(e["type"] == "transaction.updated" for e in updates)
    recorded = [int(e["data"]["meterWh"]) - 1000 for e in updates]
    # Every acknowledged message is there, in order; at most the unanswered ones follow.
    assert recorded[: len(acked)] == acked
    assert recorded == list(range(1, len(recorded) + 1))
    assert len(recorded) <= stream.sent
    assert [e["data"]["energyWh"] for e in updates] == [float(k) for k in recorded]
    [tx] = store["transactions"]
    assert tx["id"] == tx_id and tx["stopped_at"] is None
    assert tx["energy_wh"] == float(recorded[-1])  # the row agrees with the last event
    assert store["samples"] == [str(1000 + k) for k in recorded]

    # -- restart on the same store -----------------------------------------------------------
    csms = await csms_factory()
    async with api_client(csms.api_url) as api:
        after = await events_of(api, CHARGER)
        assert [e["id"] for e in after[: len(events)]] == [e["id"] for e in events]
        last = after[-1]
        assert len(after) == len(events) + 1
        assert (last["type"], last["data"]["reason"]) == ("charger.disconnected", "restart")
        assert last["sequence"] == len(events) + 1
        assert (await api.get(f"/api/v1/transactions/{tx_id}"))["active"] is True

        # The charger comes back and re-sends what lost its answer, then goes on.
        again = RawCharger(await open_socket(csms, CHARGER))
        try:
            first_unanswered = len(acked) + 1
            for k in (acked[-1], first_unanswered, first_unanswered + 1):
                await again.send_raw(meter_frame(k, tx_id))
                answer = await again.receive()
                assert answer == [3, f"mv-{k}", {}], answer
            stop = {"transactionId": tx_id, "meterStop": 2000, "timestamp": "2026-02-06T16:00:00Z"}
            assert (await again.call("StopTransaction", stop))[0] == 3
        finally:
            await again.close()
        final = await events_of(api, CHARGER)
        values = [int(e["data"]["meterWh"]) for e in final if e["type"] == "transaction.updated"]
        assert len(values) == len(set(values))  # nothing counted twice
        assert values[-1] == 1000 + max(recorded[-1], first_unanswered + 1)
        assert [e["sequence"] for e in final] == list(range(1, len(final) + 1))
        tx_view = await api.get(f"/api/v1/transactions/{tx_id}")
        assert tx_view["active"] is False and tx_view["energyWh"] == 1000
        assert len(tx_view["meterValues"]) == len(values)
