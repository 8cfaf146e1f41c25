"""``GET /api/v1/openapi.json`` and ``GET /api/v1/docs``: the admin API described by itself.

The document is made from the router the app serves, not written beside it: each route's
path and path parameters come from its resource, its query parameters from the handler's
``@accepts`` declaration, whether it needs the bearer token from ``PUBLIC_PATHS``, and the rest
(summary, body, answers) from the one entry per handler in :func:`operations`, or from the
``Op`` a handler carries (``csms.api.apidoc.documented``). A route with neither is listed all
the same, marked ``x-undocumented``; an entry whose path or query parameters disagree with its
route makes the document fail (``Undocumented``). tests/test_openapi.py fails on both, with
the document built from a running app.
"""

from __future__ import annotations

import copy
import importlib.metadata
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web

from csms.api import chargers, commands, events, id_tags, metrics, stream, transactions, webhooks
from csms.api.apidoc import Op, Parameter, carried, is_an_operation
from csms.api.common import PUBLIC_PATHS
from csms.api.keys import PUBLIC
from csms.api.openapi_schemas import (
    ACTIONS,
    CHARGER_ID,
    DELIVERY_ID,
    ID_TAG,
    QUERY,
    STRING,
    TRANSACTION_ID,
    components,
    or_empty,
    ref,
)
from csms.api.query import accepted
from csms.api.reference import CONTENT_SECURITY_POLICY, render
from csms.protocol.schemas import request_schema

OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/v1/docs"
# aiohttp answers HEAD beside each GET with the GET's handler; it is documented with the GET.
_IMPLIED_METHODS = frozenset({"HEAD", "OPTIONS"})
_PATH_PARAMETER = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")
_TAGS = {
    "app": "health",
    "chargers": "chargers",
    "id_tags": "id tags",
    "transactions": "transactions",
    "events": "events",
    "stream": "events",
    "commands": "commands",
    "webhooks": "webhooks",
    "openapi": "reference",
    "metrics": "metrics",
}

routes = web.RouteTableDef()


class Undocumented(LookupError):
    """A description disagrees with its route (path or query parameters), or a link names an
    operation or parameter the document does not have."""


def _links(expression: str, *operation_ids: str, name: str = "id") -> dict[str, dict[str, str]]:
    return {operation_id: {name: expression} for operation_id in operation_ids}


_DATA_ID = "$response.body#/data/id"
_CHARGER: Parameter = (CHARGER_ID, "the charger id")
_WEBHOOK: Parameter = (STRING, "the webhook id (wh_...)")
_EVENT: Parameter = (STRING, "the event id (evt_...)")
_COMMAND: Parameter = (STRING, "the command id (cmd_...)")


def operations() -> dict[Callable[..., Any], Op]:
    """One entry per route handler: the single place its answers and body are declared."""
    from csms.api import app  # it imports this module for ``routes``

    return {
        app.health: Op(
            summary="Liveness and a storage round trip",
            description="No authentication, for load balancers and monitors.",
            data=ref("Health"),
            errors=(503,),
        ),
        openapi_document: Op(
            summary="This OpenAPI 3.1 document",
            raw={"application/json": {"type": "object"}},
        ),
        reference_page: Op(
            summary="This document as an HTML reference page",
            raw={"text/html": {"type": "string"}},
        ),
        metrics.metrics: Op(
            summary="Prometheus metrics",
            description="The Prometheus text exposition format (version 0.0.4) of the"
            " chargers connected, OCPP calls, events stored, webhook deliveries and queues,"
            " and commands; no label carries a charger id. Needs the bearer token unless"
            " [metrics] public = true (then it is public: no security).",
            raw={"text/plain": {"type": "string"}},
        ),
        chargers.create_charger: Op(
            summary="Register a charger",
            description="It can connect once registered (unless ocpp.allow_unknown_chargers)."
            " Without a password, security profiles 1 (the default) and 2 get a 24-character"
            " AuthorizationKey, returned as password in this answer only; securityProfile 0"
            " connects without authentication, 3 with a client certificate.",
            data=ref("ChargerWithKey"),
            statuses=(201,),
            body="ChargerCreate",
            body_required=True,
            errors=(409,),
            links=_links(
                _DATA_ID,
                "getCharger",
                "updateCharger",
                "deleteCharger",
                *(f"send{action}" for action in ACTIONS),
            ),
        ),
        chargers.list_chargers: Op(
            summary="List chargers, by id",
            data=ref("Charger"),
            page=True,
            query={"startingAfter": (STRING, "a charger id: the page starts after it")},
        ),
        chargers.get_charger: Op(
            summary="One charger, with its live state", data=ref("Charger"), path={"id": _CHARGER}
        ),
        chargers.update_charger: Op(
            summary="Change a registration",
            description="A new password or securityProfile applies to the next connection;"
            " a new registrationPolicy to the next BootNotification. A change to profile 1 or"
            " 2 without a stored or given password generates one, returned once.",
            data=ref("ChargerWithKey"),
            body="ChargerUpdate",
            path={"id": _CHARGER},
        ),
        chargers.delete_charger: Op(
            summary="Close its connection and forget the registration",
            description="Its events, transactions and commands stay.",
            data=ref("ChargerDeleted"),
            path={"id": _CHARGER},
        ),
        id_tags.create_id_tag: Op(
            summary="Add an id tag to the local authorization list",
            data=ref("IdTag"),
            statuses=(201,),
            body="IdTagCreate",
            body_required=True,
            errors=(409,),
            links=_links(
                "$response.body#/data/idTag",
                "getIdTag",
                "updateIdTag",
                "deleteIdTag",
                name="idTag",
            ),
        ),
        id_tags.list_id_tags: Op(
            summary="List id tags, in order",
            data=ref("IdTag"),
            page=True,
            query={"startingAfter": (STRING, "an id tag: the page starts after it")},
        ),
        id_tags.get_id_tag: Op(
            summary="One id tag",
            data=ref("IdTag"),
            path={"idTag": (ID_TAG, "the id tag, in any case")},
        ),
        id_tags.update_id_tag: Op(
            summary="Change an id tag",
            data=ref("IdTag"),
            body="IdTagUpdate",
            path={"idTag": (ID_TAG, "the id tag, in any case")},
        ),
        id_tags.delete_id_tag: Op(
            summary="Remove an id tag",
            data=ref("IdTagDeleted"),
            path={"idTag": (ID_TAG, "the id tag, in any case")},
        ),
        transactions.list_transactions: Op(
            summary="List transactions, newest first",
            data=ref("Transaction"),
            page=True,
            query={
                "startingAfter": (
                    or_empty(TRANSACTION_ID),
                    "a transaction id: the page starts after it; empty: the first page",
                )
            },
        ),
        transactions.get_transaction: Op(
            summary="One transaction, with its meter values",
            data=ref("TransactionWithMeterValues"),
            path={"id": (TRANSACTION_ID, "the transaction id")},
        ),
        events.list_events: Op(
            summary="List the event log",
            description="Newest first, or oldest first with order=asc. Events are kept for"
            " webhooks.retention.",
            data=ref("Event"),
            page=True,
            query={"startingAfter": (STRING, "an event id that exists")},
        ),
        events.get_event: Op(summary="One event", data=ref("Event"), path={"id": _EVENT}),
        stream.stream_events: Op(
            summary="The event log as Server-Sent Events, live and resumable",
            description="One message per stored event (id: the event id, event: its type,"
            " data: its envelope), in the order of the log, as soon as it is stored; keep-alive"
            " comments after 15 s without one; event: stream.closed when the server ends it."
            " Without type, or with type=*, every type but ocpp.message, which is sent only"
            " when named exactly.",
            raw={"text/event-stream": {"type": "string"}},
            query={
                "since": (
                    STRING,
                    "an event id: start after that event; without it, with the events stored"
                    " from now on",
                )
            },
            headers={
                "Last-Event-ID": (
                    STRING,
                    "the id of the last event received: as since, and it wins over since",
                )
            },
        ),
        events.list_event_types: Op(
            summary="The event catalog",
            description="Without limit, the whole catalog in one page.",
            data=ref("EventType"),
            page=True,
            query={
                "limit": (
                    {"type": "integer", "minimum": 1, "maximum": 100},
                    "how many items, 1 to 100; without it, all of them",
                ),
                "startingAfter": (STRING, "an event type name that exists"),
            },
        ),
        webhooks.redeliver: Op(
            summary="Queue one event again for webhook delivery",
            description="To one endpoint (webhookId), or to every active endpoint subscribed"
            " to it. A body-less POST is read as {}.",
            data=ref("Redelivered"),
            statuses=(202,),
            body="Redeliver",
            path={"id": _EVENT},
        ),
        commands.send_command: Op(
            summary="Send",
            description="Checked against the OCPP 1.6 schema before it is stored or sent."
            " Without wait, or when the outcome is not there within wait seconds: 202 with the"
            " command as stored; with the outcome: 200. 409 when the charger is not connected"
            " (without queue=true). Any other action name answers 404 unknown_action.",
            data=ref("Command"),
            statuses=(200, 202),
            path={"id": _CHARGER},
            errors=(409,),
            per_action=True,
            links=_links(_DATA_ID, "getCommand", "cancelCommand"),
        ),
        commands.list_commands: Op(
            summary="List commands, newest first",
            data=ref("Command"),
            page=True,
            query={"startingAfter": (STRING, "a command id that exists")},
        ),
        commands.get_command: Op(summary="One command", data=ref("Command"), path={"id": _COMMAND}),
        commands.cancel_command: Op(
            summary="Cancel a command not yet sent",
            description="It ends failed with error code cancelled; 409 once it was sent.",
            data=ref("Command"),
            path={"id": _COMMAND},
            errors=(409,),
        ),
        webhooks.create_webhook: Op(
            summary="Add a webhook endpoint",
            description="The answer holds the signing secret, shown only now.",
            data=ref("WebhookWithSecret"),
            statuses=(201,),
            body="WebhookCreate",
            body_required=True,
            links=_links(
                _DATA_ID,
                "getWebhook",
                "updateWebhook",
                "deleteWebhook",
                "testWebhook",
                "rotateSecret",
                "listDeliveries",
                "replay",
            ),
        ),
        webhooks.list_webhooks: Op(
            summary="List webhook endpoints, in the order they were created",
            data=ref("Webhook"),
            page=True,
            query={"startingAfter": (STRING, "a webhook id that exists")},
        ),
        webhooks.get_webhook: Op(
            summary="One webhook endpoint", data=ref("Webhook"), path={"id": _WEBHOOK}
        ),
        webhooks.update_webhook: Op(
            summary="Change a webhook endpoint; status pauses and resumes it",
            data=ref("Webhook"),
            body="WebhookUpdate",
            path={"id": _WEBHOOK},
        ),
        webhooks.delete_webhook: Op(
            summary="Delete a webhook endpoint and what was queued for it",
            data=ref("WebhookDeleted"),
            path={"id": _WEBHOOK},
        ),
        webhooks.test_webhook: Op(
            summary="Post a webhook.test event now and answer with the outcome",
            data=ref("WebhookTestResult"),
            path={"id": _WEBHOOK},
        ),
        webhooks.rotate_secret: Op(
            summary="Give the endpoint a new signing secret",
            description="The previous one keeps signing beside it for 24 hours. A body-less"
            " POST is read as {}.",
            data=ref("WebhookWithSecret"),
            body="RotateSecret",
            path={"id": _WEBHOOK},
        ),
        webhooks.list_deliveries: Op(
            summary="The delivery attempts to this endpoint, newest first",
            data=ref("Delivery"),
            page=True,
            path={"id": _WEBHOOK},
            query={
                "startingAfter": (
                    or_empty(DELIVERY_ID),
                    "an attempt id: the page starts after it; empty: the first page",
                )
            },
        ),
        webhooks.replay: Op(
            summary="Queue past events again for this endpoint",
            data=ref("Replayed"),
            statuses=(202,),
            body="Replay",
            body_required=True,
            path={"id": _WEBHOOK},
        ),
    }


_ERRORS: dict[int, str] = {
    400: "invalid_request, missing_field, unknown_field, invalid_field, invalid_url,"
    " invalid_parameter, unknown_parameter or invalid_payload; the message names the field",
    401: "unauthorized: a missing or unknown bearer token",
    404: "not_found: no such item",
    409: "conflict: it exists already, or its state does not allow this",
    413: "payload_too_large: the body is larger than 1 MiB",
    500: "internal_error: a bug on our side; the server log has the details",
    503: "storage_unavailable: the database did not answer",
}


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route ``app`` serves."""
    declared = operations()
    public = app.get(PUBLIC, PUBLIC_PATHS)  # what the auth middleware lets through
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        if (
            route.method in _IMPLIED_METHODS
            or route.resource is None
            or not is_an_operation(route.handler)
        ):
            continue
        template = route.resource.canonical
        op = declared.get(route.handler) or carried(route.handler)
        if op is None:
            found = [_undocumented(route.method, template, route.handler, public)]
        else:
            found = _operations_of(route.method, template, route.handler, op, public)
        for path, operation in found:
            paths.setdefault(path, {})[route.method.lower()] = operation
    _check_links(paths)
    out = {
        "openapi": "3.1.0",
        "info": {
            "title": "chargehook admin API",
            "version": _version(),
            "description": "The admin API of the chargehook OCPP 1.6J central system. Every"
            ' success is {"data": ...}; lists answer one page, {"data": {"items": [...],'
            ' "hasMore": bool}}; every error is {"error": {"code", "message"}} with a 4xx or'
            " 5xx status. docs/api.md in the repository tells more.",
        },
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an admin API token: [api] tokens in the configuration, or"
                    " one made by csms token create",
                }
            },
            "schemas": components(),
            "responses": {
                str(status): {
                    "description": text,
                    "content": {"application/json": {"schema": ref("Error")}},
                }
                for status, text in _ERRORS.items()
            },
        },
    }
    # Operations share schema constants: a caller changing its copy must not change them.
    return copy.deepcopy(out)


def _check_links(paths: dict[str, dict[str, Any]]) -> None:
    """Each link names an operation of the document, and only path parameters it has."""
    targets = {
        operation["operationId"]: {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        for item in paths.values()
        for operation in item.values()
    }
    for item in paths.values():
        for operation in item.values():
            for response in operation["responses"].values():
                for link in response.get("links", {}).values():
                    names = targets.get(link["operationId"])
                    if names is None or not set(link["parameters"]) <= names:
                        raise Undocumented(
                            f"{operation['operationId']}: a link to {link['operationId']}"
                            f" with {sorted(link['parameters'])}, which it does not take"
                        )


def _operations_of(
    method: str, template: str, handler: Callable[..., Any], op: Op, public: frozenset[str]
) -> list[tuple[str, dict[str, Any]]]:
    names = _PATH_PARAMETER.findall(template)
    expanded = {"action"} if op.per_action else set()
    if set(names) - expanded != set(op.path) or not expanded <= set(names):
        raise Undocumented(
            f"{method} {template}: path parameters {sorted(names)}, declared {sorted(op.path)}"
        )
    path = _plain(template)
    parameters = [
        _parameter(name, "path", op.path[name], required=True)
        for name in names
        if name not in expanded
    ]
    parameters += _query_parameters(method, template, handler, op)
    parameters += [_parameter(name, "header", found) for name, found in op.headers.items()]
    base = _base(path, handler, op.summary, parameters, public)
    if op.description:
        base["description"] = op.description
    errors = {400, 500, *op.errors}
    if path not in public:
        errors.add(401)
    if names:
        errors.add(404)
    if not op.per_action:
        if op.body is not None:
            base["requestBody"] = _body(op.body, op.body_required)
            errors.add(413)
        return [(path, {**base, "responses": _responses(op, errors)})]
    out = []
    for action in ACTIONS:
        name = f"{action}Request"
        operation = {
            **base,
            "summary": f"{op.summary} {action}",
            "operationId": f"send{action}",
            "requestBody": _body(name, bool(request_schema(action).get("required"))),
            "responses": _responses(op, errors | {413}),
        }
        out.append((path.replace("{action}", action), operation))
    return out


def _undocumented(
    method: str, template: str, handler: Callable[..., Any], public: frozenset[str]
) -> tuple[str, Any]:
    """A route nobody described: listed with what the router and ``@accepts`` tell."""
    path = _plain(template)
    parameters = [
        _parameter(name, "path", (STRING, ""), required=True)
        for name in _PATH_PARAMETER.findall(template)
    ]
    parameters += [
        _parameter(name, "query", QUERY.get(name, (STRING, "")))
        for name in sorted(accepted(handler), key=_query_order)
    ]
    operation = _base(path, handler, f"{method} {path} (undocumented)", parameters, public)
    operation["x-undocumented"] = True
    operation["responses"] = {"default": {"description": "not documented"}}
    return path, operation


def _base(
    path: str,
    handler: Callable[..., Any],
    summary: str,
    parameters: list[dict[str, Any]],
    public: frozenset[str],
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tags": [_TAGS.get(handler.__module__.rsplit(".", 1)[-1], handler.__module__)],
        "summary": summary,
        "operationId": _camel(handler.__name__),
        "parameters": parameters,
    }
    if path in public:
        base["security"] = []
    return base


def _plain(template: str) -> str:
    """``/x/{id:[^/]+}`` -> ``/x/{id}``: a route's own pattern is no part of its path."""
    return _PATH_PARAMETER.sub(lambda m: "{" + m.group(1) + "}", template)


def _parameter(
    name: str, where: str, found: Parameter, *, required: bool = False
) -> dict[str, Any]:
    schema, text = found
    parameter: dict[str, Any] = {
        "name": name,
        "in": where,
        "required": required,
        "schema": schema,
        "description": text,
    }
    if where == "query" and schema.get("type") == "array":
        parameter |= {"style": "form", "explode": True}
    return parameter


def _query_parameters(
    method: str, template: str, handler: Callable[..., Any], op: Op
) -> list[dict[str, Any]]:
    """From the handler's ``@accepts``: the query check and the document read one list."""
    names = accepted(handler)
    if not set(op.query) <= names:
        raise Undocumented(f"{method} {template}: query {sorted(op.query)} not all accepted")
    out = []
    for name in sorted(names, key=_query_order):
        found = op.query.get(name) or QUERY.get(name)
        if found is None:
            raise Undocumented(f"{method} {template}: no schema for query parameter {name}")
        out.append(_parameter(name, "query", found))
    return out


def _query_order(name: str) -> tuple[int, str]:
    return (name in ("limit", "startingAfter"), name)


def _body(name: str, required: bool) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": ref(name)}},
    }


def _responses(op: Op, errors: set[int]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in op.statuses:
        if op.raw is not None:
            content = {media: {"schema": schema} for media, schema in op.raw.items()}
        else:
            data = op.data or {}
            if op.page:
                data = {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": data},
                        "hasMore": {"type": "boolean"},
                    },
                    "required": ["items", "hasMore"],
                    "additionalProperties": False,
                }
            envelope = {
                "type": "object",
                "properties": {"data": data},
                "required": ["data"],
                "additionalProperties": False,
            }
            content = {"application/json": {"schema": envelope}}
        responses[str(status)] = {"description": HTTPStatus(status).phrase, "content": content}
        if op.links:
            responses[str(status)]["links"] = {
                target: {"operationId": target, "parameters": dict(parameters)}
                for target, parameters in op.links.items()
            }
    for status in sorted(errors):
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    return responses


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _version() -> str:
    try:
        return importlib.metadata.version("chargehook")
    except importlib.metadata.PackageNotFoundError:
        return "0"


@routes.get(OPENAPI_PATH)
async def openapi_document(request: web.Request) -> web.Response:
    """Public, like health: a client generator or a person needs it before any token."""
    return web.json_response(document(request.app))


@routes.get(DOCS_PATH)
async def reference_page(request: web.Request) -> web.Response:
    """The document as plain HTML from the server itself: no script, no CDN, no style."""
    return web.Response(
        text=render(document(request.app)),
        content_type="text/html",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
