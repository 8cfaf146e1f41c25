"""What every admin API route shares: the error shape, bearer auth, JSON bodies, pagination.

Errors are always ``{"error": {"code": "...", "message": "..."}}`` with a 4xx/5xx status
(DESIGN section 6); lists answer ``{"data": {"items": [...], "hasMore": bool}}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from storage.store import StoreUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No bearer token: monitors, and the API's own description (csms/api/openapi.py).
PUBLIC_PATHS = frozenset({"/api/v1/health", "/api/v1/openapi.json", "/api/v1/docs"})
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


class ApiError(Exception):
    """An error answer: HTTP status, a stable machine code and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str, code: str = "invalid_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response({"data": data}, status=status, dumps=_dumps)


def page(items: Iterable[Any], has_more: bool) -> web.Response:
    return ok({"items": list(items), "hasMore": has_more})


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the documented error shape; never leak a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except StoreUnavailable as exc:
        # An outage, not a bug: say so, and that the same request may be sent again.
        log.warning("%s %s: the store is unavailable: %s", request.method, request.path, exc)
        return error_response(
            503, "storage_unavailable", "the database is unavailable; try again shortly"
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the server log")


def auth_middleware(
    accepts: Callable[[str], Awaitable[bool]], public: frozenset[str] = PUBLIC_PATHS
) -> Any:
    """Require ``Authorization: Bearer <token>`` on every path but the public ones."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "missing bearer token")
        if not await accepts(token.strip()):
            raise ApiError(401, "unauthorized", "invalid bearer token")
        return await handler(request)

    return middleware


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    return body


def reject_unknown(body: Mapping[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"unknown field: {unknown[0]}", "unknown_field")


def field(
    body: Mapping[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    *,
    required: bool = False,
    nullable: bool = False,
) -> Any:
    """One typed field of a JSON body, or a 400 naming it."""
    if name not in body:
        if required:
            raise bad_request(f"{name} is required", "missing_field")
        return None
    value = body[name]
    if value is None and nullable:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise bad_request(f"{name} must be of type {names}", "invalid_field")
    return value


def pagination(request: web.Request) -> tuple[int, str | None]:
    """``limit`` (1-100, default 20) and ``startingAfter`` from the query string."""
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request("limit must be an integer from 1 to 100", "invalid_parameter") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request("limit must be an integer from 1 to 100", "invalid_parameter")
    return limit, request.query.get("startingAfter") or None


def query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise bad_request(f"{name} must be true or false", "invalid_parameter")
