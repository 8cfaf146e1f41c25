"""The emitter's own settings; the CSMS builds them from its ``[webhooks]`` section."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


def default_node_id() -> str:
    return socket.gethostname()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryConfig:
    allow_private_targets: bool = False
    timeout: float = 5.0  # seconds per attempt
    retry_schedule: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800)
    disable_after: float = 86400.0
    retention: float = 7 * 86400.0
    max_in_flight: int = 256
    # Paging: pending deliveries kept in memory over all streams (beyond a few per stream),
    # and per stream; the rest wait in the store and are read back in windows.
    pending_in_memory: int = 100_000
    stream_window: int = 256
    secret_key_file: str | None = None  # None: beside the database, "<db>.webhook-key"
    rotation_overlap: float = 86400.0  # both secrets sign this long after a rotation
    prune_interval: float = 600.0
    retry_after_cap: float = 3600.0
    # The cluster (PostgreSQL): this node's id, and how long a delivery lease lasts without
    # renewal (a dead node's streams continue elsewhere within it). SQLite has one node.
    node_id: str = field(default_factory=default_node_id)
    lease_ttl: float = 10.0
