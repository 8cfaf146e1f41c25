"""Which query parameters each admin API route takes (DESIGN 6: an unknown one gets 400).

A route declares its parameters with ``@accepts(...)``; ``query_middleware`` refuses any
other, naming it, so that a misspelt filter (``?charger=CP-1``) fails loudly instead of
silently matching everything. A route that declares nothing takes nothing. The declaration
sits on the handler itself, so the check (and anything that documents the routes) cannot
drift from the code that reads the parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from csms.api.common import ApiError, Handler

H = TypeVar("H", bound=Callable[..., Any])

PAGINATION = ("limit", "startingAfter")
_ATTRIBUTE = "__query_parameters__"


def accepts(*names: str) -> Callable[[H], H]:
    """Declare the query parameters a route handler reads (any order with ``@routes.get``)."""
    declared = frozenset(names)

    def mark(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, declared)
        return handler

    return mark


def accepted(handler: Any) -> frozenset[str]:
    """The query parameters a handler declared; none when it declared nothing."""
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, frozenset) else frozenset()


def unknown_parameter(name: str, allowed: frozenset[str]) -> ApiError:
    expected = (
        f"expected one of: {', '.join(sorted(allowed))}" if allowed else "this route takes none"
    )
    return ApiError(400, "unknown_parameter", f"unknown query parameter: {name} ({expected})")


@web.middleware
async def query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for the first query parameter the matched route did not declare. Requests that
    match no route keep their 404/405."""
    match = request.match_info
    if match.http_exception is None:
        allowed = accepted(match.handler)
        for name in request.query:
            if name not in allowed:
                raise unknown_parameter(name, allowed)
    return await handler(request)
