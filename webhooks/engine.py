"""The delivery engine: the I/O shell around the pure scheduler.

- Fan-out: the store's commit listener hands over each commit's events with their ``pos``;
  they are fanned out from memory, one delivery per (subscribed active endpoint, event),
  without reading the log back. Only a gap (events committed elsewhere, a start, an endpoint
  becoming active) reads the log, from the last pos fanned out.
- While its stream flows, a delivery lives in memory until its first answer: the row is
  written then, with the attempt and its outcome, in one unit. Nothing is written before a
  POST. Once a stream's head fails, the deliveries behind it (which may now wait for hours)
  are written as pending, and so are new ones until the head is settled. The durable cursor
  (``fanout_pos`` in the store) stays below the oldest delivery not written yet, so after a
  crash the fan-out starts again from there, skipping the (endpoint, event) pairs that have
  a row: at least once, with the same ``webhook-id``, and in order per stream.
- All bookkeeping goes through one ``Journal`` (ordered, batched: thousands of deliveries a
  second as a few commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from storage import webhook_tables as tables
from storage.records import Event, Statement
from storage.store import Store, StoreUnavailable
from webhooks.bodies import BodyCache
from webhooks.catalog import WEBHOOK_DISABLED, WEBHOOK_TEST
from webhooks.config import DeliveryConfig
from webhooks.endpoints import Endpoint, EndpointStatus
from webhooks.journal import Journal, Write
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
from webhooks.unwritten import StreamKey, Unwritten, UnwrittenDeliveries

log = logging.getLogger(__name__)


def _row(
    delivery_id: int, delivery: Unwritten, *, status: str, attempts: int, next_attempt_at: float
) -> Write:
    """The first row of a delivery that lived in memory (later ones update it)."""
    return tables.upsert_delivery(
        tables.DeliveryRow(
            id=delivery_id,
            endpoint_id=delivery.endpoint_id,
            event_pos=delivery.event_pos,
            event_id=delivery.event_id,
            charger_id=delivery.charger_id,
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            created_at=delivery.created_at,
        )
    )


FANOUT_BATCH = 2000
BODY_CACHE = 20_000  # envelopes kept for dispatch; the rest is read back from the store
PRUNE_ROUNDS = 50
FANOUT_RETRY_FIRST = 0.25  # seconds before the log is read again after a failed read; doubling
FANOUT_RETRY_MAX = 5.0


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
        self.new_id = new_id  # prefix -> id
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
        self.journal = Journal(store)
        self.lock = asyncio.Lock()  # held while allocating delivery ids and writing their rows
        self._fanout_pos = 0  # events up to here are fanned out (in memory)
        self._cursor_written = 0  # the fan-out cursor as last written to the journal
        self._unwritten = UnwrittenDeliveries()  # fanned out, rows not written yet
        self._retrying: set[StreamKey] = set()  # streams whose head failed
        self._notified: deque[tuple[Sequence[Event], int]] = deque()  # (events, first pos)
        self._from_store = False  # the next fan-out pass reads the log (start, failure)
        self._known: set[tuple[str, int]] | None = None  # rows past the cursor at start
        self._active_count = 0  # active endpoints; none: the fan-out has nothing to do
        self._last_delivery_id = 0
        self._system_sequence = 0  # sequence of events of no charger
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
        counters = await tables.load_counters(self.store)
        self._fanout_pos = self._cursor_written = counters.get(tables.FANOUT_POS, 0)
        self._last_delivery_id = max(
            counters.get(tables.DELIVERY_ID, 0), await tables.max_delivery_id(self.store)
        )
        self._system_sequence = counters.get(tables.SYSTEM_SEQUENCE, 0)
        now = self.clock()
        for endpoint in endpoints:
            self.endpoints[endpoint.id] = endpoint
            self.scheduler.set_endpoint(
                endpoint.id, active=endpoint.active, failing_since=endpoint.failing_since
            )
        await self.journal.write(
            [
                tables.mark_interrupted(iso_utc(now)),
                Statement(
                    "DELETE FROM webhook_deliveries WHERE endpoint_id NOT IN"
                    " (SELECT id FROM webhook_endpoints)"
                ),
            ]
        )
        pending = await tables.load_pending(self.store)
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
        # Heads that failed before the restart: what comes behind them is written at once.
        self._retrying = {(row.endpoint_id, row.charger_id) for row in pending if row.attempts}
        if self._any_active():
            # Catch up with events committed while we were down, and with those fanned out
            # before the crash whose rows were not written yet (skipping the ones written).
            self._known = await tables.deliveries_after(self.store, self._fanout_pos)
            self._from_store = True
            self._fanout_wake.set()
        else:
            # Nobody to deliver to: events so far concern no endpoint (a new endpoint starts
            # after the log's end anyway), so the fan-out need not read through them.
            self._fanout_pos = max(self._fanout_pos, await tables.max_event_pos(self.store))
            self._cursor_written = self._fanout_pos
        self._tasks = [
            asyncio.create_task(self._fanout_loop(), name="webhook-fanout"),
            asyncio.create_task(self._dispatch_loop(), name="webhook-dispatch"),
            asyncio.create_task(self._prune_loop(), name="webhook-prune"),
        ]

    async def close(self) -> None:
        for task in [*self._tasks, *self._posts]:
            task.cancel()
        for task in [*self._tasks, *self._posts]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.journal.close()

    def notify(self, events: Sequence[Event], first_pos: int) -> None:
        """The store's commit listener: these events were committed, at ``first_pos`` and on.
        With no active endpoint there is nothing to fan out to (inactive ones get no new
        deliveries; replay fills gaps), so storing events then costs nothing here."""
        if self._active_count and events:
            self._notified.append((events, first_pos))
            self._fanout_wake.set()

    def _any_active(self) -> bool:
        self._active_count = sum(1 for e in self.endpoints.values() if e.active)
        return self._active_count > 0

    def wake(self) -> None:
        self._dispatch_wake.set()

    # -- endpoints -----------------------------------------------------------------------

    def put_endpoint(self, endpoint: Endpoint) -> None:
        had_active = self._active_count > 0
        self.endpoints[endpoint.id] = endpoint
        self.version += 1
        if self._any_active() and not had_active:
            # The fan-out idled while no endpoint was active; this one wants only what
            # comes after its start (from_pos), so the cursor can skip to there.
            self._fanout_pos = max(self._fanout_pos, endpoint.from_pos)
            self._fanout_wake.set()
        self.scheduler.set_endpoint(
            endpoint.id,
            active=endpoint.active,
            failing_since=endpoint.failing_since,
            now=self.clock(),
        )
        if not endpoint.active:
            # Its deliveries wait, maybe for long: written now, they hold the cursor no more.
            self._append(self._write_out(endpoint.id))
        self.wake()

    def remove_endpoint(self, endpoint_id: str) -> None:
        self.endpoints.pop(endpoint_id, None)
        self.version += 1
        self._any_active()
        self.scheduler.remove_endpoint(endpoint_id)
        self._unwritten.drop_endpoint(endpoint_id)
        self._retrying = {k for k in self._retrying if k[0] != endpoint_id}

    # -- queueing ------------------------------------------------------------------------

    def allocate_delivery_id(self) -> int:
        """The next delivery id; hold ``lock`` until its row is written (ids order streams)."""
        self._last_delivery_id += 1
        return self._last_delivery_id

    def _new_delivery(
        self,
        endpoint_id: str,
        pos: int,
        event: Event | tables.EventHead,
        now: float,
        writes: list[Write],
    ) -> Pending:
        """A delivery written now (replay, redeliver: the store must see it at once; behind
        a failed head: it may wait for hours)."""
        delivery_id = self.allocate_delivery_id()
        writes.append(
            tables.insert_delivery(
                tables.DeliveryRow(
                    id=delivery_id,
                    endpoint_id=endpoint_id,
                    event_pos=pos,
                    event_id=event.id,
                    charger_id=event.charger_id,
                    status=tables.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=iso_utc(now),
                )
            )
        )
        return Pending(
            delivery_id=delivery_id,
            endpoint_id=endpoint_id,
            charger_id=event.charger_id,
            event_pos=pos,
            next_at=now,
        )

    def _unwritten_delivery(
        self, endpoint_id: str, pos: int, event: Event, now: float, created_at: str
    ) -> Pending:
        """A fanned-out delivery, in memory until its first answer."""
        delivery_id = self.allocate_delivery_id()
        self._unwritten.add(
            delivery_id,
            Unwritten(
                endpoint_id=endpoint_id,
                event_pos=pos,
                event_id=event.id,
                charger_id=event.charger_id,
                created_at=created_at,
            ),
        )
        return Pending(
            delivery_id=delivery_id,
            endpoint_id=endpoint_id,
            charger_id=event.charger_id,
            event_pos=pos,
            next_at=now,
        )

    def _durable_cursor(self) -> int:
        """Events up to here have every delivery they need written (or none needed)."""
        return self._unwritten.cursor(self._fanout_pos)

    def _append(self, writes: list[Write]) -> asyncio.Future[None]:
        """Journal these writes, and the fan-out cursor after them if it moved."""
        cursor = self._durable_cursor()
        if cursor != self._cursor_written:
            writes.append(tables.set_counter(tables.FANOUT_POS, cursor))
            self._cursor_written = cursor
        return self.journal.append(writes)

    def _write_out(self, endpoint_id: str) -> list[Write]:
        """Rows for the endpoint's deliveries that live in memory only, as still pending."""
        return self._pending_rows(self._unwritten.take_endpoint(endpoint_id))

    def _write_out_stream(self, key: StreamKey) -> list[Write]:
        """Rows for a stream's deliveries waiting in memory behind a head that failed: they
        may wait for hours, and must not hold the fan-out cursor (and retention) back."""
        return self._pending_rows(self._unwritten.take_stream(key))

    def _pending_rows(self, taken: list[tuple[int, Unwritten]]) -> list[Write]:
        now = self.clock()
        return [
            _row(delivery_id, d, status=tables.PENDING, attempts=0, next_attempt_at=now)
            for delivery_id, d in taken
        ]

    @property
    def fanout_pos(self) -> int:
        """Events up to this pos have been fanned out (read it under ``lock`` to rely on it)."""
        return self._fanout_pos

    async def enqueue(self, endpoint_id: str, events: Sequence[tables.EventHead]) -> list[int]:
        """Queue these events again for one endpoint, in the given order (redeliver)."""
        async with self.lock:
            return await self.enqueue_locked(endpoint_id, events)

    async def enqueue_locked(
        self, endpoint_id: str, events: Sequence[tables.EventHead]
    ) -> list[int]:
        """As ``enqueue``, for a caller that holds ``lock`` (replay reads and queues under it,
        so fan-out cannot queue the same event meanwhile)."""
        if not events:
            return []
        now = self.clock()
        # The endpoint's in-memory deliveries are written first: they come before these in
        # their streams, and a restart rebuilds the streams in the order of the rows' ids.
        writes = self._write_out(endpoint_id)
        pendings = [self._new_delivery(endpoint_id, e.pos, e, now, writes) for e in events]
        writes.append(tables.set_counter(tables.DELIVERY_ID, self._last_delivery_id))
        await asyncio.shield(self._append(writes))
        self.scheduler.add(pendings)
        self.wake()
        return [p.delivery_id for p in pendings]

    def system_event(self, event_type: str, data: dict[str, object]) -> tuple[Event, list[Write]]:
        """An event of no charger, with the next sequence of its own (counter in the same
        transaction). The caller writes the returned rows."""
        self._system_sequence += 1
        event = Event(
            id=self.new_id("evt"),
            type=event_type,
            charger_id=None,
            sequence=self._system_sequence,
            timestamp=iso_utc(self.clock()),
            data=data,
        )
        return event, [event, tables.set_counter(tables.SYSTEM_SEQUENCE, self._system_sequence)]

    # -- fan-out -------------------------------------------------------------------------

    async def write_out_locked(self, endpoint_id: str) -> None:
        """Write the endpoint's in-memory deliveries (replay's candidate query must see them
        as pending), and wait until every outcome recorded so far is durable too (it must see
        those as settled); the caller holds ``lock``."""
        await asyncio.shield(self._append(self._write_out(endpoint_id)))

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
        if self._from_store:
            async with self.lock:
                while await self._fanout_from_store(None):
                    pass
            self._from_store = False
            self._known = None
        while self._notified:
            events, first = self._notified.popleft()
            if first + len(events) - 1 <= self._fanout_pos:
                continue  # read from the log already
            async with self.lock:
                while self._fanout_pos < first - 1:
                    if not await self._fanout_from_store(first - 1):
                        break
                skip = self._fanout_pos + 1 - first
                self._fan_out([(first + i, events[i]) for i in range(max(0, skip), len(events))])

    async def _fanout_from_store(self, upto: int | None) -> bool:
        """One batch of the log past the fan-out position (up to ``upto``); more to read?"""
        events = await tables.events_after(self.store, self._fanout_pos, FANOUT_BATCH)
        if upto is not None:
            events = [e for e in events if e.pos is not None and e.pos <= upto]
        if not events:
            return False
        self._fan_out([(e.pos, e) for e in events if e.pos is not None])
        return len(events) == FANOUT_BATCH

    def _fan_out(self, items: Sequence[tuple[int, Event]]) -> None:
        """Deliveries for these events (in pos order), in memory; hold ``lock``."""
        if not items:
            return
        now = self.clock()
        created_at = iso_utc(now)
        known = self._known
        pendings: list[Pending] = []
        writes: list[Write] = []
        retrying = self._retrying
        active = [e for e in self.endpoints.values() if e.active]
        for pos, event in items:
            if event.type == WEBHOOK_TEST:
                continue  # sent to its one endpoint by the test call itself
            wanted = False
            for endpoint in active:
                if pos > endpoint.from_pos and endpoint.wants(event.type, event.charger_id):
                    if known is not None and (endpoint.id, pos) in known:
                        continue  # written before a restart: pending or settled already
                    if (endpoint.id, event.charger_id) in retrying:
                        pending = self._new_delivery(endpoint.id, pos, event, now, writes)
                    else:
                        pending = self._unwritten_delivery(endpoint.id, pos, event, now, created_at)
                    pendings.append(pending)
                    wanted = True
            if wanted:
                self._bodies.put(pos, event)
        self._fanout_pos = items[-1][0]
        if writes or (not pendings and self._durable_cursor() != self._cursor_written):
            self._append(writes)  # rows behind failed heads; or only the cursor moves
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

    def _spawn(self, coro: object) -> None:
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._posts.add(task)
        task.add_done_callback(self._posts.discard)

    def _dispatch(self, batch: list[Dispatch]) -> None:
        """A task per POST whose body is cached; one task reads the others' bodies first."""
        missing: list[Dispatch] = []
        now = self.clock()
        for d in batch:
            found = self._bodies.get(d.event_pos)
            if found is None:
                missing.append(d)
                continue
            endpoint = self.endpoints.get(d.endpoint_id)
            if endpoint is None:
                self._drop([d], now)
            else:
                self._spawn(self._deliver(d, endpoint, found, now))
        if missing:
            self._spawn(self._run_batch(missing))

    def _drop(self, batch: list[Dispatch], now: float) -> None:
        """Nothing to post (a deleted endpoint, an event gone from the store): given up."""
        writes: list[Write] = []
        for d in batch:
            self.scheduler.discard(d.delivery_id)
            writes.append(self._settle(d, tables.FAILED, now))
        self._append(writes)
        self.wake()

    async def _run_batch(self, batch: list[Dispatch]) -> None:
        try:
            bodies = await self._bodies.fetch(d.event_pos for d in batch)
        except Exception:
            # The store could not be read: nothing was sent, so count a failed attempt and
            # retry on schedule; only an event really gone from the store is given up.
            log.exception("could not read events to deliver")
            for d in batch:
                self._finish(d, AttemptResult(status_code=None, latency_ms=0, error="not read"))
            return
        now = self.clock()
        gone: list[Dispatch] = []
        for d in batch:
            endpoint = self.endpoints.get(d.endpoint_id)
            found = bodies.get(d.event_pos)
            if endpoint is None or found is None:
                gone.append(d)
            else:
                self._spawn(self._deliver(d, endpoint, found, now))
        if gone:
            self._drop(gone, now)

    async def _deliver(
        self, d: Dispatch, endpoint: Endpoint, found: tuple[str, str, bytes], started: float
    ) -> None:
        event_id, _, body = found
        try:
            result = await self.poster.post(
                endpoint, event_id=event_id, body=body, timestamp=int(self.clock())
            )
        except Exception as exc:  # a bug of ours must not wedge the stream
            log.exception(
                "posting %s to %s failed",
                event_id,
                endpoint.id,
                extra={"webhookId": endpoint.id, "eventId": event_id},
            )
            result = AttemptResult(status_code=None, latency_ms=0, error=f"internal: {exc}")
        self._finish(d, result, (found, started))

    def _settle(self, d: Dispatch, status: str, next_attempt_at: float) -> Write:
        """The delivery's row after an answer: its first row if it lived in memory."""
        unwritten = self._unwritten.settle(d.delivery_id, (d.endpoint_id, d.charger_id))
        if unwritten is None:
            return tables.settle_delivery(
                d.delivery_id, status=status, attempts=d.attempt, next_attempt_at=next_attempt_at
            )
        return _row(
            d.delivery_id,
            unwritten,
            status=status,
            attempts=d.attempt,
            next_attempt_at=next_attempt_at,
        )

    def _finish(
        self,
        d: Dispatch,
        result: AttemptResult,
        sent: tuple[tuple[str, str, bytes], float] | None = None,
    ) -> None:
        """Record an answer: the scheduler decides, the journal persists (in this order, with
        no await between, so the next head's records can only come after). ``sent``: the
        event posted and when (None: nothing was posted, so no attempt row)."""
        now = self.clock()
        retry_after = parse_retry_after(result.retry_after, now)
        decision = self.scheduler.record(
            Outcome(
                delivery_id=d.delivery_id,
                status_code=result.status_code,
                retry_after=retry_after,
            ),
            now,
        )
        writes: list[Write] = []
        if sent is not None:
            (event_id, event_type, _), started = sent
            writes.append(
                tables.record_attempt(
                    delivery_id=d.delivery_id,
                    attempt=d.attempt,
                    endpoint_id=d.endpoint_id,
                    event_id=event_id,
                    event_type=event_type,
                    started_at=iso_utc(started),
                    finished_at=iso_utc(now),
                    status_code=result.status_code,
                    latency_ms=result.latency_ms,
                    error=result.error,
                    outcome=tables.SUCCEEDED if result.succeeded else tables.FAILED,
                )
            )
        status = {Verdict.SUCCEEDED: tables.SUCCEEDED, Verdict.FAILED: tables.FAILED}.get(
            decision.verdict, tables.PENDING
        )
        writes.append(self._settle(d, status, decision.next_at or now))
        key = (d.endpoint_id, d.charger_id)
        if decision.verdict is Verdict.RETRY:
            self._retrying.add(key)  # what comes behind this head is written from now on
            writes += self._write_out_stream(key)
        else:
            self._retrying.discard(key)
        endpoint = self.endpoints.get(d.endpoint_id)
        if endpoint is not None:
            if decision.disabled_reason is not None:
                writes += self._disable(endpoint, decision.disabled_reason, decision, now)
            elif decision.failing_since != endpoint.failing_since:
                self.endpoints[endpoint.id] = dataclasses.replace(
                    endpoint, failing_since=decision.failing_since
                )
                writes.append(tables.set_failing_since(endpoint.id, decision.failing_since))
        self._append(writes)
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
        scheduler = self.scheduler
        out: dict[str, tuple[int, int | None]] = {}
        for endpoint_id in self.endpoints:
            state = scheduler._endpoints.get(endpoint_id)
            count, oldest = 0, None
            for key in state.streams if state is not None else ():
                queue = scheduler._streams[key].queue
                if queue:
                    count += len(queue)
                    head = queue[0].event_pos
                    oldest = head if oldest is None else min(oldest, head)
            out[endpoint_id] = (count, oldest)
        return out

    async def event_ids_at(self, positions: list[int]) -> dict[int, str]:
        """pos -> event id, from the body cache or the store (for the pending snapshot)."""
        found = await self._bodies.fetch(positions)
        return {pos: body[0] for pos, body in found.items()}

    def _disable(
        self, endpoint: Endpoint, reason: str, decision: Decision, now: float
    ) -> list[Write]:
        failing_since = decision.failing_since
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
            failing_since=failing_since,
            updated_at=iso_utc(now),
        )
        _, writes = self.system_event(
            WEBHOOK_DISABLED, {"webhookId": endpoint.id, "url": endpoint.url, "reason": reason}
        )
        writes += self._write_out(endpoint.id)  # they wait now: they must not hold the cursor
        return [
            tables.set_endpoint_health(
                endpoint.id,
                status=EndpointStatus.DISABLED,
                disabled_reason=reason,
                failing_since=failing_since,
                updated_at=iso_utc(now),
            ),
            *writes,
        ]

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
            now=self.clock(), retention=self.config.retention, fanout_cursor=self._cursor_written
        )
        if plan is None:
            return
        for _ in range(PRUNE_ROUNDS):
            if not await tables.has_prunable(
                self.store, cutoff=plan.cutoff, max_event_pos=plan.max_event_pos
            ):
                return
            await self.journal.write(
                tables.prune(cutoff=plan.cutoff, max_event_pos=plan.max_event_pos, batch=plan.batch)
            )
