"""Transactions, the pure part: StartTransaction, MeterValues and StopTransaction (OCPP 1.6,
4.3, 4.7, 4.8 and 4.10), with the re-send rules of DESIGN 3: a re-sent start gets the same
transactionId, re-sent meter values and stops are answered and not counted twice, and a stop
for a transaction we do not know (or -1, errata 3.18) is recorded, never guessed onto a
connector."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import orjson

from csms.protocol.authorization import id_tag_info
from csms.protocol.evolve import evolve
from csms.protocol.meter import normalise
from csms.protocol.outcome import Ctx, DomainEvent, Outcome, bad_value, is_int
from csms.protocol.state import DIGEST_CHARS, JSON, ChargerSnapshot, Lookups, RemoteStart
from csms.protocol.timefmt import canonical_timestamp, format_timestamp, parse_timestamp
from storage.records import MeterSample, Record, Transaction, TransactionProgress, UnknownStop

# StopTransaction.req reason when the charger leaves it out (OCPP 1.6, 6.52).
DEFAULT_STOP_REASON = "Local"
# How long an accepted RemoteStartTransaction may wait for its StartTransaction (the 1.6
# ConnectionTimeOut is typically 60-180 s; a driver may take longer to plug in).
REMOTE_START_WINDOW = timedelta(minutes=10)


def start_transaction(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    connector_id = payload["connectorId"]
    if connector_id <= 0:
        return bad_value("connectorId", "a transaction runs on a connector numbered from 1", snap)
    key = start_key(payload)
    if key is None:
        return bad_value("timestamp", "timestamp is not a dateTime", snap)
    tag = payload["idTag"]
    twin = find_started(snap, key) or _matching_start(ctx.lookups.transaction, snap, key)
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


def meter_values(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    connector_id = payload["connectorId"]
    if connector_id < 0:
        return bad_value("connectorId", "connectorId must be 0 (the charger) or more", snap)
    tx_id = payload.get("transactionId")
    tx = _own_transaction(snap, ctx.lookups, tx_id)
    # Samples belong to a transaction only if it is this charger's: an unknown id (or another
    # charger's) stays in the event, never on the rows of a transaction it does not name.
    found = _new_samples(
        snap, payload["meterValue"], connector_id, tx.id if tx is not None else None
    )
    if found is None:
        return bad_value("meterValue", "a meterValue timestamp is not a dateTime", snap)
    fresh, samples, digests = found
    if not samples:
        return Outcome(snapshot=snap, reply={})  # every element was recorded before
    rows: list[Record] = samples  # type: ignore[assignment]
    reading = normalise(fresh)
    recent = snap.recent_digests.add(digests)
    if tx is not None and tx.active:
        register = reading.get("energyWh")
        energy = (
            round(float(register) - tx.meter_start, 3)
            if isinstance(register, float)
            else tx.energy_wh
        )
        updated = evolve(tx, last_meter=reading, energy_wh=energy, updated_at=ctx.stamp)
        # One copy of the snapshot for both changes (each copy is a tenth of the call).
        snap = evolve(snap, recent_digests=recent, active={**snap.active, tx.id: updated})
        data: JSON = {"transactionId": tx.id, "connectorId": connector_id}
        _put_reading(data, reading)
        data["energyWh"] = energy
        data["meterValue"] = fresh
        progress = TransactionProgress(
            id=tx.id, last_meter=reading, energy_wh=energy, updated_at=ctx.stamp
        )
        rows.append(progress)
        return Outcome(
            snapshot=snap,
            reply={},
            writes=rows,
            events=[DomainEvent(type="transaction.updated", data=data)],
        )
    data = {"connectorId": connector_id}
    if tx_id is not None:
        data["transactionId"] = tx_id
    _put_reading(data, reading)
    data["meterValue"] = fresh
    return Outcome(
        snapshot=evolve(snap, recent_digests=recent),
        reply={},
        writes=rows,
        events=[DomainEvent(type="connector.meter_values", data=data)],
    )


def stop_transaction(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    tx_id = payload["transactionId"]
    stopped = parse_timestamp(payload["timestamp"])
    if stopped is None:
        return bad_value("timestamp", "timestamp is not a dateTime", snap)
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
    found = _new_samples(
        snap, payload.get("transactionData") or [], connector_id, tx.id if tx else None
    )
    if found is None:
        return bad_value("transactionData", "a meterValue timestamp is not a dateTime", snap)
    _, samples, digests = found
    rows: list[Record] = samples  # type: ignore[assignment]
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


def start_key(payload: JSON) -> tuple[int, str, str, int] | None:
    """What identifies a StartTransaction.req when it is sent again (DESIGN 3)."""
    started = parse_timestamp(payload.get("timestamp"))  # type: ignore[arg-type]
    connector, tag, meter = (
        payload.get("connectorId"),
        payload.get("idTag"),
        payload.get("meterStart"),
    )
    if started is None or not (is_int(connector) and isinstance(tag, str) and is_int(meter)):
        return None
    return (connector, tag, format_timestamp(started), meter)


def _key_of(tx: Transaction) -> tuple[int, str, str, int]:
    return (tx.connector_id, tx.id_tag, tx.started_at, tx.meter_start)


def find_started(snap: ChargerSnapshot, key: tuple[int, str, str, int]) -> Transaction | None:
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


def own_transaction(snap: ChargerSnapshot, lookups: Lookups, tx_id: Any) -> Transaction | None:
    """This charger's transaction ``tx_id`` (active, or found in the store), or None."""
    return _own_transaction(snap, lookups, tx_id)


def _own_transaction(snap: ChargerSnapshot, lookups: Lookups, tx_id: Any) -> Transaction | None:
    """This charger's transaction ``tx_id``; another charger's counts as unknown."""
    if not is_int(tx_id):
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
    return hashlib.blake2b(data, digest_size=DIGEST_CHARS // 2).hexdigest()


def _new_samples(
    snap: ChargerSnapshot, meter_value: list[JSON], connector_id: int, tx_id: Any
) -> tuple[list[JSON], list[MeterSample], list[str]] | None:
    """The meterValue elements not recorded before, their rows and digests; None if a
    timestamp is bad."""
    recent = snap.recent_digests
    fresh: list[JSON] = []
    rows: list[MeterSample] = []
    digests: list[str] = []
    tx_ref = tx_id if is_int(tx_id) else None
    for element in meter_value:
        stamp = canonical_timestamp(element["timestamp"])
        if stamp is None:
            return None
        digest = _digest([connector_id, tx_ref, element])
        if digest in recent or digest in digests:
            continue
        digests.append(digest)
        fresh.append(element)
        rows.append(
            MeterSample(
                charger_id=snap.charger_id,
                connector_id=connector_id,
                transaction_id=tx_ref,
                timestamp=stamp,
                digest=digest,
                sampled_value=element["sampledValue"],
            )
        )
    return fresh, rows, digests


def _remember(snap: ChargerSnapshot, digests: list[str]) -> ChargerSnapshot:
    if not digests:
        return snap
    return evolve(snap, recent_digests=snap.recent_digests.add(digests))


def _put_reading(data: JSON, reading: dict[str, float | str]) -> None:
    """The normalised reading into an event, under the names the events use (``meterWh`` =
    the register)."""
    for key, value in reading.items():
        data["meterWh" if key == "energyWh" else key] = value
