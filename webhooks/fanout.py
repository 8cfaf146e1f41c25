"""Fan-out: events -> deliveries, one per (subscribed active endpoint, event), for the
partitions this node holds.

The store's commit listener hands over each commit's events with their ``pos``; they are
fanned out from memory, without reading the log back. Only a gap reads the log, from the
last pos fanned out: events committed elsewhere (another node: found by polling the log's
end), a start, an endpoint becoming active, a failed read. A partition taken over has its
events between its durable cursor and the fan-out position read again (``catch_up``),
skipping the (endpoint, event) pairs that have a row already (``remember``).

A delivery goes into memory (the ledger's) while its stream flows; behind a head that
failed (the scheduler knows) it goes to the journal at once (written with its next flush,
``webhooks/journal.py``), as it may wait for hours; and so it does when its stream is
spilled (the scheduler keeps no more of it in memory: paging), where it waits in the store
only until its window is read (which settles the journal first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from storage import webhook_tables as tables
from storage.records import Event
from storage.store import Store, StoreUnavailable
from webhooks.bodies import BodyCache
from webhooks.catalog import WEBHOOK_TEST
from webhooks.journal import Write
from webhooks.ledger import Ledger
from webhooks.registry import Registry
from webhooks.scheduler import Scheduler
from webhooks.timefmt import iso_utc

log = logging.getLogger(__name__)

FANOUT_BATCH = 2000
FANOUT_RETRY_FIRST = 0.25  # seconds before the log is read again after a failed read; doubling
FANOUT_RETRY_MAX = 5.0
POLL_LOG = 0.2  # clustered: seconds between looks at the log's end for other nodes' events


class FanOut:
    def __init__(
        self,
        *,
        store: Store,
        ledger: Ledger,
        scheduler: Scheduler,
        registry: Registry,
        bodies: BodyCache,
        clock: Callable[[], float],
        wake_dispatch: Callable[[], None],
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._scheduler = scheduler
        self._registry = registry
        self._bodies = bodies
        self._clock = clock
        self._wake_dispatch = wake_dispatch
        self._notified: deque[tuple[Sequence[Event], int]] = deque()  # (events, first pos)
        self._from_store = False  # the next pass reads the log (start, gap, failure)
        self._known: set[tuple[str, int]] = set()  # (endpoint, pos) with rows past a cursor
        self._known_until = 0  # the highest pos in ``_known``
        self._wake = asyncio.Event()

    def notify(self, events: Sequence[Event], first_pos: int) -> None:
        """The store's commit listener. With no active endpoint there is nothing to fan out
        to (inactive ones get no new deliveries; replay fills gaps): that costs nothing."""
        if self._registry.active and events:
            self._notified.append((events, first_pos))
            self._wake.set()

    def read_log(self) -> None:
        """The next pass reads the log from the fan-out position."""
        self._from_store = True
        self._wake.set()

    def remember(self, known: Iterable[tables.KnownDelivery]) -> None:
        """Rows a partition taken over has past its cursor: those pairs are not fanned out
        again (they are pending, or settled, already)."""
        for k in known:
            self._known.add((k.endpoint_id, k.event_pos))
            self._known_until = max(self._known_until, k.event_pos)

    async def run(self) -> None:
        delay = FANOUT_RETRY_FIRST
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._pass()
            except Exception as exc:
                if isinstance(exc, StoreUnavailable):
                    log.warning("webhook fan-out waits for the store: %s", exc)
                else:
                    log.exception("webhook fan-out failed; it reads the log again")
                self._notified.clear()
                # Read the log again later, also if no commit comes to wake us: events
                # committed before the store went away must not wait for the next one.
                await asyncio.sleep(delay)
                delay = min(delay * 2, FANOUT_RETRY_MAX)
                self.read_log()
            else:
                delay = FANOUT_RETRY_FIRST

    async def poll_log(self) -> None:
        """Clustered: other nodes' events reach this one only through the log. It is read
        when its end was already past the fan-out a poll ago (this node's own commits are
        handed over by the commit listener meanwhile: no read for them)."""
        seen = 0
        while True:
            await asyncio.sleep(POLL_LOG)
            if not self._registry.active or not self._ledger.held():
                continue
            if self._ledger.fanned_to < seen:
                self.read_log()
            with contextlib.suppress(Exception):
                seen = await tables.max_event_pos(self._store)

    async def _pass(self) -> None:
        """Fan out what the commit listener handed over, in pos order; a gap before it (or a
        start) is filled from the log first."""
        ledger = self._ledger
        if self._from_store:
            self._from_store = False
            async with ledger.lock:
                while await self._from_log(None):
                    pass
        while self._notified:
            events, first = self._notified.popleft()
            if first + len(events) - 1 <= ledger.fanned_to:
                continue  # read from the log already
            async with ledger.lock:
                while ledger.fanned_to < first - 1:
                    if not await self._from_log(first - 1):
                        break
                skip = ledger.fanned_to + 1 - first
                items = [(first + i, events[i]) for i in range(max(0, skip), len(events))]
                await ledger.reserve_ids(len(items) * len(self._registry.active))
                self.fan_out(items)

    async def _from_log(self, upto: int | None) -> bool:
        """One batch of the log past the fan-out position (up to ``upto``); more to read?"""
        events = await tables.events_after(self._store, self._ledger.fanned_to, FANOUT_BATCH)
        if upto is not None:
            events = [e for e in events if e.pos is not None and e.pos <= upto]
        if not events:
            return False
        items = [(e.pos, e) for e in events if e.pos is not None]
        await self._ledger.reserve_ids(len(items) * len(self._registry.active))
        self.fan_out(items)
        return len(events) == FANOUT_BATCH

    async def to_log_end(self) -> None:
        """Fan out everything the log holds now (a replay's bound is then the log's end, also
        for events committed by other nodes). Hold the ledger's lock."""
        while await self._from_log(None):
            pass

    async def catch_up(self, partitions: set[int], low: int, upto: int) -> None:
        """Fan out the events of partitions just taken over in (low, upto]: the rest of the
        log up to there was fanned out before they were ours. Hold the ledger's lock."""
        part = self._ledger.partition_of
        after = low
        while after < upto:
            events = await tables.events_after(self._store, after, FANOUT_BATCH)
            if not events:
                return
            after = events[-1].pos or upto
            chosen = [
                (e.pos, e)
                for e in events
                if e.pos is not None and e.pos <= upto and part(e.charger_id) in partitions
            ]
            if chosen:
                await self._ledger.reserve_ids(len(chosen) * len(self._registry.active))
                self.fan_out(chosen, advance=False)
            if len(events) < FANOUT_BATCH:
                return

    def fan_out(self, items: Sequence[tuple[int, Event]], *, advance: bool = True) -> None:
        """Deliveries for these events (in pos order); hold the ledger's lock. ``advance``:
        they are the next of the log (not a take-over's catch-up)."""
        if not items:
            return
        ledger = self._ledger
        now = self._clock()
        created_at = iso_utc(now)
        known = self._known
        added = 0
        writes: list[Write] = []
        scheduler = self._scheduler
        head_failed = scheduler.head_failed
        keeps = scheduler.keeps
        add = scheduler.add_one
        active = self._registry.active
        part = ledger.partition_of
        for pos, event in items:
            if event.type == WEBHOOK_TEST:
                continue  # sent to its one endpoint by the test call itself
            partition = part(event.charger_id)
            if not ledger.wanted(partition, pos):
                continue  # another node's partition, or fanned out before it was ours
            wanted = False
            charger_id = event.charger_id
            for endpoint in active:
                if pos > endpoint.from_pos and endpoint.wants(event.type, charger_id):
                    if known and (endpoint.id, pos) in known:
                        continue  # written before: pending or settled already
                    key = (endpoint.id, charger_id)
                    if not keeps(key):
                        # Spilled (paging): written, it waits in the store; what waits of
                        # its stream in memory only is written first (ids order a restart).
                        writes += ledger.write_out_stream(key)
                        add(ledger.new_row(endpoint.id, pos, event.id, charger_id, now, writes))
                    elif head_failed(key):
                        add(ledger.new_row(endpoint.id, pos, event.id, charger_id, now, writes))
                    else:
                        add(
                            ledger.in_memory(
                                endpoint.id, pos, event.id, charger_id, partition, now, created_at
                            )
                        )
                    added += 1
                    wanted = True
            if wanted:
                self._bodies.put(pos, event)
        if advance:
            ledger.fanned_to = items[-1][0]
            if known and ledger.fanned_to >= self._known_until:
                self._known = set()
        if writes or not added:
            ledger.add(writes)  # rows behind failed heads, spilled; or only cursors move
        self._wake_dispatch()
