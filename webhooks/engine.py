"""The delivery engine: its parts, their life cycle, and the partitions this node delivers.

Parts, each with one job (and each piece of state with one owner):

- ``Registry``: the endpoints as delivered to.
- ``FanOut`` (webhooks/fanout.py): events -> deliveries, for the partitions held.
- ``Scheduler`` (pure): per-stream order, retry timing, endpoint health.
- ``Dispatcher`` (webhooks/dispatch.py): posts what is due within the partition's lease and
  records each answer through ``outcomes.record`` (pure), the same function test sends use.
- ``Ledger``: alone writes delivery rows, attempts, cursors and counters; it knows what
  lives only in memory, and fences every write with the partition's lease.
- ``LeaseKeeper`` (webhooks/leases.py, PostgreSQL): which partitions this node holds.
  SQLite has one node, which holds every partition with no lease and no round trip.

A partition taken over (or held from the start) continues from its durable cursor: its
pending rows join the scheduler (counted per stream, read in windows: paging), and its events
past the cursor are fanned out again, skipping those with a row: at least once, same
``webhook-id``, in order per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence

from storage import webhook_tables as tables
from storage.postgres import PostgresStore
from storage.records import Event, Statement
from storage.store import Store
from webhooks.bodies import BodyCache
from webhooks.catalog import WEBHOOK_TEST
from webhooks.config import DeliveryConfig
from webhooks.dispatch import Dispatcher
from webhooks.endpoints import Endpoint
from webhooks.envelope import envelope_body
from webhooks.fanout import FanOut
from webhooks.governor import Post
from webhooks.leases import LeaseKeeper
from webhooks.ledger import Ledger
from webhooks.outcomes import DeliveryState, record, test_answer
from webhooks.partitions import PARTITIONS, Grant
from webhooks.poster import AttemptResult, Poster
from webhooks.registry import Registry
from webhooks.retention import plan_prune
from webhooks.scheduler import Decision, Dispatch, Pending, Policy, Refill, Scheduler
from webhooks.timefmt import iso_utc

log = logging.getLogger(__name__)

BODY_CACHE = 20_000  # envelopes kept for dispatch; the rest is read back from the store
PRUNE_ROUNDS = 50
POLL_HANDOFFS = 0.25  # clustered: seconds between looks for deliveries other nodes queued
REFILL_RETRY_FIRST = 0.25  # seconds before a failed read of stored deliveries is tried again
REFILL_RETRY_MAX = 5.0


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
        self.clustered = isinstance(store, PostgresStore)
        self.registry = Registry()
        self.scheduler = Scheduler(
            Policy(
                retry_schedule=tuple(config.retry_schedule),
                disable_after=config.disable_after,
                max_in_flight=config.max_in_flight,
                retry_after_cap=config.retry_after_cap,
                window=config.stream_window,
                memory_cap=config.pending_in_memory,
            ),
            rand,
        )
        self.ledger = Ledger(
            store,
            node_id=config.node_id,
            clustered=self.clustered,
            clock=lambda: self.clock(),
            new_id=new_id,
        )
        self.bodies = BodyCache(store, BODY_CACHE)  # what to post, built once per event
        self.dispatcher = Dispatcher(
            ledger=self.ledger,
            scheduler=self.scheduler,
            registry=self.registry,
            bodies=self.bodies,
            poster=poster,
            config=config,
            clock=lambda: self.clock(),
        )
        self.fanout = FanOut(
            store=store,
            ledger=self.ledger,
            scheduler=self.scheduler,
            registry=self.registry,
            bodies=self.bodies,
            clock=lambda: self.clock(),
            wake_dispatch=self.dispatcher.wake,
        )
        self.leases: LeaseKeeper | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._refill_wake = asyncio.Event()
        self.dispatcher.on_hungry = self._refill_wake.set

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        return self.registry.by_id

    @property
    def version(self) -> int:
        return self.registry.version

    # -- life cycle ----------------------------------------------------------------------

    async def start(self, endpoints: Iterable[Endpoint]) -> None:
        await self.ledger.start()
        for endpoint in endpoints:
            self.registry.put(endpoint)
            self.scheduler.set_endpoint(
                endpoint.id, active=endpoint.active, failing_since=endpoint.failing_since
            )
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
            self.leases = self.dispatcher.leases = LeaseKeeper(
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
            asyncio.create_task(self.fanout.run(), name="webhook-fanout"),
            asyncio.create_task(self.dispatcher.run(), name="webhook-dispatch"),
            asyncio.create_task(self._prune_loop(), name="webhook-prune"),
            asyncio.create_task(self._refill_loop(), name="webhook-refill"),
        ]
        if self.clustered:
            self._tasks += [
                asyncio.create_task(self.fanout.poll_log(), name="webhook-poll"),
                asyncio.create_task(self._take_handoffs(), name="webhook-handoffs"),
            ]

    async def close(self) -> None:
        """Give the partitions back (their state written first), stop, flush the ledger."""
        if self.leases is not None:
            await self.leases.close(release=True)
        await self._stop()
        await self.ledger.close()

    async def halt(self) -> None:
        """Stop as a node that dies would: nothing given back, nothing more written; its
        leases run out and another node takes its partitions over. For tests."""
        if self.leases is not None:
            await self.leases.close(release=False)
        await self._stop()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.dispatcher.cancel()

    def notify(self, events: Sequence[Event], first_pos: int) -> None:
        """The store's commit listener: these events were committed, at ``first_pos`` on."""
        self.fanout.notify(events, first_pos)

    def wake(self) -> None:
        self.dispatcher.wake()

    def defer_to(self, host_cpu: Callable[[], float], post: Post) -> None:
        """Charger answers first (webhooks/governor.py): while the loop that ``post`` runs
        callbacks on (its thread's CPU time read by ``host_cpu``) is behind on a saturated
        server, delivery keeps a quarter of it. Call on this engine's loop."""
        self.dispatcher.governor.defer_to(host_cpu, post)

    async def settled(self) -> None:
        """Everything recorded so far is durable, cursors included."""
        await self.ledger.settled()

    def partitions_held(self) -> list[int]:
        return self.ledger.held()

    def add_observer(self, observer: Callable[[Dispatch, AttemptResult, Decision], None]) -> None:
        """Called after each recorded answer (metrics, and tests waiting on conditions)."""
        self.dispatcher.add_observer(observer)

    def add_attempt_observer(self, observer: Callable[[str, bool, float], None]) -> None:
        """Called on this engine's loop after each attempt posted, with the event id (its
        clock tells when the event was stored), whether the answer was a 2xx, and the wall
        clock then: what a metric of delivery latency needs, without importing the CSMS."""
        self.dispatcher.add_attempt_observer(observer)

    # -- partitions ----------------------------------------------------------------------

    async def _take_over(self, grants: list[Grant]) -> None:
        """Deliver these partitions from now on: their pending rows join the scheduler, and
        their events past the durable cursor are fanned out again (skipping those that have
        a row). Runs under the ledger's lock, so no fan-out pass interleaves."""
        ledger = self.ledger
        mine = {g.partition: g for g in grants}
        part = ledger.partition_of
        async with ledger.lock:
            # Pending rows join their streams by count; they are read in windows (paging).
            stored = [
                s for s in await tables.pending_streams(self.store) if part(s.charger_id) in mine
            ]
            low = min(g.cursor for g in grants)
            known = [
                k
                for k in await tables.deliveries_after(self.store, low)
                if (g := mine.get(part(k.charger_id))) is not None and k.event_pos > g.cursor
            ]
            # Its streams' new deliveries come after the rows they have (ids order streams).
            above = max([s.max_id for s in stored] + [k.id for k in known], default=0)
            await ledger.reserve_ids(0, above=above)
            for g in grants:
                ledger.hold(g.partition, g.token, g.cursor)
            for s in stored:
                self.scheduler.add_stored((s.endpoint_id, s.charger_id), s.count)
            self.fanout.remember(known)
            if ledger.fanned_to < 0:
                # Starting: the fan-out reads the log from the lowest cursor on.
                ledger.fanned_to = low
                if self.registry.active:
                    self.fanout.read_log()
                else:  # nobody to deliver to: those events concern no endpoint
                    ledger.fanned_to = max(low, await tables.max_event_pos(self.store))
            elif self.registry.active and low < ledger.fanned_to:
                await self.fanout.catch_up(set(mine), low, ledger.fanned_to)
            ledger.caught_up(list(mine))
        self.wake()

    async def _refill_loop(self) -> None:
        """Read the next windows of spilled streams from the store (paging). Under the
        ledger's lock, after everything journalled is durable: every delivery the scheduler
        counts as stored is then in the store, and none is added while the reads run, so a
        window shorter than asked means the stream has no more."""
        delay = REFILL_RETRY_FIRST
        while True:
            await self._refill_wake.wait()
            self._refill_wake.clear()
            ledger = self.ledger
            asks: list[Refill] = []
            try:
                async with ledger.lock:
                    asks = self.scheduler.refills()
                    if not asks:
                        continue
                    await ledger.settled()
                    while asks:
                        ask = asks[0]
                        rows = await tables.stream_window(
                            self.store,
                            endpoint_id=ask.key[0],
                            charger_id=ask.key[1],
                            after=ask.after,
                            limit=ask.limit,
                        )
                        self.scheduler.refilled(ask, [_pending(r) for r in rows])
                        asks.pop(0)
            except Exception as exc:
                for ask in asks:
                    self.scheduler.refill_failed(ask)
                log.warning("pending deliveries not read from the store: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, REFILL_RETRY_MAX)
                self._refill_wake.set()
                continue
            delay = REFILL_RETRY_FIRST
            if self.scheduler.hungry:
                self._refill_wake.set()
            self.wake()

    def _lose(self, partitions: list[int]) -> None:
        """These partitions are another node's: drop their streams and what lives in memory
        of them, at once; answers still on their way are not recorded."""
        lost = set(partitions)
        part = self.ledger.partition_of
        for partition in lost:
            self.ledger.let_go(partition)
        self.dispatcher.forget(lost)
        self.scheduler.drop_streams(lambda key: part(key[1]) in lost)

    async def _give_back(self, partitions: list[int]) -> bool:
        """Stop these partitions cleanly before their leases are released: nothing new is
        posted, posts on their way are answered and recorded, and all of it is durable, so
        the next holder goes on from exactly here. False: not in time (let them run out)."""
        if not await self.dispatcher.drain(partitions, self.config.timeout + 1.0):
            return False
        try:
            await asyncio.wait_for(self.ledger.settled(), self.config.timeout)
        except Exception:
            return False
        self._lose(partitions)
        return True

    # -- endpoints -----------------------------------------------------------------------

    def put_endpoint(self, endpoint: Endpoint) -> None:
        if self.registry.put(endpoint):
            # The fan-out idled while no endpoint was active; this one wants only what
            # comes after its start (from_pos), so the cursor can skip to there.
            self.ledger.fanned_to = max(self.ledger.fanned_to, endpoint.from_pos)
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
        self.registry.remove(endpoint_id)
        self.scheduler.remove_endpoint(endpoint_id)
        self.ledger.drop_endpoint(endpoint_id)

    async def save_endpoint(self, row: tables.EndpointRow, endpoint: Endpoint) -> None:
        """Write an endpoint's row (admin API), then deliver to it as it is now."""
        await self.ledger.write([tables.put_endpoint(row)])
        self.put_endpoint(endpoint)

    async def delete_endpoint(self, endpoint_id: str) -> None:
        self.remove_endpoint(endpoint_id)
        await self.ledger.write(tables.delete_endpoint(endpoint_id))

    # -- the admin API's sends -----------------------------------------------------------

    async def enqueue(self, endpoint_id: str, events: Sequence[tables.EventHead]) -> list[int]:
        """Queue these events again for one endpoint, in the given order (redeliver)."""
        async with self.ledger.lock:
            return await self._enqueue_locked(endpoint_id, events)

    async def _enqueue_locked(
        self, endpoint_id: str, events: Sequence[tables.EventHead]
    ) -> list[int]:
        if not events:
            return []
        ledger = self.ledger
        now = self.clock()
        await ledger.reserve_ids(len(events))
        # The endpoint's in-memory deliveries are written first: they come before these in
        # their streams, and a restart rebuilds the streams in the order of the rows' ids.
        writes = ledger.write_out(endpoint_id)
        pendings: list[Pending] = []
        handed = 0
        for e in events:
            if ledger.holds(ledger.partition_of(e.charger_id)):
                pendings.append(ledger.new_row(endpoint_id, e.pos, e.id, e.charger_id, now, writes))
            else:  # another node delivers that stream: it takes the row from the store
                writes.append(ledger.handoff_row(endpoint_id, e.pos, e.id, e.charger_id, now))
                handed += 1
        writes += ledger.id_counter()
        await asyncio.shield(ledger.append(writes))
        self.scheduler.add(pendings)
        self.wake()
        return [p.delivery_id for p in pendings] + [0] * handed

    async def _take_handoffs(self) -> None:
        """Clustered: deliveries other nodes queued for the partitions this one holds join
        their streams (the row becomes pending, fenced). Each is taken once: ``taken``
        remembers those whose change of status may not be durable yet."""
        taken: set[int] = set()
        while True:
            await asyncio.sleep(POLL_HANDOFFS)
            try:
                rows = await tables.load_handoffs(self.store)
            except Exception as exc:
                log.debug("handed-over deliveries not read: %s", exc)
                continue
            taken &= {r.id for r in rows}
            ledger = self.ledger
            async with ledger.lock:
                fresh = [
                    r
                    for r in rows
                    if r.id not in taken
                    and r.endpoint_id in self.registry.by_id  # else: once it is synchronised
                    and ledger.holds(ledger.partition_of(r.charger_id))
                ]
                if not fresh:
                    continue
                taken |= {r.id for r in fresh}
                ledger.append(
                    [
                        tables.accept_handoff(r.id, ledger.fence(ledger.partition_of(r.charger_id)))
                        for r in fresh
                    ]
                )
                self.scheduler.add(_pending(r) for r in fresh)
            self.wake()

    async def replay(
        self, endpoint: Endpoint, *, since: str, until: str | None, only_failed: bool, chunk: int
    ) -> int:
        """Queue again, in order, the endpoint's events in [since, until) that it selects
        (of the partitions this node holds); those pending for it are skipped, and with
        ``only_failed`` so are those it received. Returns how many were queued."""
        ledger = self.ledger
        queued, after = 0, 0
        while True:
            # Under the ledger's lock and only up to the fan-out position: events past it
            # will be fanned out to the endpoint as it is now, and must not be queued twice.
            async with ledger.lock:
                if not after and self.registry.active:
                    await self.fanout.to_log_end()
                # Its in-memory deliveries must show as pending, and every outcome so far
                # as settled, to the candidate query.
                await asyncio.shield(ledger.append(ledger.write_out(endpoint.id), cursors=True))
                heads = await tables.replay_candidates(
                    self.store,
                    endpoint_id=endpoint.id,
                    since=since,
                    until=until,
                    only_failed=only_failed,
                    after_pos=after,
                    max_pos=ledger.fanned_to,
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
            event, writes = await ledger.system_event(
                WEBHOOK_TEST, {"isTest": True, "webhookId": endpoint.id}
            )
            await ledger.reserve_ids(1)
            delivery_id = ledger.next_id()
            writes = [
                event,
                *writes,
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

    # -- what metrics read -----------------------------------------------------------------

    def pending_snapshot(self) -> dict[str, tuple[int, int | None]]:
        """Per endpoint: deliveries pending (in flight included) and the smallest event pos
        among them (the oldest event waiting), or None. Run it on this engine's loop: it reads
        the scheduler's queues, which only that loop changes."""
        counts = self.scheduler.snapshot()
        return {endpoint_id: counts.get(endpoint_id, (0, None)) for endpoint_id in self.endpoints}

    async def event_ids_at(self, positions: list[int]) -> dict[int, str]:
        """pos -> event id, from the body cache or the store (for the pending snapshot)."""
        found = await self.bodies.fetch(positions)
        return {pos: body[0] for pos, body in found.items()}

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


def _pending(row: tables.DeliveryRow) -> Pending:
    """A stored delivery queued again (taken over, or handed off by another node)."""
    return Pending(
        delivery_id=row.id,
        endpoint_id=row.endpoint_id,
        charger_id=row.charger_id,
        event_pos=row.event_pos,
        attempts=row.attempts,
        next_at=row.next_attempt_at,
    )
