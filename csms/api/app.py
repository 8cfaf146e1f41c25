"""The admin API application factory (aiohttp)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from csms.api import (
    chargers,
    commands,
    events,
    id_tags,
    metrics,
    openapi,
    stream,
    transactions,
)
from csms.api.common import PUBLIC_PATHS, auth_middleware, error_middleware, ok
from csms.api.keys import COMMANDS, EVENT_TYPES, FORGET_PASSWORD, HUB, PUBLIC, STORE
from csms.api.query import query_middleware
from csms.commands import CommandDispatcher
from csms.dashboard import PUBLIC_PATHS as DASHBOARD_PATHS
from csms.dashboard import routes as dashboard_routes
from csms.hub import ChargerHub
from csms.metrics import Metrics
from csms.protocol.timefmt import format_timestamp

MAX_BODY_BYTES = 1 << 20

health_routes = web.RouteTableDef()


@health_routes.get("/api/v1/health")
async def health(request: web.Request) -> web.Response:
    """Liveness and a storage round trip; no auth, so load balancers can call it."""
    try:
        await request.app[STORE].ping()
    except Exception as exc:
        return web.json_response(
            {"error": {"code": "storage_unavailable", "message": str(exc)}}, status=503
        )
    hub = request.app[HUB]
    try:
        nodes = await hub.cluster.live_nodes()
    except Exception as exc:
        return web.json_response(
            {"error": {"code": "storage_unavailable", "message": str(exc)}}, status=503
        )
    return ok(
        {
            "status": "ok",
            "storage": "ok",
            "connectedChargers": hub.connected_count(),
            "node": hub.cluster.node_id,
            "nodes": [
                {
                    "id": n.node_id,
                    "startedAt": format_timestamp(n.started_at),
                    "heartbeatAt": format_timestamp(n.heartbeat_at),
                    "apiUrl": n.api_url,
                    "ocppUrl": n.ocpp_url,
                    "version": n.version,
                }
                for n in nodes
            ],
        }
    )


def create_app(
    *,
    hub: ChargerHub,
    dispatcher: CommandDispatcher,
    token_check: Callable[[str], Awaitable[bool]],
    event_types: Callable[[], list[dict[str, Any]]],
    forget_password: Callable[[str], None],
    extra_routes: Iterable[web.RouteTableDef] = (),
    extra_keys: dict[web.AppKey[Any], Any] | None = None,
    public_paths: Iterable[str] = (),
    metrics_registry: Metrics | None = None,
) -> web.Application:
    """``public_paths``: more paths answered without a token (``/metrics`` when public)."""
    public = PUBLIC_PATHS | DASHBOARD_PATHS | frozenset(public_paths)
    app = web.Application(
        # The query check after auth: an unauthenticated caller learns nothing of the routes.
        middlewares=[error_middleware, auth_middleware(token_check, public), query_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[PUBLIC] = public
    app[metrics.METRICS] = metrics_registry if metrics_registry is not None else Metrics()
    app[HUB] = hub
    app[STORE] = hub.store
    app[COMMANDS] = dispatcher
    app[EVENT_TYPES] = event_types
    app[FORGET_PASSWORD] = forget_password
    for key, value in (extra_keys or {}).items():
        app[key] = value
    stream.install(app, hub.store)  # before events.routes: /events/stream is no event id
    for table in (
        health_routes,
        chargers.routes,
        id_tags.routes,
        transactions.routes,
        events.routes,
        commands.routes,
        openapi.routes,
        metrics.routes,
        dashboard_routes,  # the web dashboard at /, for browsers
        *extra_routes,
    ):
        app.add_routes(table)
    return app
