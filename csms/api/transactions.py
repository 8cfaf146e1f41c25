"""``/api/v1/transactions``: charging sessions, with their meter values."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from csms.api.common import bad_request, not_found, ok, page, pagination, query_bool
from csms.api.keys import STORE
from csms.api.query import PAGINATION, accepts
from storage.records import MeterSample, Transaction

routes = web.RouteTableDef()


def transaction_view(tx: Transaction) -> dict[str, Any]:
    return {
        "id": tx.id,
        "chargerId": tx.charger_id,
        "connectorId": tx.connector_id,
        "idTag": tx.id_tag,
        "idTagStatus": tx.id_tag_status,
        "active": tx.active,
        "meterStart": tx.meter_start,
        "meterStop": tx.meter_stop,
        "energyWh": tx.energy_wh,
        "startedAt": tx.started_at,
        "stoppedAt": tx.stopped_at,
        "stopReason": tx.stop_reason,
        "stopIdTag": tx.stop_id_tag,
        "reservationId": tx.reservation_id,
        "commandId": tx.command_id,
        "lastMeter": tx.last_meter,
        "createdAt": tx.created_at,
        "updatedAt": tx.updated_at,
    }


def sample_view(sample: MeterSample) -> dict[str, Any]:
    return {"timestamp": sample.timestamp, "sampledValue": sample.sampled_value}


# Transaction ids are positive and fit the stores' 64-bit integer columns; a number past that
# names no transaction, and must not reach the database (SQLite refuses to bind it: a 500).
MAX_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]+")


def _id(raw: str) -> int | None:
    """A transaction id in range, or None; ASCII digits only (``int`` takes any Unicode digit)."""
    if _DIGITS.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


@routes.get("/api/v1/transactions")
@accepts("chargerId", "active", *PAGINATION)
async def list_transactions(request: web.Request) -> web.Response:
    limit, starting_after = pagination(request)
    after = None
    if starting_after is not None:
        after = _id(starting_after)
        if after is None:
            raise bad_request(
                f"startingAfter must be a transaction id, an integer from 1 to {MAX_ID}",
                "invalid_parameter",
            )
    result = await request.app[STORE].list_transactions(
        charger_id=request.query.get("chargerId") or None,
        active=query_bool(request, "active"),
        limit=limit,
        starting_after=after,
    )
    return page((transaction_view(t) for t in result.items), result.has_more)


@routes.get("/api/v1/transactions/{id}")
async def get_transaction(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    store = request.app[STORE]
    tx_id = _id(raw)
    tx = None if tx_id is None else await store.get_transaction(tx_id)
    if tx is None:
        raise not_found(f"transaction {raw}")
    view = transaction_view(tx)
    view["meterValues"] = [sample_view(s) for s in await store.meter_samples(tx.id)]
    return ok(view)
