"""`csms-sim load` and `csms-sim run` end to end against a tiny raw-websockets responder."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from simulators.load import LoadError, LoadOptions, Stats, percentile, run_load, summary

CSMS_SIM = str(Path(sys.executable).with_name("csms-sim"))


class Responder:
    """Answers every CALL at once; counts them; refuses ids listed in `refuse`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []  # (charger, action)
        self.tx = itertools.count(1)
        self.refuse: set[str] = set()
        self.auth: set[str | None] = set()

    def answer(self, action: str) -> dict[str, Any]:
        now = datetime.now(UTC).isoformat()
        if action == "BootNotification":
            return {"status": "Accepted", "interval": 1, "currentTime": now}
        if action == "Heartbeat":
            return {"currentTime": now}
        if action == "StartTransaction":
            return {"transactionId": next(self.tx), "idTagInfo": {"status": "Accepted"}}
        if action == "Authorize":
            return {"idTagInfo": {"status": "Accepted"}}
        return {}


@pytest.fixture
async def responder() -> AsyncIterator[tuple[Responder, str]]:
    r = Responder()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        charger = ws.request.path.rsplit("/", 1)[-1]
        r.auth.add(ws.request.headers.get("Authorization"))
        if charger in r.refuse:
            await ws.close()
            return
        async for raw in ws:
            frame = json.loads(raw)
            if frame[0] != 2:
                continue
            r.calls.append((charger, frame[2]))
            if frame[2] == "DataTransfer":
                await ws.send(json.dumps([4, frame[1], "NotImplemented", "", {}]))
            else:
                await ws.send(json.dumps([3, frame[1], r.answer(frame[2])]))

    async with serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as server:
        port = server.sockets[0].getsockname()[1]
        yield r, f"ws://127.0.0.1:{port}/ocpp"


async def test_load_meter_closed_loop_summary(responder: tuple[Responder, str]) -> None:
    r, url = responder
    options = LoadOptions(url=url, chargers=5, duration=1.5, ramp=0.2, password="p" * 16, grace=2)
    result = await run_load(options)
    assert result["chargers"] == 5 and result["connected"] == 5
    assert result["connectFailures"] == 0 and result["errors"] == {}
    assert result["calls"] > 50 and result["callsPerSecond"] > 0
    lat = result["latencyMs"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result["callsByAction"]["StartTransaction"] == 5
    assert result["callsByAction"]["MeterValues"] > 20
    assert result["teardownCalls"] == 5  # each open transaction is stopped after the window
    assert result["clientCpuS"] >= 0 and result["durationS"] == pytest.approx(1.5, abs=0.3)
    ids = sorted({c for c, _ in r.calls})
    assert ids == [f"LOAD-{n:05d}" for n in range(1, 6)]
    for charger in ids:
        mine = [a for c, a in r.calls if c == charger]
        assert mine[:4] == [
            "BootNotification",
            "StatusNotification",
            "StatusNotification",
            "StartTransaction",
        ]
        assert mine[-1] == "StopTransaction"
    assert all(a is not None and a.startswith("Basic ") for a in r.auth)


async def test_load_open_loop_rate_and_idle(responder: tuple[Responder, str]) -> None:
    _, url = responder
    options = LoadOptions(url=url, chargers=4, duration=1.0, scenario="idle", rate=40.0)
    result = await run_load(options)
    assert result["mode"] == "open" and result["latencyFrom"] == "scheduled"
    assert 20 <= result["callsByAction"].get("Heartbeat", 0) <= 45


async def test_load_counts_connect_failures(responder: tuple[Responder, str]) -> None:
    r, url = responder
    r.refuse.add("LOAD-00002")
    result = await run_load(LoadOptions(url=url, chargers=2, duration=1.0, scenario="session"))
    assert result["connected"] == 2  # the handshake succeeds, then the server drops it
    assert result["errors"].get("disconnect", 0) >= 1
    assert result["callsByAction"]["Authorize"] >= 1


async def test_load_refuses_unbounded_options() -> None:
    with pytest.raises(LoadError):
        await run_load(LoadOptions(url="ws://127.0.0.1:1/ocpp", chargers=0, duration=1))
    with pytest.raises(LoadError):
        await run_load(LoadOptions(url="ws://127.0.0.1:1/ocpp", chargers=1, duration=99_999))


def test_summary_and_percentiles() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert percentile([], 50) == 0.0
    stats = Stats()
    stats.latencies.extend([0.001, 0.002, 0.010])
    stats.errors["timeout"] += 1
    out = summary(stats, LoadOptions(url="ws://x", chargers=3, duration=1), elapsed=2.0, cpu=0.5)
    assert out["calls"] == 3 and out["callsPerSecond"] == 1.5
    assert out["latencyMs"]["max"] == 10.0 and out["errors"] == {"timeout": 1}


async def _cli(*args: str, timeout: float = 20) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        CSMS_SIM, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_load_prints_json(responder: tuple[Responder, str]) -> None:
    _, url = responder
    code, out, err = await _cli("load", "--url", url, "--chargers", "3", "--duration", "1")
    assert code == 0, err
    result = json.loads(out)
    assert result["connected"] == 3 and result["calls"] > 0


async def test_cli_load_refuses_remote_host() -> None:
    code, _, err = await _cli(
        "load", "--url", "ws://192.0.2.1:9000/ocpp", "--chargers", "1", "--duration", "1"
    )
    assert code == 2 and "loopback" in err


async def test_cli_run_session_logs_each_message(responder: tuple[Responder, str]) -> None:
    r, url = responder
    code, _, err = await _cli(
        "run", "--url", url, "--id", "SIM-9", "--scenario", "session", "--duration", "0.3"
    )
    assert code == 0, err
    actions = [a for c, a in r.calls if c == "SIM-9"]
    assert actions[0] == "BootNotification" and actions[-1] == "StatusNotification"
    assert "StopTransaction" in actions
    assert '> [2,"SIM-9-1","BootNotification"' in err
    assert "< [3," in err
