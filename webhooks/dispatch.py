"""Dispatch: post what the scheduler says is due, within the partition's lease, and turn
each answer into the scheduler's decision and the ledger's rows (``outcomes.record``).

The scheduler owns per-stream order, retry timing and endpoint health (``failing_since``,
disabling); dispatch only follows it. A POST starts only while this node's lease on the
delivery's partition holds by its own clock, and is cut short to end before the lease could
run out; an answer that comes for a partition no longer held (or whose lease lapsed
meanwhile) is not recorded: another node may be delivering that stream by now.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from storage import webhook_tables as tables
from webhooks.bodies import Body, BodyCache
from webhooks.catalog import WEBHOOK_DISABLED
from webhooks.config import DeliveryConfig
from webhooks.endpoints import Endpoint, EndpointStatus
from webhooks.governor import Governor
from webhooks.journal import Write
from webhooks.leases import LeaseKeeper
from webhooks.ledger import Ledger
from webhooks.outcomes import DeliveryState, answer_of, record
from webhooks.poster import AttemptResult, Poster
from webhooks.registry import Registry
from webhooks.scheduler import (
    Decision,
    Dispatch,
    Outcome,
    Scheduler,
    parse_retry_after,
)
from webhooks.timefmt import iso_utc

log = logging.getLogger(__name__)

MIN_WINDOW = 0.05  # seconds: a POST that would have less under its lease waits for a renewal


class Dispatcher:
    def __init__(
        self,
        *,
        ledger: Ledger,
        scheduler: Scheduler,
        registry: Registry,
        bodies: BodyCache,
        poster: Poster,
        config: DeliveryConfig,
        clock: Callable[[], float],
    ) -> None:
        self._ledger = ledger
        self._scheduler = scheduler
        self._registry = registry
        self._bodies = bodies
        self._poster = poster
        self._config = config
        self.clock = clock
        self.leases: LeaseKeeper | None = None  # None: one node, no lease
        self._closing: set[int] = set()  # partitions being given back: nothing new is posted
        self._posting: dict[int, int] = {}  # partition -> posts on their way
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._observers: list[Callable[[Dispatch, AttemptResult, Decision], None]] = []
        self._attempt_observers: list[Callable[[str, bool, float], None]] = []
        self.on_hungry: Callable[[], None] = lambda: None  # spilled streams want their next window
        self.governor = Governor()  # charger answers first, when the server is saturated

    def wake(self) -> None:
        self._wake.set()

    async def cancel(self) -> None:
        """Stop the posts on their way (close, or a node that dies)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.difference_update(tasks)  # a POST cancelled before it began

    def add_observer(self, observer: Callable[[Dispatch, AttemptResult, Decision], None]) -> None:
        self._observers.append(observer)

    def add_attempt_observer(self, observer: Callable[[str, bool, float], None]) -> None:
        self._attempt_observers.append(observer)

    # -- partitions given back -------------------------------------------------------------

    async def drain(self, partitions: list[int], timeout: float) -> bool:
        """Post nothing new for these partitions, and wait for their posts on the way to be
        answered and recorded; False if that takes longer than ``timeout``."""
        self._closing |= set(partitions)
        deadline = time.monotonic() + timeout
        while any(self._posting.get(p) for p in partitions):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    def forget(self, partitions: set[int]) -> None:
        self._closing -= partitions

    def _window(self, partition: int) -> float | bool | None:
        """How long a POST for this partition may take (None: no limit); False: not now."""
        if partition in self._closing:
            return False
        if self.leases is None:
            return None
        try:
            window = self.leases.window(partition)
        except KeyError:
            return False
        if window is not None and window <= MIN_WINDOW:
            return False
        return window

    def _postpone(self, d: Dispatch) -> None:
        self._scheduler.postpone(d.delivery_id, self.clock() + self._config.lease_ttl / 6)
        self.wake()

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        scheduler = self._scheduler
        while True:
            if scheduler.hungry:
                self.on_hungry()
            pause = self.governor.pause()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            batch = scheduler.due(self.clock())
            if batch:
                self._dispatch(batch)
                continue
            wakeup = scheduler.next_wakeup()
            delay = None if wakeup is None else max(0.0, wakeup - self.clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dispatch(self, batch: list[Dispatch]) -> None:
        """A task per POST whose body is cached; one task reads the others' bodies first."""
        missing: list[tuple[Dispatch, int]] = []
        now = self.clock()
        part = self._ledger.partition_of
        for d in batch:
            partition = part(d.charger_id)
            token = self._ledger.token(partition)
            if token is None:  # another node's now
                self._scheduler.forget(d.delivery_id)
                continue
            if self._window(partition) is False:  # the lease is about to run out
                self._postpone(d)
                continue
            found = self._bodies.get(d.event_pos)
            if found is None:
                missing.append((d, token))
                continue
            endpoint = self._registry.get(d.endpoint_id)
            if endpoint is None:
                self._drop([d], now)
            else:
                self._post(d, endpoint, found, now, partition, token)
        if missing:
            self.spawn(self._run_batch(missing))

    def _post(
        self, d: Dispatch, endpoint: Endpoint, found: Body, started: float, partition: int,
        token: int,
    ) -> None:  # fmt: skip
        """A task per POST, which takes itself out of ``_tasks`` when it ends (no done
        callback: one callback less per POST through the loop)."""
        self._posting[partition] = self._posting.get(partition, 0) + 1
        coro = self._deliver(d, endpoint, found, started, partition, token)
        self._tasks.add(asyncio.get_running_loop().create_task(coro))

    def _drop(self, batch: list[Dispatch], now: float) -> None:
        """Nothing to post (a deleted endpoint, an event gone from the store): given up."""
        writes: list[Write] = []
        for d in batch:
            self._scheduler.discard(d.delivery_id)
            writes += self._given_up(d, now)
        self._ledger.add(writes)
        self.wake()

    def _given_up(self, d: Dispatch, now: float) -> list[Write]:
        """A delivery given up unposted: its row (its first if it lived in memory)."""
        ledger = self._ledger
        unwritten = ledger.settle_unwritten(d.delivery_id, (d.endpoint_id, d.charger_id))
        fence = ledger.fence(ledger.partition_of(d.charger_id))
        if unwritten is None:
            return [
                tables.settle_delivery(
                    d.delivery_id,
                    status=tables.FAILED,
                    attempts=d.attempt,
                    next_attempt_at=now,
                    fence=fence,
                )
            ]
        row = tables.DeliveryRow(
            id=d.delivery_id,
            endpoint_id=d.endpoint_id,
            event_pos=d.event_pos,
            event_id=unwritten.event_id,
            charger_id=d.charger_id,
            status=tables.FAILED,
            attempts=d.attempt,
            next_attempt_at=now,
            created_at=unwritten.created_at,
        )
        return [tables.upsert_delivery(row, fence)]

    async def _run_batch(self, batch: list[tuple[Dispatch, int]]) -> None:
        """Read the bodies of these (with the token each was dispatched under), then post."""
        ledger = self._ledger
        try:
            bodies = await self._bodies.fetch(d.event_pos for d, _ in batch)
        except Exception:
            # The store could not be read: nothing was sent, so count a failed attempt and
            # retry on schedule; only an event really gone from the store is given up.
            log.exception("could not read events to deliver")
            for d, token in batch:
                failed = AttemptResult(status_code=None, latency_ms=0, error="not read")
                self._finish(d, failed, token)
            return
        now = self.clock()
        gone: list[Dispatch] = []
        for d, token in batch:
            endpoint = self._registry.get(d.endpoint_id)
            found = bodies.get(d.event_pos)
            partition = ledger.partition_of(d.charger_id)
            if ledger.token(partition) != token:
                continue  # dropped meanwhile, in-flight head and all: another node's now
            if endpoint is None or found is None:
                gone.append(d)
            else:
                self._post(d, endpoint, found, now, partition, token)
        if gone:
            self._drop(gone, now)

    async def _deliver(
        self, d: Dispatch, endpoint: Endpoint, found: Body, started: float, partition: int,
        token: int,
    ) -> None:  # fmt: skip
        event_id, _, body = found
        try:
            if self._ledger.token(partition) != token:
                return  # dropped since it was dispatched: another node's now
            window = self._window(partition)
            if window is False:  # checked again right before the POST
                self._postpone(d)
                return
            try:
                result = await self._poster.post(
                    endpoint,
                    event_id=event_id,
                    body=body,
                    timestamp=int(self.clock()),
                    within=window if isinstance(window, float) else None,
                )
            except Exception as exc:  # a bug of ours must not wedge the stream
                log.exception(
                    "posting %s to %s failed",
                    event_id,
                    endpoint.id,
                    extra={"webhookId": endpoint.id, "eventId": event_id},
                )
                result = AttemptResult(status_code=None, latency_ms=0, error=f"internal: {exc}")
            self._finish(d, result, token, (found, started), partition)
        finally:
            self._posting[partition] -= 1
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]

    def _finish(
        self,
        d: Dispatch,
        result: AttemptResult,
        token: int,
        sent: tuple[Body, float] | None = None,
        partition: int | None = None,
    ) -> None:
        """Record an answer: the scheduler decides, ``record`` says what to write, the ledger
        writes (in this order, with no await between, so the next head's records can only
        come after). ``sent``: the event posted and when (None: nothing was posted). An
        answer for a partition no longer held with ``token`` is not recorded. ``partition``:
        the delivery's, when the caller has it."""
        ledger = self._ledger
        if partition is None:
            partition = ledger.partition_of(d.charger_id)
        if ledger.token(partition) != token:
            # Another node's now: not ours to record. Its stream was dropped with this head
            # (the scheduler no longer knows this flight: nothing to tell it).
            return
        if self.leases is not None and not self.leases.valid(partition):
            # Paused past the lease (by this node's clock): it may be another node's by now;
            # the attempt is not recorded, and the delivery is posted again if still ours.
            self._postpone(d)
            return
        now = self.clock()
        endpoint = self._registry.get(d.endpoint_id)
        decision = self._scheduler.record(
            Outcome(
                delivery_id=d.delivery_id,
                status_code=result.status_code,
                retry_after=(
                    None
                    if result.retry_after is None
                    else parse_retry_after(result.retry_after, now)
                ),
            ),
            now,
        )
        unwritten = ledger.settle_unwritten(d.delivery_id, (d.endpoint_id, d.charger_id))
        body = sent[0] if sent is not None else None
        state = DeliveryState(
            delivery_id=d.delivery_id,
            endpoint_id=d.endpoint_id,
            event_pos=d.event_pos,
            event_id=unwritten.event_id if unwritten is not None else body[0] if body else "",
            event_type=body[1] if body is not None else "",
            charger_id=d.charger_id,
            attempt=d.attempt,
            started=sent[1] if sent is not None else -1.0,
            created_at=unwritten.created_at if unwritten is not None else "",
            written=unwritten is None,
            failing_since=None if endpoint is None else endpoint.failing_since,
        )
        recorded = record(
            state,
            answer_of(result, decision),
            now,
            fence=ledger.fence(partition),
            health=endpoint is not None,
        )
        writes: list[Write] = list(recorded.writes)
        if self._scheduler.head_failed((d.endpoint_id, d.charger_id)):
            # What waits behind this head may wait long now: written, it holds no cursor.
            writes += ledger.write_out_stream((d.endpoint_id, d.charger_id))
        if endpoint is not None:
            if recorded.disabled_reason is not None:
                writes += self._disable(endpoint, recorded.disabled_reason, decision, now)
            elif decision.failing_since != endpoint.failing_since:
                healthier = dataclasses.replace(endpoint, failing_since=decision.failing_since)
                self._registry.update(healthier, selection=False)
        ledger.add(writes)
        self.wake()
        if body is not None:
            for attempt_observer in self._attempt_observers:
                attempt_observer(body[0], result.succeeded, now)
        for observer in self._observers:
            observer(d, result, decision)

    def _disable(
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
        disabled = dataclasses.replace(
            endpoint,
            status=EndpointStatus.DISABLED,
            disabled_reason=reason,
            failing_since=decision.failing_since,
            updated_at=iso_utc(now),
        )
        self._registry.update(disabled, selection=True)
        data: dict[str, object] = {"webhookId": endpoint.id, "url": endpoint.url, "reason": reason}
        ledger = self._ledger
        if ledger.clustered:  # its sequence comes from the database: written just after
            self.spawn(self._system_event(WEBHOOK_DISABLED, data))
            return ledger.write_out(endpoint.id)
        event, writes = ledger.system_event_now(WEBHOOK_DISABLED, data)
        return [event, *writes, *ledger.write_out(endpoint.id)]

    async def _system_event(self, event_type: str, data: dict[str, object]) -> None:
        try:
            event, writes = await self._ledger.system_event(event_type, data)
        except Exception:
            log.exception("the %s event could not be made", event_type)
            return
        self._ledger.append([event, *writes])
