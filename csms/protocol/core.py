"""The pure OCPP 1.6 core: (snapshot, CALL, lookups, now, ids) -> Outcome.

No socket, no database, no clock: the shell (``csms/server.py`` reads the frame,
``csms/hub.py`` fetches what ``lookups_needed()`` names) calls ``handle()``, commits what
``finish()`` makes of the outcome (its rows and the sealed events) in one transaction, and
only then writes ``Outcome.reply`` to the socket. The transaction messages live in
``transactions.py``, the IdTagInfo rules in ``authorization.py``, the outcome types in
``outcome.py``.

Charger-initiated messages served (OCPP 1.6, chapter 4): Authorize, BootNotification,
DataTransfer, DiagnosticsStatusNotification, FirmwareStatusNotification, Heartbeat,
MeterValues, StartTransaction, StatusNotification, StopTransaction; and of the security
extension (``security.py``): LogStatusNotification, SecurityEventNotification,
SignCertificate, SignedFirmwareStatusNotification.

Which CALLERROR a CALL gets (OCPP-J 1.6, 4.2.3 table 7):

==========================================  ==============================================
condition                                   errorCode
==========================================  ==============================================
action is no OCPP 1.6 action                NotImplemented
a 1.6 action this side does not serve       NotSupported
payload fails the 1.6 schema                the schema layer's code (``schemas.py``)
charger not Accepted (4.2) and the action   SecurityError
is neither BootNotification nor triggered,
nor StopTransaction/MeterValues of a
transaction the CSMS knows
a value the schema admits but the spec      PropertyConstraintViolation
does not (connectorId < 0, StartTransaction
on connector 0, an unreadable dateTime)
==========================================  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from csms.protocol import security, transactions
from csms.protocol.authorization import id_tag_info
from csms.protocol.evolve import evolve
from csms.protocol.frames import Call, ErrorCode
from csms.protocol.outcome import Ctx, DomainEvent, Outcome, Reject, bad_value, is_int
from csms.protocol.schemas import CHARGE_POINT_ACTIONS, is_known, validate_request
from csms.protocol.state import (
    JSON,
    ChargerSnapshot,
    CoreSettings,
    Ids,
    LookupRequest,
    Lookups,
    RegistrationStatus,
)
from csms.protocol.timefmt import format_timestamp, parse_timestamp
from csms.protocol.transactions import (
    DEFAULT_STOP_REASON,
    REMOTE_START_WINDOW,
    match_remote_start,
)
from storage.records import ChargerState, Connector, Delete, Event, Record, Statement, UnitOfWork

# Re-exported: what callers of the core use from its parts.
__all__ = [
    "DEFAULT_STOP_REASON",
    "REMOTE_START_WINDOW",
    "DomainEvent",
    "Outcome",
    "Reject",
    "finish",
    "handle",
    "id_tag_info",
    "lookups_needed",
    "match_remote_start",
    "on_connect",
    "on_disconnect",
    "persisted_state",
    "seal",
]


# -- entry points -------------------------------------------------------------------------


_NOTHING = LookupRequest()  # frozen: one for every CALL that needs nothing


def lookups_needed(snapshot: ChargerSnapshot, call: Call) -> LookupRequest:
    """What ``handle()`` will need from the store for this CALL (cheap; no validation)."""
    payload = call.payload
    action = call.action
    if action == "MeterValues":  # the most frequent by far: no id tag to look at
        tx_id = payload.get("transactionId")
        if is_int(tx_id) and tx_id > 0 and tx_id not in snapshot.active:
            return LookupRequest(transaction_id=tx_id)
        return _NOTHING
    id_tag = payload.get("idTag") if isinstance(payload.get("idTag"), str) else None
    if action == "Authorize":
        return LookupRequest(id_tag=id_tag)
    if action == "StartTransaction":
        key = transactions.start_key(payload)
        if key is not None and transactions.find_started(snapshot, key) is None:
            return LookupRequest(id_tag=id_tag, start_key=key)
        return LookupRequest(id_tag=id_tag)
    if action == "StopTransaction":
        tx_id = payload.get("transactionId")
        wanted = tx_id if is_int(tx_id) and tx_id > 0 and tx_id not in snapshot.active else None
        return LookupRequest(id_tag=id_tag, transaction_id=wanted)
    return _NOTHING


def handle(
    snapshot: ChargerSnapshot,
    call: Call,
    lookups: Lookups,
    *,
    now: datetime,
    ids: Ids,
    settings: CoreSettings,
) -> Outcome:
    """Answer one charger-initiated CALL; never raises on peer input."""
    if call.action not in CHARGE_POINT_ACTIONS:
        code = ErrorCode.NOT_SUPPORTED if is_known(call.action) else ErrorCode.NOT_IMPLEMENTED
        what = "is not served by this central system" if is_known(call.action) else "is unknown"
        return Outcome(
            snapshot=snapshot,
            reply=Reject(error_code=code, description=f"action {call.action} {what}"),
        )
    violation = validate_request(call.action, call.payload)
    if violation is not None:
        details = {"field": violation.field} if violation.field else {}
        return Outcome(
            snapshot=snapshot,
            reply=Reject(
                error_code=violation.error_code, description=violation.description, details=details
            ),
        )
    status = snapshot.state.registration_status
    if (
        call.action != "BootNotification"
        and status != RegistrationStatus.ACCEPTED
        and not (status == RegistrationStatus.PENDING and call.action in snapshot.triggered)
        and not _billing_data(snapshot, call, lookups)
    ):
        return Outcome(
            snapshot=snapshot,
            reply=Reject(
                error_code=ErrorCode.SECURITY_ERROR,
                description=f"charger is not accepted (registration status {status or 'none'});"
                " send BootNotification first",
            ),
        )
    ctx = Ctx(now=now, stamp=format_timestamp(now), ids=ids, settings=settings, lookups=lookups)
    # Every message is a sign of life (Heartbeat, 4.6: "any message" may stand in for it).
    seen = evolve(snapshot, last_seen_at=ctx.stamp)
    if call.action in snapshot.triggered:
        seen = evolve(seen, triggered=snapshot.triggered - {call.action})
    return _HANDLERS[call.action](seen, call.payload, ctx)


def _billing_data(snapshot: ChargerSnapshot, call: Call, lookups: Lookups) -> bool:
    """StopTransaction and MeterValues of a transaction the CSMS knows: stored and answered
    before Accepted too (DESIGN 3: billing data is never refused)."""
    return call.action in ("StopTransaction", "MeterValues") and (
        transactions.own_transaction(snapshot, lookups, call.payload.get("transactionId"))
        is not None
    )


def finish(
    before: ChargerSnapshot, outcome: Outcome, *, stamp: str, ids: Ids
) -> tuple[ChargerSnapshot, UnitOfWork]:
    """The snapshot after the outcome, and the unit of work that makes it durable."""
    snapshot, events = seal(outcome.snapshot, outcome.events, stamp=stamp, ids=ids)
    writes: list[Record | Delete | Statement] = [*outcome.writes]
    if snapshot.state is not before.state:
        writes.append(persisted_state(snapshot))
    writes += events
    return snapshot, UnitOfWork(writes)


def persisted_state(snapshot: ChargerSnapshot) -> ChargerState:
    """The state row as stored: with the snapshot's sequence and last sign of life."""
    return evolve(
        snapshot.state, last_sequence=snapshot.sequence, last_seen_at=snapshot.last_seen_at
    )


def seal(
    snapshot: ChargerSnapshot, events: list[DomainEvent], *, stamp: str, ids: Ids
) -> tuple[ChargerSnapshot, list[Event]]:
    """Give each event its id and the charger's next gapless sequence numbers (DESIGN 4)."""
    sequence = snapshot.sequence
    sealed = []
    for event in events:
        sequence += 1
        sealed.append(
            Event(
                id=ids.event_id(),
                type=event.type,
                charger_id=snapshot.charger_id,
                sequence=sequence,
                timestamp=stamp,
                data=event.data,
            )
        )
    if sequence == snapshot.sequence:
        return snapshot, sealed
    return evolve(snapshot, sequence=sequence), sealed


# -- handlers -----------------------------------------------------------------------------


def _boot_notification(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    status = snap.policy
    interval = (
        ctx.settings.heartbeat_interval
        if status == RegistrationStatus.ACCEPTED
        else ctx.settings.retry_interval
    )
    state = evolve(snap.state, registration_status=status, boot=payload, booted_at=ctx.stamp)
    # A reboot ends the charger's earlier life: it will re-send what it still holds (4.2).
    new = evolve(snap, state=state, triggered=frozenset())
    event = DomainEvent(
        type="charger.boot", data={**payload, "registrationStatus": status, "interval": interval}
    )
    reply = {"status": status, "currentTime": ctx.stamp, "interval": interval}
    return Outcome(snapshot=new, reply=reply, events=[event])


def _heartbeat(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    return Outcome(snapshot=snap, reply={"currentTime": ctx.stamp})


def _authorize(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    tag = payload["idTag"]
    info = id_tag_info(ctx.lookups.id_tag, tag, mode=ctx.settings.authorization, now=ctx.now)
    event = DomainEvent(type="charger.authorization", data={"idTag": tag, **info})
    return Outcome(snapshot=snap, reply={"idTagInfo": info}, events=[event])


def _status_notification(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    connector_id = payload["connectorId"]
    if connector_id < 0:
        return bad_value("connectorId", "connectorId must be 0 (the charger) or more", snap)
    reported = payload.get("timestamp")
    if reported is not None:
        parsed = parse_timestamp(reported)
        if parsed is None:
            return bad_value("timestamp", "timestamp is not a dateTime", snap)
        reported = format_timestamp(parsed)
    previous = snap.connectors.get(connector_id)
    row = Connector(
        charger_id=snap.charger_id,
        connector_id=connector_id,
        status=payload["status"],
        error_code=payload["errorCode"],
        info=payload.get("info"),
        vendor_id=payload.get("vendorId"),
        vendor_error_code=payload.get("vendorErrorCode"),
        status_timestamp=reported,
        updated_at=ctx.stamp,
    )
    if previous is not None and evolve(previous, updated_at=ctx.stamp) == row:
        return Outcome(snapshot=snap, reply={})  # the same notification re-sent
    data: JSON = {
        "connectorId": connector_id,
        "status": row.status,
        "previousStatus": previous.status if previous else None,
        "errorCode": row.error_code,
    }
    for key in ("info", "vendorId", "vendorErrorCode"):
        if payload.get(key) is not None:
            data[key] = payload[key]
    if reported is not None:
        data["timestamp"] = reported
    new = evolve(snap, connectors={**snap.connectors, connector_id: row})
    return Outcome(
        snapshot=new,
        reply={},
        writes=[row],
        events=[DomainEvent(type="connector.status_changed", data=data)],
    )


def _data_transfer(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    # No vendor extension is served here: say so (7.19 DataTransferStatus), and pass the
    # message on as an event so an application can act on it.
    status = "UnknownVendorId"
    data = {k: payload[k] for k in ("vendorId", "messageId", "data") if k in payload}
    data["responseStatus"] = status
    return Outcome(
        snapshot=snap,
        reply={"status": status},
        events=[DomainEvent(type="charger.data_transfer", data=data)],
    )


def _firmware_status(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    state = evolve(snap.state, firmware_status=payload["status"])
    return Outcome(
        snapshot=evolve(snap, state=state),
        reply={},
        events=[DomainEvent(type="charger.firmware_status", data={"status": payload["status"]})],
    )


def _diagnostics_status(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    state = evolve(snap.state, diagnostics_status=payload["status"])
    return Outcome(
        snapshot=evolve(snap, state=state),
        reply={},
        events=[DomainEvent(type="charger.diagnostics_status", data={"status": payload["status"]})],
    )


_HANDLERS: dict[str, Callable[[ChargerSnapshot, JSON, Ctx], Outcome]] = {
    "Authorize": _authorize,
    "BootNotification": _boot_notification,
    "DataTransfer": _data_transfer,
    "DiagnosticsStatusNotification": _diagnostics_status,
    "FirmwareStatusNotification": _firmware_status,
    "Heartbeat": _heartbeat,
    "MeterValues": transactions.meter_values,
    "StartTransaction": transactions.start_transaction,
    "StatusNotification": _status_notification,
    "StopTransaction": transactions.stop_transaction,
    # The security extension (Security Whitepaper 5)
    "LogStatusNotification": security.log_status,
    "SecurityEventNotification": security.security_event,
    "SignCertificate": security.sign_certificate,
    "SignedFirmwareStatusNotification": security.signed_firmware_status,
}
assert set(_HANDLERS) == set(CHARGE_POINT_ACTIONS)


# -- connection life (DESIGN 3: charger.connected / charger.disconnected) -----------------


def on_connect(
    snap: ChargerSnapshot, *, now: datetime, remote_address: str | None, security_profile: int
) -> Outcome:
    stamp = format_timestamp(now)
    state = evolve(
        snap.state,
        connected=True,
        connected_at=stamp,
        remote_address=remote_address,
    )
    data: JSON = {"securityProfile": security_profile, "remoteAddress": remote_address}
    if snap.state.registration_status is not None:
        data["registrationStatus"] = snap.state.registration_status
    return Outcome(
        snapshot=evolve(snap, state=state, last_seen_at=stamp),
        reply={},
        events=[DomainEvent(type="charger.connected", data=data)],
    )


def on_disconnect(
    snap: ChargerSnapshot, *, now: datetime, reason: str, close_code: int | None = None
) -> Outcome:
    """``reason``: closed (by the charger), lost (no close frame / ping time-out), replaced
    (a newer connection for the same id), restart (left connected by an earlier run),
    shutdown (this server stopping), deleted (the charger was deleted through the API)."""
    stamp = format_timestamp(now)
    state = evolve(snap.state, connected=False, disconnected_at=stamp)
    data: JSON = {"reason": reason}
    if close_code is not None:
        data["closeCode"] = close_code
    if snap.state.connected_at is not None:
        data["connectedAt"] = snap.state.connected_at
    return Outcome(
        snapshot=evolve(snap, state=state),
        reply={},
        events=[DomainEvent(type="charger.disconnected", data=data)],
    )
