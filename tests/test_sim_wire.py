"""The simulator on the wire, against a small CSMS written here with the `ocpp` library.

The real CSMS (csms/) is not used: these tests pin the simulator's own behaviour, with a
CSMS that validates every frame against the 1.6 schemas and records what it received.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import ServerConnection, serve

from simulators.charger import Charger, EventKind
from simulators.scenarios import SCENARIOS, ScenarioOptions

ACCEPTED = {"status": "Accepted"}


class Hub:
    """Everything the test CSMS saw, in arrival order, and a way to wait on it."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, dict[str, Any]]] = []  # (charger, action, payload)
        self.points: dict[str, CsmsPoint] = {}
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        self.boot_status = "Accepted"
        self.interval = 300
        self.tx_ids = itertools.count(100)
        self.changed = asyncio.Event()

    def record(self, charger: str, action: str, payload: dict[str, Any]) -> None:
        self.log.append((charger, action, payload))
        self.changed.set()

    def actions(self, charger: str = "SIM-1") -> list[str]:
        return [a for c, a, _ in self.log if c == charger]

    def payloads(self, action: str) -> list[dict[str, Any]]:
        return [p for _, a, p in self.log if a == action]

    async def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


class CsmsPoint(ChargePoint):
    """The CSMS side of one charger connection."""

    def __init__(self, charger_id: str, ws: ServerConnection, hub: Hub) -> None:
        super().__init__(charger_id, ws)
        self.hub = hub

    def _note(self, action: str, **kwargs: Any) -> None:
        self.hub.record(self.id, action, kwargs)

    @on(Action.boot_notification)
    def on_boot(self, **kw: Any) -> call_result.BootNotification:
        self._note("BootNotification", **kw)
        now = datetime.now(UTC).isoformat()
        return call_result.BootNotification(
            current_time=now, interval=self.hub.interval, status=self.hub.boot_status
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **kw: Any) -> call_result.Heartbeat:
        self._note("Heartbeat", **kw)
        return call_result.Heartbeat(current_time=datetime.now(UTC).isoformat())

    @on(Action.status_notification)
    def on_status(self, **kw: Any) -> call_result.StatusNotification:
        self._note("StatusNotification", **kw)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, **kw: Any) -> call_result.Authorize:
        self._note("Authorize", **kw)
        return call_result.Authorize(id_tag_info=ACCEPTED)

    @on(Action.start_transaction)
    def on_start(self, **kw: Any) -> call_result.StartTransaction:
        self._note("StartTransaction", **kw)
        return call_result.StartTransaction(
            transaction_id=next(self.hub.tx_ids), id_tag_info=ACCEPTED
        )

    @on(Action.stop_transaction)
    def on_stop(self, **kw: Any) -> call_result.StopTransaction:
        self._note("StopTransaction", **kw)
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter(self, **kw: Any) -> call_result.MeterValues:
        self._note("MeterValues", **kw)
        return call_result.MeterValues()

    @on(Action.diagnostics_status_notification)
    def on_diag(self, **kw: Any) -> call_result.DiagnosticsStatusNotification:
        self._note("DiagnosticsStatusNotification", **kw)
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware(self, **kw: Any) -> call_result.FirmwareStatusNotification:
        self._note("FirmwareStatusNotification", **kw)
        return call_result.FirmwareStatusNotification()


@pytest.fixture
async def csms() -> AsyncIterator[tuple[Hub, str]]:
    hub = Hub()

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        charger_id = ws.request.path.rsplit("/", 1)[-1]
        hub.paths.append(ws.request.path)
        hub.auth.append(ws.request.headers.get("Authorization"))
        point = CsmsPoint(charger_id, ws, hub)
        hub.points[charger_id] = point
        try:
            await point.start()
        except Exception as exc:
            print("CSMS handler ended:", repr(exc))

    async with serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as server:
        port = server.sockets[0].getsockname()[1]
        yield hub, f"ws://127.0.0.1:{port}/ocpp"


def fast(url: str, **kw: Any) -> Charger:
    """A charger whose timers run in tenths of a second."""
    options: dict[str, Any] = {
        "sample_interval": 0.1,
        "step_delay": 0.05,
        "reboot_delay": 0.05,
        "reconnect_delay": 0.05,
        "retry_interval": 0.05,
        "boot_retry": 0.1,
        "call_timeout": 5.0,
    }
    options.update(kw)
    return Charger(url, kw.pop("charger_id", "SIM-1"), **options)


def statuses(hub: Hub, connector: int = 1) -> list[str]:
    return [
        p["status"] for p in hub.payloads("StatusNotification") if p["connector_id"] == connector
    ]


async def test_boot_then_status_per_connector_and_heartbeat(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url, connectors=2, heartbeat_interval=0.1, password="secret-password-1") as ch:
        await hub.wait(lambda: "Heartbeat" in hub.actions())
        assert ch.model.config.get_int("HeartbeatInterval") == 300  # adopted from the CSMS
    assert hub.actions()[0] == "BootNotification"
    assert [p["connector_id"] for p in hub.payloads("StatusNotification")[:3]] == [0, 1, 2]
    assert hub.paths == ["/ocpp/SIM-1"]
    assert hub.auth[0] is not None and hub.auth[0].startswith("Basic ")


async def test_boot_pending_is_retried_until_accepted(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    hub.boot_status, hub.interval = "Pending", 0
    ch = fast(url)
    await ch.start(wait_boot=False)
    try:
        await hub.wait(lambda: hub.actions().count("BootNotification") >= 2)
        assert "StatusNotification" not in hub.actions()
        hub.boot_status = "Accepted"
        await ch.wait_until(lambda: ch.model.registration == "Accepted", timeout=5)
    finally:
        await ch.stop()


async def test_session_scenario_sends_events_in_order(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url) as ch:
        await SCENARIOS["session"](ch, ScenarioOptions(duration=0.5, wait=5))
    actions = [a for a in hub.actions() if a not in ("Heartbeat",)]
    start, stop = actions.index("StartTransaction"), actions.index("StopTransaction")
    assert actions.index("Authorize") < start < stop
    assert "MeterValues" in actions[start:stop]
    assert statuses(hub) == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    energies = [
        float(v["value"])
        for p in hub.payloads("MeterValues")
        for mv in p["meter_value"]
        for v in mv["sampled_value"]
        if v["measurand"] == "Energy.Active.Import.Register"
    ]
    assert len(energies) >= 2 and energies == sorted(energies) and energies[-1] > energies[0]
    assert {p["transaction_id"] for p in hub.payloads("MeterValues")} == {100}
    (stop_payload,) = hub.payloads("StopTransaction")
    assert stop_payload["transaction_id"] == 100 and stop_payload["reason"] == "Local"
    assert stop_payload["meter_stop"] >= hub.payloads("StartTransaction")[0]["meter_start"]


async def test_remote_start_and_stop(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url) as ch:
        point = hub.points["SIM-1"]
        answer = await point.call(call.RemoteStartTransaction(id_tag="APP-1", connector_id=1))
        assert answer.status == "Accepted"
        started = await ch.wait_for(EventKind.TRANSACTION_STARTED)
        assert "Authorize" not in hub.actions()  # AuthorizeRemoteTxRequests is false
        answer = await point.call(call.RemoteStopTransaction(transaction_id=started.transaction_id))
        assert answer.status == "Accepted"
        stopped = await ch.wait_for(EventKind.TRANSACTION_STOPPED)
        assert stopped.payload is not None and stopped.payload["reason"] == "Remote"
        again = await point.call(call.RemoteStopTransaction(transaction_id=started.transaction_id))
        assert again.status == "Rejected"


async def test_remote_start_authorizes_first_when_configured(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url) as ch:
        point = hub.points["SIM-1"]
        changed = await point.call(
            call.ChangeConfiguration(key="AuthorizeRemoteTxRequests", value="true")
        )
        assert changed.status == "Accepted"
        await point.call(call.RemoteStartTransaction(id_tag="APP-2"))
        await ch.wait_for(EventKind.TRANSACTION_STARTED)
        actions = hub.actions()
        assert actions.index("Authorize") < actions.index("StartTransaction")


async def test_reset_soft_stops_transaction_then_reboots(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url) as ch:
        point = hub.points["SIM-1"]
        await point.call(call.RemoteStartTransaction(id_tag="APP-1", connector_id=1))
        await ch.wait_for(EventKind.TRANSACTION_STARTED)
        mark = ch.mark()
        answer = await point.call(call.Reset(type="Soft"))
        assert answer.status == "Accepted"
        await ch.wait_for(EventKind.REBOOTING, since=mark)
        await ch.wait_for(EventKind.BOOTED, since=mark)
        await hub.wait(lambda: hub.actions().count("BootNotification") == 2)
    actions = hub.actions()
    stop = actions.index("StopTransaction")
    assert hub.payloads("StopTransaction")[0]["reason"] == "SoftReset"
    assert stop < len(actions) - 1 - actions[::-1].index("BootNotification")


async def test_hard_reset_sends_stop_after_boot(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url) as ch:
        point = hub.points["SIM-1"]
        await point.call(call.RemoteStartTransaction(id_tag="APP-1", connector_id=1))
        await ch.wait_for(EventKind.TRANSACTION_STARTED)
        await point.call(call.Reset(type="Hard"))
        await ch.wait_for(EventKind.TRANSACTION_STOPPED)
    actions = hub.actions()
    assert hub.payloads("StopTransaction")[0]["reason"] == "HardReset"
    assert actions.count("BootNotification") == 2
    assert len(actions) - 1 - actions[::-1].index("BootNotification") < actions.index(
        "StopTransaction"
    )


async def test_offline_scenario_replays_in_order_with_csms_ids(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url) as ch:
        await SCENARIOS["offline"](ch, ScenarioOptions(duration=1.2, wait=5))
    assert len(hub.paths) == 2  # one reconnect
    tx_actions = [
        (a, p) for _, a, p in hub.log if a in ("StartTransaction", "StopTransaction", "MeterValues")
    ]
    names = [a for a, _ in tx_actions]
    first_stop = names.index("StopTransaction")
    second_start = names.index("StartTransaction", first_stop)
    assert names[0] == "StartTransaction"
    assert names.count("StartTransaction") == 2 and names.count("StopTransaction") == 2
    assert names[-1] == "StopTransaction"
    # Every message names the transaction the CSMS returned for its StartTransaction.
    for a, p in tx_actions[1 : first_stop + 1]:
        assert p["transaction_id"] == 100, (a, p)
    for a, p in tx_actions[second_start + 1 :]:
        assert p["transaction_id"] == 101, (a, p)
    assert "MeterValues" in names[1:first_stop]
    # Timestamps of transaction messages never go backwards (4.8: chronological order).
    stamps = [p.get("timestamp") or p["meter_value"][0]["timestamp"] for _, p in tx_actions]
    assert stamps == sorted(stamps)


async def test_answers_to_csms_commands(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url, connectors=2) as ch:
        point = hub.points["SIM-1"]
        conf = await point.call(call.GetConfiguration(key=["HeartbeatInterval", "Nope"]))
        assert conf.configuration_key[0]["key"] == "HeartbeatInterval"
        assert conf.unknown_key == ["Nope"]
        ro = await point.call(call.ChangeConfiguration(key="NumberOfConnectors", value="5"))
        assert ro.status == "Rejected"
        unknown = await point.call(call.ChangeConfiguration(key="Nope", value="1"))
        assert unknown.status == "NotSupported"
        assert (await point.call(call.GetLocalListVersion())).list_version == 0
        sent = await point.call(
            call.SendLocalList(
                list_version=3,
                update_type="Full",
                local_authorization_list=[{"id_tag": "A", "id_tag_info": ACCEPTED}],
            )
        )
        assert sent.status == "Accepted"
        assert (await point.call(call.GetLocalListVersion())).list_version == 3
        expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        res = await point.call(
            call.ReserveNow(connector_id=2, expiry_date=expiry, id_tag="A", reservation_id=7)
        )
        assert res.status == "Accepted"
        await hub.wait(lambda: "Reserved" in statuses(hub, 2))
        assert (await point.call(call.CancelReservation(reservation_id=7))).status == "Accepted"
        avail = await point.call(call.ChangeAvailability(connector_id=1, type="Inoperative"))
        assert avail.status == "Accepted"
        await hub.wait(lambda: statuses(hub, 1)[-1:] == ["Unavailable"])
        trig = await point.call(call.TriggerMessage(requested_message="Heartbeat"))
        assert trig.status == "Accepted"
        await hub.wait(lambda: "Heartbeat" in hub.actions())
        dt = await point.call(call.DataTransfer(vendor_id="other"))
        assert dt.status == "UnknownVendorId"
        echo = await point.call(call.DataTransfer(vendor_id="chargehook-sim", data="hi"))
        assert echo.status == "Accepted" and echo.data == "hi"
        assert (await point.call(call.ClearCache())).status == "Accepted"
        unlock = await point.call(call.UnlockConnector(connector_id=9))
        assert unlock.status == "NotSupported"
        diag = await point.call(call.GetDiagnostics(location="ftp://example.invalid/up"))
        assert diag.file_name
        await hub.wait(
            lambda: (
                [p["status"] for p in hub.payloads("DiagnosticsStatusNotification")]
                == ["Uploading", "Uploaded"]
            )
        )
        assert ch.model.diagnostics_status == "Uploaded"


async def test_smart_charging_caps_reported_power(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url) as ch:
        point = hub.points["SIM-1"]
        await point.call(call.RemoteStartTransaction(id_tag="APP-1", connector_id=1))
        started = await ch.wait_for(EventKind.TRANSACTION_STARTED)
        profile = {
            "charging_profile_id": 1,
            "transaction_id": started.transaction_id,
            "stack_level": 0,
            "charging_profile_purpose": "TxProfile",
            "charging_profile_kind": "Relative",
            "charging_schedule": {
                "charging_rate_unit": "W",
                "charging_schedule_period": [{"start_period": 0, "limit": 3000.0}],
            },
        }
        answer = await point.call(
            call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile)
        )
        assert answer.status == "Accepted"
        # The charger installs the profile before it answers. A sample taken before that may
        # still be queued behind the answer (one CALL in flight at a time): the first sample
        # taken after the answer is the one that must be capped.
        answered, mark = datetime.now(UTC), len(hub.log)

        def capped() -> bool:
            for _, a, p in hub.log[mark:]:
                if a == "MeterValues":
                    if datetime.fromisoformat(p["meter_value"][0]["timestamp"]) < answered:
                        continue
                    for v in p["meter_value"][0]["sampled_value"]:
                        if v["measurand"] == "Power.Active.Import":
                            return float(v["value"]) == 3000.0
            return False

        await hub.wait(capped)
        comp = await point.call(call.GetCompositeSchedule(connector_id=1, duration=600))
        assert comp.status == "Accepted"
        assert comp.charging_schedule["charging_schedule_period"][0]["limit"] == 3000.0


async def test_update_firmware_walks_statuses_and_reboots(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url) as ch:
        point = hub.points["SIM-1"]
        now = datetime.now(UTC).isoformat()
        await point.call(
            call.UpdateFirmware(location="https://fw.invalid/2.0.0", retrieve_date=now)
        )
        await hub.wait(lambda: hub.actions().count("BootNotification") == 2)
        assert ch.model.identity.firmware == "2.0.0"
    assert [p["status"] for p in hub.payloads("FirmwareStatusNotification")] == [
        "Downloading",
        "Downloaded",
        "Installing",
        "Installed",
    ]
    assert hub.payloads("BootNotification")[-1]["firmware_version"] == "2.0.0"


async def test_faulted_scenario(csms: tuple[Hub, str]) -> None:
    hub, url = csms
    async with fast(url) as ch:
        await SCENARIOS["faulted"](ch, ScenarioOptions(duration=0.2, wait=5))
    faults = [p for p in hub.payloads("StatusNotification") if p["status"] == "Faulted"]
    assert faults and faults[0]["error_code"] == "GroundFailure"
    assert statuses(hub)[-2:] == ["Faulted", "Available"]
