"""What the OpenAPI document needs to know of a route that its router cannot tell.

The routes of csms/api/ are described in one table, ``csms.api.openapi.operations()``. A route
module may instead carry its description on the handler, as it carries its query parameters:

    @routes.get("/api/v1/things")
    @accepts(*PAGINATION)
    @documented(Op(summary="List things", data={"type": "object"}, page=True))
    async def list_things(request): ...

This module imports nothing of the API, so any route module can use it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

H = TypeVar("H", bound=Callable[..., Any])

Schema = dict[str, Any]
Parameter = tuple[Schema, str]  # a schema and what the parameter means

_ATTRIBUTE = "__openapi_operation__"


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One route's summary, body and answers.

    Added by the document: 400 (``unknown_parameter`` is possible on every route), 401 unless
    the path is public, 404 when the path has parameters, 413 when there is a body, and 500.
    """

    summary: str
    description: str = ""
    data: Schema | None = None  # the ``data`` of a success answer
    page: bool = False  # ``data`` is a page of items of ``data``
    statuses: tuple[int, ...] = (200,)  # the success statuses
    raw: Mapping[str, Schema] | None = None  # media type -> schema of an answer without envelope
    body: str | None = None  # component name of the JSON request body
    body_required: bool = False
    path: Mapping[str, Parameter] = field(default_factory=dict)
    query: Mapping[str, Parameter] = field(default_factory=dict)  # narrows the common ones
    headers: Mapping[str, Parameter] = field(default_factory=dict)  # request headers it reads
    errors: tuple[int, ...] = ()  # other error statuses
    per_action: bool = False  # one path per OCPP action for ``{action}``, each with its schema
    # OpenAPI links of a success answer: operationId -> its parameters as runtime expressions
    # (``{"id": "$response.body#/data/id"}``): what the answer lets a client call next.
    links: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def documented(op: Op) -> Callable[[H], H]:
    """Describe a route on its handler (any order with ``@routes.get`` and ``@accepts``)."""

    def mark(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, op)
        return handler

    return mark


def carried(handler: Any) -> Op | None:
    """The description a handler carries, if any."""
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, Op) else None


_NOT_AN_OPERATION = "__not_an_api_operation__"


def not_an_operation(handler: H) -> H:
    """Mark a route that serves browsers, not API clients (the dashboard's page and files):
    the document leaves it out, as it is no part of the admin API it describes."""
    setattr(handler, _NOT_AN_OPERATION, True)
    return handler


def is_an_operation(handler: Any) -> bool:
    return getattr(handler, _NOT_AN_OPERATION, False) is not True
