"""Answers to the 19 CSMS-initiated OCPP 1.6 actions (section 5), as a real charger gives them
(the security extension's seven are in ``security.py``).

`handle()` is pure: it changes the model and returns a `Reply`: the CALLRESULT payload (or a
CALLERROR), the CALLs to queue once that answer is on the wire (`then`), and at most one
`Effect` that needs time or the socket (a reboot, an upload, a firmware install) for the
shell to carry out. Nothing here waits for the CSMS: answering first and acting after is
what keeps a charger from deadlocking on its own request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from simulators import security
from simulators.config import ConfigurationStatus
from simulators.frames import ErrorCode
from simulators.model import ChargerModel, Connector, Reservation
from simulators.outbox import Outgoing
from simulators.profiles import ProfileError, Purpose, Unit
from simulators.replies import (
    ConfigChanged,
    Effect,
    InstallFirmware,
    InstallSignedFirmware,
    Reboot,
    Reply,
    UploadDiagnostics,
    UploadLog,
)
from simulators.status import Status, TransitionError
from simulators.timefmt import parse_iso

# Charger-initiated actions: known to OCPP 1.6 but not something a charger serves.
CHARGER_ACTIONS = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        # the security extension's
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
    }
)

UPLOAD_SCHEMES = frozenset({"ftp", "ftps", "sftp", "http", "https"})


def handle(
    model: ChargerModel, action: str, payload: dict[str, Any], now: datetime, *, online: bool = True
) -> Reply:
    """Answer one CALL from the CSMS. Bad payloads become the matching CALLERROR (OCPP-J 4.2.3)."""
    handler = HANDLERS.get(action)
    if handler is None:
        code = ErrorCode.NOT_SUPPORTED if action in CHARGER_ACTIONS else ErrorCode.NOT_IMPLEMENTED
        return Reply(error=(code, f"{action} is not served by a charge point"))
    try:
        return handler(model, payload, now, online)
    except KeyError as exc:
        return Reply(error=(ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION, f"missing {exc}"))
    except (TypeError, ValueError) as exc:
        return Reply(error=(ErrorCode.TYPE_CONSTRAINT_VIOLATION, str(exc)))


def _status(value: str, then: list[Outgoing] | None = None, effect: Effect | None = None) -> Reply:
    return Reply(payload={"status": value}, then=then or [], effect=effect)


def _connector(model: ChargerModel, connector_id: Any) -> Connector | None:
    if (
        not isinstance(connector_id, int)
        or connector_id not in model.connectors
        or connector_id == 0
    ):
        return None
    return model.connectors[connector_id]


# ----- 5.1 - 5.19 ------------------------------------------------------------------------


def cancel_reservation(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    for c in m.connectors.values():
        if c.reservation is not None and c.reservation.reservation_id == p["reservationId"]:
            c.reservation = None
            then = (
                m.set_status(c, Status.UNAVAILABLE if c.inoperative else Status.AVAILABLE, now)
                if c.status == Status.RESERVED
                else []
            )
            return _status("Accepted", then)
    return _status("Rejected")


def change_availability(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    connector_id, inoperative = int(p["connectorId"]), p["type"] == "Inoperative"
    if p["type"] not in ("Inoperative", "Operative") or connector_id not in m.connectors:
        return _status("Rejected")
    targets = list(m.connectors.values()) if connector_id == 0 else [m.connectors[connector_id]]
    then: list[Outgoing] = []
    scheduled = False
    for c in targets:
        if c.transaction is not None:
            c.scheduled, scheduled = inoperative, True  # applied when it ends (5.2)
            continue
        c.inoperative, c.scheduled = inoperative, None
        if inoperative:
            c.reservation = None  # 5.13: an Unavailable connector loses its reservation
        if c.status == Status.FAULTED:
            continue  # the fault clears into the new availability
        target = (
            Status.UNAVAILABLE
            if inoperative
            else (Status.PREPARING if c.plugged and c.connector_id else Status.AVAILABLE)
        )
        try:
            then += m.set_status(c, target, now)
        except TransitionError:  # e.g. Preparing -> Unavailable: the session is abandoned first
            c.plugged = False
            then += m.set_status(c, Status.AVAILABLE, now)
            then += m.set_status(c, target, now)
    return _status("Scheduled" if scheduled else "Accepted", then)


def change_configuration(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    key, value = str(p["key"]), str(p["value"])
    result = m.config.change(key, value)
    changed = result in (ConfigurationStatus.ACCEPTED, ConfigurationStatus.REBOOT_REQUIRED)
    return _status(result, effect=ConfigChanged(key=key) if changed else None)


def clear_cache(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    m.auth.clear_cache()
    return _status("Accepted")


def clear_charging_profile(
    m: ChargerModel, p: dict[str, Any], now: datetime, online: bool
) -> Reply:
    removed = m.profiles.clear(
        profile_id=p.get("id"),
        connector_id=p.get("connectorId"),
        purpose=p.get("chargingProfilePurpose"),
        stack_level=p.get("stackLevel"),
    )
    return _status("Accepted", m.refresh_power(now)) if removed else _status("Unknown")


def data_transfer(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    """5.6: this charger understands its own vendor id and a single message, `echo`."""
    if p["vendorId"] != m.vendor_id:
        return _status("UnknownVendorId")
    if p.get("messageId", "echo") != "echo":
        return _status("UnknownMessageId")
    answer: dict[str, Any] = {"status": "Accepted"}
    if "data" in p:
        answer["data"] = p["data"]
    return Reply(payload=answer)


def get_composite_schedule(
    m: ChargerModel, p: dict[str, Any], now: datetime, online: bool
) -> Reply:
    connector_id, duration, unit = p["connectorId"], int(p["duration"]), p.get("chargingRateUnit")
    if connector_id not in m.connectors or (
        unit is not None and Unit(unit) not in m.profiles.limits.allowed_units
    ):
        return _status("Rejected")
    c = m.connectors[connector_id]
    tx_start = c.transaction.started_at if c.transaction else now
    answer = m.profiles.composite(
        connector_id, now, duration, unit=unit, tx_start=tx_start, hardware_w=m.max_power_w
    )
    return Reply(payload=answer)


def get_configuration(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    known, unknown = m.config.get(p.get("key"))
    answer: dict[str, Any] = {"configurationKey": known}
    if unknown:
        answer["unknownKey"] = unknown
    return Reply(payload=answer)


def get_diagnostics(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    scheme = urlsplit(str(p["location"])).scheme.lower()
    file_name = f"diagnostics-{m.identity.serial}-{now.strftime('%Y%m%dT%H%M%SZ')}.log"
    final = "Uploaded" if scheme in UPLOAD_SCHEMES else "UploadFailed"
    return Reply(
        payload={"fileName": file_name}, effect=UploadDiagnostics(statuses=("Uploading", final))
    )


def get_local_list_version(
    m: ChargerModel, p: dict[str, Any], now: datetime, online: bool
) -> Reply:
    enabled = m.config.get_bool("LocalAuthListEnabled")
    return Reply(payload={"listVersion": m.auth.local_list.version if enabled else -1})


def remote_start_transaction(
    m: ChargerModel, p: dict[str, Any], now: datetime, online: bool
) -> Reply:
    id_tag = str(p["idTag"])
    profile = p.get("chargingProfile")
    if profile is not None and profile.get("chargingProfilePurpose") != Purpose.TX:
        return _status("Rejected")

    def usable(c: Connector) -> bool:
        if c.transaction is not None or c.awaiting_tag is not None or c.inoperative:
            return False
        if c.reservation is not None and c.reservation.id_tag != id_tag:
            return False
        return c.status in (Status.AVAILABLE, Status.PREPARING, Status.FINISHING, Status.RESERVED)

    if "connectorId" in p:
        c = _connector(m, p["connectorId"])
        if c is None or not usable(c):
            return _status("Rejected")
    else:
        free = [c for n, c in sorted(m.connectors.items()) if n and usable(c)]
        if not free:
            return _status("Rejected")
        c = free[0]
    c.remote_profile = profile
    if m.config.get_bool("AuthorizeRemoteTxRequests"):
        then = m.present_tag(c.connector_id, id_tag, now, online=online)
    else:
        then = m.plug_in(c.connector_id, now) if not c.plugged else []
        then += m.start_transaction(c.connector_id, id_tag, now)
    return _status("Accepted", then)


def remote_stop_transaction(
    m: ChargerModel, p: dict[str, Any], now: datetime, online: bool
) -> Reply:
    tx = m.find_transaction(int(p["transactionId"]))
    if tx is None:
        return _status("Rejected")
    return _status("Accepted", m.stop_transaction(tx.connector_id, "Remote", now))


def reserve_now(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    reservation_id, connector_id = int(p["reservationId"]), int(p["connectorId"])
    expiry = parse_iso(p["expiryDate"])
    then: list[Outgoing] = []
    for other in m.connectors.values():  # 5.13: the same reservationId replaces the old one
        if other.reservation is not None and other.reservation.reservation_id == reservation_id:
            other.reservation = None
            if other.connector_id != connector_id and other.status == Status.RESERVED:
                then += m.set_status(other, Status.AVAILABLE, now)
    if connector_id == 0 and not m.config.get_bool("ReserveConnectorZeroSupported"):
        return _status("Rejected")
    c = _connector(m, connector_id)
    if c is None:
        return _status("Rejected")
    if c.status == Status.FAULTED:
        return _status("Faulted")
    if c.status == Status.UNAVAILABLE:
        return _status("Unavailable")
    if (
        c.transaction is not None
        or c.reservation is not None
        or c.status not in (Status.AVAILABLE, Status.RESERVED)
    ):
        return _status("Occupied")
    c.reservation = Reservation(
        reservation_id=reservation_id,
        connector_id=connector_id,
        id_tag=str(p["idTag"]),
        parent_id_tag=p.get("parentIdTag"),
        expiry=expiry,
    )
    return _status("Accepted", then + m.set_status(c, Status.RESERVED, now))


def reset(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    hard = p["type"] == "Hard"
    if p["type"] not in ("Hard", "Soft"):
        raise ValueError(f"bad reset type {p['type']!r}")
    reason = "HardReset" if hard else "SoftReset"
    then: list[Outgoing] = []
    for tx in m.transactions():
        then += m.stop_transaction(tx.connector_id, reason, now)
    return _status("Accepted", then, Reboot(hard=hard))


def send_local_list(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    if not m.config.get_bool("LocalAuthListEnabled"):
        return _status("NotSupported")
    items = p.get("localAuthorizationList") or []
    return _status(m.auth.local_list.update(int(p["listVersion"]), str(p["updateType"]), items))


def set_charging_profile(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    connector_id = int(p["connectorId"])
    c = m.connectors.get(connector_id)
    tx = c.transaction if c is not None and connector_id else None
    try:
        m.profiles.install(
            connector_id,
            p["csChargingProfiles"],
            now,
            active_tx=tx.transaction_id if tx else None,
            tx_running=tx is not None,
        )
    except ProfileError:
        return _status("Rejected")
    return _status("Accepted", m.refresh_power(now))


def trigger_message(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    """5.17: answer first; the requested message is queued behind the answer."""
    what, connector_id = p["requestedMessage"], p.get("connectorId")
    if connector_id is not None and connector_id not in m.connectors:
        return _status("Rejected")
    then: list[Outgoing]
    if what == "BootNotification":
        then = [m.boot_notification()]
    elif what == "Heartbeat":
        then = [Outgoing(action="Heartbeat")]
    elif what == "DiagnosticsStatusNotification":
        then = [Outgoing(action=what, payload={"status": m.diagnostics_status})]
    elif what == "FirmwareStatusNotification":
        then = [Outgoing(action=what, payload={"status": m.firmware_status})]
    elif what == "StatusNotification":
        chosen = (
            [m.connectors[connector_id]]
            if connector_id is not None
            else list(m.connectors.values())
        )
        then = [m.status_notification(c, now) for c in chosen]
    elif what == "MeterValues":
        ids = [connector_id] if connector_id else [n for n in m.connectors if n]
        then = [
            msg
            for n in ids
            for msg in m.sample(now, connector_id=n, context="Trigger")
            if msg.action == "MeterValues"
        ]
    else:
        return _status("NotImplemented")
    return _status("Accepted", then)


def extended_trigger_message(
    m: ChargerModel, p: dict[str, Any], now: datetime, online: bool
) -> Reply:
    """ExtendedTriggerMessage (security extension 5.5): TriggerMessage's messages plus the
    extension's: LogStatusNotification, SignedFirmwareStatusNotification (as
    FirmwareStatusNotification) and a new CSR (SignChargePointCertificate, A02)."""
    what, connector_id = p["requestedMessage"], p.get("connectorId")
    if connector_id is not None and connector_id not in m.connectors:
        return _status("Rejected")
    state = m.security
    if what == "LogStatusNotification":
        request = None if state.log_status == "Idle" else state.log_request
        return _status("Accepted", [security.log_status(m, state.log_status, request)])
    if what == "FirmwareStatusNotification":
        status, request = state.firmware_status, state.firmware_request
        return _status("Accepted", [security.signed_firmware_status(m, status, request)])
    if what == "SignChargePointCertificate":
        return _status("Accepted", [security.sign_certificate(m)])
    if what == "DiagnosticsStatusNotification":
        return _status("NotImplemented")  # not a MessageTriggerEnumType value
    return trigger_message(m, p, now, online)


def unlock_connector(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    c = _connector(m, p["connectorId"])
    if c is None:
        return _status("NotSupported")  # 7.43: unknown connector
    if c.transaction is not None:
        then = m.stop_transaction(c.connector_id, "UnlockCommand", now)
    else:
        then = m.unplug(c.connector_id, now) if c.plugged else []
    return _status("Unlocked", then)


def update_firmware(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    retrieve_at = parse_iso(p["retrieveDate"])
    return Reply(
        payload={}, effect=InstallFirmware(location=str(p["location"]), retrieve_at=retrieve_at)
    )


Handler = Callable[[ChargerModel, dict[str, Any], datetime, bool], Reply]

HANDLERS: dict[str, Handler] = {
    "CancelReservation": cancel_reservation,
    "ChangeAvailability": change_availability,
    "ChangeConfiguration": change_configuration,
    "ClearCache": clear_cache,
    "ClearChargingProfile": clear_charging_profile,
    "DataTransfer": data_transfer,
    "GetCompositeSchedule": get_composite_schedule,
    "GetConfiguration": get_configuration,
    "GetDiagnostics": get_diagnostics,
    "GetLocalListVersion": get_local_list_version,
    "RemoteStartTransaction": remote_start_transaction,
    "RemoteStopTransaction": remote_stop_transaction,
    "ReserveNow": reserve_now,
    "Reset": reset,
    "SendLocalList": send_local_list,
    "SetChargingProfile": set_charging_profile,
    "TriggerMessage": trigger_message,
    "ExtendedTriggerMessage": extended_trigger_message,
    "UnlockConnector": unlock_connector,
    "UpdateFirmware": update_firmware,
    **security.HANDLERS,  # the security extension's seven
}

__all__ = [
    "HANDLERS",
    "ConfigChanged",
    "Effect",
    "InstallFirmware",
    "InstallSignedFirmware",
    "Reboot",
    "Reply",
    "UploadDiagnostics",
    "UploadLog",
    "handle",
]


def firmware_status(m: ChargerModel, status: str, location: str | None = None) -> Outgoing:
    """FirmwareStatusNotification.req (4.5); Installed also switches the firmware version."""
    m.firmware_status = status
    if status == "Installed" and location:
        name = urlsplit(location).path.rsplit("/", 1)[-1] or m.identity.firmware
        m.identity = replace(m.identity, firmware=name[:50])
    return Outgoing(action="FirmwareStatusNotification", payload={"status": status})


def diagnostics_status(m: ChargerModel, status: str) -> Outgoing:
    """DiagnosticsStatusNotification.req (4.4)."""
    m.diagnostics_status = status
    return Outgoing(action="DiagnosticsStatusNotification", payload={"status": status})
