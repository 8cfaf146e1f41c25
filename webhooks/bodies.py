"""The bodies to post: envelopes built once per event and kept for dispatch, oldest out
first; those of events that left the cache (a large backlog) are read back from the log."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from storage import webhook_tables as tables
from storage.records import Event
from storage.store import Store
from webhooks.envelope import envelope_body, envelope_body_of_stored

Body = tuple[str, str, bytes]  # (event id, event type, the exact bytes posted and signed)


class BodyCache:
    def __init__(self, store: Store, capacity: int) -> None:
        self._store = store
        self._capacity = capacity
        # An OrderedDict: evicting a plain dict's first key walks over the slots of every
        # key deleted before it (O(n) per eviction).
        self._bodies: OrderedDict[int, Body] = OrderedDict()

    def get(self, pos: int) -> Body | None:
        return self._bodies.get(pos)

    def put(self, pos: int, event: Event) -> Body:
        return self._keep(pos, (event.id, event.type, envelope_body(event)))

    async def fetch(self, positions: Iterable[int]) -> dict[int, Body]:
        """pos -> body, from the cache or the store; an event gone from the store is absent.
        The answer is built as it is read: caching what the store gave may evict other
        entries of this very request, which must not then look like events gone."""
        found: dict[int, Body] = {}
        missing: list[int] = []
        for pos in positions:
            cached = self._bodies.get(pos)
            if cached is None:
                missing.append(pos)
            else:
                found[pos] = cached
        for stored in await tables.stored_events_at(self._store, missing):
            body = envelope_body_of_stored(
                event_id=stored.id,
                event_type=stored.type,
                timestamp=stored.timestamp,
                charger_id=stored.charger_id,
                sequence=stored.sequence,
                data_json=stored.data_json,
            )
            found[stored.pos] = self._keep(stored.pos, (stored.id, stored.type, body))
        return found

    def _keep(self, pos: int, body: Body) -> Body:
        self._bodies[pos] = body
        if len(self._bodies) > self._capacity:
            self._bodies.popitem(last=False)
        return body
