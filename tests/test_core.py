"""The pure OCPP 1.6 core (``csms/protocol/core.py``): no socket, no store, no clock.

Every handler and branch, with fixed ``now`` datetimes and a counting id source, so each
expected reply, row and event is written out in full.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from csms.protocol import core
from csms.protocol.core import DomainEvent, Outcome, Reject
from csms.protocol.frames import Call, ErrorCode
from csms.protocol.state import (
    ChargerSnapshot,
    CoreSettings,
    LookupRequest,
    Lookups,
    RegistrationStatus,
)
from storage.records import (
    ChargerRegistration,
    ChargerState,
    Connector,
    Event,
    IdTag,
    MeterSample,
    Transaction,
    TransactionProgress,
)

NOW = datetime(2026, 2, 6, 14, 30, tzinfo=UTC)
STAMP = "2026-02-06T14:30:00.000Z"
START = "2026-02-06T14:00:00.000Z"
SETTINGS = CoreSettings()


class CountingIds:
    """Deterministic ``Ids``: transactions from ``first``, events evt_0001, evt_0002, ..."""

    def __init__(self, first: int = 100) -> None:
        self.next_transaction = first
        self.events = 0

    def transaction_id(self) -> int:
        value = self.next_transaction
        self.next_transaction += 1
        return value

    def event_id(self) -> str:
        self.events += 1
        return f"evt_{self.events:04d}"


def registration(charger_id: str = "CP-1", policy: str = "Accepted") -> ChargerRegistration:
    return ChargerRegistration(
        id=charger_id,
        password_hash=None,
        description="",
        registration_policy=policy,
        created_at=START,
        updated_at=START,
    )


def snapshot(
    status: str | None = RegistrationStatus.ACCEPTED,
    *,
    policy: str = "Accepted",
    charger_id: str = "CP-1",
    **fields: Any,
) -> ChargerSnapshot:
    snap = ChargerSnapshot.new(charger_id, registration(charger_id, policy))
    snap = replace(snap, state=replace(snap.state, registration_status=status))
    return replace(snap, **fields)


def run(
    snap: ChargerSnapshot,
    action: str,
    payload: dict[str, Any],
    lookups: Lookups | None = None,
    *,
    now: datetime = NOW,
    ids: CountingIds | None = None,
    settings: CoreSettings = SETTINGS,
) -> Outcome:
    return core.handle(
        snap,
        Call(unique_id="u1", action=action, payload=payload),
        lookups or Lookups(),
        now=now,
        ids=ids or CountingIds(),
        settings=settings,
    )


def rejected(outcome: Outcome, code: ErrorCode) -> Reject:
    assert isinstance(outcome.reply, Reject), outcome.reply
    assert outcome.reply.error_code == code, outcome.reply
    assert isinstance(outcome.reply.details, dict)
    assert outcome.events == [] and outcome.writes == []
    return outcome.reply


def one_event(outcome: Outcome, event_type: str) -> dict[str, Any]:
    assert [e.type for e in outcome.events] == [event_type], outcome.events
    return outcome.events[0].data


def tag(status: str = "Accepted", **fields: Any) -> IdTag:
    values: dict[str, Any] = {
        "id_tag": "TAG1",
        "status": status,
        "expiry_date": None,
        "parent_id_tag": None,
        "created_at": START,
        "updated_at": START,
    }
    values.update(fields)
    return IdTag(**values)


def transaction(
    tx_id: int = 7, *, charger_id: str = "CP-1", stopped: bool = False, **fields: Any
) -> Transaction:
    values: dict[str, Any] = {
        "id": tx_id,
        "charger_id": charger_id,
        "connector_id": 1,
        "id_tag": "TAG1",
        "id_tag_status": "Accepted",
        "meter_start": 1000,
        "started_at": START,
        "reservation_id": None,
        "command_id": None,
        "meter_stop": 2000 if stopped else None,
        "stopped_at": STAMP if stopped else None,
        "stop_reason": "Local" if stopped else None,
        "stop_id_tag": None,
        "last_meter": None,
        "energy_wh": 1000.0 if stopped else 0.0,
        "created_at": START,
        "updated_at": START,
    }
    values.update(fields)
    return Transaction(**values)


def start_payload(**overrides: Any) -> dict[str, Any]:
    payload = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": START}
    payload.update(overrides)
    return payload


def meter_element(wh: str, *, at: str = "2026-02-06T14:10:00Z", kw: str = "7.2") -> Any:
    return {
        "timestamp": at,
        "sampledValue": [
            {"value": wh, "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": kw, "measurand": "Power.Active.Import", "unit": "kW"},
        ],
    }


def with_active(snap: ChargerSnapshot, tx: Transaction) -> ChargerSnapshot:
    return replace(snap, active={**snap.active, tx.id: tx})


# -- BootNotification (OCPP 1.6, 4.2) ----------------------------------------------------------

BOOT = {"chargePointVendor": "Vendor", "chargePointModel": "Model", "firmwareVersion": "1.0"}


@pytest.mark.parametrize(
    ("policy", "interval"), [("Accepted", 300), ("Pending", 60), ("Rejected", 60)]
)
@pytest.mark.parametrize("before", [None, "Accepted", "Pending", "Rejected"])
def test_boot_answers_with_the_registration_policy(
    policy: str, interval: int, before: str | None
) -> None:
    outcome = run(snapshot(before, policy=policy), "BootNotification", BOOT)
    assert outcome.reply == {"status": policy, "currentTime": STAMP, "interval": interval}
    assert one_event(outcome, "charger.boot") == {
        **BOOT,
        "registrationStatus": policy,
        "interval": interval,
    }
    state = outcome.snapshot.state
    assert state.registration_status == policy
    assert state.boot == BOOT
    assert state.booted_at == STAMP
    assert outcome.snapshot.last_seen_at == STAMP


def test_boot_interval_follows_the_settings() -> None:
    settings = CoreSettings(heartbeat_interval=120, retry_interval=15)
    accepted = run(snapshot(None), "BootNotification", BOOT, settings=settings)
    assert accepted.reply["interval"] == 120  # type: ignore[index]
    pending = run(snapshot(None, policy="Pending"), "BootNotification", BOOT, settings=settings)
    assert pending.reply["interval"] == 15  # type: ignore[index]


def test_boot_of_a_charger_registered_on_the_fly_is_accepted() -> None:
    snap = ChargerSnapshot.new("CP-NEW", None)
    outcome = run(snap, "BootNotification", BOOT)
    assert outcome.reply["status"] == "Accepted"  # type: ignore[index]


def test_boot_forgets_earlier_triggers() -> None:
    snap = snapshot("Pending", policy="Pending", triggered=frozenset({"StatusNotification"}))
    outcome = run(snap, "BootNotification", BOOT)
    assert outcome.snapshot.triggered == frozenset()


# -- what may be sent before Accepted (OCPP 1.6, 4.2; OCPP-J 1.6, 5.4) ------------------------

BEFORE_ACCEPTED_CALLS = [
    ("Heartbeat", {}),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    ("Authorize", {"idTag": "TAG1"}),
    ("StartTransaction", start_payload()),
    ("MeterValues", {"connectorId": 1, "meterValue": [meter_element("10")]}),
    ("StopTransaction", {"transactionId": 7, "meterStop": 10, "timestamp": STAMP}),
    ("DataTransfer", {"vendorId": "V"}),
    ("FirmwareStatusNotification", {"status": "Idle"}),
    ("DiagnosticsStatusNotification", {"status": "Idle"}),
]


@pytest.mark.parametrize("status", [None, "Pending", "Rejected"])
@pytest.mark.parametrize(("action", "payload"), BEFORE_ACCEPTED_CALLS)
def test_security_error_before_accepted(
    status: str | None, action: str, payload: dict[str, Any]
) -> None:
    snap = snapshot(status, policy=status or "Accepted")
    outcome = run(snap, action, payload)
    rejected(outcome, ErrorCode.SECURITY_ERROR)
    assert outcome.snapshot is snap


def test_pending_charger_may_send_what_a_trigger_asked_for_once() -> None:
    snap = snapshot("Pending", policy="Pending", triggered=frozenset({"StatusNotification"}))
    payload = {"connectorId": 0, "errorCode": "NoError", "status": "Available"}
    outcome = run(snap, "StatusNotification", payload)
    assert outcome.reply == {}
    assert one_event(outcome, "connector.status_changed")["connectorId"] == 0
    assert outcome.snapshot.triggered == frozenset()
    # The trigger is used up; other actions were never allowed.
    again = run(outcome.snapshot, "StatusNotification", {**payload, "status": "Unavailable"})
    rejected(again, ErrorCode.SECURITY_ERROR)
    rejected(run(snap, "Heartbeat", {}), ErrorCode.SECURITY_ERROR)


def test_rejected_charger_gets_no_trigger_exception() -> None:
    snap = snapshot("Rejected", policy="Rejected", triggered=frozenset({"Heartbeat"}))
    rejected(run(snap, "Heartbeat", {}), ErrorCode.SECURITY_ERROR)


def test_unknown_action_before_boot_is_not_implemented_not_security_error() -> None:
    rejected(run(snapshot(None), "Bogus", {}), ErrorCode.NOT_IMPLEMENTED)


# -- Heartbeat ---------------------------------------------------------------------------------


def test_heartbeat_gives_the_time_and_marks_the_charger_seen() -> None:
    later = NOW + timedelta(seconds=1, milliseconds=234)
    outcome = run(snapshot(), "Heartbeat", {}, now=later)
    assert outcome.reply == {"currentTime": "2026-02-06T14:30:01.234Z"}
    assert outcome.events == []
    assert outcome.snapshot.last_seen_at == "2026-02-06T14:30:01.234Z"


# -- Authorize (OCPP 1.6, 4.1 and 7.15) --------------------------------------------------------


def test_authorize_needs_the_id_tag_looked_up() -> None:
    call = Call(unique_id="u", action="Authorize", payload={"idTag": "TAG1"})
    assert core.lookups_needed(snapshot(), call) == LookupRequest(id_tag="TAG1")


@pytest.mark.parametrize(
    ("record", "info"),
    [
        (None, {"status": "Invalid"}),
        (tag("Accepted"), {"status": "Accepted"}),
        (tag("Blocked"), {"status": "Blocked"}),
        (tag("Invalid"), {"status": "Invalid"}),
        (tag("ConcurrentTx"), {"status": "ConcurrentTx"}),
        (
            tag("Accepted", expiry_date="2026-02-06T14:30:00.000Z"),
            {"status": "Expired", "expiryDate": "2026-02-06T14:30:00.000Z"},
        ),
        (
            tag("Accepted", expiry_date="2026-02-06T14:30:00.001Z"),
            {"status": "Accepted", "expiryDate": "2026-02-06T14:30:00.001Z"},
        ),
        (
            tag("Blocked", expiry_date="2020-01-01T00:00:00.000Z"),
            {"status": "Blocked", "expiryDate": "2020-01-01T00:00:00.000Z"},
        ),
        (tag("Accepted", parent_id_tag="GROUP"), {"status": "Accepted", "parentIdTag": "GROUP"}),
        (tag("Accepted", id_tag="OTHER"), {"status": "Invalid"}),
    ],
)
def test_authorize_against_the_local_list(record: IdTag | None, info: dict[str, Any]) -> None:
    outcome = run(snapshot(), "Authorize", {"idTag": "TAG1"}, Lookups(id_tag=record))
    assert outcome.reply == {"idTagInfo": info}
    assert one_event(outcome, "charger.authorization") == {"idTag": "TAG1", **info}


def test_id_tags_compare_case_insensitively() -> None:
    # IdToken is a CiString20Type: "String is case insensitive" (OCPP 1.6, 7.15 and 7.28).
    record = tag("Accepted", id_tag="AB12CD34")
    assert core.id_tag_info(record, "ab12cd34", mode="local", now=NOW) == {"status": "Accepted"}
    assert core.id_tag_info(record, "AB12CD35", mode="local", now=NOW) == {"status": "Invalid"}


def test_authorize_accept_all() -> None:
    settings = CoreSettings(authorization="accept_all")
    unknown = run(snapshot(), "Authorize", {"idTag": "ANY"}, settings=settings)
    assert unknown.reply == {"idTagInfo": {"status": "Accepted"}}
    assert core.id_tag_info(tag("Blocked"), "TAG1", mode="accept_all", now=NOW) == {
        "status": "Accepted"
    }


# -- StatusNotification (OCPP 1.6, 4.9) --------------------------------------------------------


def status_payload(**overrides: Any) -> dict[str, Any]:
    payload = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    payload.update(overrides)
    return payload


def test_status_change_is_an_event_with_the_previous_status() -> None:
    first = run(snapshot(), "StatusNotification", status_payload())
    assert first.reply == {}
    assert one_event(first, "connector.status_changed") == {
        "connectorId": 1,
        "status": "Available",
        "previousStatus": None,
        "errorCode": "NoError",
    }
    row = first.writes[0]
    assert isinstance(row, Connector) and row.status == "Available" and row.updated_at == STAMP

    payload = status_payload(
        status="Faulted",
        errorCode="GroundFailure",
        info="ground",
        vendorId="V",
        vendorErrorCode="E12",
        timestamp="2026-02-06T15:29:00+01:00",
    )
    second = run(first.snapshot, "StatusNotification", payload)
    assert one_event(second, "connector.status_changed") == {
        "connectorId": 1,
        "status": "Faulted",
        "previousStatus": "Available",
        "errorCode": "GroundFailure",
        "info": "ground",
        "vendorId": "V",
        "vendorErrorCode": "E12",
        "timestamp": "2026-02-06T14:29:00.000Z",
    }
    assert second.snapshot.connectors[1].status == "Faulted"


def test_identical_status_resent_is_no_event() -> None:
    payload = status_payload(timestamp="2026-02-06T14:29:00Z")
    first = run(snapshot(), "StatusNotification", payload)
    later = NOW + timedelta(minutes=5)
    again = run(first.snapshot, "StatusNotification", payload, now=later)
    assert again.reply == {}
    assert again.events == [] and again.writes == []
    # Same status with another error code is a change.
    changed = run(first.snapshot, "StatusNotification", {**payload, "errorCode": "OtherError"})
    assert one_event(changed, "connector.status_changed")["previousStatus"] == "Available"


def test_status_of_connector_zero_is_the_charger() -> None:
    outcome = run(snapshot(), "StatusNotification", status_payload(connectorId=0))
    assert one_event(outcome, "connector.status_changed")["connectorId"] == 0
    assert set(outcome.snapshot.connectors) == {0}


# -- StartTransaction (OCPP 1.6, 4.10; DESIGN 3) -----------------------------------------------


def test_start_assigns_a_new_id_and_records_the_event() -> None:
    ids = CountingIds(first=41)
    lookups = Lookups(id_tag=tag("Accepted"))
    outcome = run(snapshot(), "StartTransaction", start_payload(reservationId=5), lookups, ids=ids)
    info = {"status": "Accepted"}
    assert outcome.reply == {"transactionId": 41, "idTagInfo": info}
    assert one_event(outcome, "transaction.started") == {
        "transactionId": 41,
        "connectorId": 1,
        "idTag": "TAG1",
        "idTagInfo": info,
        "meterStart": 1000,
        "timestamp": START,
        "reservationId": 5,
    }
    [tx] = outcome.writes
    assert isinstance(tx, Transaction)
    assert (tx.id, tx.charger_id, tx.connector_id, tx.active) == (41, "CP-1", 1, True)
    assert tx.id_tag_status == "Accepted" and tx.reservation_id == 5
    assert outcome.snapshot.active == {41: tx}


def test_start_with_an_unknown_tag_still_gets_an_id() -> None:
    outcome = run(snapshot(), "StartTransaction", start_payload())
    assert outcome.reply == {"transactionId": 100, "idTagInfo": {"status": "Invalid"}}
    assert outcome.writes[0].id_tag_status == "Invalid"  # type: ignore[union-attr]


def test_start_resent_with_the_twin_in_the_snapshot() -> None:
    first = run(snapshot(), "StartTransaction", start_payload(), ids=CountingIds(first=41))
    call = Call(unique_id="u2", action="StartTransaction", payload=start_payload())
    # Found in memory: nothing to look up but the tag.
    assert core.lookups_needed(first.snapshot, call) == LookupRequest(id_tag="TAG1")
    # The same instant written another way is the same message.
    again = run(
        first.snapshot,
        "StartTransaction",
        start_payload(timestamp="2026-02-06T15:00:00+01:00"),
        ids=CountingIds(first=99),
    )
    assert again.reply == {"transactionId": 41, "idTagInfo": {"status": "Invalid"}}
    assert again.events == [] and again.writes == []
    assert again.snapshot.active == first.snapshot.active


def test_start_resent_with_the_twin_from_the_store() -> None:
    call = Call(unique_id="u", action="StartTransaction", payload=start_payload())
    assert core.lookups_needed(snapshot(), call) == LookupRequest(
        id_tag="TAG1", start_key=(1, "TAG1", START, 1000)
    )
    # The twin may be stopped already (the stop came before the start's answer was lost).
    for twin in (transaction(7), transaction(7, stopped=True)):
        outcome = run(snapshot(), "StartTransaction", start_payload(), Lookups(transaction=twin))
        assert outcome.reply["transactionId"] == 7  # type: ignore[index]
        assert outcome.events == [] and outcome.writes == []


def test_start_matching_another_chargers_transaction_is_new() -> None:
    other = transaction(7, charger_id="CP-2")
    outcome = run(snapshot(), "StartTransaction", start_payload(), Lookups(transaction=other))
    assert outcome.reply["transactionId"] == 100  # type: ignore[index]
    one_event(outcome, "transaction.started")


@pytest.mark.parametrize(
    "changed", [{"connectorId": 2}, {"idTag": "TAG2"}, {"meterStart": 1001}, {"timestamp": STAMP}]
)
def test_start_differing_in_one_key_field_is_a_new_transaction(changed: dict[str, Any]) -> None:
    first = run(snapshot(), "StartTransaction", start_payload(), ids=CountingIds(first=41))
    second = run(
        first.snapshot, "StartTransaction", start_payload(**changed), ids=CountingIds(first=42)
    )
    assert second.reply["transactionId"] == 42  # type: ignore[index]
    assert set(second.snapshot.active) == {41, 42}


def test_start_on_connector_zero_is_a_property_violation() -> None:
    reject = rejected(
        run(snapshot(), "StartTransaction", start_payload(connectorId=0)),
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    )
    assert reject.details == {"field": "connectorId"}


# -- MeterValues (OCPP 1.6, 4.7) ---------------------------------------------------------------


def test_meter_values_in_a_transaction() -> None:
    snap = with_active(snapshot(), transaction(7))
    element = meter_element("1500.5")
    payload = {"connectorId": 1, "transactionId": 7, "meterValue": [element]}
    outcome = run(snap, "MeterValues", payload)
    assert outcome.reply == {}
    assert one_event(outcome, "transaction.updated") == {
        "transactionId": 7,
        "connectorId": 1,
        "meterWh": 1500.5,
        "powerW": 7200.0,
        "timestamp": "2026-02-06T14:10:00.000Z",
        "energyWh": 500.5,
        "meterValue": [element],
    }
    sample, updated = outcome.writes
    assert isinstance(sample, MeterSample) and isinstance(updated, TransactionProgress)
    assert updated.id == 7 and updated.updated_at == "2026-02-06T14:30:00.000Z"  # receipt
    assert sample.transaction_id == 7 and sample.sampled_value == element["sampledValue"]
    assert updated.energy_wh == 500.5 and updated.last_meter["powerW"] == 7200.0  # type: ignore[index]
    assert outcome.snapshot.active[7].energy_wh == 500.5


def test_meter_values_in_kwh_are_converted() -> None:
    snap = with_active(snapshot(), transaction(7))
    element = {
        "timestamp": "2026-02-06T14:10:00Z",
        "sampledValue": [{"value": "2.25", "unit": "kWh"}],
    }
    outcome = run(
        snap, "MeterValues", {"connectorId": 1, "transactionId": 7, "meterValue": [element]}
    )
    assert one_event(outcome, "transaction.updated")["energyWh"] == 1250.0


def test_meter_values_without_energy_keep_the_energy_so_far() -> None:
    snap = with_active(snapshot(), transaction(7, energy_wh=300.0))
    element = {
        "timestamp": "2026-02-06T14:10:00Z",
        "sampledValue": [{"value": "55", "measurand": "SoC", "unit": "Percent"}],
    }
    outcome = run(
        snap, "MeterValues", {"connectorId": 1, "transactionId": 7, "meterValue": [element]}
    )
    data = one_event(outcome, "transaction.updated")
    assert data["energyWh"] == 300.0 and data["soc"] == 55.0


def test_meter_values_resent_are_answered_and_not_counted_again() -> None:
    snap = with_active(snapshot(), transaction(7))
    payload = {"connectorId": 1, "transactionId": 7, "meterValue": [meter_element("1500")]}
    first = run(snap, "MeterValues", payload)
    again = run(first.snapshot, "MeterValues", payload)
    assert again.reply == {}
    assert again.events == [] and again.writes == []
    # A message holding one old and one new element counts only the new one.
    newer = meter_element("1600", at="2026-02-06T14:11:00Z")
    mixed = run(
        first.snapshot,
        "MeterValues",
        {**payload, "meterValue": [meter_element("1500"), newer]},
    )
    assert one_event(mixed, "transaction.updated")["meterValue"] == [newer]


def test_meter_values_outside_a_transaction() -> None:
    element = meter_element("52000")
    outcome = run(snapshot(), "MeterValues", {"connectorId": 0, "meterValue": [element]})
    assert outcome.reply == {}
    assert one_event(outcome, "connector.meter_values") == {
        "connectorId": 0,
        "meterWh": 52000.0,
        "powerW": 7200.0,
        "timestamp": "2026-02-06T14:10:00.000Z",
        "meterValue": [element],
    }
    [sample] = outcome.writes
    assert isinstance(sample, MeterSample) and sample.transaction_id is None


def test_meter_values_lookup_of_a_transaction_not_in_memory() -> None:
    call = Call(
        unique_id="u",
        action="MeterValues",
        payload={"connectorId": 1, "transactionId": 7, "meterValue": []},
    )
    assert core.lookups_needed(snapshot(), call) == LookupRequest(transaction_id=7)
    assert core.lookups_needed(with_active(snapshot(), transaction(7)), call) == LookupRequest()
    # Found in the store (e.g. after a restart) and active: counted in the transaction.
    payload = {"connectorId": 1, "transactionId": 7, "meterValue": [meter_element("1100")]}
    outcome = run(snapshot(), "MeterValues", payload, Lookups(transaction=transaction(7)))
    assert one_event(outcome, "transaction.updated")["energyWh"] == 100.0


@pytest.mark.parametrize(
    "found",
    [None, transaction(7, charger_id="CP-2"), transaction(7, stopped=True)],
    ids=["unknown", "another-chargers", "stopped"],
)
def test_meter_values_for_a_transaction_not_running_here(found: Transaction | None) -> None:
    element = meter_element("1500")
    payload = {"connectorId": 1, "transactionId": 7, "meterValue": [element]}
    outcome = run(snapshot(), "MeterValues", payload, Lookups(transaction=found))
    assert outcome.reply == {}
    data = one_event(outcome, "connector.meter_values")
    assert data["transactionId"] == 7 and data["meterValue"] == [element]
    assert all(not isinstance(w, Transaction) for w in outcome.writes)


@pytest.mark.parametrize(
    "found", [None, transaction(7, charger_id="CP-2")], ids=["unknown", "another-chargers"]
)
def test_meter_values_never_attach_samples_to_a_transaction_not_ours(
    found: Transaction | None,
) -> None:
    # The sample rows must not name transaction 7: it is another charger's (or none yet, and
    # a later transaction 7 would list them as its own meter values).
    payload = {"connectorId": 1, "transactionId": 7, "meterValue": [meter_element("1500")]}
    outcome = run(snapshot(), "MeterValues", payload, Lookups(transaction=found))
    [sample] = outcome.writes
    assert isinstance(sample, MeterSample) and sample.transaction_id is None


def test_meter_values_on_a_negative_connector_is_a_property_violation() -> None:
    # The schema admits any integer; the spec numbers connectors from 0.
    payload = {"connectorId": -1, "meterValue": [meter_element("1")]}
    reject = rejected(
        run(snapshot(), "MeterValues", payload), ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
    )
    assert reject.details == {"field": "connectorId"}


# -- StopTransaction (OCPP 1.6, 4.10; errata 3.18; DESIGN 3) -----------------------------------


def stop_payload(tx_id: int = 7, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "transactionId": tx_id,
        "meterStop": 3100,
        "timestamp": "2026-02-06T14:04:00Z",
    }
    payload.update(overrides)
    return payload


def test_stop_ends_the_transaction() -> None:
    snap = with_active(snapshot(), transaction(7))
    lookups = Lookups(id_tag=tag("Accepted"))
    outcome = run(snap, "StopTransaction", stop_payload(idTag="TAG1"), lookups)
    assert outcome.reply == {"idTagInfo": {"status": "Accepted"}}
    assert one_event(outcome, "transaction.stopped") == {
        "transactionId": 7,
        "meterStop": 3100,
        "timestamp": "2026-02-06T14:04:00.000Z",
        "reason": "Local",
        "idTag": "TAG1",
        "connectorId": 1,
        "meterStart": 1000,
        "energyWh": 2100,
        "durationS": 240,
        "startTimestamp": START,
    }
    [final] = outcome.writes
    assert isinstance(final, Transaction) and not final.active
    assert (final.meter_stop, final.energy_wh, final.stop_reason) == (3100, 2100.0, "Local")
    assert final.stopped_at == "2026-02-06T14:04:00.000Z"
    assert outcome.snapshot.active == {}


def test_stop_without_id_tag_has_no_id_tag_info_and_keeps_the_reason() -> None:
    snap = with_active(snapshot(), transaction(7))
    outcome = run(snap, "StopTransaction", stop_payload(reason="EVDisconnected"))
    assert outcome.reply == {}
    data = one_event(outcome, "transaction.stopped")
    assert data["reason"] == "EVDisconnected" and "stopIdTag" not in data


def test_stop_by_another_tag_names_it() -> None:
    snap = with_active(snapshot(), transaction(7))
    outcome = run(snap, "StopTransaction", stop_payload(idTag="TAG2"))
    assert outcome.reply == {"idTagInfo": {"status": "Invalid"}}
    data = one_event(outcome, "transaction.stopped")
    assert data["idTag"] == "TAG1" and data["stopIdTag"] == "TAG2"


def test_stop_stores_the_transaction_data() -> None:
    snap = with_active(snapshot(), transaction(7))
    data_values = [meter_element("2000"), meter_element("3100", at="2026-02-06T14:04:00Z")]
    outcome = run(snap, "StopTransaction", stop_payload(transactionData=data_values))
    samples = [w for w in outcome.writes if isinstance(w, MeterSample)]
    assert [s.sampled_value for s in samples] == [v["sampledValue"] for v in data_values]
    assert all(s.transaction_id == 7 and s.connector_id == 1 for s in samples)
    [final] = [w for w in outcome.writes if isinstance(w, Transaction)]
    assert final.last_meter["energyWh"] == 3100.0  # type: ignore[index]
    assert one_event(outcome, "transaction.stopped")["transactionData"] == data_values


def test_stop_resent_is_answered_and_not_recorded_again() -> None:
    snap = with_active(snapshot(), transaction(7))
    first = run(snap, "StopTransaction", stop_payload(idTag="TAG1"))
    # In memory the transaction is gone; the shell finds it stopped in the store.
    call = Call(unique_id="u", action="StopTransaction", payload=stop_payload(idTag="TAG1"))
    assert core.lookups_needed(first.snapshot, call) == LookupRequest(
        id_tag="TAG1", transaction_id=7
    )
    [final] = first.writes
    again = run(
        first.snapshot, "StopTransaction", stop_payload(idTag="TAG1"), Lookups(transaction=final)
    )  # type: ignore[arg-type]
    assert again.reply == {"idTagInfo": {"status": "Invalid"}}
    assert again.events == [] and again.writes == []


@pytest.mark.parametrize("tx_id", [424242, -1, 0])
def test_stop_of_an_unknown_transaction_is_answered_and_recorded(tx_id: int) -> None:
    call = Call(unique_id="u", action="StopTransaction", payload=stop_payload(tx_id))
    needed = core.lookups_needed(snapshot(), call)
    assert needed.transaction_id == (tx_id if tx_id > 0 else None)
    snap = with_active(snapshot(), transaction(7))
    outcome = run(snap, "StopTransaction", stop_payload(tx_id, idTag="TAG1"))
    assert outcome.reply == {"idTagInfo": {"status": "Invalid"}}
    assert one_event(outcome, "transaction.stopped") == {
        "transactionId": tx_id,
        "meterStop": 3100,
        "timestamp": "2026-02-06T14:04:00.000Z",
        "reason": "Local",
        "idTag": "TAG1",
        "unknownTransaction": True,
    }
    # Never guessed onto a connector: the running transaction is untouched; the stop itself
    # is kept as received, with the digest that recognises a re-sent copy after a restart.
    assert [type(w).__name__ for w in outcome.writes] == ["UnknownStop"]
    (kept,) = outcome.writes
    assert kept.transaction_id == tx_id and kept.payload["meterStop"] == 3100
    assert kept.digest in outcome.snapshot.recent_digests
    assert outcome.snapshot.active == snap.active
    again = run(outcome.snapshot, "StopTransaction", stop_payload(tx_id, idTag="TAG1"))
    assert again.reply == {"idTagInfo": {"status": "Invalid"}}
    assert again.events == [] and again.writes == []
    # A different stop for the same unknown id is another message, recorded too.
    other = run(outcome.snapshot, "StopTransaction", stop_payload(tx_id, meterStop=3200))
    one_event(other, "transaction.stopped")


def test_stop_of_another_chargers_transaction_is_unknown() -> None:
    theirs = transaction(7, charger_id="CP-2")
    outcome = run(snapshot(), "StopTransaction", stop_payload(), Lookups(transaction=theirs))
    assert one_event(outcome, "transaction.stopped")["unknownTransaction"] is True
    assert [type(w).__name__ for w in outcome.writes] == ["UnknownStop"]


# -- DataTransfer, firmware and diagnostics status ---------------------------------------------


def test_data_transfer_is_answered_unknown_vendor_and_passed_on() -> None:
    payload = {"vendorId": "com.example", "messageId": "hello", "data": '{"a":1}'}
    outcome = run(snapshot(), "DataTransfer", payload)
    assert outcome.reply == {"status": "UnknownVendorId"}
    assert one_event(outcome, "charger.data_transfer") == {
        **payload,
        "responseStatus": "UnknownVendorId",
    }


@pytest.mark.parametrize(
    ("action", "event_type", "status", "attribute"),
    [
        ("FirmwareStatusNotification", "charger.firmware_status", "Installed", "firmware_status"),
        (
            "DiagnosticsStatusNotification",
            "charger.diagnostics_status",
            "Uploaded",
            "diagnostics_status",
        ),
    ],
)
def test_status_notifications(action: str, event_type: str, status: str, attribute: str) -> None:
    outcome = run(snapshot(), action, {"status": status})
    assert outcome.reply == {}
    assert one_event(outcome, event_type) == {"status": status}
    assert getattr(outcome.snapshot.state, attribute) == status


# -- actions not served, schema violations ------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("FooBar", ErrorCode.NOT_IMPLEMENTED),
        ("heartbeat", ErrorCode.NOT_IMPLEMENTED),
        ("GetLog", ErrorCode.NOT_SUPPORTED),  # the security extension's, CSMS-initiated
        ("Reset", ErrorCode.NOT_SUPPORTED),
        ("RemoteStartTransaction", ErrorCode.NOT_SUPPORTED),
    ],
)
def test_actions_not_served(action: str, code: ErrorCode) -> None:
    rejected(run(snapshot(), action, {}), code)


@pytest.mark.parametrize(
    ("action", "payload", "code", "field"),
    [
        (
            "StatusNotification",
            status_payload(connectorId="1"),
            "TypeConstraintViolation",
            "connectorId",
        ),
        (
            "StartTransaction",
            start_payload(meterStart=1.5),
            "TypeConstraintViolation",
            "meterStart",
        ),
        (
            "StartTransaction",
            start_payload(timestamp="yesterday"),
            "TypeConstraintViolation",
            "timestamp",
        ),
        ("Authorize", {}, "OccurenceConstraintViolation", "idTag"),
        (
            "MeterValues",
            {"connectorId": 1, "meterValue": []},
            "OccurenceConstraintViolation",
            "meterValue",
        ),
        (
            "StatusNotification",
            status_payload(status="Sleeping"),
            "PropertyConstraintViolation",
            "status",
        ),
        ("Authorize", {"idTag": "X" * 21}, "PropertyConstraintViolation", "idTag"),
        ("Heartbeat", {"extra": 1}, "PropertyConstraintViolation", "extra"),
    ],
)
def test_schema_violations(action: str, payload: dict[str, Any], code: str, field: str) -> None:
    reject = rejected(run(snapshot(), action, payload), ErrorCode(code))
    assert field in reject.details.get("field", ""), reject


def test_schema_violation_comes_before_the_registration_check() -> None:
    rejected(run(snapshot(None), "Authorize", {}), ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION)


# -- finish, seal: the gapless sequence (DESIGN 4) ---------------------------------------------


def test_sequence_is_gapless_across_outcomes() -> None:
    ids = CountingIds()
    snap = snapshot(None)
    clock = NOW
    sealed: list[Event] = []
    steps: list[tuple[str, dict[str, Any]]] = [
        ("Heartbeat", {}),  # SecurityError: no event
        ("BootNotification", BOOT),
        ("StatusNotification", status_payload()),
        ("StatusNotification", status_payload()),  # re-sent: no event
        ("Bogus", {}),  # NotImplemented: no event
        ("Authorize", {}),  # schema violation: no event
        ("StartTransaction", start_payload()),
        (
            "MeterValues",
            {"connectorId": 1, "transactionId": 100, "meterValue": [meter_element("1200")]},
        ),
        (
            "MeterValues",
            {"connectorId": 1, "transactionId": 100, "meterValue": [meter_element("1200")]},
        ),
        ("Heartbeat", {}),
        ("StopTransaction", stop_payload(100)),
        ("StopTransaction", stop_payload(-1)),
    ]
    connected = core.on_connect(snap, now=clock, remote_address="127.0.0.1:1", security_profile=1)
    snap, unit = core.finish(snap, connected, stamp=STAMP, ids=ids)
    sealed += unit.events
    for action, payload in steps:
        clock += timedelta(seconds=1)
        outcome = run(snap, action, payload, now=clock, ids=ids)
        snap, unit = core.finish(snap, outcome, stamp=STAMP, ids=ids)
        sealed += unit.events
        assert all(not isinstance(w, Event) or w in unit.events for w in unit.writes)
    gone = core.on_disconnect(snap, now=clock, reason="closed", close_code=1000)
    snap, unit = core.finish(snap, gone, stamp=STAMP, ids=ids)
    sealed += unit.events
    assert [e.type for e in sealed] == [
        "charger.connected",
        "charger.boot",
        "connector.status_changed",
        "transaction.started",
        "transaction.updated",
        "transaction.stopped",
        "transaction.stopped",
        "charger.disconnected",
    ]
    assert [e.sequence for e in sealed] == list(range(1, 9))
    assert [e.id for e in sealed] == [f"evt_{n:04d}" for n in range(1, 9)]
    assert all(e.charger_id == "CP-1" for e in sealed)
    assert snap.sequence == 8


def test_finish_writes_the_state_only_when_it_changed_and_nothing_for_a_rejection() -> None:
    ids = CountingIds()
    snap = replace(snapshot(), sequence=41)
    outcome = run(snap, "StatusNotification", status_payload())
    after, unit = core.finish(snap, outcome, stamp=STAMP, ids=ids)
    assert [type(w) for w in unit.writes] == [Connector, Event]
    assert unit.events[0].sequence == 42 and after.sequence == 42
    # A boot changes the state: its row is written, carrying the sequence and last seen.
    booted = run(snap, "BootNotification", BOOT)
    after, unit = core.finish(snap, booted, stamp=STAMP, ids=ids)
    assert [type(w) for w in unit.writes] == [ChargerState, Event]
    assert unit.writes[0] == core.persisted_state(after)
    assert unit.writes[0].last_sequence == 42 and unit.writes[0].last_seen_at == STAMP
    # A rejected CALL changes nothing at all, not even last_seen_at.
    bad = run(snap, "Bogus", {})
    same, empty = core.finish(snap, bad, stamp=STAMP, ids=ids)
    assert same == snap and not empty
    # A Heartbeat changes only the last sign of life, kept in the snapshot: nothing to write.
    beat = run(snap, "Heartbeat", {})
    after, unit = core.finish(snap, beat, stamp=STAMP, ids=ids)
    assert not unit and after.last_seen_at == STAMP


def test_seal_numbers_events_from_the_last_sequence() -> None:
    snap = replace(snapshot(), sequence=5)
    events = [DomainEvent(type="a.b", data={"n": 1}), DomainEvent(type="c.d", data={})]
    after, sealed = core.seal(snap, events, stamp=STAMP, ids=CountingIds())
    assert [(e.id, e.type, e.sequence, e.timestamp, e.data) for e in sealed] == [
        ("evt_0001", "a.b", 6, STAMP, {"n": 1}),
        ("evt_0002", "c.d", 7, STAMP, {}),
    ]
    assert after.sequence == 7
    unchanged, none = core.seal(snap, [], stamp=STAMP, ids=CountingIds())
    assert unchanged is snap and none == []


# -- connection life -----------------------------------------------------------------------------


def test_on_connect_and_on_disconnect() -> None:
    snap = snapshot("Accepted")
    came = core.on_connect(snap, now=NOW, remote_address="10.0.0.1:5000", security_profile=2)
    assert one_event(came, "charger.connected") == {
        "securityProfile": 2,
        "remoteAddress": "10.0.0.1:5000",
        "registrationStatus": "Accepted",
    }
    state = came.snapshot.state
    assert (state.connected, state.connected_at, state.remote_address) == (
        True,
        STAMP,
        "10.0.0.1:5000",
    )
    never_booted = core.on_connect(snapshot(None), now=NOW, remote_address=None, security_profile=0)
    assert "registrationStatus" not in one_event(never_booted, "charger.connected")

    later = NOW + timedelta(minutes=1)
    gone = core.on_disconnect(came.snapshot, now=later, reason="replaced", close_code=1000)
    assert one_event(gone, "charger.disconnected") == {
        "reason": "replaced",
        "closeCode": 1000,
        "connectedAt": STAMP,
    }
    assert gone.snapshot.state.connected is False
    assert gone.snapshot.state.disconnected_at == "2026-02-06T14:31:00.000Z"
    restart = core.on_disconnect(snapshot(), now=later, reason="restart")
    assert one_event(restart, "charger.disconnected") == {"reason": "restart"}
