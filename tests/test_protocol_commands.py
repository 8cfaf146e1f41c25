"""csms.protocol.commands, the pure part of commands: names, outcomes, refusals, and what an
accepted command teaches us about the charger (DESIGN 4 and 6, OCPP 1.6 sections 3.13, 4.2, 5)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from csms.protocol.commands import (
    CommandStatus,
    classify,
    complete,
    event_type,
    refusal,
    request,
)
from csms.protocol.state import ChargerSnapshot, RegistrationStatus, RemoteStart
from storage.records import ChargerSetting, Command

NOW = datetime(2026, 2, 6, 14, 30, tzinfo=UTC)
STAMP = "2026-02-06T14:30:00.000Z"


def snapshot(status: str | None = RegistrationStatus.ACCEPTED, **settings: Any) -> ChargerSnapshot:
    snap = ChargerSnapshot.new("CP-1", None)
    return replace(
        snap, state=replace(snap.state, registration_status=status), settings=dict(settings)
    )


def cmd(action: str, payload: dict[str, Any], command_id: str = "cmd_1") -> Command:
    return Command(
        id=command_id,
        charger_id="CP-1",
        action=action,
        request=payload,
        status=CommandStatus.REQUESTED,
        deferred=False,
        response=None,
        error=None,
        created_at="2026-02-06T14:29:59.000Z",
        sent_at="2026-02-06T14:29:59.500Z",
        completed_at=None,
    )


def accept(snap: ChargerSnapshot, action: str, payload: dict[str, Any], answer: dict[str, Any]):
    return complete(snap, cmd(action, payload), now=NOW, response=answer)


# -- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "name"),
    [
        ("CancelReservation", "cancel_reservation"),
        ("ChangeAvailability", "change_availability"),
        ("ChangeConfiguration", "change_configuration"),
        ("ClearCache", "clear_cache"),
        ("ClearChargingProfile", "clear_charging_profile"),
        ("DataTransfer", "data_transfer"),
        ("GetCompositeSchedule", "get_composite_schedule"),
        ("GetConfiguration", "get_configuration"),
        ("GetDiagnostics", "get_diagnostics"),
        ("GetLocalListVersion", "get_local_list_version"),
        ("RemoteStartTransaction", "remote_start_transaction"),
        ("RemoteStopTransaction", "remote_stop_transaction"),
        ("ReserveNow", "reserve_now"),
        ("Reset", "reset"),
        ("SendLocalList", "send_local_list"),
        ("SetChargingProfile", "set_charging_profile"),
        ("TriggerMessage", "trigger_message"),
        ("UnlockConnector", "unlock_connector"),
        ("UpdateFirmware", "update_firmware"),
    ],
)
def test_event_type_is_the_action_in_snake_case(action: str, name: str) -> None:
    for status in ("requested", "accepted", "rejected", "failed"):
        assert event_type(action, status) == f"{name}.{status}"


# -- the outcome table (DESIGN 6) -------------------------------------------------------------


@pytest.mark.parametrize("status", ["Accepted", "Unlocked", "Scheduled", "RebootRequired"])
def test_statuses_that_mean_accepted(status: str) -> None:
    assert classify({"status": status}) == CommandStatus.ACCEPTED


@pytest.mark.parametrize(
    "status",
    [
        "Rejected",
        "NotSupported",
        "NotImplemented",
        "Unknown",
        "Occupied",
        "Faulted",
        "Unavailable",
        "VersionMismatch",
        "UnlockFailed",
        "UnknownVendorId",
        "UnknownMessageId",
        "Failed",
    ],
)
def test_any_other_status_means_rejected(status: str) -> None:
    assert classify({"status": status}) == CommandStatus.REJECTED


@pytest.mark.parametrize(
    "answer",
    [
        {"configurationKey": [], "unknownKey": ["X"]},  # GetConfiguration
        {"listVersion": -1},  # GetLocalListVersion
        {"fileName": "diag.zip"},  # GetDiagnostics
        {},  # UpdateFirmware, or GetDiagnostics with no file
    ],
)
def test_an_answer_without_status_means_accepted(answer: dict[str, Any]) -> None:
    assert classify(answer) == CommandStatus.ACCEPTED


# -- refusals (OCPP 1.6, 4.2) -----------------------------------------------------------------


@pytest.mark.parametrize("action", ["RemoteStartTransaction", "RemoteStopTransaction"])
def test_remote_start_and_stop_are_refused_in_pending(action: str) -> None:
    reason = refusal(snapshot(RegistrationStatus.PENDING), action)
    assert reason is not None and "Pending" in reason
    assert refusal(snapshot(RegistrationStatus.ACCEPTED), action) is None


@pytest.mark.parametrize(
    "action", ["GetConfiguration", "ChangeConfiguration", "TriggerMessage", "Reset"]
)
def test_other_commands_are_allowed_in_pending(action: str) -> None:
    assert refusal(snapshot(RegistrationStatus.PENDING), action) is None


# -- request and complete ---------------------------------------------------------------------


def test_request_stores_the_command_and_its_requested_event() -> None:
    snap = snapshot()
    command = cmd("Reset", {"type": "Soft"})
    outcome = request(snap, command)
    assert outcome.snapshot is snap
    assert outcome.writes == [command]
    assert [(e.type, e.data) for e in outcome.events] == [
        ("reset.requested", {"commandId": "cmd_1", "request": {"type": "Soft"}})
    ]


def test_complete_accepted() -> None:
    outcome = accept(snapshot(), "Reset", {"type": "Hard"}, {"status": "Accepted"})
    (final,) = outcome.writes  # Reset teaches nothing: only the command row
    assert final.status == "accepted" and final.response == {"status": "Accepted"}
    assert final.error is None and final.completed_at == STAMP
    assert final.sent_at == "2026-02-06T14:29:59.500Z"
    assert [(e.type, e.data) for e in outcome.events] == [
        (
            "reset.accepted",
            {"commandId": "cmd_1", "request": {"type": "Hard"}, "response": {"status": "Accepted"}},
        )
    ]


def test_complete_rejected_learns_nothing() -> None:
    snap = snapshot(configuration={"A": "1"})
    outcome = accept(
        snap, "ChangeConfiguration", {"key": "A", "value": "2"}, {"status": "Rejected"}
    )
    assert [w.status for w in outcome.writes] == ["rejected"]
    assert outcome.snapshot.settings == {"configuration": {"A": "1"}}
    assert outcome.events[0].type == "change_configuration.rejected"


def test_complete_failed_carries_the_error_and_no_response() -> None:
    error = {"code": "Timeout", "message": "no answer within 5 s"}
    outcome = complete(snapshot(), cmd("ClearCache", {}), now=NOW, error=error)
    (final,) = outcome.writes
    assert final.status == "failed" and final.error == error and final.response is None
    assert [(e.type, e.data) for e in outcome.events] == [
        ("clear_cache.failed", {"commandId": "cmd_1", "request": {}, "error": error})
    ]


# -- what an accepted command teaches -----------------------------------------------------------


def settings_written(outcome: Any) -> dict[str, Any]:
    rows = [w for w in outcome.writes if isinstance(w, ChargerSetting)]
    assert all(r.charger_id == "CP-1" and r.updated_at == STAMP for r in rows)
    return {r.key: r.value for r in rows}


def test_change_availability_per_connector_and_scheduled() -> None:
    outcome = accept(
        snapshot(),
        "ChangeAvailability",
        {"connectorId": 1, "type": "Inoperative"},
        {"status": "Scheduled"},
    )
    outcome = accept(
        outcome.snapshot,
        "ChangeAvailability",
        {"connectorId": 2, "type": "Operative"},
        {"status": "Accepted"},
    )
    expected = {
        "1": {"type": "Inoperative", "scheduled": True},
        "2": {"type": "Operative", "scheduled": False},
    }
    assert outcome.snapshot.settings == {"availability": expected}
    assert settings_written(outcome) == {"availability": expected}


def profile(profile_id: int, stack_level: int, purpose: str = "TxDefaultProfile") -> dict[str, Any]:
    return {
        "chargingProfileId": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
        },
    }


def installed(*entries: tuple[int, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"connectorId": c, "csChargingProfiles": p} for c, p in entries]


def set_profile(snap: ChargerSnapshot, connector_id: int, p: dict[str, Any]) -> ChargerSnapshot:
    body = {"connectorId": connector_id, "csChargingProfiles": p}
    return accept(snap, "SetChargingProfile", body, {"status": "Accepted"}).snapshot


def test_set_charging_profile_adds_and_replaces() -> None:
    snap = set_profile(snapshot(), 1, profile(1, 0))
    snap = set_profile(snap, 1, profile(2, 1))
    snap = set_profile(snap, 2, profile(3, 0))  # same stack and purpose, other connector: added
    snap = set_profile(snap, 1, profile(4, 1, "ChargePointMaxProfile"))  # other purpose: added
    assert snap.settings["chargingProfiles"] == installed(
        (1, profile(1, 0)),
        (1, profile(2, 1)),
        (2, profile(3, 0)),
        (1, profile(4, 1, "ChargePointMaxProfile")),
    )
    # The same id replaces (5.16.4), wherever it was.
    snap = set_profile(snap, 2, profile(2, 3))
    # The same stackLevel and purpose on the connector replaces (3.13.2).
    snap = set_profile(snap, 1, profile(5, 0))
    assert snap.settings["chargingProfiles"] == installed(
        (2, profile(3, 0)),
        (1, profile(4, 1, "ChargePointMaxProfile")),
        (2, profile(2, 3)),
        (1, profile(5, 0)),
    )


def test_set_charging_profile_rejected_installs_nothing() -> None:
    body = {"connectorId": 1, "csChargingProfiles": profile(1, 0)}
    outcome = accept(snapshot(), "SetChargingProfile", body, {"status": "Rejected"})
    assert outcome.snapshot.settings == {} and settings_written(outcome) == {}


@pytest.mark.parametrize(
    ("criteria", "left"),
    [
        ({"id": 2}, [1, 3, 4]),
        ({"id": 9}, [1, 2, 3, 4]),
        ({"connectorId": 1}, [3, 4]),
        ({"chargingProfilePurpose": "TxDefaultProfile"}, [2, 4]),
        ({"connectorId": 1, "stackLevel": 1}, [1, 3, 4]),
        ({"stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile"}, [2, 4]),
        ({}, []),  # no criteria: all of them
    ],
)
def test_clear_charging_profile(criteria: dict[str, Any], left: list[int]) -> None:
    profiles = installed(
        (1, profile(1, 0)),
        (1, profile(2, 1, "ChargePointMaxProfile")),
        (2, profile(3, 0)),
        (0, profile(4, 0, "ChargePointMaxProfile")),
    )
    outcome = accept(
        snapshot(chargingProfiles=profiles),
        "ClearChargingProfile",
        criteria,
        {"status": "Accepted"},
    )
    ids = [
        p["csChargingProfiles"]["chargingProfileId"]
        for p in outcome.snapshot.settings["chargingProfiles"]
    ]
    assert ids == left
    assert settings_written(outcome) == {
        "chargingProfiles": outcome.snapshot.settings["chargingProfiles"]
    }


def test_clear_charging_profile_unknown_changes_nothing() -> None:
    profiles = installed((1, profile(1, 0)))
    outcome = accept(
        snapshot(chargingProfiles=profiles),
        "ClearChargingProfile",
        {"id": 1},
        {"status": "Unknown"},
    )
    assert outcome.snapshot.settings["chargingProfiles"] == profiles


def test_local_list_version_from_send_and_get() -> None:
    body = {"listVersion": 7, "updateType": "Differential", "localAuthorizationList": []}
    outcome = accept(snapshot(), "SendLocalList", body, {"status": "Accepted"})
    assert settings_written(outcome) == {"localListVersion": 7}
    outcome = accept(outcome.snapshot, "GetLocalListVersion", {}, {"listVersion": 9})
    assert outcome.snapshot.settings == {"localListVersion": 9}
    outcome = accept(
        outcome.snapshot, "SendLocalList", {**body, "listVersion": 10}, {"status": "Failed"}
    )
    assert outcome.snapshot.settings == {"localListVersion": 9}


def test_configuration_from_change_and_get() -> None:
    outcome = accept(
        snapshot(configuration={"HeartbeatInterval": "300"}),
        "ChangeConfiguration",
        {"key": "MeterValueSampleInterval", "value": "30"},
        {"status": "RebootRequired"},
    )
    assert settings_written(outcome) == {
        "configuration": {"HeartbeatInterval": "300", "MeterValueSampleInterval": "30"}
    }
    answer = {
        "configurationKey": [
            {"key": "HeartbeatInterval", "readonly": False, "value": "60"},
            {"key": "NumberOfConnectors", "readonly": True},  # no value: not known
        ],
        "unknownKey": ["Nope"],
    }
    outcome = accept(outcome.snapshot, "GetConfiguration", {"key": ["HeartbeatInterval"]}, answer)
    assert outcome.snapshot.settings["configuration"] == {
        "HeartbeatInterval": "60",
        "MeterValueSampleInterval": "30",
    }


def test_an_accepted_remote_start_waits_for_its_start_transaction() -> None:
    outcome = accept(
        snapshot(),
        "RemoteStartTransaction",
        {"idTag": "TAG1", "connectorId": 2},
        {"status": "Accepted"},
    )
    assert outcome.snapshot.remote_starts == (
        RemoteStart(command_id="cmd_1", id_tag="TAG1", connector_id=2, accepted_at=STAMP),
    )
    rejected = accept(
        snapshot(), "RemoteStartTransaction", {"idTag": "TAG1"}, {"status": "Rejected"}
    )
    assert rejected.snapshot.remote_starts == ()


def test_an_accepted_trigger_message_allows_that_message() -> None:
    body = {"requestedMessage": "StatusNotification", "connectorId": 1}
    outcome = accept(
        snapshot(RegistrationStatus.PENDING), "TriggerMessage", body, {"status": "Accepted"}
    )
    assert outcome.snapshot.triggered == frozenset({"StatusNotification"})
    assert settings_written(outcome) == {}
    refused = accept(
        snapshot(RegistrationStatus.PENDING), "TriggerMessage", body, {"status": "Rejected"}
    )
    assert refused.snapshot.triggered == frozenset()
