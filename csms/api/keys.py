"""Typed application keys for the services the admin API routes share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from csms.commands import CommandDispatcher
from csms.hub import ChargerHub
from storage.store import Store

STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", ChargerHub)
# Lists the event catalog as JSON-ready dicts (csms types plus the emitter's own).
EVENT_TYPES = web.AppKey("event_types", Callable[[], list[dict[str, Any]]])
# Called when a charger's password changes, so cached verifications are dropped.
FORGET_PASSWORD = web.AppKey("forget_password", Callable[[str], None])
COMMANDS = web.AppKey("commands", CommandDispatcher)
# The paths answered without a bearer token: PUBLIC_PATHS and those the settings add
# (/metrics with [metrics] public); the OpenAPI document reads the same set.
PUBLIC = web.AppKey("public_paths", frozenset)
