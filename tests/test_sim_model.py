"""The simulator's pure parts: no socket, no clock, fixed times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulators import commands
from simulators.authorization import LocalList, UpdateStatus
from simulators.config import Configuration, ConfigurationStatus, default_keys
from simulators.frames import Call, CallError, CallResult, Unreadable, encode, parse
from simulators.meter import Meter
from simulators.model import ChargerModel
from simulators.outbox import Outbox, Outgoing, payload_for
from simulators.profiles import Limits, ProfileError, ProfileStore, Unit
from simulators.status import Status, TransitionError, check_transition
from simulators.timefmt import iso

T0 = datetime(2026, 2, 6, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ----- meter -------------------------------------------------------------------------


def test_meter_integrates_power_over_time() -> None:
    meter = Meter()
    meter.set_power(at(0), 3600.0)
    meter.advance(at(60))
    assert meter.energy_wh == pytest.approx(60.0)
    meter.set_power(at(60), 7200.0)
    meter.advance(at(120))
    assert meter.energy_wh == pytest.approx(180.0)
    meter.advance(at(100))  # time never runs backwards for the register
    assert meter.energy_wh == pytest.approx(180.0)


@given(st.lists(st.tuples(st.floats(0, 600), st.floats(0, 50_000)), max_size=20))
def test_meter_never_decreases(steps: list[tuple[float, float]]) -> None:
    meter, t, last = Meter(), 0.0, 0.0
    for dt, power in steps:
        t += dt
        meter.set_power(at(t), power)
        assert meter.energy_wh >= last
        last = meter.energy_wh


# ----- status table (4.9) -------------------------------------------------------------


def test_status_transitions_follow_the_table() -> None:
    check_transition(1, Status.AVAILABLE, Status.PREPARING)
    check_transition(1, Status.CHARGING, Status.FINISHING)
    check_transition(1, Status.FAULTED, Status.CHARGING)
    with pytest.raises(TransitionError):
        check_transition(1, Status.PREPARING, Status.UNAVAILABLE)  # no B8
    with pytest.raises(TransitionError):
        check_transition(1, Status.FINISHING, Status.CHARGING)  # no F3
    with pytest.raises(TransitionError):
        check_transition(0, Status.AVAILABLE, Status.CHARGING)  # connector 0: 3 statuses


# ----- configuration (5.3, 5.8) -------------------------------------------------------


def test_configuration_get_and_change() -> None:
    config = Configuration(default_keys(connectors=2))
    known, unknown = config.get(["NumberOfConnectors", "Nope"])
    assert known == [{"key": "NumberOfConnectors", "readonly": True, "value": "2"}]
    assert unknown == ["Nope"]
    everything, _ = config.get(None)
    names = {k["key"] for k in everything}
    assert {"HeartbeatInterval", "ChargeProfileMaxStackLevel", "SupportedFeatureProfiles"} <= names
    assert all("value" not in k for k in everything if k["key"] == "AuthorizationKey")
    assert config.change("NumberOfConnectors", "4") == ConfigurationStatus.REJECTED
    assert config.change("Nope", "1") == ConfigurationStatus.NOT_SUPPORTED
    assert config.change("HeartbeatInterval", "abc") == ConfigurationStatus.REJECTED
    assert config.change("HeartbeatInterval", "60") == ConfigurationStatus.ACCEPTED
    assert config.get_int("HeartbeatInterval") == 60
    assert config.change("LocalPreAuthorize", "TRUE") == ConfigurationStatus.ACCEPTED
    assert config.get_bool("LocalPreAuthorize")
    assert config.change("MeterValuesSampledData", "Voltage,Bogus") == ConfigurationStatus.REJECTED
    assert config.change("MeterValuesSampledData", "Voltage,SoC") == ConfigurationStatus.ACCEPTED
    assert config.change("AuthorizationKey", "short") == ConfigurationStatus.REJECTED


# ----- local list (5.15) --------------------------------------------------------------


def entry(tag: str, status: str = "Accepted") -> dict[str, Any]:
    return {"idTag": tag, "idTagInfo": {"status": status}}


def test_local_list_full_and_differential_versions() -> None:
    ll = LocalList(max_length=3, max_send=3)
    assert ll.update(5, "Full", [entry("A"), entry("B")]) == UpdateStatus.ACCEPTED
    assert ll.version == 5 and set(ll.entries) == {"A", "B"}
    assert ll.update(5, "Differential", [entry("C")]) == UpdateStatus.VERSION_MISMATCH
    assert ll.update(6, "Differential", [entry("C"), {"idTag": "A"}]) == UpdateStatus.ACCEPTED
    assert set(ll.entries) == {"B", "C"} and ll.version == 6
    assert ll.update(7, "Differential", [entry("D"), entry("E")]) == UpdateStatus.FAILED
    assert ll.version == 6  # unchanged on failure
    assert ll.update(1, "Full", []) == UpdateStatus.ACCEPTED  # Full may go to any version
    assert ll.entries == {} and ll.version == 1
    assert ll.update(2, "Full", [{"idTag": "X"}]) == UpdateStatus.FAILED


# ----- charging profiles (3.13, 5.7, 5.16) ---------------------------------------------


def store(connectors: int = 2) -> ProfileStore:
    return ProfileStore(
        Limits(
            connectors=connectors,
            max_stack_level=10,
            max_installed=5,
            max_periods=4,
            allowed_units=frozenset({Unit.AMPS, Unit.WATTS}),
        )
    )


def profile(
    pid: int,
    purpose: str,
    periods: list[tuple[int, float]],
    *,
    stack: int = 0,
    unit: str = "W",
    kind: str = "Absolute",
    duration: int | None = None,
    start: datetime | None = T0,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": lim} for s, lim in periods],
    }
    if duration is not None:
        schedule["duration"] = duration
    if start is not None:
        schedule["startSchedule"] = iso(start)
    return {
        "chargingProfileId": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }


def test_profiles_cap_and_stack() -> None:
    s = store()
    s.install(
        0,
        profile(1, "TxDefaultProfile", [(0, 11_000), (600, 7_000)]),
        T0,
        active_tx=None,
        tx_running=False,
    )
    assert s.connector_limit_w(1, at(10), tx_start=T0, hardware_w=22_000) == 11_000
    assert s.connector_limit_w(2, at(700), tx_start=T0, hardware_w=22_000) == 7_000
    # A higher stack level with a duration wins while it lasts, then falls back (3.13.2).
    s.install(
        0,
        profile(2, "TxDefaultProfile", [(0, 2_000)], stack=3, duration=60),
        T0,
        active_tx=None,
        tx_running=False,
    )
    assert s.connector_limit_w(1, at(30), tx_start=T0, hardware_w=22_000) == 2_000
    assert s.connector_limit_w(1, at(90), tx_start=T0, hardware_w=22_000) == 11_000
    # A TxProfile overrules TxDefault; ChargePointMax is shared by the connectors drawing.
    s.install(
        1,
        profile(3, "TxProfile", [(0, 16)], unit="A", kind="Relative", start=None),
        T0,
        active_tx=9,
        tx_running=True,
    )
    assert s.connector_limit_w(1, at(90), tx_start=T0, hardware_w=22_000) == pytest.approx(
        16 * 230 * 3
    )
    s.install(
        0, profile(4, "ChargePointMaxProfile", [(0, 8_000)]), T0, active_tx=None, tx_running=False
    )
    assert s.connector_limit_w(1, at(90), tx_start=T0, hardware_w=22_000, sharing=2) == 4_000
    s.end_transaction(1)
    assert all(p.purpose != "TxProfile" for p in s.profiles)


def test_profile_rules_reject() -> None:
    s = store()
    with pytest.raises(ProfileError):  # no transaction on the connector
        s.install(1, profile(1, "TxProfile", [(0, 10)]), T0, active_tx=None, tx_running=False)
    with pytest.raises(ProfileError):  # ChargePointMax only on connector 0
        s.install(
            1, profile(1, "ChargePointMaxProfile", [(0, 10)]), T0, active_tx=None, tx_running=False
        )
    with pytest.raises(ProfileError):  # stack level above ChargeProfileMaxStackLevel
        s.install(
            0,
            profile(1, "TxDefaultProfile", [(0, 10)], stack=11),
            T0,
            active_tx=None,
            tx_running=False,
        )
    with pytest.raises(ProfileError):  # more periods than allowed
        s.install(
            0,
            profile(1, "TxDefaultProfile", [(n * 10, 10) for n in range(5)]),
            T0,
            active_tx=None,
            tx_running=False,
        )
    with pytest.raises(ProfileError):  # TxProfile for another transaction
        tx = profile(1, "TxProfile", [(0, 10)]) | {"transactionId": 8}
        s.install(1, tx, T0, active_tx=9, tx_running=True)


def test_same_stack_and_purpose_replaces_and_clear() -> None:
    s = store()
    s.install(0, profile(1, "TxDefaultProfile", [(0, 1000)]), T0, active_tx=None, tx_running=False)
    s.install(0, profile(2, "TxDefaultProfile", [(0, 2000)]), T0, active_tx=None, tx_running=False)
    assert [p.profile_id for p in s.profiles] == [2]
    assert s.clear(profile_id=1) is False
    assert s.clear(purpose="TxDefaultProfile") is True
    assert s.profiles == []


def test_composite_schedule_reflects_profiles() -> None:
    s = store()
    s.install(
        0,
        profile(1, "TxDefaultProfile", [(0, 11_000), (600, 7_000)]),
        T0,
        active_tx=None,
        tx_running=False,
    )
    s.install(
        0,
        profile(2, "ChargePointMaxProfile", [(0, 9_000)], duration=1200),
        T0,
        active_tx=None,
        tx_running=False,
    )
    comp = s.composite(1, T0, 1800, unit="W", tx_start=T0, hardware_w=22_000)
    periods = comp["chargingSchedule"]["chargingSchedulePeriod"]
    assert periods == [
        {"startPeriod": 0, "limit": 9000.0},
        {"startPeriod": 600, "limit": 7000.0},
    ]
    in_amps = s.composite(1, T0, 300, unit="A", tx_start=T0, hardware_w=22_000)
    assert in_amps["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == pytest.approx(
        13.0, abs=0.1
    )


def test_recurring_daily_profile() -> None:
    s = store()
    night = profile(1, "TxDefaultProfile", [(0, 0), (6 * 3600, 11_000)], kind="Recurring")
    night["recurrencyKind"] = "Daily"
    s.install(0, night, T0, active_tx=None, tx_running=False)
    midnight = T0.replace(hour=0) + timedelta(days=3)
    assert (
        s.connector_limit_w(1, midnight + timedelta(hours=13), tx_start=None, hardware_w=22_000)
        == 0.0
    )
    assert (
        s.connector_limit_w(1, midnight + timedelta(hours=20), tx_start=None, hardware_w=22_000)
        == 11_000
    )


# ----- outbox (4.8) --------------------------------------------------------------------


def test_outbox_offline_rules_and_id_binding() -> None:
    box = Outbox()
    box.push(
        Outgoing(action="StartTransaction", payload={"connectorId": 1}, tx_ref=1), online=False
    )
    box.push(Outgoing(action="Heartbeat"), online=False)
    box.push(
        Outgoing(action="StatusNotification", payload={"connectorId": 1, "status": "Charging"}),
        online=False,
    )
    box.push(Outgoing(action="MeterValues", payload={"connectorId": 1}, tx_ref=1), online=False)
    box.push(
        Outgoing(action="StatusNotification", payload={"connectorId": 1, "status": "Finishing"}),
        online=False,
    )
    box.push(Outgoing(action="StopTransaction", payload={"meterStop": 5}, tx_ref=1), online=False)
    assert [m.action for m in box] == [
        "StartTransaction",
        "MeterValues",
        "StatusNotification",
        "StopTransaction",
    ]
    ids: dict[int, int] = {}
    start = box.pop()
    assert "transactionId" not in payload_for(start, ids)
    ids[1] = 42  # the CSMS answered the replayed StartTransaction
    assert payload_for(box.pop(), ids)["transactionId"] == 42
    box.pop()
    assert payload_for(box.pop(), ids) == {"meterStop": 5, "transactionId": 42}
    assert payload_for(Outgoing(action="StopTransaction", tx_ref=7), ids)["transactionId"] == -1


def test_outbox_bound_drops_non_transaction_first() -> None:
    box = Outbox(max_length=2)
    box.push(Outgoing(action="StartTransaction", tx_ref=1), online=True)
    box.push(Outgoing(action="Heartbeat"), online=True)
    box.push(Outgoing(action="StopTransaction", tx_ref=1), online=True)
    assert [m.action for m in box] == ["StartTransaction", "StopTransaction"] and box.dropped == 1


# ----- frames ------------------------------------------------------------------------


def test_frames_round_trip_and_never_raise() -> None:
    call = Call(unique_id="1", action="Heartbeat", payload={})
    assert parse(encode(call)) == call
    assert parse(encode(CallResult(unique_id="2", payload={"a": 1}))) == CallResult(
        unique_id="2", payload={"a": 1}
    )
    err = parse(encode(CallError(unique_id="3", code="NotImplemented", description="x")))
    assert isinstance(err, CallError) and err.code == "NotImplemented"
    assert isinstance(parse("nope"), Unreadable)
    bad = parse('[2,"9","Heartbeat"]')
    assert isinstance(bad, Unreadable) and bad.unique_id == "9"


# ----- the model and its answers -------------------------------------------------------


def actions(messages: list[Outgoing]) -> list[str]:
    return [m.action for m in messages]


def test_session_messages_and_statuses() -> None:
    m = ChargerModel(connectors=1)
    m.on_boot({"status": "Accepted", "interval": 120}, T0)
    assert m.config.get_int("HeartbeatInterval") == 120
    out = m.plug_in(1, at(0)) + m.present_tag(1, "TAG", at(0), online=True)
    assert actions(out) == ["StatusNotification", "Authorize"]
    out = m.on_result(out[-1], {"idTagInfo": {"status": "Accepted"}}, at(1))
    assert actions(out) == ["StartTransaction", "StatusNotification"]
    assert out[1].payload["status"] == "Charging"
    m.on_result(out[0], {"transactionId": 77, "idTagInfo": {"status": "Accepted"}}, at(1))
    samples = m.sample(at(3601))
    (mv,) = [s for s in samples if s.action == "MeterValues"]
    energy = next(
        v
        for v in mv.payload["meterValue"][0]["sampledValue"]
        if v["measurand"].startswith("Energy")
    )
    assert float(energy["value"]) == pytest.approx(11_000.0)  # 11 kW car for one hour
    out = m.stop_transaction(1, "Local", at(3601))
    assert actions(out) == ["StopTransaction", "StatusNotification"]
    assert payload_for(out[0], m.tx_ids)["transactionId"] == 77
    assert out[0].payload["meterStop"] == 11_000
    assert out[1].payload["status"] == "Finishing"
    assert m.unplug(1, at(3602))[0].payload["status"] == "Available"


def test_offline_authorization_uses_cache() -> None:
    m = ChargerModel()
    m.plug_in(1, T0)
    assert actions(m.present_tag(1, "UNKNOWN", T0, online=False)) == ["StatusNotification"]
    m.auth.learn("KNOWN", {"status": "Accepted"}, cache_enabled=True)
    m.plug_in(1, T0)
    assert "StartTransaction" in actions(m.present_tag(1, "KNOWN", T0, online=False))


def test_invalid_id_in_start_answer_deauthorizes() -> None:
    m = ChargerModel()
    out = m.start_transaction(1, "BAD", T0)
    follow = m.on_result(out[1], {"transactionId": 5, "idTagInfo": {"status": "Blocked"}}, T0)
    assert actions(follow)[0] == "StopTransaction" and follow[0].payload["reason"] == "DeAuthorized"


def reply(
    m: ChargerModel, action: str, payload: dict[str, Any], now: datetime = T0
) -> commands.Reply:
    return commands.handle(m, action, payload, now)


def test_change_availability_is_scheduled_during_a_transaction() -> None:
    m = ChargerModel(connectors=2)
    m.start_transaction(1, "T", T0)
    r = reply(m, "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})
    assert r.payload == {"status": "Scheduled"}
    assert m.connectors[2].status == Status.UNAVAILABLE
    out = m.stop_transaction(1, "Local", at(5))
    assert out[-1].payload["status"] == "Unavailable"
    assert reply(m, "ChangeAvailability", {"connectorId": 2, "type": "Inoperative"}).payload == {
        "status": "Accepted"
    }


def test_reservation_blocks_other_tags_and_expires() -> None:
    m = ChargerModel()
    r = reply(
        m,
        "ReserveNow",
        {"connectorId": 1, "expiryDate": iso(at(60)), "idTag": "MINE", "reservationId": 3},
    )
    assert r.payload == {"status": "Accepted"} and m.connectors[1].status == Status.RESERVED
    occupied = reply(
        m,
        "ReserveNow",
        {"connectorId": 1, "expiryDate": iso(at(60)), "idTag": "X", "reservationId": 4},
    )
    assert occupied.payload == {"status": "Occupied"}
    assert m.present_tag(1, "OTHER", T0, online=True) == []
    assert actions(m.tick(at(61))) == ["StatusNotification"]
    assert m.connectors[1].status == Status.AVAILABLE


def test_reserved_tag_start_carries_reservation_id() -> None:
    m = ChargerModel()
    reply(
        m,
        "ReserveNow",
        {"connectorId": 1, "expiryDate": iso(at(60)), "idTag": "MINE", "reservationId": 3},
    )
    out = m.start_transaction(1, "MINE", T0)
    assert actions(out) == ["StatusNotification", "StartTransaction", "StatusNotification"]
    assert out[1].payload["reservationId"] == 3 and m.connectors[1].reservation is None


def test_unlock_and_remote_stop_reasons() -> None:
    m = ChargerModel()
    m.start_transaction(1, "T", T0)
    r = reply(m, "UnlockConnector", {"connectorId": 1})
    assert r.payload == {"status": "Unlocked"} and r.then[0].payload["reason"] == "UnlockCommand"
    assert m.connectors[1].status == Status.AVAILABLE


def test_reset_stops_transactions_with_reset_reason() -> None:
    m = ChargerModel()
    m.start_transaction(1, "T", T0)
    r = reply(m, "Reset", {"type": "Hard"})
    assert r.effect == commands.Reboot(hard=True)
    assert r.then[0].payload["reason"] == "HardReset"
    m.reboot(at(1))
    assert m.registration is None and m.connectors[1].status == Status.AVAILABLE


def test_unknown_and_bad_calls_get_errors() -> None:
    m = ChargerModel()
    assert (
        reply(m, "Bogus", {}).error is not None
        and reply(m, "Bogus", {}).error[0] == "NotImplemented"
    )  # type: ignore[index]
    assert reply(m, "Heartbeat", {}).error[0] == "NotSupported"  # type: ignore[index]
    assert reply(m, "RemoteStopTransaction", {}).error[0] == "OccurenceConstraintViolation"  # type: ignore[index]


def test_trigger_message_answers_then_queues() -> None:
    m = ChargerModel(connectors=2)
    r = reply(m, "TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 2})
    assert r.payload == {"status": "Accepted"} and [x.payload["connectorId"] for x in r.then] == [2]
    assert reply(
        m, "TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 7}
    ).payload == {"status": "Rejected"}
    boot = reply(m, "TriggerMessage", {"requestedMessage": "BootNotification"})
    assert actions(boot.then) == ["BootNotification"]


def test_set_charging_profile_answer_and_power() -> None:
    m = ChargerModel()
    m.start_transaction(1, "T", T0)
    prof = profile(1, "TxProfile", [(0, 0)], kind="Relative", start=None)
    r = reply(m, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": prof})
    assert r.payload == {"status": "Accepted"}
    assert r.then[-1].payload["status"] == "SuspendedEVSE"  # limit 0: the EVSE holds back (C5)
    assert m.connectors[1].meter.power_w == 0.0
    bad = reply(m, "SetChargingProfile", {"connectorId": 2, "csChargingProfiles": prof})
    assert bad.payload == {"status": "Rejected"}
    cleared = reply(m, "ClearChargingProfile", {"id": 1})
    assert (
        cleared.payload == {"status": "Accepted"}
        and cleared.then[-1].payload["status"] == "Charging"
    )
    assert reply(m, "ClearChargingProfile", {"id": 1}).payload == {"status": "Unknown"}
