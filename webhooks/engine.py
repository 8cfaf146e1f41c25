"""The delivery engine: fan-out and dispatch around the pure scheduler, over the ledger.

Parts, each with one job:

- Fan-out (here): events -> deliveries, one per (subscribed active endpoint, event), for the
  partitions this node holds. The store's commit listener hands over each commit's events
  with their ``pos``; they are fanned out from memory without reading the log back. A gap
  (events committed elsewhere: another node, a start, an endpoint becoming active, a
  partition taken over) reads the log.
- Dispatch (here, with ``Scheduler``): the scheduler owns per-stream order, retry timing and
  endpoint health (``failing_since``, disabling); dispatch posts what it says is due, within
  the partition's lease, and hands each answer to ``record``.
- ``Ledger``: alone writes delivery rows, attempts, cursors and counters (one ordered
  journal), and knows what lives only in memory. ``webhooks.outcomes.record`` (pure) says
  what an answer writes, for real and test sends alike.
- Leases (``webhooks.leases``, PostgreSQL): which partitions this node delivers. SQLite has
  one node, which holds every partition without a lease.

While its stream flows, a delivery lives in memory until its first answer: the row is written
then, with the attempt and its outcome, in one unit. Once a stream's head fails, the
deliveries behind it are written as pending, and so are new ones until the head is settled.
Each partition's durable cursor stays below its oldest delivery not written yet, so after a
crash, or on another node taking the partition over, the fan-out starts again from there,
skipping the (endpoint, event) pairs that have a row: at least once, with the same
``webhook-id``, and in order per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from storage import webhook_tables as tables
from storage.postgres import PostgresStore
from storage.records import Event, Statement
from storage.store import Store, StoreUnavailable
from webhooks.bodies import BodyCache
from webhooks.catalog import WEBHOOK_DISABLED, WEBHOOK_TEST
from webhooks.config import DeliveryConfig
from webhooks.endpoints import Endpoint, EndpointStatus
from webhooks.envelope import envelope_body
from webhooks.journal import Write
from webhooks.leases import LeaseKeeper
from webhooks.ledger import Ledger
from webhooks.outcomes import DeliveryState, answer_of, record, test_answer
from webhooks.partitions import PARTITIONS, Grant
from webhooks.poster import AttemptResult, Poster
from webhooks.retention import plan_prune
from webhooks.scheduler import (
    Decision,
    Dispatch,
    Outcome,
    Pending,
    Policy,
    Scheduler,
    Verdict,
    parse_retry_after,
)
from webhooks.timefmt import iso_utc
from webhooks.unwritten import StreamKey

log = logging.getLogger(__name__)

FANOUT_BATCH = 2000
BODY_CACHE = 20_000  # envelopes kept for dispatch; the rest is read back from the store
PRUNE_ROUNDS = 50
FANOUT_RETRY_FIRST = 0.25  # seconds before the log is read again after a failed read; doubling
FANOUT_RETRY_MAX = 5.0
POLL_LOG = 0.2  # clustered: seconds between looks at the log for other nodes' events


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        config: DeliveryConfig,
        poster: Poster,
        clock: Callable[[], float],
        rand: Callable[[], float],
        new_id: Callable[[str], str],
    ) -> None:
        self.store = store
        self.config = config
        self.poster = poster
        self.clock = clock  # wall clock, unix seconds (persisted times survive restarts)
        self.endpoints: dict[str, Endpoint] = {}  # by id, in creation order
        self.version = 0  # bumped whenever an endpoint changes (for caches)
        self.scheduler = Scheduler(
            Policy(
                retry_schedule=tuple(config.retry_schedule),
                disable_after=config.disable_after,
                max_in_flight=config.max_in_flight,
                retry_after_cap=config.retry_after_cap,
            ),
            rand,
        )
        self.clustered = isinstance(store, PostgresStore)
        self.ledger = Ledger(
            store,
            node_id=config.node_id,
            clustered=self.clustered,
            clock=lambda: self.clock(),
            new_id=new_id,
        )
        self.leases: LeaseKeeper | None = None
        self._retrying: set[StreamKey] = set()  # streams whose head failed
        self._notified: deque[tuple[Sequence[Event], int]] = deque()  # (events, first pos)
        self._from_store = False  # the next fan-out pass reads the log (start, failure)
        self._known: set[tuple[str, int]] = set()  # rows past a cursor when it was taken
        self._known_until = 0  # the highest pos in ``_known``
        self._active: list[Endpoint] = []  # active endpoints; none: nothing to fan out to
        self._closing: set[int] = set()  # partitions being given back: nothing new is posted
        self._posting: dict[int, int] = {}  # partition -> posts on their way
        self._bodies = BodyCache(store, BODY_CACHE)  # what to post, built once per event
        self._fanout_wake = asyncio.Event()
        self._dispatch_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._posts: set[asyncio.Task[None]] = set()
        self._observers: list[Callable[[Dispatch, AttemptResult, Decision], None]] = []
        # (event id, 2xx?, answered at): per attempt posted, for metrics of delivery latency
        self._attempt_observers: list[Callable[[str, bool, float], None]] = []

    # -- life cycle ----------------------------------------------------------------------

    async def start(self, endpoints: Iterable[Endpoint]) -> None:
        await self.ledger.start()
        for endpoint in endpoints:
            self.endpoints[endpoint.id] = endpoint
            self.scheduler.set_endpoint(
                endpoint.id, active=endpoint.active, failing_since=endpoint.failing_since
            )
        self._active = [e for e in self.endpoints.values() if e.active]
        await self.ledger.write(
            [
                tables.mark_interrupted(iso_utc(self.clock())),
                Statement(
                    "DELETE FROM webhook_deliveries WHERE endpoint_id NOT IN"
                    " (SELECT id FROM webhook_endpoints)"
                ),
            ]
        )
        self.ledger.fanned_to = -1  # not known yet: the first partitions taken set it
        if self.clustered:
            self.leases = LeaseKeeper(
                self.store,
                node_id=self.config.node_id,
                ttl=self.config.lease_ttl,
                on_taken=self._take_over,
                on_lost=self._lose,
                on_give_back=self._give_back,
            )
            await self.leases.start()
        else:
            cursors = await tables.load_cursors(self.store)
            await self._take_over(
                [
                    Grant(partition=p, token=0, cursor=cursors.get(p, 0), previous_node=None)
                    for p in range(PARTITIONS)
                ]
            )
        if self.ledger.fanned_to < 0:  # nothing held: start from the log's end
            self.ledger.fanned_to = await tables.max_event_pos(self.store)
        self._tasks += [
            asyncio.create_task(self._fanout_loop(), name="webhook-fanout"),
            asyncio.create_task(self._dispatch_loop(), name="webhook-dispatch"),
            asyncio.create_task(self._prune_loop(), name="webhook-prune"),
        ]
        if self.clustered:
            self._tasks.append(asyncio.create_task(self._poll_log(), name="webhook-poll"))

    async def close(self) -> None:
        if self.leases is not None:
            await self.leases.close(release=True)
        for task in [*self._tasks, *self._posts]:
            task.cancel()
        for task in [*self._tasks, *self._posts]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.ledger.close()

    async def halt(self) -> None:
        """Stop without giving anything back or writing what waits (a node that dies):
        its leases run out, and another node takes its partitions over. For tests."""
        if self.leases is not None:
            await self.leases.close(release=False)
        for task in [*self._tasks, *self._posts]:
            task.cancel()
        for task in [*self._tasks, *self._posts]:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def notify(self, events: Sequence[Event], first_pos: int) -> None:
        """The store's commit listener: these events were committed, at ``first_pos`` and on.
        With no active endpoint there is nothing to fan out to (inactive ones get no new
        deliveries; replay fills gaps), so storing events then costs nothing here."""
        if self._active and events:
            self._notified.append((events, first_pos))
            self._fanout_wake.set()

    def wake(self) -> None:
        self._dispatch_wake.set()

    async def settled(self) -> None:
        """Everything recorded so far is durable, cursors included."""
        await self.ledger.settled()

    def partitions_held(self) -> list[int]:
        return self.ledger.held()

    # -- partitions ----------------------------------------------------------------------

    async def _take_over(self, grants: list[Grant]) -> None:
        """Deliver these partitions from now on: their pending rows join the scheduler, and
        their events past the durable cursor are fanned out again (skipping those that have
        a row). Runs under the ledger's lock, so no fan-out pass interleaves."""
        ledger = self.ledger
        mine = {g.partition: g for g in grants}
        part = ledger.partition_of
        async with ledger.lock:
            pending = [
                r for r in await tables.load_pending(self.store) if part(r.charger_id) in mine
            ]
            low = min(g.cursor for g in grants)
            known = [
                k
                for k in await tables.deliveries_after(self.store, low)
                if (g := mine.get(part(k.charger_id))) is not None and k.event_pos > g.cursor
            ]
            await ledger.reserve_ids(0, above=max((r.id for r in [*pending, *known]), default=0))
            for g in grants:
                ledger.hold(g.partition, g.token, g.cursor)
            self.scheduler.add(
                Pending(
                    delivery_id=row.id,
                    endpoint_id=row.endpoint_id,
                    charger_id=row.charger_id,
                    event_pos=row.event_pos,
                    attempts=row.attempts,
                    next_at=row.next_attempt_at,
                )
                for row in pending
            )
            # Heads that failed before: what comes behind them is written at once.
            self._retrying |= {(r.endpoint_id, r.charger_id) for r in pending if r.attempts}
            if known:
                self._known |= {(k.endpoint_id, k.event_pos) for k in known}
                self._known_until = max(self._known_until, max(k.event_pos for k in known))
            if ledger.fanned_to < 0:
                # Starting: the main pass reads the log from the lowest cursor on.
                ledger.fanned_to = low
                if self._active:
                    self._from_store = True
                    self._fanout_wake.set()
                else:  # nobody to deliver to: those events concern no endpoint
                    ledger.fanned_to = max(low, await tables.max_event_pos(self.store))
            elif self._active and low < ledger.fanned_to:
                await self._catch_up(mine, low, ledger.fanned_to)
            ledger.caught_up(list(mine))
        self.wake()

    async def _catch_up(self, mine: dict[int, Grant], low: int, upto: int) -> None:
        """Fan out the taken partitions' events in (their cursor, upto]: the rest of the
        log up to there was fanned out before they were ours."""
        part = self.ledger.partition_of
        after = low
        while after < upto:
            events = await tables.events_after(self.store, after, FANOUT_BATCH)
            if not events:
                return
            after = events[-1].pos or upto
            chosen = [
                (e.pos, e)
                for e in events
                if e.pos is not None and e.pos <= upto and part(e.charger_id) in mine
            ]
            if chosen:
                await self.ledger.reserve_ids(len(chosen) * len(self._active))
                self._fan_out(chosen, advance=False)
            if len(events) < FANOUT_BATCH:
                return

    def _lose(self, partitions: list[int]) -> None:
        """These partitions are another node's: drop their streams and what lives in memory
        of them, at once; answers still on their way are not recorded."""
        lost = set(partitions)
        part = self.ledger.partition_of
        for partition in lost:
            self.ledger.let_go(partition)
            self._closing.discard(partition)
        self.scheduler.drop_streams(lambda key: part(key[1]) in lost)
        self._retrying = {k for k in self._retrying if part(k[1]) not in lost}

    async def _give_back(self, partitions: list[int]) -> bool:
        """Stop these partitions cleanly before their leases are released: nothing new is
        posted, posts on their way are answered and recorded, and all of it is durable, so
        the next holder goes on from exactly here. False: not in time (let them run out)."""
        self._closing |= set(partitions)
        deadline = time.monotonic() + self.config.timeout + 1.0
        while any(self._posting.get(p) for p in partitions):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ledger.settled(), self.config.timeout)
            self._lose(partitions)
            return True
        return False

    def _within_lease(self, partition: int) -> float | bool | None:
        """How long a POST for this partition may take (None: no limit); False: not now."""
        if partition in self._closing:
            return False
        if self.leases is None:
            return None
        try:
            window = self.leases.window(partition)
        except KeyError:
            return False
        if window is not None and window <= 0.05:
            return False
        return window

    async def _poll_log(self) -> None:
        """Clustered: other nodes' events reach this one only through the log. The log is
        read when its end was already past the fan-out a poll ago (this node's own commits
        are handed over by the commit listener meanwhile: no read for them)."""
        seen = 0
        while True:
            await asyncio.sleep(POLL_LOG)
            if not self._active or not self.ledger.held():
                continue
            if self.ledger.fanned_to < seen:
                self._from_store = True
                self._fanout_wake.set()
            with contextlib.suppress(Exception):
                seen = await tables.max_event_pos(self.store)

    # -- endpoints -----------------------------------------------------------------------

    def put_endpoint(self, endpoint: Endpoint) -> None:
        had_active = bool(self._active)
        self.endpoints[endpoint.id] = endpoint
        self.version += 1
        self._active = [e for e in self.endpoints.values() if e.active]
        if self._active and not had_active:
            # The fan-out idled while no endpoint was active; this one wants only what
            # comes after its start (from_pos), so the cursor can skip to there.
            self.ledger.fanned_to = max(self.ledger.fanned_to, endpoint.from_pos)
            self._fanout_wake.set()
        self.scheduler.set_endpoint(
            endpoint.id,
            active=endpoint.active,
            failing_since=endpoint.failing_since,
            now=self.clock(),
        )
        if not endpoint.active:
            # Its deliveries wait, maybe for long: written now, they hold the cursor no more.
            self.ledger.append(self.ledger.write_out(endpoint.id))
        self.wake()

    def remove_endpoint(self, endpoint_id: str) -> None:
        self.endpoints.pop(endpoint_id, None)
        self.version += 1
        self._active = [e for e in self.endpoints.values() if e.active]
        self.scheduler.remove_endpoint(endpoint_id)
        self.ledger.drop_endpoint(endpoint_id)
        self._retrying = {k for k in self._retrying if k[0] != endpoint_id}

    async def save_endpoint(self, row: tables.EndpointRow, endpoint: Endpoint) -> None:
        """Write an endpoint's row (admin API), then deliver to it as it is now."""
        await self.ledger.write([tables.put_endpoint(row)])
        self.put_endpoint(endpoint)

    async def delete_endpoint(self, endpoint_id: str) -> None:
        self.remove_endpoint(endpoint_id)
        await self.ledger.write(tables.delete_endpoint(endpoint_id))

    # -- queueing (admin API) --------------------------------------------------------------

    async def enqueue(self, endpoint_id: str, events: Sequence[tables.EventHead]) -> list[int]:
        """Queue these events again for one endpoint, in the given order (redeliver)."""
        async with self.ledger.lock:
            return await self._enqueue_locked(endpoint_id, events)

    async def _enqueue_locked(
        self, endpoint_id: str, events: Sequence[tables.EventHead]
    ) -> list[int]:
        part = self.ledger.partition_of
        events = [e for e in events if self.ledger.holds(part(e.charger_id))]
        if not events:
            return []
        now = self.clock()
        await self.ledger.reserve_ids(len(events))
        # The endpoint's in-memory deliveries are written first: they come before these in
        # their streams, and a restart rebuilds the streams in the order of the rows' ids.
        writes = self.ledger.write_out(endpoint_id)
        pendings = [
            self.ledger.new_row(endpoint_id, e.pos, e.id, e.charger_id, now, writes) for e in events
        ]
        writes += self.ledger.id_counter()
        await asyncio.shield(self.ledger.append(writes))
        self.scheduler.add(pendings)
        self.wake()
        return [p.delivery_id for p in pendings]

    async def replay(
        self,
        endpoint: Endpoint,
        *,
        since: str,
        until: str | None,
        only_failed: bool,
        chunk: int,
    ) -> int:
        """Queue again, in order, the endpoint's events in [since, until) that it selects
        (of the partitions this node holds); those pending for it are skipped, and with
        ``only_failed`` so are those it received. Returns how many were queued."""
        queued, after = 0, 0
        while True:
            # Under the ledger's lock and only up to the fan-out position: events past it
            # will be fanned out to the endpoint as it is now, and must not be queued twice.
            async with self.ledger.lock:
                # Its in-memory deliveries must show as pending, and every outcome so far
                # as settled, to the candidate query.
                await asyncio.shield(self.ledger.append(self.ledger.write_out(endpoint.id)))
                heads = await tables.replay_candidates(
                    self.store,
                    endpoint_id=endpoint.id,
                    since=since,
                    until=until,
                    only_failed=only_failed,
                    after_pos=after,
                    max_pos=self.ledger.fanned_to,
                    limit=chunk,
                )
                if not heads:
                    return queued
                after = heads[-1].pos
                chosen = [
                    h
                    for h in heads
                    if h.type != WEBHOOK_TEST and endpoint.wants(h.type, h.charger_id)
                ]
                queued += len(await self._enqueue_locked(endpoint.id, chosen))

    async def send_test(self, endpoint: Endpoint) -> tuple[Event, AttemptResult]:
        """Post a ``webhook.test`` event to this endpoint now (whatever its status), recorded
        like any attempt (through ``record``), not retried."""
        ledger = self.ledger
        async with ledger.lock:
            now = self.clock()
            event, writes = ledger.system_event(
                WEBHOOK_TEST, {"isTest": True, "webhookId": endpoint.id}
            )
            await ledger.reserve_ids(1)
            delivery_id = ledger.next_id()
            writes += [
                tables.insert_delivery_of(
                    delivery_id=delivery_id,
                    endpoint_id=endpoint.id,
                    event_id=event.id,
                    attempts=1,
                    created_at=iso_utc(now),
                    next_attempt_at=now,
                ),
                *ledger.id_counter(),
            ]
            await ledger.write(writes)  # one transaction: the event and its delivery
        result = await self.poster.post(
            endpoint, event_id=event.id, body=envelope_body(event), timestamp=int(now)
        )
        state = DeliveryState(
            delivery_id=delivery_id,
            endpoint_id=endpoint.id,
            event_pos=0,
            event_id=event.id,
            event_type=event.type,
            charger_id=None,
            attempt=1,
            started=now,
            created_at=iso_utc(now),
            written=True,
            failing_since=endpoint.failing_since,
        )
        await ledger.write(record(state, test_answer(result), self.clock(), health=False).writes)
        return event, result

    # -- fan-out -------------------------------------------------------------------------

    async def _fanout_loop(self) -> None:
        delay = FANOUT_RETRY_FIRST
        while True:
            await self._fanout_wake.wait()
            self._fanout_wake.clear()
            try:
                await self._fanout_notified()
            except Exception as exc:
                if isinstance(exc, StoreUnavailable):
                    log.warning("webhook fan-out waits for the store: %s", exc)
                else:
                    log.exception("webhook fan-out failed; it reads the log again")
                self._notified.clear()
                self._from_store = True
                # Read the log again later, also if no commit comes to wake us: events
                # committed before the store went away must not wait for the next one.
                await asyncio.sleep(delay)
                delay = min(delay * 2, FANOUT_RETRY_MAX)
                self._fanout_wake.set()
            else:
                delay = FANOUT_RETRY_FIRST

    async def _fanout_notified(self) -> None:
        """Fan out what the commit listener handed over, in pos order; a gap before it (or a
        start) is filled from the log first."""
        ledger = self.ledger
        if self._from_store:
            self._from_store = False
            async with ledger.lock:
                while await self._fanout_from_store(None):
                    pass
        while self._notified:
            events, first = self._notified.popleft()
            if first + len(events) - 1 <= ledger.fanned_to:
                continue  # read from the log already
            async with ledger.lock:
                while ledger.fanned_to < first - 1:
                    if not await self._fanout_from_store(first - 1):
                        break
                skip = ledger.fanned_to + 1 - first
                items = [(first + i, events[i]) for i in range(max(0, skip), len(events))]
                await ledger.reserve_ids(len(items) * len(self._active))
                self._fan_out(items)

    async def _fanout_from_store(self, upto: int | None) -> bool:
        """One batch of the log past the fan-out position (up to ``upto``); more to read?"""
        events = await tables.events_after(self.store, self.ledger.fanned_to, FANOUT_BATCH)
        if upto is not None:
            events = [e for e in events if e.pos is not None and e.pos <= upto]
        if not events:
            return False
        items = [(e.pos, e) for e in events if e.pos is not None]
        await self.ledger.reserve_ids(len(items) * len(self._active))
        self._fan_out(items)
        return len(events) == FANOUT_BATCH

    def _fan_out(self, items: Sequence[tuple[int, Event]], *, advance: bool = True) -> None:
        """Deliveries for these events (in pos order), in memory; hold the ledger's lock.
        ``advance``: they are the next of the log (not a take-over's catch-up)."""
        if not items:
            return
        ledger = self.ledger
        now = self.clock()
        created_at = iso_utc(now)
        known = self._known
        pendings: list[Pending] = []
        writes: list[Write] = []
        retrying = self._retrying
        active = self._active
        part = ledger.partition_of
        for pos, event in items:
            if event.type == WEBHOOK_TEST:
                continue  # sent to its one endpoint by the test call itself
            partition = part(event.charger_id)
            if not ledger.wanted(partition, pos):
                continue  # another node's partition, or fanned out before it was ours
            wanted = False
            for endpoint in active:
                if pos > endpoint.from_pos and endpoint.wants(event.type, event.charger_id):
                    if known and (endpoint.id, pos) in known:
                        continue  # written before: pending or settled already
                    if (endpoint.id, event.charger_id) in retrying:
                        pending = ledger.new_row(
                            endpoint.id, pos, event.id, event.charger_id, now, writes
                        )
                    else:
                        pending = ledger.in_memory(
                            endpoint.id, pos, event.id, event.charger_id, partition, now,
                            created_at,
                        )  # fmt: skip
                    pendings.append(pending)
                    wanted = True
            if wanted:
                self._bodies.put(pos, event)
        if advance:
            ledger.fanned_to = items[-1][0]
            if known and ledger.fanned_to >= self._known_until:
                self._known = set()
        if writes or not pendings:
            ledger.append(writes)  # rows behind failed heads; or only cursors move
        self.scheduler.add(pendings)
        self.wake()

    # -- dispatch ------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            batch = self.scheduler.due(self.clock())
            if batch:
                self._dispatch(batch)
                continue
            wakeup = self.scheduler.next_wakeup()
            delay = None if wakeup is None else max(0.0, wakeup - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._dispatch_wake.wait()
            self._dispatch_wake.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    def _dispatch(self, batch: list[Dispatch]) -> None:
        """A task per POST whose body is cached; one task reads the others' bodies first."""
        missing: list[Dispatch] = []
        now = self.clock()
        part = self.ledger.partition_of
        for d in batch:
            partition = part(d.charger_id)
            token = self.ledger.token(partition)
            if token is None:  # another node's now
                self.scheduler.forget(d.delivery_id)
                continue
            window = self._within_lease(partition)
            if window is False:  # the lease is about to run out (or being given back)
                self.scheduler.postpone(d.delivery_id, now + self.config.lease_ttl / 6)
                continue
            found = self._bodies.get(d.event_pos)
            if found is None:
                missing.append(d)
                continue
            endpoint = self.endpoints.get(d.endpoint_id)
            if endpoint is None:
                self._drop([d], now)
            else:
                self._post(d, endpoint, found, now, partition, token)
        if missing:
            self._spawn(self._run_batch(missing))

    def _post(
        self,
        d: Dispatch,
        endpoint: Endpoint,
        found: tuple[str, str, bytes],
        started: float,
        partition: int,
        token: int,
    ) -> None:
        self._posting[partition] = self._posting.get(partition, 0) + 1
        self._spawn(self._deliver(d, endpoint, found, started, partition, token))

    def _drop(self, batch: list[Dispatch], now: float) -> None:
        """Nothing to post (a deleted endpoint, an event gone from the store): given up."""
        writes: list[Write] = []
        for d in batch:
            self.scheduler.discard(d.delivery_id)
            writes += self._settle_rows(d, tables.FAILED, now)
        self.ledger.append(writes)
        self.wake()

    def _settle_rows(self, d: Dispatch, status: str, next_attempt_at: float) -> list[Write]:
        """A delivery given up unposted: its row (its first if it lived in memory)."""
        unwritten = self.ledger.settle_unwritten(d.delivery_id, (d.endpoint_id, d.charger_id))
        fence = self.ledger.fence(self.ledger.partition_of(d.charger_id))
        if unwritten is None:
            return [
                tables.settle_delivery(
                    d.delivery_id,
                    status=status,
                    attempts=d.attempt,
                    next_attempt_at=next_attempt_at,
                    fence=fence,
                )
            ]
        row = tables.DeliveryRow(
            id=d.delivery_id,
            endpoint_id=d.endpoint_id,
            event_pos=d.event_pos,
            event_id=unwritten.event_id,
            charger_id=d.charger_id,
            status=status,
            attempts=d.attempt,
            next_attempt_at=next_attempt_at,
            created_at=unwritten.created_at,
        )
        return [tables.upsert_delivery(row, fence)]

    async def _run_batch(self, batch: list[Dispatch]) -> None:
        try:
            bodies = await self._bodies.fetch(d.event_pos for d in batch)
        except Exception:
            # The store could not be read: nothing was sent, so count a failed attempt and
            # retry on schedule; only an event really gone from the store is given up.
            log.exception("could not read events to deliver")
            for d in batch:
                token = self.ledger.token(self.ledger.partition_of(d.charger_id))
                self._finish(
                    d, AttemptResult(status_code=None, latency_ms=0, error="not read"), token
                )
            return
        now = self.clock()
        gone: list[Dispatch] = []
        part = self.ledger.partition_of
        for d in batch:
            endpoint = self.endpoints.get(d.endpoint_id)
            found = bodies.get(d.event_pos)
            partition = part(d.charger_id)
            token = self.ledger.token(partition)
            if token is None:
                self.scheduler.forget(d.delivery_id)
            elif endpoint is None or found is None:
                gone.append(d)
            else:
                self._post(d, endpoint, found, now, partition, token)
        if gone:
            self._drop(gone, now)

    async def _deliver(
        self,
        d: Dispatch,
        endpoint: Endpoint,
        found: tuple[str, str, bytes],
        started: float,
        partition: int,
        token: int,
    ) -> None:
        event_id, _, body = found
        try:
            window = self._within_lease(partition)
            if window is False:  # checked again right before the POST
                self.scheduler.postpone(d.delivery_id, self.clock() + self.config.lease_ttl / 6)
                self.wake()
                return
            try:
                result = await self.poster.post(
                    endpoint,
                    event_id=event_id,
                    body=body,
                    timestamp=int(self.clock()),
                    within=window,
                )
            except Exception as exc:  # a bug of ours must not wedge the stream
                log.exception(
                    "posting %s to %s failed",
                    event_id,
                    endpoint.id,
                    extra={"webhookId": endpoint.id, "eventId": event_id},
                )
                result = AttemptResult(status_code=None, latency_ms=0, error=f"internal: {exc}")
            self._finish(d, result, token, (found, started))
        finally:
            self._posting[partition] -= 1

    def _finish(
        self,
        d: Dispatch,
        result: AttemptResult,
        token: int | None,
        sent: tuple[tuple[str, str, bytes], float] | None = None,
    ) -> None:
        """Record an answer: the scheduler decides, ``record`` says what to write, the ledger
        writes (in this order, with no await between, so the next head's records can only
        come after). ``sent``: the event posted and when (None: nothing was posted). An
        answer for a partition no longer held with ``token`` is not recorded."""
        partition = self.ledger.partition_of(d.charger_id)
        if token is None or self.ledger.token(partition) != token:
            self.scheduler.forget(d.delivery_id)  # another node's now: not ours to record
            return
        if self.leases is not None and not self.leases.valid(partition):
            # Paused past the lease (by this node's clock): it may be another node's by now;
            # the attempt is not recorded, and the delivery is posted again if still ours.
            self.scheduler.postpone(d.delivery_id, self.clock() + self.config.lease_ttl / 6)
            self.wake()
            return
        now = self.clock()
        retry_after = parse_retry_after(result.retry_after, now)
        endpoint = self.endpoints.get(d.endpoint_id)
        failing_before = None if endpoint is None else endpoint.failing_since
        decision = self.scheduler.record(
            Outcome(
                delivery_id=d.delivery_id,
                status_code=result.status_code,
                retry_after=retry_after,
            ),
            now,
        )
        unwritten = self.ledger.settle_unwritten(d.delivery_id, (d.endpoint_id, d.charger_id))
        event_id, event_type = (sent[0][0], sent[0][1]) if sent is not None else ("", "")
        state = DeliveryState(
            delivery_id=d.delivery_id,
            endpoint_id=d.endpoint_id,
            event_pos=d.event_pos,
            event_id=unwritten.event_id if unwritten is not None else event_id,
            event_type=event_type,
            charger_id=d.charger_id,
            attempt=d.attempt,
            started=sent[1] if sent is not None else -1.0,
            created_at=unwritten.created_at if unwritten is not None else "",
            written=unwritten is None,
            failing_since=failing_before,
        )
        recorded = record(
            state,
            answer_of(result, decision),
            now,
            fence=self.ledger.fence(partition),
            health=endpoint is not None,
        )
        writes: list[Write] = list(recorded.writes)
        key = (d.endpoint_id, d.charger_id)
        if decision.verdict is Verdict.RETRY:
            self._retrying.add(key)  # what comes behind this head is written from now on
            writes += self.ledger.write_out_stream(key)
        else:
            self._retrying.discard(key)
        if endpoint is not None:
            if recorded.disabled_reason is not None:
                writes += self._disabled(endpoint, recorded.disabled_reason, decision, now)
            elif decision.failing_since != endpoint.failing_since:
                self.endpoints[endpoint.id] = dataclasses.replace(
                    endpoint, failing_since=decision.failing_since
                )
        self.ledger.append(writes)
        self.wake()
        if sent is not None:
            for attempt_observer in self._attempt_observers:
                attempt_observer(sent[0][0], result.succeeded, now)
        for observer in self._observers:
            observer(d, result, decision)

    def add_observer(self, observer: Callable[[Dispatch, AttemptResult, Decision], None]) -> None:
        """Called after each recorded answer (metrics, and tests waiting on conditions)."""
        self._observers.append(observer)

    def add_attempt_observer(self, observer: Callable[[str, bool, float], None]) -> None:
        """Called on this engine's loop after each attempt posted, with the event id (its
        clock tells when the event was stored), whether the answer was a 2xx, and the wall
        clock then: what a metric of delivery latency needs, without importing the CSMS."""
        self._attempt_observers.append(observer)

    def pending_snapshot(self) -> dict[str, tuple[int, int | None]]:
        """Per endpoint: deliveries pending (in flight included) and the smallest event pos
        among them (the oldest event waiting), or None. Run it on this engine's loop: it reads
        the scheduler's queues, which only that loop changes."""
        counts = self.scheduler.snapshot()
        return {endpoint_id: counts.get(endpoint_id, (0, None)) for endpoint_id in self.endpoints}

    async def event_ids_at(self, positions: list[int]) -> dict[int, str]:
        """pos -> event id, from the body cache or the store (for the pending snapshot)."""
        found = await self._bodies.fetch(positions)
        return {pos: body[0] for pos, body in found.items()}

    def _disabled(
        self, endpoint: Endpoint, reason: str, decision: Decision, now: float
    ) -> list[Write]:
        """The endpoint was disabled by an answer (its row is in the answer's writes): the
        ``webhook.disabled`` event, and its deliveries written out (they wait now)."""
        log.warning(
            "webhook endpoint %s disabled: %s",
            endpoint.id,
            reason,
            extra={"webhookId": endpoint.id},
        )
        self.version += 1
        self.endpoints[endpoint.id] = dataclasses.replace(
            endpoint,
            status=EndpointStatus.DISABLED,
            disabled_reason=reason,
            failing_since=decision.failing_since,
            updated_at=iso_utc(now),
        )
        self._active = [e for e in self.endpoints.values() if e.active]
        _, writes = self.ledger.system_event(
            WEBHOOK_DISABLED, {"webhookId": endpoint.id, "url": endpoint.url, "reason": reason}
        )
        return [*writes, *self.ledger.write_out(endpoint.id)]

    # -- retention -----------------------------------------------------------------------

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:
                log.exception("webhook retention pass failed")
            await asyncio.sleep(self.config.prune_interval)

    async def prune_once(self) -> None:
        plan = plan_prune(
            now=self.clock(),
            retention=self.config.retention,
            fanout_cursor=await tables.min_cursor(self.store),
        )
        if plan is None:
            return
        for _ in range(PRUNE_ROUNDS):
            if not await tables.has_prunable(
                self.store, cutoff=plan.cutoff, max_event_pos=plan.max_event_pos
            ):
                return
            await self.ledger.write(
                tables.prune(cutoff=plan.cutoff, max_event_pos=plan.max_event_pos, batch=plan.batch)
            )
