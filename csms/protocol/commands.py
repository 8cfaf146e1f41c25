"""CSMS-initiated commands, the pure part: refusing, requesting and completing a command.

A command's life is ``{action}.requested`` and then exactly one of ``.accepted``,
``.rejected`` or ``.failed`` (DESIGN 4). Which of accepted/rejected a charger's answer means
(DESIGN 6):

==========================================================  =========
answer                                                      outcome
==========================================================  =========
``status`` Accepted, AcceptedCanceled, Unlocked,            accepted
Scheduled, RebootRequired
any other ``status`` (Rejected, NotSupported, Occupied,     rejected
Faulted, Unavailable, VersionMismatch, UnlockFailed,
UnknownVendorId, UnknownMessageId, Failed, NotImplemented;
of the security extension: NotFound, InvalidCertificate,
RevokedCertificate)
no ``status`` (GetConfiguration, GetLocalListVersion,       accepted
GetDiagnostics, UpdateFirmware)
CALLERROR, time-out, connection lost, an answer that        failed
fails the 1.6 schema
==========================================================  =========

What an accepted command tells us about the charger is kept in its snapshot ``settings`` and
shown by the API: availability per connector, charging profiles, the local list version,
configuration keys. An accepted RemoteStartTransaction waits in ``remote_starts`` until the
StartTransaction it leads to, which then carries the command id.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from csms.passwords import hash_password
from csms.protocol.core import DomainEvent, Outcome
from csms.protocol.evolve import evolve
from csms.protocol.state import JSON, ChargerSnapshot, RegistrationStatus, RemoteStart
from csms.protocol.timefmt import format_timestamp
from storage.records import ChargerSetting, Command

AUTHORIZATION_KEY = "AuthorizationKey"  # Security Whitepaper 7.2: the profile 1/2 password

ACCEPTED_STATUSES = frozenset(
    {"Accepted", "AcceptedCanceled", "Unlocked", "Scheduled", "RebootRequired"}
)

# ExtendedTriggerMessage's requestedMessage -> the action it makes the charger send.
EXTENDED_TRIGGERS = {
    "BootNotification": "BootNotification",
    "LogStatusNotification": "LogStatusNotification",
    "FirmwareStatusNotification": "SignedFirmwareStatusNotification",
    "Heartbeat": "Heartbeat",
    "MeterValues": "MeterValues",
    "SignChargePointCertificate": "SignCertificate",
    "StatusNotification": "StatusNotification",
}


class CommandStatus:
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"


def event_type(action: str, status: str) -> str:
    """``RemoteStartTransaction``, ``accepted`` -> ``remote_start_transaction.accepted``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower() + "." + status


def classify(response: JSON) -> str:
    status = response.get("status")
    if status is None or status in ACCEPTED_STATUSES:
        return CommandStatus.ACCEPTED
    return CommandStatus.REJECTED


def refusal(snap: ChargerSnapshot, action: str) -> str | None:
    """Why the API must refuse this command now (OCPP 1.6, 4.2: not in Pending), or None."""
    if (
        action in ("RemoteStartTransaction", "RemoteStopTransaction")
        and snap.state.registration_status == RegistrationStatus.PENDING
    ):
        return f"{action} is not allowed while the charger's registration is Pending"
    return None


def request(snap: ChargerSnapshot, command: Command) -> Outcome:
    """Store the command and its ``.requested`` event (before anything is sent)."""
    event = DomainEvent(
        type=event_type(command.action, CommandStatus.REQUESTED),
        data={"commandId": command.id, "request": command.request},
    )
    return Outcome(snapshot=snap, reply={}, writes=[command], events=[event])


def complete(
    snap: ChargerSnapshot,
    command: Command,
    *,
    now: datetime,
    response: JSON | None = None,
    error: JSON | None = None,
) -> Outcome:
    """Record a command's outcome: its answer, or the error that ended it."""
    stamp = format_timestamp(now)
    status = CommandStatus.FAILED if response is None else classify(response)
    final = evolve(command, status=status, response=response, error=error, completed_at=stamp)
    data: JSON = {"commandId": command.id, "request": command.request}
    if response is not None:
        data["response"] = response
    if error is not None:
        data["error"] = error
    event = DomainEvent(type=event_type(command.action, status), data=data)
    writes: list[Any] = [final]
    if status == CommandStatus.ACCEPTED and response is not None:
        before = snap.registration
        snap, changed = _learn(snap, command, response, now)
        writes.extend(
            ChargerSetting(
                charger_id=snap.charger_id, key=key, value=snap.settings[key], updated_at=stamp
            )
            for key in changed
        )
        if snap.registration is not before and snap.registration is not None:
            writes.append(snap.registration)
    return Outcome(snapshot=snap, reply={}, writes=writes, events=[event])


def _learn(
    snap: ChargerSnapshot, command: Command, response: JSON, now: datetime
) -> tuple[ChargerSnapshot, list[str]]:
    """Fold an accepted command into the snapshot; return the settings keys it changed."""
    request_ = command.request
    settings = dict(snap.settings)
    changed: list[str] = []
    action = command.action
    if action == "RemoteStartTransaction":
        pending = RemoteStart(
            command_id=command.id,
            id_tag=request_["idTag"],
            connector_id=request_.get("connectorId"),
            accepted_at=format_timestamp(now),
        )
        snap = evolve(snap, remote_starts=(*snap.remote_starts, pending))
    elif action == "TriggerMessage":
        snap = evolve(snap, triggered=snap.triggered | {request_["requestedMessage"]})
    elif action == "ExtendedTriggerMessage":
        triggered = EXTENDED_TRIGGERS.get(request_["requestedMessage"])
        if triggered is not None:
            snap = evolve(snap, triggered=snap.triggered | {triggered})
    elif action == "ChangeAvailability":
        availability = dict(settings.get("availability", {}))
        availability[str(request_["connectorId"])] = {
            "type": request_["type"],
            "scheduled": response.get("status") == "Scheduled",
        }
        settings["availability"] = availability
        changed.append("availability")
    elif action == "SetChargingProfile":
        profile = request_["csChargingProfiles"]
        kept = [
            p
            for p in settings.get("chargingProfiles", [])
            if not _replaced_by(p, request_["connectorId"], profile)
        ]
        settings["chargingProfiles"] = [
            *kept,
            {"connectorId": request_["connectorId"], "csChargingProfiles": profile},
        ]
        changed.append("chargingProfiles")
    elif action == "ClearChargingProfile":
        settings["chargingProfiles"] = [
            p for p in settings.get("chargingProfiles", []) if not _cleared(p, request_)
        ]
        changed.append("chargingProfiles")
    elif action in ("SendLocalList", "GetLocalListVersion"):
        version = request_.get("listVersion", response.get("listVersion"))
        if action == "GetLocalListVersion":
            version = response.get("listVersion")
        settings["localListVersion"] = version
        changed.append("localListVersion")
    elif action == "ChangeConfiguration" and request_["key"] == AUTHORIZATION_KEY:
        snap = _new_key(snap, request_["value"], format_timestamp(now))
    elif action == "ChangeConfiguration":
        configuration = dict(settings.get("configuration", {}))
        configuration[request_["key"]] = request_["value"]
        settings["configuration"] = configuration
        changed.append("configuration")
    elif action == "GetConfiguration":
        configuration = dict(settings.get("configuration", {}))
        for item in response.get("configurationKey", []):
            if "value" in item:
                configuration[item["key"]] = item["value"]
        settings["configuration"] = configuration
        changed.append("configuration")
    if changed:
        snap = evolve(snap, settings=settings)
    return snap, changed


def _new_key(snap: ChargerSnapshot, key: str, stamp: str) -> ChargerSnapshot:
    """Security Whitepaper A01: the charger took a new AuthorizationKey (ChangeConfiguration)
    and reconnects with it, so it becomes the stored password of a profile 1/2 charger. The
    key is never kept in ``settings`` (the API shows those)."""
    registration = snap.registration
    if registration is None or registration.security_profile not in (1, 2):
        return snap  # profiles 0 and 3 do not use it
    updated = evolve(registration, password_hash=hash_password(key), updated_at=stamp)
    return evolve(snap, registration=updated)


def _replaced_by(entry: JSON, connector_id: int, profile: JSON) -> bool:
    """Whether a new profile replaces an installed one (3.13.2, 5.16.3-4): the same
    chargingProfileId, or the same stackLevel and chargingProfilePurpose on the connector."""
    installed = entry["csChargingProfiles"]
    if installed.get("chargingProfileId") == profile.get("chargingProfileId"):
        return True
    return (
        entry.get("connectorId") == connector_id
        and installed.get("stackLevel") == profile.get("stackLevel")
        and installed.get("chargingProfilePurpose") == profile.get("chargingProfilePurpose")
    )


def _cleared(entry: JSON, criteria: JSON) -> bool:
    """Whether ClearChargingProfile.req with these criteria removes the profile (5.5)."""
    profile = entry["csChargingProfiles"]
    if "id" in criteria:
        return profile.get("chargingProfileId") == criteria["id"]
    checks = (
        ("connectorId", entry.get("connectorId")),
        ("chargingProfilePurpose", profile.get("chargingProfilePurpose")),
        ("stackLevel", profile.get("stackLevel")),
    )
    return all(criteria[key] == value for key, value in checks if key in criteria)
