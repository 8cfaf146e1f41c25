"""Admin API routes of the webhook emitter (DESIGN section 6): endpoints, test sends, secret
rotation, the attempt log, replay and redelivery. The work is done by ``WebhookService``;
these handlers only parse, validate shapes and answer in the documented JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from csms.api.common import (
    bad_request,
    field,
    not_found,
    ok,
    page,
    pagination,
    read_json,
    reject_unknown,
)
from csms.api.query import PAGINATION, accepts
from storage.webhook_tables import AttemptRow
from webhooks import Endpoint, InvalidEndpoint, NotFound
from webhooks.admin import WebhookAdmin
from webhooks.service import attempt_id
from webhooks.timefmt import iso_utc, parse_iso

WEBHOOK_SERVICE = web.AppKey("webhook_service", WebhookAdmin)

routes = web.RouteTableDef()

_CREATE_FIELDS = (
    "url",
    "enabledEvents",
    "chargerIds",
    "description",
    "headers",
    "secret",
    "status",
)
_PATCH_FIELDS = ("url", "enabledEvents", "chargerIds", "description", "headers", "status")


@contextmanager
def _service_errors() -> Iterator[None]:
    """The service's exceptions as API errors."""
    try:
        yield
    except InvalidEndpoint as exc:
        code = "invalid_url" if exc.field == "url" else "invalid_field"
        raise bad_request(str(exc), code) from None
    except NotFound as exc:
        raise not_found(str(exc)) from None


def _service(request: web.Request) -> WebhookAdmin:
    return request.app[WEBHOOK_SERVICE]


def endpoint_json(endpoint: Endpoint, *, secret: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": endpoint.id,
        "url": endpoint.url,
        "enabledEvents": list(endpoint.enabled_events),
        "chargerIds": None if endpoint.charger_ids is None else list(endpoint.charger_ids),
        "description": endpoint.description,
        "headers": dict(endpoint.headers),
        "status": endpoint.status.value,
        "disabledReason": endpoint.disabled_reason,
        "previousSecretExpiresAt": (
            None
            if endpoint.previous_secret_expires is None
            else iso_utc(endpoint.previous_secret_expires)
        ),
        "createdAt": endpoint.created_at,
        "updatedAt": endpoint.updated_at,
    }
    if secret:
        body["secret"] = endpoint.secret  # shown in the create and rotate answers only
    return body


def attempt_json(row: AttemptRow) -> dict[str, Any]:
    return {
        "id": attempt_id(row.id),
        "eventId": row.event_id,
        "eventType": row.event_type,
        "attempt": row.attempt,
        "timestamp": row.started_at,
        "finishedAt": row.finished_at,
        "statusCode": row.status_code,
        "latencyMs": row.latency_ms,
        "error": row.error,
        "outcome": row.outcome,
    }


def _timestamp(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    text = field(body, name, str, required=required, nullable=not required)
    if text is None:
        return None
    try:
        return iso_utc(parse_iso(text))  # the event log's own format, to compare as text
    except ValueError:
        raise bad_request(f"{name} must be an ISO 8601 timestamp", "invalid_field") from None


@routes.post("/api/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    body = await read_json(request)
    reject_unknown(body, _CREATE_FIELDS)
    if "url" not in body or "enabledEvents" not in body:
        raise bad_request("url and enabledEvents are required", "missing_field")
    with _service_errors():
        endpoint = await _service(request).create_endpoint(body)
    return ok(endpoint_json(endpoint, secret=True), status=201)


@routes.get("/api/v1/webhooks")
@accepts(*PAGINATION)
async def list_webhooks(request: web.Request) -> web.Response:
    limit, starting_after = pagination(request)
    endpoints = _service(request).list_endpoints()
    start = 0
    if starting_after is not None:
        ids = [e.id for e in endpoints]
        if starting_after not in ids:
            raise bad_request("startingAfter names no webhook", "invalid_parameter")
        start = ids.index(starting_after) + 1
    chosen = endpoints[start : start + limit]
    return page([endpoint_json(e) for e in chosen], start + limit < len(endpoints))


@routes.get("/api/v1/webhooks/{id}")
async def get_webhook(request: web.Request) -> web.Response:
    with _service_errors():
        endpoint = _service(request).get_endpoint(request.match_info["id"])
    return ok(endpoint_json(endpoint))


@routes.patch("/api/v1/webhooks/{id}")
async def update_webhook(request: web.Request) -> web.Response:
    body = await read_json(request)
    reject_unknown(body, _PATCH_FIELDS)
    with _service_errors():
        endpoint = await _service(request).update_endpoint(request.match_info["id"], body)
    return ok(endpoint_json(endpoint))


@routes.delete("/api/v1/webhooks/{id}")
async def delete_webhook(request: web.Request) -> web.Response:
    endpoint_id = request.match_info["id"]
    with _service_errors():
        await _service(request).delete_endpoint(endpoint_id)
    return ok({"id": endpoint_id, "deleted": True})


@routes.post("/api/v1/webhooks/{id}/test")
async def test_webhook(request: web.Request) -> web.Response:
    with _service_errors():
        sent = await _service(request).send_test(request.match_info["id"])
    result = sent.result
    return ok(
        {
            "eventId": sent.event_id,
            "success": result.succeeded,
            "statusCode": result.status_code,
            "latencyMs": result.latency_ms,
            "error": result.error,
        }
    )


@routes.post("/api/v1/webhooks/{id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    body = await read_json(request)
    reject_unknown(body, ("secret",))
    with _service_errors():
        endpoint = await _service(request).rotate_secret(
            request.match_info["id"], body.get("secret")
        )
    return ok(endpoint_json(endpoint, secret=True))


# An attempt id: att_ and a number that fits the stores' 64-bit ids (a longer one must not
# reach the database: SQLite refuses to bind it, a 500).
_ATTEMPT_ID = re.compile(r"att_[0-9]{1,19}")


@routes.get("/api/v1/webhooks/{id}/deliveries")
@accepts("eventId", *PAGINATION)
async def list_deliveries(request: web.Request) -> web.Response:
    limit, starting_after = pagination(request)
    if starting_after is not None and (
        _ATTEMPT_ID.fullmatch(starting_after) is None or int(starting_after[4:]) >= 2**63
    ):
        raise bad_request("startingAfter must be an attempt id such as att_42", "invalid_parameter")
    with _service_errors():
        rows, has_more = await _service(request).attempts(
            request.match_info["id"],
            limit=limit,
            starting_after=starting_after,
            event_id=request.query.get("eventId") or None,
        )
    return page([attempt_json(r) for r in rows], has_more)


@routes.post("/api/v1/webhooks/{id}/replay")
async def replay(request: web.Request) -> web.Response:
    body = await read_json(request)
    reject_unknown(body, ("since", "until", "onlyFailed"))
    since = _timestamp(body, "since", required=True)
    until = _timestamp(body, "until", required=False)
    only_failed = bool(field(body, "onlyFailed", bool, nullable=True))
    assert since is not None
    if until is not None and until <= since:
        raise bad_request("until must be after since", "invalid_field")
    with _service_errors():
        queued = await _service(request).replay(
            request.match_info["id"], since=since, until=until, only_failed=only_failed
        )
    return ok({"queued": queued}, status=202)


@routes.post("/api/v1/events/{id}/redeliver")
async def redeliver(request: web.Request) -> web.Response:
    body = await read_json(request)
    reject_unknown(body, ("webhookId",))
    webhook_id = field(body, "webhookId", str, nullable=True)
    event_id = request.match_info["id"]
    with _service_errors():
        targets = await _service(request).redeliver(event_id, webhook_id)
    return ok({"eventId": event_id, "webhookIds": targets}, status=202)
