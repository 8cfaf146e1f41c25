"""``GET /metrics``: the Prometheus text exposition of this CSMS (``csms.metrics``).

On the admin API port, under the bearer token like every route, unless ``[metrics] public``
(then in the app's public paths). The webhook queues are read at each scrape, on the
delivery engine's own loop, so the figures are current and read safely.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from csms.metrics import CONTENT_TYPE, Metrics, PendingSnapshot

METRICS_PATH = "/metrics"
METRICS = web.AppKey("metrics", Metrics)
# Asks the webhook engine for its queues (None: no webhook service in this app).
PENDING_SOURCE = web.AppKey("pending_source", Callable[[], Awaitable[PendingSnapshot]])

routes = web.RouteTableDef()


@routes.get(METRICS_PATH)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus scrapes it; the path is the one Prometheus asks by default."""
    found = request.app[METRICS]
    source = request.app.get(PENDING_SOURCE)
    if source is not None:
        found.set_pending(await source(), time.time())
    return web.Response(body=found.exposition(), headers={"Content-Type": CONTENT_TYPE})
