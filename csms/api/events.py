"""``/api/v1/events`` (the stored event log) and ``/api/v1/event-types`` (the catalog)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from aiohttp import web

from csms.api.common import bad_request, not_found, ok, page, pagination
from csms.api.keys import EVENT_TYPES, STORE
from csms.api.query import PAGINATION, accepts
from csms.protocol.timefmt import format_timestamp, parse_timestamp
from storage.records import EventFilter
from webhooks.envelope import envelope
from webhooks.filters import is_glob

routes = web.RouteTableDef()


def _time(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if not raw:
        return None
    parsed = parse_timestamp(raw)
    if parsed is None:
        raise bad_request(f"{name} must be an ISO 8601 date-time", "invalid_parameter")
    return format_timestamp(parsed)


def _types(request: web.Request) -> tuple[str, ...]:
    """The ``type`` filters (repeated or comma-separated), each naming a type of the catalog
    or a glob matching at least one: a typo would otherwise silently match nothing."""
    types = tuple(
        t.strip() for raw in request.query.getall("type", []) for t in raw.split(",") if t.strip()
    )
    if types:
        known = [t["name"] for t in request.app[EVENT_TYPES]()]
        for pattern in types:
            if pattern in known or (
                is_glob(pattern) and any(fnmatchcase(name, pattern) for name in known)
            ):
                continue
            raise bad_request(
                f"type: no event type is named or matched by {pattern}"
                " (GET /api/v1/event-types lists them)",
                "invalid_parameter",
            )
    return types


@routes.get("/api/v1/events")
@accepts("type", "chargerId", "since", "until", "order", *PAGINATION)
async def list_events(request: web.Request) -> web.Response:
    limit, starting_after = pagination(request)
    types = _types(request)
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("order must be asc or desc", "invalid_parameter")
    query = EventFilter(
        types=types,
        charger_id=request.query.get("chargerId") or None,
        since=_time(request, "since"),
        until=_time(request, "until"),
        ascending=order == "asc",
        limit=limit,
        starting_after=starting_after,
    )
    try:
        result = await request.app[STORE].list_events(query)
    except LookupError:
        raise bad_request("startingAfter names no event", "invalid_parameter") from None
    return page((envelope(e) for e in result.items), result.has_more)


@routes.get("/api/v1/events/{id}")
async def get_event(request: web.Request) -> web.Response:
    event = await request.app[STORE].get_event(request.match_info["id"])
    if event is None:
        raise not_found(f"event {request.match_info['id']}")
    return ok(envelope(event))


@routes.get("/api/v1/event-types")
@accepts(*PAGINATION)
async def list_event_types(request: web.Request) -> web.Response:
    """The whole catalog unless ``limit`` is given: it is small, and clients read it whole."""
    types = request.app[EVENT_TYPES]()
    limit, starting_after = pagination(request)
    if "limit" not in request.query:
        limit = len(types)
    start = 0
    if starting_after is not None:
        names = [t["name"] for t in types]
        if starting_after not in names:
            raise bad_request("startingAfter names no event type", "invalid_parameter")
        start = names.index(starting_after) + 1
    chosen = types[start : start + limit]
    return page(chosen, start + len(chosen) < len(types))
