"""Delivery partitions and the leases on them: the pure part (no clock, no database).

Why partitions: order per (endpoint, charger) holds cluster-wide only if one node at a time
delivers a stream. Streams are grouped by charger into a fixed number of partitions (a
stable hash, the same on every node and version), and a node delivers the partitions it
holds a lease on (Kafka's consumer-group partitions, with the lease table in PostgreSQL).

A lease is valid for this node until ``valid_until`` on its own monotonic clock: the time
taken *before* the acquire or renew query was sent, plus the lease's ttl. The database sets
``expires_at = now() + ttl`` when the query runs, later, so the node's deadline is never
after the database's: once another node may take the partition, this one has stopped.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

PARTITIONS = 64  # fixed: the migration creates one lease row per partition


def partition_of(charger_id: str | None) -> int:
    """The partition of a charger's streams; events of no charger go to partition 0."""
    if not charger_id:
        return 0
    return zlib.crc32(charger_id.encode()) % PARTITIONS


class PartitionCache:
    """``partition_of`` with a memo: the fan-out asks it once per event."""

    def __init__(self) -> None:
        self._known: dict[str | None, int] = {}

    def __call__(self, charger_id: str | None) -> int:
        found = self._known.get(charger_id)
        if found is None:
            found = self._known[charger_id] = partition_of(charger_id)
            if len(self._known) > 1_000_000:  # bounded: a flood of made-up ids
                self._known.clear()
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """A partition this node has just taken (or holds from the start, on SQLite)."""

    partition: int
    token: int  # the fencing token: bumped by every take-over
    cursor: int  # the partition's durable fan-out cursor
    previous_node: str | None  # who held it before (None: nobody, or it was free)


@dataclass(slots=True)
class Lease:
    token: int
    valid_until: float | None  # monotonic seconds; None: never expires (SQLite, one node)


def target_count(live_nodes: int, partitions: int = PARTITIONS) -> int:
    """How many partitions a node should hold: an even share, rounded up."""
    return math.ceil(partitions / max(1, live_nodes))


def plan(*, held: int, target: int) -> tuple[int, int]:
    """(how many to take, how many to give back) to get from ``held`` to ``target``."""
    if held < target:
        return target - held, 0
    return 0, held - target


def post_window(lease: Lease, now: float, margin: float) -> float | None:
    """Seconds a POST may still take under this lease (it must be over ``margin`` before
    the lease runs out); None: unbounded. Zero or less: do not post."""
    if lease.valid_until is None:
        return None
    return lease.valid_until - margin - now
