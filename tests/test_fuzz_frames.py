"""Property test: arbitrary and mutated frames at ONE live connection (issue 2, must show).

Each fuzz frame is followed by a Heartbeat with a fresh id; everything received before the
Heartbeat's answer is the answer to the fuzz frame. So, without sleeping, each frame is seen
to be answered exactly once when it is a CALL with a readable id (OCPP-J 1.6, 4.2), never
when it is a CALLRESULT/CALLERROR or has no readable id, and at most once with a CALLERROR
for anything else. The connection is never closed, and a second charger running a normal
session at the same time gets all its events, in order, with a gapless sequence.

The server runs in a loop owned by the test; hypothesis drives it one example at a time with
``run_until_complete``, and the second charger's session is a task in that same loop.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csms.app import Csms
from tests.conftest import TEST_TOKEN, Api, RawCharger, make_settings, open_socket, register
from tests.helpers import events_of

HEARTBEAT_PREFIX = "~hb~"
ERROR_CODES = {
    "NotImplemented",
    "NotSupported",
    "InternalError",
    "ProtocolError",
    "SecurityError",
    "FormationViolation",
    "PropertyConstraintViolation",
    "OccurenceConstraintViolation",
    "TypeConstraintViolation",
    "GenericError",
}
STAMP = "2026-02-06T14:00:00Z"
BOOT = {"chargePointVendor": "Fuzz", "chargePointModel": "F"}

VALID: list[tuple[str, dict[str, Any]]] = [
    ("Heartbeat", {}),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
    ("StartTransaction", {"connectorId": 1, "idTag": "FUZZ", "meterStart": 0, "timestamp": STAMP}),
    (
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": 1,
            "meterValue": [
                {
                    "timestamp": STAMP,
                    "sampledValue": [
                        {"value": "10", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                        {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                    ],
                }
            ],
        },
    ),
]
ACTIONS = [
    "Authorize",
    "BootNotification",
    "DataTransfer",
    "Heartbeat",
    "MeterValues",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
    "Reset",
    "SecurityEventNotification",
    "NoSuchAction",
    "heartbeat",
    "",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
unique_ids = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=1, max_size=36
).filter(lambda s: not s.startswith(HEARTBEAT_PREFIX))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside a payload (dict keys and list indexes)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


@st.composite
def mutated_payload(draw: st.DrawFn, payload: dict[str, Any]) -> Any:
    payload = copy.deepcopy(payload)
    paths = list(_paths(payload))
    how = draw(st.sampled_from(["replace", "delete", "add", "whole"]))
    if how == "whole" or not paths:
        return draw(json_values)
    path = draw(st.sampled_from(paths))
    parent: Any = payload
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = draw(json_values)
    elif how == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(json_values)
    else:
        parent.append(draw(json_values))
    return payload


@st.composite
def mutated_frame(draw: st.DrawFn) -> str:
    action, payload = draw(st.sampled_from(VALID))
    frame: list[Any] = [2, draw(unique_ids), action, copy.deepcopy(payload)]
    what = draw(
        st.sampled_from(
            ["valid", "type", "id", "action", "payload", "shorter", "longer", "surrogate"]
        )
    )
    if what == "type":
        frame[0] = draw(st.sampled_from([0, 1, 3, 4, 5, -1, 2.0, "2", True, None]) | json_values)
    elif what == "id":
        frame[1] = draw(st.sampled_from(["", "x" * 37, 7, None]) | json_values)
    elif what == "action":
        frame[2] = draw(st.sampled_from(ACTIONS) | json_values)
    elif what == "payload":
        frame[3] = draw(mutated_payload(payload))
    elif what == "shorter":
        frame = frame[: draw(st.integers(min_value=0, max_value=3))]
    elif what == "longer":
        frame += draw(st.lists(json_values, min_size=1, max_size=2))
    text = json.dumps(frame)
    if what == "surrogate":
        # A lone UTF-16 surrogate escape in the id or in a payload key: JSON-shaped, not Unicode.
        marker = draw(st.sampled_from(['", "', '":']))
        text = text.replace(marker, draw(st.sampled_from(["\\ud800", "\\udfff"])) + marker, 1)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        text = text[: draw(st.integers(min_value=0, max_value=len(text) - 1))]
    return text


frames = (
    mutated_frame() | json_values.map(json.dumps) | st.text(max_size=60) | st.binary(max_size=40)
)


# -- the oracle: what OCPP-J 1.6 says about a frame -------------------------------------------


def _strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


def expected(frame: str | bytes) -> tuple[str, Any]:
    """("answer", id): exactly one answer, to that id; ("silent", None): none at all;
    ("maybe", id): at most one, a CALLERROR to that id; ("maybe-text", text): at most one
    CALLERROR, to an id found in the text (not JSON, the id read from it)."""
    if isinstance(frame, bytes):
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError:
            return "maybe-text", frame.decode("utf-8", errors="replace")
    try:
        message = _strict(frame)
        json.dumps(message, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        # Not JSON, or JSON holding a lone surrogate escape, which is not Unicode text.
        return "maybe-text", frame
    if not isinstance(message, list) or not message:
        return "silent", None
    kind = message[0]
    is_int = isinstance(kind, int) and not isinstance(kind, bool)
    if is_int and kind in (3, 4):
        return "silent", None  # a response is never answered (4.1.1)
    readable = len(message) >= 2 and isinstance(message[1], str)
    if is_int and kind == 2:
        return ("answer", message[1]) if readable else ("silent", None)
    return ("maybe", message[1]) if readable else ("silent", None)


def well_formed(answer: Any) -> None:
    assert isinstance(answer, list), answer
    if answer[0] == 3:
        assert len(answer) == 3 and isinstance(answer[1], str), answer
        assert isinstance(answer[2], dict), answer
    else:
        assert answer[0] == 4 and len(answer) == 5, answer
        assert isinstance(answer[1], str) and answer[2] in ERROR_CODES, answer
        assert isinstance(answer[3], str) and isinstance(answer[4], dict), answer


# -- the live server in a loop of the test's own -------------------------------------------------


@dataclass
class Live:
    loop: asyncio.AbstractEventLoop
    csms: Csms
    api: Api
    http: aiohttp.ClientSession
    fuzz: RawCharger
    calm: RawCharger
    stop_calm: asyncio.Event
    calm_task: asyncio.Task[tuple[int, int]]
    counter: Iterator[int] = field(default_factory=itertools.count)

    def run(self, coroutine: Any, timeout: float = 20) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout))

    async def exchange(self, frame: str | bytes) -> list[Any]:
        """Send a fuzz frame, then a Heartbeat; return what came before the Heartbeat's answer."""
        beat = f"{HEARTBEAT_PREFIX}{next(self.counter)}"
        await self.fuzz.ws.send(frame)
        await self.fuzz.ws.send(json.dumps([2, beat, "Heartbeat", {}]))
        before: list[Any] = []
        while True:
            answer = json.loads(await asyncio.wait_for(self.fuzz.ws.recv(), 10))
            well_formed(answer)
            if answer[1] == beat:
                assert answer[0] == 3, answer
                return before
            before.append(answer)


async def calm_session(charger: RawCharger, stop: asyncio.Event) -> tuple[int, int]:
    """A normal session that runs until told to stop; returns (transactionId, meter values)."""

    async def ok(action: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await charger.call(action, payload)
        assert answer[0] == 3, answer
        return answer[2]

    await ok("BootNotification", BOOT)
    await ok("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
    start = {"connectorId": 1, "idTag": "CALM", "meterStart": 1000, "timestamp": STAMP}
    tx_id = (await ok("StartTransaction", start))["transactionId"]
    base = datetime(2026, 2, 6, 14, tzinfo=UTC)
    count = 0
    while not stop.is_set() or count < 5:
        count += 1
        at = (base + timedelta(seconds=count)).isoformat()
        sample = {"value": str(1000 + 10 * count), "unit": "Wh"}
        mv = {"timestamp": at, "sampledValue": [sample]}
        await ok("MeterValues", {"connectorId": 1, "transactionId": tx_id, "meterValue": [mv]})
    stop_at = (base + timedelta(hours=1)).isoformat()
    payload = {"transactionId": tx_id, "meterStop": 1000 + 10 * count, "timestamp": stop_at}
    await ok("StopTransaction", payload)
    return tx_id, count


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    loop = asyncio.new_event_loop()

    async def up() -> Live:
        csms = await Csms.start(make_settings(tmp_path))
        http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_TOKEN}"})
        api = Api(http, csms.api_url)
        await register(api, "CP-FUZZ")
        await register(api, "CP-CALM")
        fuzz = RawCharger(await open_socket(csms, "CP-FUZZ"))
        assert (await fuzz.call("BootNotification", BOOT))[0] == 3
        calm = RawCharger(await open_socket(csms, "CP-CALM"))
        stop = asyncio.Event()
        task = asyncio.create_task(calm_session(calm, stop))
        return Live(loop, csms, api, http, fuzz, calm, stop, task)

    state = loop.run_until_complete(up())
    try:
        yield state
    finally:

        async def down() -> None:
            state.stop_calm.set()
            if not state.calm_task.done():
                state.calm_task.cancel()
            await asyncio.gather(state.calm_task, return_exceptions=True)
            await state.fuzz.close()
            await state.calm.close()
            await state.http.close()
            await state.csms.close()

        loop.run_until_complete(down())
        loop.close()


def test_fuzzed_frames_are_answered_as_the_spec_says(live: Live) -> None:
    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(frame=frames)
    def one_frame(frame: str | bytes) -> None:
        before = live.run(live.exchange(frame))
        verdict, about = expected(frame)
        if verdict == "answer":
            assert len(before) == 1, (frame, before)
            assert before[0][1] == about, (frame, before)
        elif verdict == "silent":
            assert before == [], (frame, before)
        else:
            assert len(before) <= 1, (frame, before)
            if before:
                assert before[0][0] == 4, (frame, before)
                if verdict == "maybe":
                    assert before[0][1] == about, (frame, before)
                else:  # an id read from text that is not JSON
                    assert before[0][1] and before[0][1] in about, (frame, before)

    one_frame()

    live.stop_calm.set()
    tx_id, count = live.run(live.calm_task)
    live.run(live.fuzz.call("Heartbeat", {}))  # still up after everything

    fuzz_events = live.run(events_of(live.api, "CP-FUZZ"))
    assert fuzz_events[0]["type"] == "charger.connected"
    assert "charger.disconnected" not in [e["type"] for e in fuzz_events]
    assert [e["sequence"] for e in fuzz_events] == list(range(1, len(fuzz_events) + 1))

    calm_events = live.run(events_of(live.api, "CP-CALM"))
    assert [e["type"] for e in calm_events] == [
        "charger.connected",
        "charger.boot",
        "connector.status_changed",
        "transaction.started",
        *["transaction.updated"] * count,
        "transaction.stopped",
    ]
    assert [e["sequence"] for e in calm_events] == list(range(1, len(calm_events) + 1))
    updates = [e["data"] for e in calm_events if e["type"] == "transaction.updated"]
    assert [u["energyWh"] for u in updates] == [10.0 * k for k in range(1, count + 1)]
    assert all(u["transactionId"] == tx_id for u in updates)
    assert calm_events[-1]["data"]["energyWh"] == 10 * count
    tx = live.run(live.api.get(f"/api/v1/transactions/{tx_id}"))
    assert tx["chargerId"] == "CP-CALM" and len(tx["meterValues"]) == count
