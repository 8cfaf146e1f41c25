"""``/api/v1/id-tags``: the local authorization list (``ocpp.authorization = "local"``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from csms.api.common import (
    bad_request,
    conflict,
    field,
    not_found,
    ok,
    page,
    pagination,
    read_json,
    reject_unknown,
)
from csms.api.keys import HUB, STORE
from csms.api.query import PAGINATION, accepts
from csms.protocol.timefmt import format_timestamp, parse_timestamp
from csms.server import DOT_SEGMENTS
from storage.records import Delete, IdTag, UnitOfWork

routes = web.RouteTableDef()

# OCPP 1.6, 7.14 AuthorizationStatus; IdToken is CiString20Type (7.15).
STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")
MAX_TAG_LENGTH = 20


def id_tag_view(tag: IdTag) -> dict[str, Any]:
    return {
        "idTag": tag.id_tag,
        "status": tag.status,
        "expiryDate": tag.expiry_date,
        "parentIdTag": tag.parent_id_tag,
        "createdAt": tag.created_at,
        "updatedAt": tag.updated_at,
    }


def _tag(value: Any, name: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TAG_LENGTH:
        raise bad_request(
            f"{name} must be a string of 1 to {MAX_TAG_LENGTH} characters", "invalid_field"
        )
    return value


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "status" in body:
        status = field(body, "status", str)
        if status not in STATUSES:
            raise bad_request("status must be one of " + ", ".join(STATUSES), "invalid_field")
        out["status"] = status
    if "expiryDate" in body:
        expiry = field(body, "expiryDate", str, nullable=True)
        if expiry is not None:
            parsed = parse_timestamp(expiry)
            if parsed is None:
                raise bad_request("expiryDate must be an ISO 8601 date-time", "invalid_field")
            expiry = format_timestamp(parsed)
        out["expiry_date"] = expiry
    if "parentIdTag" in body:
        parent = body["parentIdTag"]
        out["parent_id_tag"] = None if parent is None else _tag(parent, "parentIdTag")
    return out


@routes.post("/api/v1/id-tags")
async def create_id_tag(request: web.Request) -> web.Response:
    body = await read_json(request)
    reject_unknown(body, ("idTag", "status", "expiryDate", "parentIdTag"))
    tag = _tag(field(body, "idTag", str, required=True), "idTag")
    if tag in DOT_SEGMENTS:
        raise bad_request("idTag must not be . or .. (no URL can name it)", "invalid_field")
    values = {"status": "Accepted", "expiry_date": None, "parent_id_tag": None, **_fields(body)}
    store = request.app[STORE]
    if await store.get_id_tag(tag) is not None:
        raise conflict(f"id tag {tag} exists")
    stamp = format_timestamp(request.app[HUB].clock())
    record = IdTag(id_tag=tag, created_at=stamp, updated_at=stamp, **values)
    await store.commit(UnitOfWork().put(record))
    return ok(id_tag_view(record), status=201)


@routes.get("/api/v1/id-tags")
@accepts(*PAGINATION)
async def list_id_tags(request: web.Request) -> web.Response:
    limit, starting_after = pagination(request)
    result = await request.app[STORE].list_id_tags(limit=limit, starting_after=starting_after)
    return page((id_tag_view(t) for t in result.items), result.has_more)


async def _existing(request: web.Request) -> IdTag:
    tag = request.match_info["idTag"]
    record = await request.app[STORE].get_id_tag(tag)
    if record is None:
        raise not_found(f"id tag {tag}")
    return record


@routes.get("/api/v1/id-tags/{idTag:[^/]+}")
async def get_id_tag(request: web.Request) -> web.Response:
    return ok(id_tag_view(await _existing(request)))


@routes.patch("/api/v1/id-tags/{idTag:[^/]+}")
async def update_id_tag(request: web.Request) -> web.Response:
    body = await read_json(request)
    reject_unknown(body, ("status", "expiryDate", "parentIdTag"))
    record = await _existing(request)
    stamp = format_timestamp(request.app[HUB].clock())
    updated = replace(record, **_fields(body), updated_at=stamp)
    await request.app[STORE].commit(UnitOfWork().put(updated))
    return ok(id_tag_view(updated))


@routes.delete("/api/v1/id-tags/{idTag:[^/]+}")
async def delete_id_tag(request: web.Request) -> web.Response:
    record = await _existing(request)
    await request.app[STORE].commit(UnitOfWork().put(Delete("id_tags", record.id_tag)))
    return ok({"idTag": record.id_tag, "deleted": True})
