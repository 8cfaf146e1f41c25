"""Issue 5, must show: every CSMS-initiated command through the API to a live charger.

The charger is the `ocpp` library's ``ChargePoint`` on a real loopback socket, with an ``@on``
handler for each of the 19 actions. It records every frame as it crosses the wire (the CALLs
it receives, in camelCase, and the moment it answers each), and it reads the socket while its
handlers run, so that a CSMS sending a second CALL before the first is answered would be seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import InternalError, OCPPError, SecurityError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result

from csms.app import Csms
from tests.conftest import TEST_TOKEN, Api, open_socket, register, wait_for

HANG = "hang"  # a handler told to never answer


def snake(action: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()


ACTIONS = (
    "CancelReservation",
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearCache",
    "ClearChargingProfile",
    "DataTransfer",
    "GetCompositeSchedule",
    "GetConfiguration",
    "GetDiagnostics",
    "GetLocalListVersion",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ReserveNow",
    "Reset",
    "SendLocalList",
    "SetChargingProfile",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
)

PROFILE = {
    "chargingProfileId": 5,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
    },
}

# What a well-behaved charger answers to each action unless a test says otherwise.
DEFAULT_ANSWERS: dict[str, Any] = {
    "CancelReservation": {"status": "Accepted"},
    "ChangeAvailability": {"status": "Accepted"},
    "ChangeConfiguration": {"status": "Accepted"},
    "ClearCache": {"status": "Accepted"},
    "ClearChargingProfile": {"status": "Accepted"},
    "DataTransfer": {"status": "Accepted"},
    "GetCompositeSchedule": {"status": "Rejected"},
    "GetConfiguration": {"configurationKey": [], "unknownKey": []},
    "GetDiagnostics": {},
    "GetLocalListVersion": {"listVersion": 0},
    "RemoteStartTransaction": {"status": "Accepted"},
    "RemoteStopTransaction": {"status": "Accepted"},
    "ReserveNow": {"status": "Accepted"},
    "Reset": {"status": "Accepted"},
    "SendLocalList": {"status": "Accepted"},
    "SetChargingProfile": {"status": "Accepted"},
    "TriggerMessage": {"status": "Accepted"},
    "UnlockConnector": {"status": "Unlocked"},
    "UpdateFirmware": {},
}


class Charger(ChargePoint):
    """A live charger: answers every CSMS action from ``answers``, records the wire."""

    def __init__(self, charger_id: str, ws: Any) -> None:
        super().__init__(charger_id, ws, response_timeout=5)
        self.answers: dict[str, Any] = dict(DEFAULT_ANSWERS)
        # A CALL of the charger's own to send right after answering an action, in the same
        # breath (OCPP 1.6, 5.17: the TriggerMessage answer first, then the message).
        self.then_send: dict[str, tuple[str, dict[str, Any]]] = {}
        self.own_calls: dict[str, asyncio.Future[list[Any]]] = {}  # by uniqueId: the answer
        self.calls: list[dict[str, Any]] = []  # the CALLs received: uniqueId, action, payload
        self.wire: list[tuple[str, str]] = []  # ("call"|"answer", uniqueId), in order
        self.release = asyncio.Event()
        self._changed = asyncio.Event()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.listener: asyncio.Task[None] | None = None

    async def route_message(self, raw_msg: str) -> None:
        frame = json.loads(raw_msg)
        if frame[0] == 2:
            self.calls.append({"uniqueId": frame[1], "action": frame[2], "payload": frame[3]})
            self.wire.append(("call", frame[1]))
            self._changed.set()
            # Handle it aside, so the socket keeps being read while a handler is busy.
            task = asyncio.create_task(super().route_message(raw_msg))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        elif frame[1] in self.own_calls:
            self.own_calls[frame[1]].set_result(frame)
        else:
            await super().route_message(raw_msg)

    async def _send(self, message: str) -> None:
        frame = json.loads(message)
        if frame[0] in (3, 4):
            self.wire.append(("answer", frame[1]))
            self._changed.set()
        await super()._send(message)
        if frame[0] in (3, 4):
            action = next(c["action"] for c in self.calls if c["uniqueId"] == frame[1])
            if action in self.then_send:
                then_action, payload = self.then_send.pop(action)
                unique_id = f"own-{len(self.own_calls)}"
                self.own_calls[unique_id] = asyncio.get_running_loop().create_future()
                await self._connection.send(json.dumps([2, unique_id, then_action, payload]))

    async def answer(self, action: str) -> Any:
        behaviour = self.answers[action]
        if behaviour == HANG:
            await self.release.wait()  # until the test lets it answer, if ever
            behaviour = DEFAULT_ANSWERS[action]
        if isinstance(behaviour, OCPPError):
            raise behaviour
        return getattr(call_result, action)(**camel_to_snake_case(behaviour))

    async def own_answer(self, timeout: float = 5) -> list[Any]:
        """The CSMS's answer to the one CALL sent through ``then_send``."""
        (future,) = self.own_calls.values()
        return await asyncio.wait_for(future, timeout)

    async def until(self, predicate: Callable[[], bool], timeout: float = 5) -> None:
        """Wait, bounded, until the wire record satisfies ``predicate``."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def close(self) -> None:
        for task in [*self._handlers, self.listener]:
            if task is not None:
                task.cancel()
        await self._connection.close()


def _route(action: str) -> Any:
    """The ``@on`` handler for one action: answers as ``Charger.answers`` says."""

    async def handler(self: Charger, **payload: Any) -> Any:
        return await self.answer(action)

    handler.__name__ = f"on_{snake(action)}"  # the library routes by method name
    return on(action)(handler)


for _action in ACTIONS:
    setattr(Charger, f"on_{snake(_action)}", _route(_action))


@pytest.fixture
async def connect(
    csms_factory: Callable[..., Awaitable[Csms]],
) -> AsyncIterator[Callable[..., Awaitable[Charger]]]:
    """Connect (and boot) a registered charger; every charger is closed at the end."""
    opened: list[Charger] = []

    async def start(csms: Csms, charger_id: str, *, boot: bool = True) -> Charger:
        charger = Charger(charger_id, await open_socket(csms, charger_id))
        charger.listener = asyncio.create_task(charger.start())
        opened.append(charger)
        if boot:
            await charger.call(
                call.BootNotification(charge_point_model="M", charge_point_vendor="V")
            )
        return charger

    yield start
    for charger in opened:
        await charger.close()


async def command(
    api: Api, charger_id: str, action: str, body: Any, query: str = "?wait=5"
) -> tuple[int, Any]:
    return await api.request(
        "POST", f"/api/v1/chargers/{charger_id}/commands/{action}{query}", json_body=body
    )


async def events(api: Api, charger_id: str, pattern: str = "*") -> list[dict[str, Any]]:
    path = f"/api/v1/events?chargerId={charger_id}&order=asc&limit=100&type={pattern}"
    return (await api.get(path))["items"]


async def charger_view(api: Api, charger_id: str) -> dict[str, Any]:
    return await api.get(f"/api/v1/chargers/{charger_id}")


# -- one test per action ------------------------------------------------------------------

# (action, request, the charger's answer, the outcome DESIGN 6 maps it to)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("CancelReservation", {"reservationId": 7}, {"status": "Accepted"}, "accepted"),
    (
        "ChangeAvailability",
        {"connectorId": 1, "type": "Inoperative"},
        {"status": "Scheduled"},
        "accepted",
    ),
    (
        "ChangeConfiguration",
        {"key": "MeterValueSampleInterval", "value": "30"},
        {"status": "RebootRequired"},
        "accepted",
    ),
    (
        "ChangeConfiguration",
        {"key": "Vendor.Unknown", "value": "1"},
        {"status": "NotSupported"},
        "rejected",
    ),
    ("ClearCache", {}, {"status": "Accepted"}, "accepted"),
    ("ClearChargingProfile", {"id": 5}, {"status": "Unknown"}, "rejected"),
    (
        "DataTransfer",
        {"vendorId": "com.example", "messageId": "ping", "data": "hello"},
        {"status": "Accepted", "data": "pong"},
        "accepted",
    ),
    ("DataTransfer", {"vendorId": "com.unknown"}, {"status": "UnknownVendorId"}, "rejected"),
    (
        "GetCompositeSchedule",
        {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"},
        {
            "status": "Accepted",
            "connectorId": 1,
            "scheduleStart": "2026-02-06T14:30:00.000Z",
            "chargingSchedule": {
                "duration": 3600,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000.0}],
            },
        },
        "accepted",
    ),
    (
        "GetConfiguration",
        {"key": ["HeartbeatInterval", "Vendor.Nope"]},
        {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
            "unknownKey": ["Vendor.Nope"],
        },
        "accepted",
    ),
    (
        "GetDiagnostics",
        {
            "location": "ftp://diag.example.com/upload",
            "retries": 2,
            "startTime": "2026-02-01T00:00:00.000Z",
        },
        {"fileName": "diagnostics-CMD.zip"},
        "accepted",
    ),
    ("GetLocalListVersion", {}, {"listVersion": 3}, "accepted"),
    (
        "RemoteStartTransaction",
        {"idTag": "TAG1", "connectorId": 1},
        {"status": "Accepted"},
        "accepted",
    ),
    ("RemoteStopTransaction", {"transactionId": 42}, {"status": "Rejected"}, "rejected"),
    (
        "ReserveNow",
        {
            "connectorId": 1,
            "expiryDate": "2026-02-06T15:00:00.000Z",
            "idTag": "TAG1",
            "reservationId": 7,
        },
        {"status": "Occupied"},
        "rejected",
    ),
    ("Reset", {"type": "Soft"}, {"status": "Rejected"}, "rejected"),
    ("Reset", {"type": "Hard"}, {"status": "Accepted"}, "accepted"),
    (
        "SendLocalList",
        {
            "listVersion": 4,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": "TAG1", "idTagInfo": {"status": "Accepted"}}],
        },
        {"status": "VersionMismatch"},
        "rejected",
    ),
    (
        "SetChargingProfile",
        {"connectorId": 1, "csChargingProfiles": PROFILE},
        {"status": "Accepted"},
        "accepted",
    ),
    ("TriggerMessage", {"requestedMessage": "Heartbeat"}, {"status": "Accepted"}, "accepted"),
    (
        "TriggerMessage",
        {"requestedMessage": "MeterValues", "connectorId": 1},
        {"status": "NotImplemented"},
        "rejected",
    ),
    ("UnlockConnector", {"connectorId": 1}, {"status": "UnlockFailed"}, "rejected"),
    ("UnlockConnector", {"connectorId": 2}, {"status": "Unlocked"}, "accepted"),
    (
        "UpdateFirmware",
        {
            "location": "https://fw.example.com/fw-2.bin",
            "retrieveDate": "2026-02-06T15:00:00.000Z",
            "retries": 1,
        },
        {},
        "accepted",
    ),
]


def test_every_action_has_a_case() -> None:
    assert {case[0] for case in CASES} == set(ACTIONS)


@pytest.mark.parametrize(
    ("action", "request_", "response", "outcome"),
    CASES,
    ids=[f"{c[0]}-{c[2].get('status', 'answer')}" for c in CASES],
)
async def test_action(
    csms: Csms,
    api: Api,
    connect: Callable[..., Awaitable[Charger]],
    action: str,
    request_: dict[str, Any],
    response: dict[str, Any],
    outcome: str,
) -> None:
    await register(api, "CMD")
    charger = await connect(csms, "CMD")
    charger.answers[action] = response

    status, body = await command(api, "CMD", action, request_)

    assert status == 200, body
    answered = body["data"]
    assert answered["status"] == outcome
    assert answered["response"] == response
    # On the wire: exactly one CALL, this action, the payload as posted, the command's id.
    assert charger.calls == [{"uniqueId": answered["id"], "action": action, "payload": request_}]
    stored = await api.get(f"/api/v1/commands/{answered['id']}")
    assert stored["status"] == outcome
    assert stored["action"] == action and stored["chargerId"] == "CMD"
    assert stored["request"] == request_ and stored["response"] == response
    assert stored["error"] is None
    assert stored["createdAt"] <= stored["sentAt"] <= stored["completedAt"]
    seen = await events(api, "CMD", f"{snake(action)}.*")
    assert [e["type"] for e in seen] == [f"{snake(action)}.requested", f"{snake(action)}.{outcome}"]
    assert seen[0]["data"] == {"commandId": answered["id"], "request": request_}
    assert seen[1]["data"] == {
        "commandId": answered["id"],
        "request": request_,
        "response": response,
    }
    assert seen[0]["sequence"] < seen[1]["sequence"]


@contextlib.asynccontextmanager
async def api_for(csms: Csms) -> AsyncIterator[Api]:
    """An API client for a CSMS started by a test itself (not the ``csms`` fixture)."""
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield Api(session, csms.api_url)


async def status_of(api: Api, command_id: str) -> str:
    return (await api.get(f"/api/v1/commands/{command_id}"))["status"]


# -- what accepted commands change, as the charger view shows it ---------------------------


async def test_settings_learnt_from_accepted_commands_show_in_the_charger_view(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "SET")
    charger = await connect(csms, "SET")
    assert (await charger_view(api, "SET"))["settings"] == {}

    async def ok(action: str, body: dict[str, Any], answer: dict[str, Any], outcome: str) -> None:
        charger.answers[action] = answer
        status, result = await command(api, "SET", action, body)
        assert status == 200 and result["data"]["status"] == outcome, result

    await ok(
        "ChangeAvailability",
        {"connectorId": 1, "type": "Inoperative"},
        {"status": "Accepted"},
        "accepted",
    )
    await ok(
        "ChangeAvailability",
        {"connectorId": 0, "type": "Inoperative"},
        {"status": "Scheduled"},
        "accepted",
    )
    await ok(
        "ChangeAvailability",
        {"connectorId": 2, "type": "Inoperative"},
        {"status": "Rejected"},
        "rejected",
    )

    def profile(profile_id: int, stack_level: int, limit: float) -> dict[str, Any]:
        return {
            **PROFILE,
            "chargingProfileId": profile_id,
            "stackLevel": stack_level,
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        }

    accepted = {"status": "Accepted"}
    await ok(
        "SetChargingProfile",
        {"connectorId": 1, "csChargingProfiles": profile(5, 0, 16.0)},
        accepted,
        "accepted",
    )
    await ok(
        "SetChargingProfile",
        {"connectorId": 1, "csChargingProfiles": profile(6, 1, 10.0)},
        accepted,
        "accepted",
    )
    after_two = (await charger_view(api, "SET"))["settings"]["chargingProfiles"]
    assert [p["csChargingProfiles"]["chargingProfileId"] for p in after_two] == [5, 6]
    # Same id: replaces (5.16.4).
    await ok(
        "SetChargingProfile",
        {"connectorId": 1, "csChargingProfiles": profile(6, 1, 12.0)},
        accepted,
        "accepted",
    )
    # Same stackLevel and purpose on the connector: replaces too (3.13.2, 5.16.4).
    await ok(
        "SetChargingProfile",
        {"connectorId": 1, "csChargingProfiles": profile(7, 0, 20.0)},
        accepted,
        "accepted",
    )
    # Refused by the charger: not installed.
    await ok(
        "SetChargingProfile",
        {"connectorId": 1, "csChargingProfiles": profile(8, 2, 8.0)},
        {"status": "Rejected"},
        "rejected",
    )
    profiles = (await charger_view(api, "SET"))["settings"]["chargingProfiles"]
    assert profiles == [
        {"connectorId": 1, "csChargingProfiles": profile(6, 1, 12.0)},
        {"connectorId": 1, "csChargingProfiles": profile(7, 0, 20.0)},
    ]
    await ok("ClearChargingProfile", {"id": 6}, accepted, "accepted")

    await ok(
        "SendLocalList",
        {
            "listVersion": 4,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": "TAG1", "idTagInfo": {"status": "Accepted"}}],
        },
        accepted,
        "accepted",
    )
    await ok(
        "SendLocalList",
        {"listVersion": 9, "updateType": "Differential"},
        {"status": "Failed"},
        "rejected",
    )
    await ok(
        "ChangeConfiguration",
        {"key": "MeterValueSampleInterval", "value": "30"},
        accepted,
        "accepted",
    )
    await ok(
        "ChangeConfiguration",
        {"key": "Vendor.Unknown", "value": "1"},
        {"status": "NotSupported"},
        "rejected",
    )
    settings = (await charger_view(api, "SET"))["settings"]
    assert settings == {
        "availability": {
            "0": {"type": "Inoperative", "scheduled": True},
            "1": {"type": "Inoperative", "scheduled": False},
        },
        "chargingProfiles": [{"connectorId": 1, "csChargingProfiles": profile(7, 0, 20.0)}],
        "localListVersion": 4,
        "configuration": {"MeterValueSampleInterval": "30"},
    }

    # What the charger reports is learnt too; keys it does not know stay out.
    await ok(
        "GetConfiguration",
        {},
        {
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
                {"key": "NumberOfConnectors", "readonly": True},
            ]
        },
        "accepted",
    )
    await ok("GetLocalListVersion", {}, {"listVersion": 5}, "accepted")
    view = await charger_view(api, "SET")
    assert view["settings"]["configuration"] == {
        "HeartbeatInterval": "300",
        "MeterValueSampleInterval": "60",
    }
    assert view["settings"]["localListVersion"] == 5
    # The list shows the same.
    listed = (await api.get("/api/v1/chargers"))["items"]
    assert [c["settings"] for c in listed if c["id"] == "SET"] == [view["settings"]]


# -- Pending --------------------------------------------------------------------------------


async def test_remote_start_and_stop_are_refused_while_the_boot_is_pending(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "PEND", registrationPolicy="Pending")
    charger = await connect(csms, "PEND", boot=False)
    boot = await charger.call(
        call.BootNotification(charge_point_model="M", charge_point_vendor="V")
    )
    assert boot.status == "Pending"
    refused = (
        ("RemoteStartTransaction", {"idTag": "TAG1", "connectorId": 1}),
        ("RemoteStopTransaction", {"transactionId": 1}),
    )
    for action, body in refused:
        for query in ("?wait=5", "?queue=true"):
            status, answer = await command(api, "PEND", action, body, query)
            assert status == 409, answer
            assert answer["error"]["code"] == "conflict"
            assert "Pending" in answer["error"]["message"]
    # Pending is for reading and setting information (4.2): other commands go through.
    status, answer = await command(api, "PEND", "GetConfiguration", {})
    assert status == 200 and answer["data"]["status"] == "accepted"
    assert [c["action"] for c in charger.calls] == ["GetConfiguration"]
    assert await events(api, "PEND", "remote_*") == []

    # Accepted at the next boot: now the same command goes out.
    await api.request(
        "PATCH", "/api/v1/chargers/PEND", json_body={"registrationPolicy": "Accepted"}, expect=200
    )
    boot = await charger.call(
        call.BootNotification(charge_point_model="M", charge_point_vendor="V")
    )
    assert boot.status == "Accepted"
    status, answer = await command(api, "PEND", *refused[0])
    assert status == 200 and answer["data"]["status"] == "accepted"


async def test_trigger_message_lets_a_pending_charger_send_the_triggered_message(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "TRIG", registrationPolicy="Pending")
    charger = await connect(csms, "TRIG")
    status_notification = call.StatusNotification(
        connector_id=1, error_code="NoError", status="Available"
    )
    with pytest.raises(SecurityError):  # not asked for: refused in Pending (4.2)
        await charger.call(status_notification, suppress=False)

    status_payload = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    charger.then_send["TriggerMessage"] = ("StatusNotification", status_payload)
    body = {"requestedMessage": "StatusNotification", "connectorId": 1}
    status, answer = await command(api, "TRIG", "TriggerMessage", body)
    assert status == 200 and answer["data"]["status"] == "accepted"
    assert (await charger.own_answer())[0] == 3  # a CALLRESULT, not a SecurityError
    types = [e["type"] for e in await events(api, "TRIG")]
    assert types[-3:] == [
        "trigger_message.requested",
        "trigger_message.accepted",
        "connector.status_changed",
    ]
    # The permission was for one message: the next unasked one is refused again.
    with pytest.raises(SecurityError):
        await charger.call(status_notification, suppress=False)


async def test_a_start_transaction_sent_right_after_the_remote_start_answer_is_linked(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await api.post("/api/v1/id-tags", {"idTag": "TAG1"})
    await register(api, "LINK")
    charger = await connect(csms, "LINK")
    charger.then_send["RemoteStartTransaction"] = (
        "StartTransaction",
        {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": "2026-02-06T14:30:00Z"},
    )
    status, answer = await command(
        api, "LINK", "RemoteStartTransaction", {"idTag": "TAG1", "connectorId": 1}
    )
    assert status == 200 and answer["data"]["status"] == "accepted"
    started = await charger.own_answer()
    assert started[0] == 3, started
    transaction_id = started[2]["transactionId"]
    transaction = await api.get(f"/api/v1/transactions/{transaction_id}")
    assert transaction["commandId"] == answer["data"]["id"]
    seen = await events(api, "LINK")
    assert [e["type"] for e in seen][-3:] == [
        "remote_start_transaction.requested",
        "remote_start_transaction.accepted",
        "transaction.started",
    ]
    assert seen[-1]["data"]["commandId"] == answer["data"]["id"]


# -- failures -------------------------------------------------------------------------------


async def test_a_callerror_answer_fails_the_command(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "ERR")
    charger = await connect(csms, "ERR")
    charger.answers["Reset"] = InternalError(description="relay stuck", details={"relay": 2})
    status, answer = await command(api, "ERR", "Reset", {"type": "Hard"})
    assert status == 200
    error = {"code": "InternalError", "message": "relay stuck", "details": {"relay": 2}}
    stored = await api.get(f"/api/v1/commands/{answer['data']['id']}")
    assert stored["status"] == "failed"
    assert stored["error"] == error and stored["response"] is None
    assert stored["completedAt"] is not None
    seen = await events(api, "ERR", "reset.*")
    assert [e["type"] for e in seen] == ["reset.requested", "reset.failed"]
    assert seen[1]["data"] == {
        "commandId": stored["id"],
        "request": {"type": "Hard"},
        "error": error,
    }


async def test_an_answer_that_fails_the_schema_fails_the_command(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "BADANS")
    charger = await connect(csms, "BADANS")
    charger.route_map["GetLocalListVersion"]["_skip_schema_validation"] = True
    charger.answers["GetLocalListVersion"] = {"listVersion": "three"}
    status, answer = await command(api, "BADANS", "GetLocalListVersion", {})
    assert status == 200
    assert answer["data"]["status"] == "failed"
    assert answer["data"]["error"]["code"] == "InvalidResponse"
    assert answer["data"]["error"]["field"] == "listVersion"
    assert "localListVersion" not in (await charger_view(api, "BADANS"))["settings"]


async def test_a_charger_that_never_answers_times_out_and_the_next_command_goes_out(
    csms_factory: Callable[..., Awaitable[Csms]], connect: Callable[..., Awaitable[Charger]]
) -> None:
    csms = await csms_factory(ocpp={"call_timeout": 0.5})
    async with api_for(csms) as api:
        await register(api, "SLOW")
        charger = await connect(csms, "SLOW")
        charger.answers["Reset"] = HANG
        status, first = await command(api, "SLOW", "Reset", {"type": "Hard"}, query="")
        assert status == 202 and first["data"]["status"] == "requested"
        status, second = await command(api, "SLOW", "ClearCache", {})
        assert status == 200 and second["data"]["status"] == "accepted"

        timed_out = await api.get(f"/api/v1/commands/{first['data']['id']}")
        assert timed_out["status"] == "failed"
        assert timed_out["error"]["code"] == "Timeout"
        # The second CALL left only once the first had timed out, and it reached the charger.
        assert second["data"]["sentAt"] >= timed_out["completedAt"]
        assert charger.wire == [
            ("call", first["data"]["id"]),
            ("call", second["data"]["id"]),
            ("answer", second["data"]["id"]),
        ]
        # A late answer changes nothing: the command stays failed, no second outcome event.
        charger.release.set()
        await charger.until(lambda: ("answer", first["data"]["id"]) in charger.wire)
        status, barrier = await command(api, "SLOW", "ClearCache", {})
        assert status == 200 and barrier["data"]["status"] == "accepted"
        assert await status_of(api, first["data"]["id"]) == "failed"
        assert [e["type"] for e in await events(api, "SLOW", "reset.*")] == [
            "reset.requested",
            "reset.failed",
        ]


async def test_a_charger_lost_mid_command_fails_it_and_the_queued_ones_but_not_queue_true(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "LOST")
    charger = await connect(csms, "LOST")
    charger.answers["Reset"] = HANG
    ids = []
    for action, body, query in (
        ("Reset", {"type": "Hard"}, ""),
        ("ClearCache", {}, ""),
        ("GetLocalListVersion", {}, "?queue=true"),
        ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}, "?queue=true"),
    ):
        status, answer = await command(api, "LOST", action, body, query)
        assert status == 202, answer
        ids.append(answer["data"]["id"])
    in_flight, behind, later, last = ids
    await charger.until(lambda: len(charger.calls) == 1)
    await charger.close()

    async def settled() -> bool:
        # Two outcomes, recorded apart (the worker records the one in flight when it wakes,
        # the disconnect the ones behind it): in either order.
        return [await status_of(api, i) for i in (in_flight, behind)] == ["failed", "failed"]

    await wait_for(settled)
    lost = await api.get(f"/api/v1/commands/{in_flight}")
    assert lost["status"] == "failed" and lost["error"]["code"] == "ConnectionLost"
    offline = await api.get(f"/api/v1/commands/{behind}")
    assert offline["error"]["code"] == "ChargerOffline" and offline["sentAt"] is None
    assert [await status_of(api, i) for i in (later, last)] == ["requested", "requested"]
    assert [c["action"] for c in charger.calls] == ["Reset"]
    assert [e["type"] for e in await events(api, "LOST", "reset.*")] == [
        "reset.requested",
        "reset.failed",
    ]

    # Back online (the registration is kept: no BootNotification needed, OCPP-J 5.4).
    again = await connect(csms, "LOST", boot=False)
    again.answers["GetLocalListVersion"] = {"listVersion": 2}

    async def delivered() -> bool:
        return [await status_of(api, i) for i in (later, last)] == ["accepted", "accepted"]

    await wait_for(delivered)
    assert [(c["uniqueId"], c["action"]) for c in again.calls] == [
        (later, "GetLocalListVersion"),
        (last, "ChangeConfiguration"),
    ]
    assert again.wire == [("call", later), ("answer", later), ("call", last), ("answer", last)]


async def test_two_commands_at_once_reach_the_charger_one_after_the_other(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "PAIR")
    charger = await connect(csms, "PAIR")
    # Both hold their answer until both commands are in the CSMS's queue.
    charger.answers["Reset"] = HANG
    charger.answers["ClearCache"] = HANG

    async def release_when_both_are_queued() -> None:
        async def both() -> bool:
            return len(await events(api, "PAIR", "*.requested")) == 2

        await wait_for(both)
        charger.release.set()

    results = await asyncio.gather(
        command(api, "PAIR", "Reset", {"type": "Soft"}),
        command(api, "PAIR", "ClearCache", {}),
        release_when_both_are_queued(),
    )
    answers = [r[1]["data"] for r in results[:2]]
    assert [r[0] for r in results[:2]] == [200, 200]
    assert [a["status"] for a in answers] == ["accepted", "accepted"]
    # In the order the CSMS took them in; the second CALL only after the first's answer.
    order = [e["data"]["commandId"] for e in await events(api, "PAIR", "*.requested")]
    first, second = order
    assert charger.wire == [
        ("call", first),
        ("answer", first),
        ("call", second),
        ("answer", second),
    ]


INVALID = [
    ("Reset", {"type": 1}, "type"),  # wrong type
    ("ChangeConfiguration", {"key": "HeartbeatInterval"}, "value"),  # missing
    ("Reset", {"type": "Soft", "delay": 5}, "delay"),  # unknown field
    ("ChangeAvailability", {"connectorId": 1, "type": "Broken"}, "type"),  # bad enum
    ("RemoteStartTransaction", {"idTag": "T" * 21}, "idTag"),  # CiString20
    (
        "SetChargingProfile",
        {
            "connectorId": 1,
            "csChargingProfiles": {
                **PROFILE,
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": "16"}],
                },
            },
        },
        "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[0].limit",
    ),
]


@pytest.mark.parametrize(("action", "body", "field"), INVALID, ids=[f for *_, f in INVALID])
async def test_an_invalid_payload_is_refused_and_nothing_is_sent(
    csms: Csms,
    api: Api,
    connect: Callable[..., Awaitable[Charger]],
    action: str,
    body: dict[str, Any],
    field: str,
) -> None:
    await register(api, "BAD")
    charger = await connect(csms, "BAD")
    for query in ("?wait=5", "", "?queue=true"):
        status, answer = await command(api, "BAD", action, body, query)
        assert status == 400, answer
        assert answer["error"]["code"] == "invalid_payload"
        assert answer["error"]["message"].startswith(f"{field}:"), answer
    # A good command after the bad ones is the first and only CALL the charger sees.
    status, answer = await command(api, "BAD", "ClearCache", {})
    assert status == 200 and answer["data"]["status"] == "accepted"
    assert [c["action"] for c in charger.calls] == ["ClearCache"]
    assert await events(api, "BAD", f"{snake(action)}.*") == []


async def test_unknown_action_unregistered_charger_and_bad_parameters(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "ASK")
    charger = await connect(csms, "ASK")
    for action in ("FlyToTheMoon", "BootNotification", "reset"):
        status, answer = await command(api, "ASK", action, {})
        assert status == 404 and answer["error"]["code"] == "unknown_action", answer
    status, answer = await command(api, "NOBODY", "Reset", {"type": "Soft"})
    assert status == 404 and answer["error"]["code"] == "not_found"
    status, answer = await command(api, "NOBODY", "Reset", {"type": "Soft"}, "?queue=true")
    assert status == 404
    for query in ("?wait=abc", "?wait=-1", "?wait=nan", "?wait=1000", "?queue=maybe"):
        status, answer = await command(api, "ASK", "Reset", {"type": "Soft"}, query)
        assert status == 400 and answer["error"]["code"] == "invalid_parameter", (query, answer)
    status, answer = await api.request("GET", "/api/v1/commands/cmd_nope")
    assert status == 404
    # None of it reached the charger or the event log.
    status, answer = await command(api, "ASK", "ClearCache", {})
    assert status == 200
    assert [c["action"] for c in charger.calls] == ["ClearCache"]
    assert await events(api, "ASK", "reset.*") == []
    assert await events(api, "NOBODY") == []


async def test_an_offline_charger_gets_409_unless_queued(csms: Csms, api: Api) -> None:
    await register(api, "OFF")
    status, answer = await command(api, "OFF", "Reset", {"type": "Soft"})
    assert status == 409 and answer["error"]["code"] == "conflict"
    assert await events(api, "OFF", "reset.*") == []
    status, answer = await command(api, "OFF", "Reset", {"type": "Soft"}, "?queue=true&wait=0.1")
    assert status == 202
    assert answer["data"]["status"] == "requested" and answer["data"]["queued"] is True
    assert [e["type"] for e in await events(api, "OFF", "reset.*")] == ["reset.requested"]


# -- restart --------------------------------------------------------------------------------


async def test_a_queued_command_survives_a_restart_and_is_sent_on_connect(
    csms_factory: Callable[..., Awaitable[Csms]], connect: Callable[..., Awaitable[Charger]]
) -> None:
    first = await csms_factory()
    async with api_for(first) as api:
        await register(api, "RST")
        status, answer = await command(api, "RST", "Reset", {"type": "Soft"}, "?queue=true")
        assert status == 202
        status, second_answer = await command(api, "RST", "ClearCache", {}, "?queue=true")
        assert status == 202
    queued = [answer["data"]["id"], second_answer["data"]["id"]]
    await first.close()

    second = await csms_factory()  # the same settings, so the same database file
    async with api_for(second) as api:
        assert [await status_of(api, i) for i in queued] == ["requested", "requested"]
        charger = await connect(second, "RST")

        async def done() -> bool:
            return [await status_of(api, i) for i in queued] == ["accepted", "accepted"]

        await wait_for(done)
        assert [(c["uniqueId"], c["action"], c["payload"]) for c in charger.calls] == [
            (queued[0], "Reset", {"type": "Soft"}),
            (queued[1], "ClearCache", {}),
        ]
        assert [e["type"] for e in await events(api, "RST", "reset.*")] == [
            "reset.requested",
            "reset.accepted",
        ]


async def test_a_queued_command_already_sent_is_not_sent_again_after_a_restart(
    csms_factory: Callable[..., Awaitable[Csms]], connect: Callable[..., Awaitable[Charger]]
) -> None:
    first = await csms_factory()
    async with api_for(first) as api:
        await register(api, "ONCE")
        charger = await connect(first, "ONCE")
        charger.answers["Reset"] = HANG
        status, answer = await command(api, "ONCE", "Reset", {"type": "Hard"}, "?queue=true")
        assert status == 202
        await charger.until(lambda: len(charger.calls) == 1)
    await first.close()

    second = await csms_factory()
    async with api_for(second) as api:
        stored = await api.get(f"/api/v1/commands/{answer['data']['id']}")
        assert stored["status"] == "failed", stored
        # Lost with the socket at shutdown, or found unfinished at start: either way, done.
        assert stored["error"]["code"] in ("ConnectionLost", "ServerRestart"), stored
        again = await connect(second, "ONCE")
        status, barrier = await command(api, "ONCE", "ClearCache", {})
        assert status == 200 and barrier["data"]["status"] == "accepted"
        assert [c["action"] for c in again.calls] == ["ClearCache"]


async def test_a_charger_back_at_once_still_gets_its_queued_commands(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "BOUNCE")
    charger = await connect(csms, "BOUNCE")
    charger.answers["Reset"] = HANG
    status, in_flight = await command(api, "BOUNCE", "Reset", {"type": "Hard"}, "")
    assert status == 202
    # Many commands to fail when the charger drops, then one that waits for it.
    behind = []
    for _ in range(30):
        status, answer = await command(api, "BOUNCE", "ClearCache", {}, "")
        assert status == 202
        behind.append(answer["data"]["id"])
    status, queued = await command(api, "BOUNCE", "GetLocalListVersion", {}, "?queue=true")
    assert status == 202
    await charger.until(lambda: len(charger.calls) == 1)
    # Gone and back at once, while the CSMS is still failing what was queued behind.
    await charger.close()
    again = await connect(csms, "BOUNCE", boot=False)
    await again.until(lambda: [c["action"] for c in again.calls] == ["GetLocalListVersion"])

    async def accepted() -> bool:
        return await status_of(api, queued["data"]["id"]) == "accepted"

    await wait_for(accepted)
    # What was queued behind failed with the lost connection, however soon it came back.
    assert (await api.get(f"/api/v1/commands/{in_flight['data']['id']}"))["error"]["code"] == (
        "ConnectionLost"
    )
    for command_id in behind:
        stored = await api.get(f"/api/v1/commands/{command_id}")
        assert stored["status"] == "failed" and stored["sentAt"] is None
    assert [c["action"] for c in again.calls] == ["GetLocalListVersion"]
