"""Deliveries fanned out but not written to the store yet, and how far the fan-out cursor
may be persisted because of them. Pure bookkeeping: no clock, no I/O.

A delivery whose stream flows lives only here until its first answer, when its row is
written with the outcome. The durable cursor (events up to it have every delivery they
need written) must stay below the oldest of these, so that a restart fans them out again.
Deliveries that would wait long (behind a failed head, for a paused endpoint, before a
replay) are taken out to be written at once.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

StreamKey = tuple[str, str | None]  # (endpoint id, charger id)


@dataclass(slots=True)
class Unwritten:
    """What a delivery's row needs besides its outcome."""

    endpoint_id: str
    event_pos: int
    event_id: str
    charger_id: str | None
    created_at: str
    partition: int = 0  # of its charger (``webhooks.partitions``): its cursor is that one's


class UnwrittenDeliveries:
    def __init__(self) -> None:
        self._by_id: dict[int, Unwritten] = {}
        # Per partition, a heap of (event pos, delivery id), lazy: each partition has a cursor.
        self._order: dict[int, list[tuple[int, int]]] = {}
        # Per stream, its ids in stream order; settled or taken ones leave lazily.
        self._streams: dict[StreamKey, deque[int]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, delivery_id: int) -> bool:
        return delivery_id in self._by_id

    def add(self, delivery_id: int, delivery: Unwritten) -> None:
        self._by_id[delivery_id] = delivery
        order = self._order.get(delivery.partition)
        if order is None:
            order = self._order[delivery.partition] = []
        heapq.heappush(order, (delivery.event_pos, delivery_id))
        key = (delivery.endpoint_id, delivery.charger_id)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = deque()
        stream.append(delivery_id)

    def settle(self, delivery_id: int, key: StreamKey) -> Unwritten | None:
        """The delivery answered: its row-to-be (None if it was written already)."""
        delivery = self._by_id.pop(delivery_id, None)
        stream = self._streams.get(key)
        if stream is not None:
            while stream and stream[0] not in self._by_id:
                stream.popleft()  # the head settles first: the queue stays short
            if not stream:
                del self._streams[key]
        return delivery

    def take_stream(self, key: StreamKey) -> list[tuple[int, Unwritten]]:
        """The stream's deliveries, to be written now (its head failed: they may wait long)."""
        stream = self._streams.pop(key, None)
        return self._take(list(stream)) if stream else []

    def take_endpoint(self, endpoint_id: str) -> list[tuple[int, Unwritten]]:
        """The endpoint's deliveries, to be written now (paused, disabled, or a replay)."""
        return self._take([i for i, d in self._by_id.items() if d.endpoint_id == endpoint_id])

    def drop_endpoint(self, endpoint_id: str) -> None:
        """A deleted endpoint: its deliveries are gone, rows and all."""
        for delivery_id in [i for i, d in self._by_id.items() if d.endpoint_id == endpoint_id]:
            del self._by_id[delivery_id]
        for key in [k for k in self._streams if k[0] == endpoint_id]:
            del self._streams[key]

    def drop_partition(self, partition: int) -> None:
        """A partition this node no longer holds: its deliveries are another node's now."""
        for delivery_id in [i for i, d in self._by_id.items() if d.partition == partition]:
            del self._by_id[delivery_id]
        self._order.pop(partition, None)
        for key in [k for k, ids in self._streams.items() if ids and ids[0] not in self._by_id]:
            stream = self._streams[key]
            while stream and stream[0] not in self._by_id:
                stream.popleft()
            if not stream:
                del self._streams[key]

    def cursor(self, fanned_out_to: int, partition: int | None = None) -> int:
        """How far a partition's fan-out cursor (None: the lowest of them) may be persisted,
        given events up to ``fanned_out_to`` were fanned out: just below its oldest
        unwritten delivery, if any."""
        if partition is not None:
            return self._cursor_of(partition, fanned_out_to)
        return min(
            (self._cursor_of(p, fanned_out_to) for p in list(self._order)), default=fanned_out_to
        )

    def _cursor_of(self, partition: int, fanned_out_to: int) -> int:
        order = self._order.get(partition)
        if not order:
            return fanned_out_to
        while order and order[0][1] not in self._by_id:
            heapq.heappop(order)
        if not order:
            del self._order[partition]
            return fanned_out_to
        return order[0][0] - 1

    def _take(self, delivery_ids: list[int]) -> list[tuple[int, Unwritten]]:
        taken = []
        for delivery_id in delivery_ids:
            delivery = self._by_id.pop(delivery_id, None)
            if delivery is not None:  # None: settled or taken already
                taken.append((delivery_id, delivery))
        return taken
