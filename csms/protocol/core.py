"""The pure OCPP 1.6 core: (snapshot, CALL, lookups, now, ids) -> Outcome.

No socket, no database, no clock: the shell (``csms/session.py``) reads the frame, fetches
what ``lookups_needed()`` names, calls ``handle()``, commits ``Outcome.writes`` and the sealed
events in one transaction, and only then writes ``Outcome.reply`` to the socket.

Charger-initiated messages served (OCPP 1.6, chapter 4): Authorize, BootNotification,
DataTransfer, DiagnosticsStatusNotification, FirmwareStatusNotification, Heartbeat,
MeterValues, StartTransaction, StatusNotification, StopTransaction.

Which CALLERROR a CALL gets (OCPP-J 1.6, 4.2.3 table 7):

==========================================  ==============================================
condition                                   errorCode
==========================================  ==============================================
action is no OCPP 1.6 action                NotImplemented
a 1.6 action this side does not serve       NotSupported
payload fails the 1.6 schema                the schema layer's code (``schemas.py``)
charger not Accepted (4.2) and the action   SecurityError
is neither BootNotification nor triggered
a value the schema admits but the spec      PropertyConstraintViolation
does not (connectorId < 0, StartTransaction
on connector 0, an unreadable dateTime)
==========================================  ==============================================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from csms.protocol.evolve import evolve
from csms.protocol.frames import Call, ErrorCode
from csms.protocol.meter import normalise
from csms.protocol.schemas import CHARGE_POINT_ACTIONS, is_known, validate_request
from csms.protocol.state import (
    JSON,
    RECENT_DIGESTS,
    ChargerSnapshot,
    CoreSettings,
    Ids,
    LookupRequest,
    Lookups,
    RegistrationStatus,
    RemoteStart,
)
from csms.protocol.timefmt import format_timestamp, parse_timestamp
from storage.records import (
    ChargerState,
    Connector,
    Event,
    IdTag,
    MeterSample,
    Record,
    Transaction,
    UnitOfWork,
    UnknownStop,
)

# StopTransaction.req reason when the charger leaves it out (OCPP 1.6, 6.52).
DEFAULT_STOP_REASON = "Local"
# How long an accepted RemoteStartTransaction may wait for its StartTransaction (the 1.6
# ConnectionTimeOut is typically 60-180 s; a driver may take longer to plug in).
REMOTE_START_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """A CALLERROR to answer with, for a reason the peer should be told."""

    error_code: ErrorCode
    description: str
    details: JSON = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    """Something that happened to a charger; sealed into a stored ``Event`` by ``seal()``."""

    type: str
    data: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    snapshot: ChargerSnapshot
    reply: JSON | Reject
    writes: list[Record] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ctx:
    now: datetime
    stamp: str  # ``now`` formatted once
    ids: Ids
    settings: CoreSettings
    lookups: Lookups


# -- entry points -------------------------------------------------------------------------


def lookups_needed(snapshot: ChargerSnapshot, call: Call) -> LookupRequest:
    """What ``handle()`` will need from the store for this CALL (cheap; no validation)."""
    payload = call.payload
    id_tag = payload.get("idTag") if isinstance(payload.get("idTag"), str) else None
    if call.action == "Authorize":
        return LookupRequest(id_tag=id_tag)
    if call.action == "StartTransaction":
        key = _start_key(payload)
        if key is not None and _find_started(snapshot, key) is None:
            return LookupRequest(id_tag=id_tag, start_key=key)
        return LookupRequest(id_tag=id_tag)
    if call.action in ("StopTransaction", "MeterValues"):
        tx_id = payload.get("transactionId")
        wanted = tx_id if _is_int(tx_id) and tx_id > 0 and tx_id not in snapshot.active else None
        return LookupRequest(
            id_tag=id_tag if call.action == "StopTransaction" else None, transaction_id=wanted
        )
    return LookupRequest()


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
    ):
        return Outcome(
            snapshot=snapshot,
            reply=Reject(
                error_code=ErrorCode.SECURITY_ERROR,
                description=f"charger is not accepted (registration status {status or 'none'});"
                " send BootNotification first",
            ),
        )
    ctx = _Ctx(now=now, stamp=format_timestamp(now), ids=ids, settings=settings, lookups=lookups)
    # Every message is a sign of life (Heartbeat, 4.6: "any message" may stand in for it).
    seen = evolve(snapshot, last_seen_at=ctx.stamp)
    if call.action in snapshot.triggered:
        seen = evolve(seen, triggered=snapshot.triggered - {call.action})
    return _HANDLERS[call.action](seen, call.payload, ctx)


def finish(
    before: ChargerSnapshot, outcome: Outcome, *, stamp: str, ids: Ids
) -> tuple[ChargerSnapshot, UnitOfWork]:
    """The snapshot after the outcome, and the unit of work that makes it durable."""
    snapshot, events = seal(outcome.snapshot, outcome.events, stamp=stamp, ids=ids)
    unit = UnitOfWork().put(*outcome.writes)
    if snapshot.state is not before.state:
        unit.put(persisted_state(snapshot))
    unit.put(*events)
    return snapshot, unit


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


# -- authorization (OCPP 1.6, 3.5 and 7.15 IdTagInfo) -------------------------------------


def id_tag_info(record: IdTag | None, id_tag: str, *, mode: str, now: datetime) -> JSON:
    """The IdTagInfo for ``id_tag`` from the local list (or Accepted under ``accept_all``)."""
    if mode == "accept_all":
        return {"status": "Accepted"}
    # IdToken is a CiString20Type, case insensitive (7.15, 7.28).
    if record is None or record.id_tag.lower() != id_tag.lower():
        return {"status": "Invalid"}
    info: JSON = {"status": record.status}
    if record.expiry_date:
        info["expiryDate"] = record.expiry_date
        expiry = parse_timestamp(record.expiry_date)
        if record.status == "Accepted" and expiry is not None and expiry <= now:
            info["status"] = "Expired"
    if record.parent_id_tag:
        info["parentIdTag"] = record.parent_id_tag
    return info


# -- handlers -----------------------------------------------------------------------------


def _boot_notification(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
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


def _heartbeat(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
    return Outcome(snapshot=snap, reply={"currentTime": ctx.stamp})


def _authorize(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
    tag = payload["idTag"]
    info = id_tag_info(ctx.lookups.id_tag, tag, mode=ctx.settings.authorization, now=ctx.now)
    event = DomainEvent(type="charger.authorization", data={"idTag": tag, **info})
    return Outcome(snapshot=snap, reply={"idTagInfo": info}, events=[event])


def _status_notification(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
    connector_id = payload["connectorId"]
    if connector_id < 0:
        return _bad_value("connectorId", "connectorId must be 0 (the charger) or more", snap)
    reported = payload.get("timestamp")
    if reported is not None:
        parsed = parse_timestamp(reported)
        if parsed is None:
            return _bad_value("timestamp", "timestamp is not a dateTime", snap)
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


def _start_transaction(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
    connector_id = payload["connectorId"]
    if connector_id <= 0:
        return _bad_value("connectorId", "a transaction runs on a connector numbered from 1", snap)
    key = _start_key(payload)
    if key is None:
        return _bad_value("timestamp", "timestamp is not a dateTime", snap)
    tag = payload["idTag"]
    twin = _find_started(snap, key) or _matching_start(ctx.lookups.transaction, snap, key)
    if twin is not None:
        # Re-sent after a lost answer (DESIGN 3): the same id, no second event.
        info = id_tag_info(ctx.lookups.id_tag, tag, mode=ctx.settings.authorization, now=ctx.now)
        return Outcome(snapshot=snap, reply={"transactionId": twin.id, "idTagInfo": info})
    info = id_tag_info(ctx.lookups.id_tag, tag, mode=ctx.settings.authorization, now=ctx.now)
    snap, command_id = match_remote_start(snap, id_tag=tag, connector_id=connector_id, now=ctx.now)
    tx = Transaction(
        id=ctx.ids.transaction_id(),
        charger_id=snap.charger_id,
        connector_id=connector_id,
        id_tag=tag,
        id_tag_status=info["status"],
        meter_start=payload["meterStart"],
        started_at=key[2],
        reservation_id=payload.get("reservationId"),
        command_id=command_id,
        meter_stop=None,
        stopped_at=None,
        stop_reason=None,
        stop_id_tag=None,
        last_meter=None,
        energy_wh=0.0,
        created_at=ctx.stamp,
        updated_at=ctx.stamp,
    )
    data: JSON = {
        "transactionId": tx.id,
        "connectorId": connector_id,
        "idTag": tag,
        "idTagInfo": info,
        "meterStart": tx.meter_start,
        "timestamp": tx.started_at,
    }
    if tx.reservation_id is not None:
        data["reservationId"] = tx.reservation_id
    if command_id is not None:
        data["commandId"] = command_id
    new = evolve(snap, active={**snap.active, tx.id: tx})
    return Outcome(
        snapshot=new,
        reply={"transactionId": tx.id, "idTagInfo": info},
        writes=[tx],
        events=[DomainEvent(type="transaction.started", data=data)],
    )


def _meter_values(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
    connector_id = payload["connectorId"]
    if connector_id < 0:
        return _bad_value("connectorId", "connectorId must be 0 (the charger) or more", snap)
    tx_id = payload.get("transactionId")
    tx = _own_transaction(snap, ctx.lookups, tx_id)
    # Samples belong to a transaction only if it is this charger's: an unknown id (or another
    # charger's) stays in the event, never on the rows of a transaction it does not name.
    samples, digests = _new_samples(
        snap, payload["meterValue"], connector_id, tx.id if tx is not None else None
    )
    if samples is None:
        return _bad_value("meterValue", "a meterValue timestamp is not a dateTime", snap)
    if not samples:
        return Outcome(snapshot=snap, reply={})  # every element was recorded before
    fresh = [element for element, _ in samples]
    rows: list[Record] = [sample for _, sample in samples]
    reading = normalise(fresh)
    snap = _remember(snap, digests)
    if tx is not None and tx.active:
        register = reading.get("energyWh")
        energy = (
            round(float(register) - tx.meter_start, 3)
            if isinstance(register, float)
            else tx.energy_wh
        )
        updated = evolve(tx, last_meter=reading, energy_wh=energy, updated_at=ctx.stamp)
        snap = evolve(snap, active={**snap.active, tx.id: updated})
        data: JSON = {"transactionId": tx.id, "connectorId": connector_id}
        data.update(_reading_fields(reading))
        data["energyWh"] = energy
        data["meterValue"] = fresh
        return Outcome(
            snapshot=snap,
            reply={},
            writes=[*rows, updated],
            events=[DomainEvent(type="transaction.updated", data=data)],
        )
    data = {"connectorId": connector_id}
    if tx_id is not None:
        data["transactionId"] = tx_id
    data.update(_reading_fields(reading))
    data["meterValue"] = fresh
    return Outcome(
        snapshot=snap,
        reply={},
        writes=rows,
        events=[DomainEvent(type="connector.meter_values", data=data)],
    )


def _stop_transaction(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
    tx_id = payload["transactionId"]
    stopped = parse_timestamp(payload["timestamp"])
    if stopped is None:
        return _bad_value("timestamp", "timestamp is not a dateTime", snap)
    stop_stamp = format_timestamp(stopped)
    tag = payload.get("idTag")
    reply: JSON = {}
    if tag is not None:
        reply["idTagInfo"] = id_tag_info(
            ctx.lookups.id_tag, tag, mode=ctx.settings.authorization, now=ctx.now
        )
    reason = payload.get("reason", DEFAULT_STOP_REASON)
    tx = _own_transaction(snap, ctx.lookups, tx_id)
    if tx is not None and not tx.active:
        return Outcome(snapshot=snap, reply=reply)  # re-sent: recorded already
    connector_id = tx.connector_id if tx is not None else 0
    samples, digests = _new_samples(
        snap, payload.get("transactionData") or [], connector_id, tx.id if tx else None
    )
    if samples is None:
        return _bad_value("transactionData", "a meterValue timestamp is not a dateTime", snap)
    rows: list[Record] = [sample for _, sample in samples]
    data: JSON = {
        "transactionId": tx_id,
        "meterStop": payload["meterStop"],
        "timestamp": stop_stamp,
        "reason": reason,
    }
    if tag is not None:
        data["idTag"] = tag
    if payload.get("transactionData"):
        data["transactionData"] = payload["transactionData"]
    if tx is None:
        # Unknown id, or -1 (errata 3.18): answered and recorded, never guessed onto a
        # connector. Remembered by digest so a re-sent copy is not recorded twice.
        digest = _digest(["stop", payload])
        if digest in snap.recent_digests:
            return Outcome(snapshot=snap, reply=reply)
        data["unknownTransaction"] = True
        record = UnknownStop(
            charger_id=snap.charger_id,
            transaction_id=tx_id,
            digest=digest,
            payload=payload,
            recorded_at=ctx.stamp,
        )
        return Outcome(
            snapshot=_remember(snap, [*digests, digest]),
            reply=reply,
            writes=[*rows, record],
            events=[DomainEvent(type="transaction.stopped", data=data)],
        )
    started = parse_timestamp(tx.started_at)
    duration = max(0, round((stopped - started).total_seconds())) if started else None
    energy = payload["meterStop"] - tx.meter_start
    final = evolve(
        tx,
        meter_stop=payload["meterStop"],
        stopped_at=stop_stamp,
        stop_reason=reason,
        stop_id_tag=tag,
        energy_wh=float(energy),
        last_meter=normalise(payload["transactionData"])
        if payload.get("transactionData")
        else tx.last_meter,
        updated_at=ctx.stamp,
    )
    data.update(
        {
            "connectorId": tx.connector_id,
            "idTag": tx.id_tag,
            "meterStart": tx.meter_start,
            "energyWh": energy,
            "durationS": duration,
            "startTimestamp": tx.started_at,
        }
    )
    if tag is not None and tag != tx.id_tag:
        data["stopIdTag"] = tag
    if tx.command_id is not None:
        data["commandId"] = tx.command_id
    active = {k: v for k, v in snap.active.items() if k != tx.id}
    new = evolve(_remember(snap, digests), active=active)
    return Outcome(
        snapshot=new,
        reply=reply,
        writes=[*rows, final],
        events=[DomainEvent(type="transaction.stopped", data=data)],
    )


def _data_transfer(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
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


def _firmware_status(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
    state = evolve(snap.state, firmware_status=payload["status"])
    return Outcome(
        snapshot=evolve(snap, state=state),
        reply={},
        events=[DomainEvent(type="charger.firmware_status", data={"status": payload["status"]})],
    )


def _diagnostics_status(snap: ChargerSnapshot, payload: JSON, ctx: _Ctx) -> Outcome:
    state = evolve(snap.state, diagnostics_status=payload["status"])
    return Outcome(
        snapshot=evolve(snap, state=state),
        reply={},
        events=[DomainEvent(type="charger.diagnostics_status", data={"status": payload["status"]})],
    )


_HANDLERS: dict[str, Callable[[ChargerSnapshot, JSON, _Ctx], Outcome]] = {
    "Authorize": _authorize,
    "BootNotification": _boot_notification,
    "DataTransfer": _data_transfer,
    "DiagnosticsStatusNotification": _diagnostics_status,
    "FirmwareStatusNotification": _firmware_status,
    "Heartbeat": _heartbeat,
    "MeterValues": _meter_values,
    "StartTransaction": _start_transaction,
    "StatusNotification": _status_notification,
    "StopTransaction": _stop_transaction,
}
assert set(_HANDLERS) == set(CHARGE_POINT_ACTIONS)


def match_remote_start(
    snap: ChargerSnapshot, *, id_tag: str, connector_id: int, now: datetime
) -> tuple[ChargerSnapshot, str | None]:
    """The RemoteStartTransaction a StartTransaction answers, if any (consumed)."""
    kept: list[RemoteStart] = []
    found: str | None = None
    for pending in snap.remote_starts:
        accepted = parse_timestamp(pending.accepted_at)
        if accepted is not None and now - accepted > REMOTE_START_WINDOW:
            continue  # expired: the driver never plugged in
        if (
            found is None
            and pending.id_tag == id_tag
            and pending.connector_id in (None, connector_id)
        ):
            found = pending.command_id
            continue
        kept.append(pending)
    if found is None and len(kept) == len(snap.remote_starts):
        return snap, None
    return evolve(snap, remote_starts=tuple(kept)), found


# -- helpers ------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bad_value(name: str, description: str, snap: ChargerSnapshot) -> Outcome:
    return Outcome(
        snapshot=snap,
        reply=Reject(
            error_code=ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            description=description,
            details={"field": name},
        ),
    )


def _start_key(payload: JSON) -> tuple[int, str, str, int] | None:
    """What identifies a StartTransaction.req when it is sent again (DESIGN 3)."""
    started = parse_timestamp(payload.get("timestamp"))  # type: ignore[arg-type]
    connector, tag, meter = (
        payload.get("connectorId"),
        payload.get("idTag"),
        payload.get("meterStart"),
    )
    if started is None or not (_is_int(connector) and isinstance(tag, str) and _is_int(meter)):
        return None
    return (connector, tag, format_timestamp(started), meter)


def _key_of(tx: Transaction) -> tuple[int, str, str, int]:
    return (tx.connector_id, tx.id_tag, tx.started_at, tx.meter_start)


def _find_started(snap: ChargerSnapshot, key: tuple[int, str, str, int]) -> Transaction | None:
    for tx in snap.active.values():
        if _key_of(tx) == key:
            return tx
    return None


def _matching_start(
    tx: Transaction | None, snap: ChargerSnapshot, key: tuple[int, str, str, int]
) -> Transaction | None:
    if tx is not None and tx.charger_id == snap.charger_id and _key_of(tx) == key:
        return tx
    return None


def _own_transaction(snap: ChargerSnapshot, lookups: Lookups, tx_id: Any) -> Transaction | None:
    """This charger's transaction ``tx_id``; another charger's counts as unknown."""
    if not _is_int(tx_id):
        return None
    if tx_id in snap.active:
        return snap.active[tx_id]
    found = lookups.transaction
    if found is not None and found.id == tx_id and found.charger_id == snap.charger_id:
        return found
    return None


def _digest(value: Any) -> str:
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits
        data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def _new_samples(
    snap: ChargerSnapshot, meter_value: list[JSON], connector_id: int, tx_id: Any
) -> tuple[list[tuple[JSON, MeterSample]] | None, list[str]]:
    """The meterValue elements not recorded before, as rows; None if a timestamp is bad."""
    seen = set(snap.recent_digests)
    fresh: list[tuple[JSON, MeterSample]] = []
    digests: list[str] = []
    tx_ref = tx_id if _is_int(tx_id) else None
    for element in meter_value:
        stamp = parse_timestamp(element["timestamp"])
        if stamp is None:
            return None, []
        digest = _digest([connector_id, tx_ref, element])
        if digest in seen:
            continue
        seen.add(digest)
        digests.append(digest)
        fresh.append(
            (
                element,
                MeterSample(
                    charger_id=snap.charger_id,
                    connector_id=connector_id,
                    transaction_id=tx_ref,
                    timestamp=format_timestamp(stamp),
                    digest=digest,
                    sampled_value=element["sampledValue"],
                ),
            )
        )
    return fresh, digests


def _remember(snap: ChargerSnapshot, digests: list[str]) -> ChargerSnapshot:
    if not digests:
        return snap
    return evolve(snap, recent_digests=(*snap.recent_digests, *digests)[-RECENT_DIGESTS:])


def _reading_fields(reading: dict[str, float | str]) -> JSON:
    """The normalised reading under the names the events use (``meterWh`` = the register)."""
    out: JSON = {}
    for key, value in reading.items():
        out["meterWh" if key == "energyWh" else key] = value
    return out


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
