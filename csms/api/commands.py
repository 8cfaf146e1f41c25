"""Commands: ``POST /api/v1/chargers/{id}/commands/{Action}`` sends one; ``/api/v1/commands``
lists, reads and cancels them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from csms.api.common import (
    ApiError,
    bad_request,
    conflict,
    not_found,
    ok,
    page,
    pagination,
    query_bool,
    read_json,
)
from csms.api.keys import COMMANDS, STORE
from csms.api.query import PAGINATION, accepts
from csms.commands import CommandRefused, UnknownCommand
from csms.protocol.commands import CommandStatus
from csms.protocol.schemas import CENTRAL_SYSTEM_ACTIONS, validate_request
from storage.records import Command

routes = web.RouteTableDef()

MAX_WAIT_S = 120.0
STATUSES = (
    CommandStatus.REQUESTED,
    CommandStatus.ACCEPTED,
    CommandStatus.REJECTED,
    CommandStatus.FAILED,
)


def command_view(command: Command) -> dict[str, Any]:
    return {
        "id": command.id,
        "chargerId": command.charger_id,
        "action": command.action,
        "status": command.status,
        "request": command.request,
        "response": command.response,
        "error": command.error,
        "queued": command.deferred,
        "createdAt": command.created_at,
        "sentAt": command.sent_at,
        "completedAt": command.completed_at,
    }


def _wait_seconds(request: web.Request) -> float | None:
    raw = request.query.get("wait")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT_S:
        raise bad_request(
            f"wait must be a number of seconds from 0 to {MAX_WAIT_S:g}", "invalid_parameter"
        )
    return seconds


@routes.post("/api/v1/chargers/{id:[^/]+}/commands/{action}")
@accepts("wait", "queue")
async def send_command(request: web.Request) -> web.Response:
    charger_id = request.match_info["id"]
    action = request.match_info["action"]
    if action not in CENTRAL_SYSTEM_ACTIONS:
        raise ApiError(
            404,
            "unknown_action",
            f"{action} is not a CSMS-initiated OCPP 1.6 action; one of: "
            + ", ".join(sorted(CENTRAL_SYSTEM_ACTIONS)),
        )
    wait = _wait_seconds(request)
    queue = bool(query_bool(request, "queue"))
    payload = await read_json(request)
    violation = validate_request(action, payload)
    if violation is not None:
        field = violation.field or "body"
        raise bad_request(f"{field}: {violation.description}", "invalid_payload")
    if await request.app[STORE].get_registration(charger_id) is None:
        raise not_found(f"charger {charger_id}")
    dispatcher = request.app[COMMANDS]
    try:
        command = await dispatcher.submit(charger_id, action, payload, queue=queue)
    except CommandRefused as exc:
        raise conflict(str(exc)) from None
    if wait:
        finished = await dispatcher.wait(command.id, wait)
        if finished is not None:
            return ok(command_view(finished))
    return ok(command_view(command), status=202)


def _statuses(request: web.Request) -> tuple[str, ...]:
    """``status`` filters, repeated or comma-separated; each one of STATUSES."""
    statuses = tuple(
        s.strip() for raw in request.query.getall("status", []) for s in raw.split(",") if s.strip()
    )
    for status in statuses:
        if status not in STATUSES:
            raise bad_request(
                f"status must be one of {', '.join(STATUSES)} (not {status})", "invalid_parameter"
            )
    return tuple(dict.fromkeys(statuses))


@routes.get("/api/v1/commands")
@accepts("chargerId", "status", "queued", *PAGINATION)
async def list_commands(request: web.Request) -> web.Response:
    """Newest first; ``queued`` filters on the view's ``queued`` (sent with ``?queue=true``)."""
    limit, starting_after = pagination(request)
    statuses = _statuses(request)
    try:
        result = await request.app[STORE].list_commands(
            charger_id=request.query.get("chargerId") or None,
            statuses=statuses,
            deferred=query_bool(request, "queued"),
            limit=limit,
            starting_after=starting_after,
        )
    except LookupError:
        raise bad_request("startingAfter names no command", "invalid_parameter") from None
    return page((command_view(c) for c in result.items), result.has_more)


@routes.get("/api/v1/commands/{id}")
async def get_command(request: web.Request) -> web.Response:
    command = await request.app[STORE].get_command(request.match_info["id"])
    if command is None:
        raise not_found(f"command {request.match_info['id']}")
    return ok(command_view(command))


@routes.delete("/api/v1/commands/{id}")
async def cancel_command(request: web.Request) -> web.Response:
    """Cancel a command not yet sent (it fails with error ``cancelled``); 409 once sent."""
    command_id = request.match_info["id"]
    try:
        command = await request.app[COMMANDS].cancel(command_id)
    except UnknownCommand:
        raise not_found(f"command {command_id}") from None
    except CommandRefused as exc:
        raise conflict(str(exc)) from None
    return ok(command_view(command))
