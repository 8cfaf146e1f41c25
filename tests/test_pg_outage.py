"""The database unreachable, on PostgreSQL: a TCP proxy inside the test stands between the
CSMS and the real server and cuts the path (the server itself is never touched).

While the database is away the node keeps its chargers' sockets, answers their CALLs with
CALLERROR ``InternalError`` within seconds (acknowledging nothing it did not store), and
``/api/v1/health`` answers 503; once it is back, everything resumes by itself: every charger's
``sequence`` is 1..N without a gap or a duplicate, every MeterValues answered with a CALLRESULT
is stored once, and a webhook endpoint receives every stored event, in order per charger.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from websockets.protocol import State

from csms.app import Csms
from tests.conftest import Api, RawCharger, make_settings, raw_charger, wait_for
from tests.helpers import api_client
from tests.test_webhook_support import Receiver, receiver

CALL_BOUND = 8.0  # a CALL during the outage is answered within this (write deadline + connect)
HEALTH_BOUND = 2.5  # /health answers 503 within this
RESUME_BOUND = 15.0  # after the path is back: health 200, a delayed disconnect recorded

START = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-02-06T14:00:00Z"}
SUBSCRIBED = ["charger.*", "connector.*", "transaction.*"]

# The simple-protocol query asyncpg sends for ``execute("COMMIT")``: type, length, text.
COMMIT_MESSAGE = b"Q\x00\x00\x00\x0bCOMMIT\x00"

pytestmark = pytest.mark.timeout(60)


@dataclass(eq=False)
class _Link:
    """One relayed connection: the client's socket and ours to the server."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    stalled: bool = False

    def abort(self) -> None:
        self.client.transport.abort()
        self.upstream.transport.abort()
        for pump in self.pumps:
            pump.cancel()


class TcpProxy:
    """``127.0.0.1:<random port>`` relaying to the PostgreSQL server, with two ways to fail:
    ``cut()`` closes every relayed connection at once (as a server restart or a reset does),
    ``stall()`` keeps them open but moves no byte on them again (a dead network path: no FIN,
    no RST, both ends wait). Either way new connections are accepted and held, never relayed,
    until ``restore()``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._relaying = True
        self._trap_commit = False

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, server_url: str) -> AsyncIterator[TcpProxy]:
        parts = urlsplit(server_url)
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or 5432)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        try:
            yield proxy
        finally:
            proxy._server.close()
            for link in list(proxy._links):
                link.abort()
            for writer in proxy._held:
                writer.transport.abort()
            await proxy._server.wait_closed()

    def url_for(self, url: str) -> str:
        """``url`` (user, database and parameters kept) through the proxy."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}".lstrip("@")))

    def cut(self) -> None:
        self._relaying = False
        for link in list(self._links):
            link.abort()

    def stall(self) -> None:
        self._relaying = False
        for link in self._links:
            link.stalled = True

    def lose_next_commit_answer(self) -> None:
        """Let the next COMMIT through to the server, and stall its connection right after:
        the transaction commits, its client never hears so (the worst moment to fail)."""
        self._trap_commit = True

    def drop_stalled(self) -> None:
        """Reset the stalled connections at last (as TCP keepalive would, much later)."""
        for link in [link for link in self._links if link.stalled]:
            link.abort()
            self._links.discard(link)

    def restore(self) -> None:
        """Relay new connections again; stalled ones stay stalled (their path is dead)."""
        for writer in self._held:
            writer.transport.abort()  # opened while away: their clients gave up on them
        self._held.clear()
        self._relaying = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._relaying:
            self._held.add(writer)  # accepted, never answered: a connect that must time out
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        link.pumps = [
            asyncio.create_task(self._pump(link, reader, up_writer, to_server=True)),
            asyncio.create_task(self._pump(link, up_reader, writer, to_server=False)),
        ]
        self._links.add(link)
        await asyncio.wait(link.pumps, return_when=asyncio.FIRST_COMPLETED)
        if not link.stalled:  # a stalled path tells neither end: the server side stays open
            link.abort()
            self._links.discard(link)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        to_server: bool,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if link.stalled:
                    await asyncio.Event().wait()  # swallowed by the dead path, for good
                if to_server and self._trap_commit and COMMIT_MESSAGE in data:
                    self._trap_commit = False
                    link.stalled = True  # from the server's answer on
                writer.write(data)
                await writer.drain()


# -- the charger's side ------------------------------------------------------------------


def meter(minute: int, tx_id: int) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": tx_id,
        "meterValue": [
            {
                "timestamp": f"2026-02-06T14:{minute:02d}:00Z",
                "sampledValue": [{"value": str(1000 + 100 * minute)}],
            }
        ],
    }


async def answered(charger: RawCharger, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The CALLRESULT's payload (fails on a CALLERROR)."""
    answer = await charger.call(action, payload)
    assert answer[0] == 3, answer
    return answer[2]


async def refused_fast(charger: RawCharger, action: str, payload: dict[str, Any]) -> None:
    """A CALL the node cannot store: CALLERROR InternalError, within CALL_BOUND."""
    started = asyncio.get_running_loop().time()
    answer = await charger.call(action, payload, timeout=CALL_BOUND)
    took = asyncio.get_running_loop().time() - started
    assert answer[0] == 4 and answer[2] == "InternalError", answer
    assert took < CALL_BOUND, took
    assert charger.ws.state is State.OPEN


async def health(api: Api) -> tuple[int, float]:
    started = asyncio.get_running_loop().time()
    status, _ = await api.request("GET", "/api/v1/health")
    return status, asyncio.get_running_loop().time() - started


async def healthy(api: Api) -> None:
    async def ok() -> bool:
        return (await health(api))[0] == 200

    await wait_for(ok, timeout=RESUME_BOUND)


# -- what the database holds (read directly, not through the proxy) -----------------------


async def stored_events(pg_url: str, charger_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetch(
            "SELECT id, type, sequence FROM events"
            " WHERE charger_id = $1 AND sequence IS NOT NULL ORDER BY pos",
            charger_id,
        )
    finally:
        await conn.close()


async def stored_meter_times(pg_url: str, charger_id: str) -> list[str]:
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT timestamp FROM meter_values WHERE charger_id = $1 ORDER BY id", charger_id
        )
    finally:
        await conn.close()
    return [row[0] for row in rows]


async def disconnect_recorded(pg_url: str, charger_id: str) -> None:
    """Wait until the charger's last stored event is its disconnect."""

    async def recorded() -> bool:
        events = await stored_events(pg_url, charger_id)
        return bool(events) and events[-1]["type"] == "charger.disconnected"

    await wait_for(recorded, timeout=RESUME_BOUND)


async def stored_deliveries(pg_url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(pg_url)
    try:
        return await conn.fetch("SELECT event_id, status FROM webhook_deliveries ORDER BY id")
    finally:
        await conn.close()


async def assert_consistent(
    pg_url: str, acknowledged: dict[str, list[int]], rec: Receiver | None = None
) -> None:
    """Per charger: sequences 1..N in commit order; each acknowledged MeterValues (by minute)
    stored exactly once; every stored event delivered to the webhook, first in order, and
    recorded as delivered, once."""
    stored: dict[str, list[asyncpg.Record]] = {}
    for charger_id, minutes in acknowledged.items():
        events = stored[charger_id] = await stored_events(pg_url, charger_id)
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1)), events
        times = await stored_meter_times(pg_url, charger_id)
        for minute in minutes:
            matching = [t for t in times if t.startswith(f"2026-02-06T14:{minute:02d}:00")]
            assert len(matching) == 1, (minute, times)
    if rec is None:
        return

    def delivered_all() -> bool:
        ids = {envelope["id"] for envelope in rec.delivered()}
        return all(e["id"] in ids for events in stored.values() for e in events)

    await rec.wait_for(delivered_all, timeout=RESUME_BOUND)

    # The engine's bookkeeping caught up too: one delivery row per event, each succeeded.
    wanted = {e["id"] for events in stored.values() for e in events}
    rows: list[asyncpg.Record] = []

    async def recorded() -> bool:
        nonlocal rows
        rows = [r for r in await stored_deliveries(pg_url) if r["event_id"] in wanted]
        return {r["event_id"] for r in rows if r["status"] == "succeeded"} == wanted

    await wait_for(recorded, timeout=RESUME_BOUND)
    assert len(rows) == len(wanted), rows
    for charger_id, events in stored.items():
        first_seen: list[int] = []
        for envelope in rec.delivered():
            if envelope["chargerId"] == charger_id and envelope["sequence"] not in first_seen:
                first_seen.append(envelope["sequence"])
        # Nothing delivered that is not stored, and in order per charger.
        assert first_seen == [e["sequence"] for e in events], (charger_id, first_seen)


@contextlib.asynccontextmanager
async def csms_behind(proxy: TcpProxy, pg_url: str, tmp_path: Path) -> AsyncIterator[Csms]:
    settings = make_settings(tmp_path, proxy.url_for(pg_url), ocpp={"authorization": "accept_all"})
    csms = await Csms.start(settings)
    try:
        yield csms
    finally:
        await csms.close()


# -- the tests -----------------------------------------------------------------------------


async def test_cut_connection_keeps_sockets_refuses_calls_and_resumes(
    pg_url: str, tmp_path: Path
) -> None:
    async with (
        TcpProxy.running(pg_url) as proxy,
        receiver() as rec,
        csms_behind(proxy, pg_url, tmp_path) as csms,
        api_client(csms.api_url) as api,
    ):
        await api.post("/api/v1/webhooks", {"url": rec.url, "enabledEvents": SUBSCRIBED})
        charger = await raw_charger(csms, api, "CP-OUT")
        leaver = await raw_charger(csms, api, "CP-LEAVE")
        try:
            tx_id = (await answered(charger, "StartTransaction", START))["transactionId"]
            acknowledged = [1, 2]
            for minute in acknowledged:
                await answered(charger, "MeterValues", meter(minute, tx_id))

            proxy.cut()
            await leaver.close()  # a charger leaving while nothing can be recorded
            for minute in (3, 4):
                await refused_fast(charger, "MeterValues", meter(minute, tx_id))
            status, took = await health(api)
            assert status == 503 and took < HEALTH_BOUND, (status, took)
            status, body = await api.request("GET", "/api/v1/chargers/CP-OUT")
            assert status == 503 and body["error"]["code"] == "storage_unavailable", body

            proxy.restore()
            await healthy(api)
            # The charger re-sends what was refused, on the socket it kept, then goes on.
            for minute in (3, 4, 5):
                await answered(charger, "MeterValues", meter(minute, tx_id))
                acknowledged.append(minute)
            stop = {"transactionId": tx_id, "meterStop": 2000, "timestamp": "2026-02-06T14:30:00Z"}
            await answered(charger, "StopTransaction", stop)
        finally:
            await charger.close()

        for charger_id in ("CP-LEAVE", "CP-OUT"):  # CP-LEAVE's was recorded late, on a retry
            await disconnect_recorded(pg_url, charger_id)
        await assert_consistent(pg_url, {"CP-OUT": acknowledged, "CP-LEAVE": []}, rec)


async def test_stalled_path_times_out_and_resumes(pg_url: str, tmp_path: Path) -> None:
    """No FIN, no RST: only the deadlines notice; the writer's old server process is ended."""
    async with (
        TcpProxy.running(pg_url) as proxy,
        receiver() as rec,
        csms_behind(proxy, pg_url, tmp_path) as csms,
        api_client(csms.api_url) as api,
    ):
        await api.post("/api/v1/webhooks", {"url": rec.url, "enabledEvents": SUBSCRIBED})
        charger = await raw_charger(csms, api, "CP-STALL")
        try:
            tx_id = (await answered(charger, "StartTransaction", START))["transactionId"]
            await answered(charger, "MeterValues", meter(1, tx_id))

            proxy.stall()
            await refused_fast(charger, "MeterValues", meter(2, tx_id))
            status, took = await health(api)
            assert status == 503 and took < HEALTH_BOUND, (status, took)

            proxy.restore()
            await healthy(api)
            for minute in (2, 3):
                await answered(charger, "MeterValues", meter(minute, tx_id))
            await charger.close()
            await disconnect_recorded(pg_url, "CP-STALL")
            await assert_consistent(pg_url, {"CP-STALL": [1, 2, 3]}, rec)
        finally:
            await charger.close()
            # Connections left on the dead path are still being closed politely (the pool's
            # expired ones): end them before the CSMS and the loop go.
            proxy.drop_stalled()


async def test_commit_whose_answer_is_lost(pg_url: str, tmp_path: Path) -> None:
    """The COMMIT reached the server, its answer never came back: the CALL was refused, yet
    its change is stored. The re-sent message is the duplicate it is, and no sequence is
    taken twice. (No webhook endpoint: its bookkeeping commits would race for the trap.)"""
    async with (
        TcpProxy.running(pg_url) as proxy,
        csms_behind(proxy, pg_url, tmp_path) as csms,
        api_client(csms.api_url) as api,
    ):
        charger = await raw_charger(csms, api, "CP-LOST")
        try:
            tx_id = (await answered(charger, "StartTransaction", START))["transactionId"]
            await answered(charger, "MeterValues", meter(1, tx_id))

            proxy.lose_next_commit_answer()
            await refused_fast(charger, "MeterValues", meter(2, tx_id))
            stored = await stored_meter_times(pg_url, "CP-LOST")
            assert any(t.startswith("2026-02-06T14:02:00") for t in stored), stored  # after all

            for minute in (2, 3):  # re-sent, then a new one
                await answered(charger, "MeterValues", meter(minute, tx_id))
            await charger.close()
            await disconnect_recorded(pg_url, "CP-LOST")
            await assert_consistent(pg_url, {"CP-LOST": [1, 2, 3]})
        finally:
            await charger.close()
            proxy.drop_stalled()
