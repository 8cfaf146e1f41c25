"""``/api/v1/transactions``: charging sessions, with their meter values."""

from __future__ import annotations

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


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer", "invalid_parameter") from None


@routes.get("/api/v1/transactions")
@accepts("chargerId", "active", *PAGINATION)
async def list_transactions(request: web.Request) -> web.Response:
    limit, starting_after = pagination(request)
    result = await request.app[STORE].list_transactions(
        charger_id=request.query.get("chargerId") or None,
        active=query_bool(request, "active"),
        limit=limit,
        starting_after=_int(starting_after, "startingAfter") if starting_after else None,
    )
    return page((transaction_view(t) for t in result.items), result.has_more)


@routes.get("/api/v1/transactions/{id}")
async def get_transaction(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    store = request.app[STORE]
    tx = await store.get_transaction(_int(raw, "id")) if raw.lstrip("-").isdigit() else None
    if tx is None:
        raise not_found(f"transaction {raw}")
    view = transaction_view(tx)
    view["meterValues"] = [sample_view(s) for s in await store.meter_samples(tx.id)]
    return ok(view)
