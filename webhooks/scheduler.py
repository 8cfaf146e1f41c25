"""The pure delivery scheduler: what to post when. No clock, no sockets, no storage.

Streams are keyed by (endpoint, charger): each keeps its deliveries FIFO (by delivery id,
which is event order for fan-out) and has at most its head in flight, so event N+1 of a
charger never reaches an endpoint before event N succeeded there or was given up, while
other streams go on (DESIGN section 5). ``now`` is a plain float (unix seconds) passed in by
the caller; jitter comes from an injected random source. The engine persists what this
decides; on restart it rebuilds the scheduler from the pending rows.

Paging: a long receiver outage must cost disk, not memory. A stream keeps at most
``Policy.window`` deliveries in memory, and all streams together about ``Policy.memory_cap``
(each may still keep ``Policy.floor``, so that no stream starves behind others; a spilled
stream is read back up to an even share of the cap). What does not fit waits in the store
only: the stream is *spilled*, it counts those (``stored``) and knows that every pending
delivery of it up to ``loaded_to`` (by id) is in memory, the rest in the store. A spilled
stream takes nothing new into memory (new deliveries are written as rows and counted), and
when its queue runs low it asks for the next window (``refills``): the deliveries with ids
above ``loaded_to``, in id order, which the engine reads from the store and hands back
(``refilled``). Order holds because memory always holds a prefix of the stream by id.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum

StreamKey = tuple[str, str | None]  # (endpoint id, charger id or None)

RETRY_AFTER_CAP = 3600.0  # a receiver may ask us to wait, but not for more than an hour
RETRY_AFTER_CODES = frozenset({429, 503})


class Verdict(StrEnum):
    SUCCEEDED = "succeeded"  # a 2xx: done, the stream goes on
    RETRY = "retry"  # failed; due again at ``next_at``
    FAILED = "failed"  # the schedule is exhausted: given up, the stream goes on
    PAUSED = "paused"  # the endpoint is not active (410, disabled, deleted); stays pending


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    retry_schedule: tuple[float, ...]  # seconds before the 2nd, 3rd, ... attempt
    disable_after: float  # seconds of continuous failure before the endpoint is disabled
    max_in_flight: int  # over all endpoints
    jitter: float = 0.2  # +-20%
    retry_after_cap: float = RETRY_AFTER_CAP
    window: int = 256  # per stream: deliveries kept in memory; the rest wait in the store
    memory_cap: int = 100_000  # over all streams, beyond each stream's ``floor``
    floor: int = 8  # a stream may always keep this many, whatever the others hold


@dataclass(slots=True, kw_only=True)  # not frozen: one per delivery, ~3x cheaper
class Pending:
    """A delivery to queue: one event for one endpoint."""

    delivery_id: int
    endpoint_id: str
    charger_id: str | None
    event_pos: int
    attempts: int = 0  # already made (a restart resumes the count)
    next_at: float = 0.0  # not before


@dataclass(slots=True, kw_only=True)  # not frozen: one per delivery, ~3x cheaper
class Dispatch:
    """Post this now; ``attempt`` counts from 1 and is to be recorded before posting."""

    delivery_id: int
    endpoint_id: str
    charger_id: str | None
    event_pos: int
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Refill:
    """Read the stream's next pending deliveries from the store: ids above ``after``, in id
    order, at most ``limit``; hand them to ``Scheduler.refilled`` with this request."""

    key: StreamKey
    after: int
    limit: int
    epoch: int  # the stream's: a stream dropped and made again meanwhile ignores the answer


@dataclass(slots=True, kw_only=True)  # not frozen: one per delivery, ~3x cheaper
class Outcome:
    delivery_id: int
    status_code: int | None  # None: no HTTP answer (refused, timed out, ...)
    retry_after: float | None = None  # seconds, from ``parse_retry_after``


@dataclass(slots=True, kw_only=True)  # not frozen: one per delivery, ~3x cheaper
class Decision:
    delivery_id: int
    endpoint_id: str
    verdict: Verdict
    attempts: int
    next_at: float | None  # RETRY and PAUSED: when the delivery is due again
    failing_since: float | None  # the endpoint's, after this outcome (persist it)
    disabled_reason: str | None = None  # set when this very outcome disabled the endpoint


def next_delay(
    attempts: int, schedule: tuple[float, ...], rand: Callable[[], float], jitter: float = 0.2
) -> float | None:
    """Seconds to wait after ``attempts`` failed attempts, with +-jitter; None: give up."""
    if attempts < 1 or attempts > len(schedule):
        return None
    return schedule[attempts - 1] * (1.0 - jitter + 2.0 * jitter * rand())


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(step: float, retry_after: float | None, cap: float) -> float:
    """Honour ``Retry-After`` within bounds: never sooner than the schedule's (jittered) step,
    so a receiver cannot make us hammer it, and never later than ``cap`` unless the step
    itself is longer."""
    if retry_after is None:
        return step
    return max(step, min(retry_after, cap))


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(slots=True)
class _Item:
    delivery_id: int
    event_pos: int
    attempts: int
    next_at: float


@dataclass(slots=True)
class _Stream:
    key: StreamKey
    epoch: int = 0
    queue: deque[_Item] = field(default_factory=deque)
    in_flight: bool = False  # the head is being posted
    token: int = 0  # bumped on each (re)scheduling; older heap entries are stale
    stored: int = 0  # deliveries waiting in the store only (ids above ``loaded_to``)
    loaded_to: int = 0  # every pending delivery with an id up to here is in ``queue``
    reading: bool = False  # a refill is on its way


@dataclass(slots=True)
class _Endpoint:
    active: bool
    failing_since: float | None  # first failure since the last success
    streams: set[StreamKey] = field(default_factory=set)


class Scheduler:
    def __init__(self, policy: Policy, rand: Callable[[], float]) -> None:
        self._policy = policy
        self._rand = rand  # uniform [0, 1), for jitter
        self._endpoints: dict[str, _Endpoint] = {}
        self._streams: dict[StreamKey, _Stream] = {}
        self._heap: list[tuple[float, int, StreamKey, int]] = []  # (at, delivery, key, token)
        self._flying: dict[int, _Stream] = {}  # delivery id -> its stream, while posted
        self._in_memory = 0  # deliveries in the queues, in flight included
        self._stored = 0  # deliveries of spilled streams waiting in the store only
        self._hungry: set[StreamKey] = set()  # spilled streams whose queue runs low
        self._spilled = 0  # streams with deliveries stored
        self._epochs = 0

    # -- endpoints -----------------------------------------------------------------------

    def set_endpoint(
        self,
        endpoint_id: str,
        *,
        active: bool,
        failing_since: float | None = None,
        now: float | None = None,
    ) -> None:
        """Add or update an endpoint; re-activating it makes its heads due at ``now``."""
        state = self._endpoints.get(endpoint_id)
        if state is None:
            self._endpoints[endpoint_id] = _Endpoint(active=active, failing_since=failing_since)
            return
        was_active, state.active, state.failing_since = state.active, active, failing_since
        if active and not was_active:
            for key in state.streams:
                stream = self._streams[key]
                if stream.queue and not stream.in_flight:
                    if now is not None:
                        stream.queue[0].next_at = min(stream.queue[0].next_at, now)
                    self._push(stream)

    def remove_endpoint(self, endpoint_id: str) -> None:
        state = self._endpoints.pop(endpoint_id, None)
        if state is None:
            return
        for key in state.streams:
            self._forget_stream(self._streams.pop(key))

    def _forget_stream(self, stream: _Stream) -> None:
        self._in_memory -= len(stream.queue)
        self._set_stored(stream, 0)
        self._hungry.discard(stream.key)

    def _set_stored(self, stream: _Stream, stored: int) -> None:
        if stored and not stream.stored:
            self._spilled += 1
        elif stream.stored and not stored:
            self._spilled -= 1
        self._stored += stored - stream.stored
        stream.stored = stored

    def _fair(self) -> int:
        """How many of its deliveries a spilled stream may hold in memory: an even share of
        ``memory_cap`` among the spilled streams, at least ``floor``, at most ``window``."""
        policy = self._policy
        share = policy.memory_cap // max(1, self._spilled)
        return min(policy.window, max(policy.floor, share))

    def is_active(self, endpoint_id: str) -> bool:
        state = self._endpoints.get(endpoint_id)
        return state is not None and state.active

    # -- queueing ------------------------------------------------------------------------

    def add(self, items: Iterable[Pending]) -> None:
        for pending in items:
            self.add_one(pending)

    def keeps(self, key: StreamKey) -> bool:
        """Would a new delivery of this stream (an id above all of its own) be kept in
        memory? If not, it must be written to the store before ``add`` (it is counted there)."""
        stream = self._streams.get(key)
        return stream is None or self._room(stream)

    def _room(self, stream: _Stream) -> bool:
        if stream.stored:
            return False
        size = len(stream.queue)
        policy = self._policy
        if size >= policy.window:
            return False
        return size < policy.floor or self._in_memory < policy.memory_cap

    def add_one(self, pending: Pending) -> None:
        """Queue a delivery: in memory, or (a spilled or full stream) counted as stored."""
        state = self._endpoints.get(pending.endpoint_id)
        if state is None:
            return  # deleted meanwhile
        key = (pending.endpoint_id, pending.charger_id)
        stream = self._streams.get(key)
        if stream is None:
            self._epochs += 1
            stream = self._streams[key] = _Stream(key=key, epoch=self._epochs)
            state.streams.add(key)
        queue = stream.queue
        delivery_id = pending.delivery_id
        if stream.stored:
            if delivery_id > stream.loaded_to:
                self._spill(stream)
                return
        elif not self._room(stream) and (not queue or queue[-1].delivery_id < delivery_id):
            self._spill(stream)
            return
        item = _Item(
            delivery_id=delivery_id,
            event_pos=pending.event_pos,
            attempts=pending.attempts,
            next_at=pending.next_at,
        )
        if not queue or queue[-1].delivery_id < delivery_id:
            queue.append(item)
            if delivery_id > stream.loaded_to:
                stream.loaded_to = delivery_id
        else:  # committed out of id order: keep FIFO by id, behind an in-flight head
            index = len(queue)
            floor = 1 if stream.in_flight else 0
            while index > floor and queue[index - 1].delivery_id > delivery_id:
                index -= 1
            queue.insert(index, item)
        self._in_memory += 1
        if not stream.in_flight and queue[0] is item:
            self._push(stream)

    def _spill(self, stream: _Stream) -> None:
        if stream.queue:
            stream.loaded_to = max(stream.loaded_to, stream.queue[-1].delivery_id)
        self._set_stored(stream, stream.stored + 1)
        self._check_hungry(stream)

    def add_stored(self, key: StreamKey, count: int) -> None:
        """A stream's pending rows in the store (a start, a take-over): none in memory yet;
        they are read in windows by id. Call it before other deliveries join the stream."""
        state = self._endpoints.get(key[0])
        if state is None or count <= 0:
            return
        stream = self._streams.get(key)
        if stream is None:
            self._epochs += 1
            stream = self._streams[key] = _Stream(key=key, epoch=self._epochs)
            state.streams.add(key)
        self._set_stored(stream, stream.stored + count)
        self._check_hungry(stream)

    def _check_hungry(self, stream: _Stream) -> None:
        if stream.stored and not stream.reading and len(stream.queue) <= self._fair() // 2:
            self._hungry.add(stream.key)

    # -- paging --------------------------------------------------------------------------

    @property
    def hungry(self) -> bool:
        """Are there spilled streams whose queue runs low (``refills`` has work)?"""
        return bool(self._hungry)

    def refills(self, most: int = 256) -> list[Refill]:
        """The windows to read now (each stream marked as reading until ``refilled``): a
        spilled stream is read when half its share of memory (``_fair``) is left, up to it."""
        fair = self._fair()
        out: list[Refill] = []
        for key in list(self._hungry)[:most]:
            self._hungry.discard(key)
            stream = self._streams[key]
            limit = fair - len(stream.queue)
            if limit <= 0:
                continue  # the share grew meanwhile (fewer streams spilled): not hungry now
            stream.reading = True
            out.append(Refill(key=key, after=stream.loaded_to, limit=limit, epoch=stream.epoch))
        return out

    def refilled(self, ask: Refill, rows: Sequence[Pending]) -> None:
        """The store's answer to ``ask``: the stream's next pending deliveries, by id. Fewer
        than asked: that was all of them (the caller read after everything counted as stored
        was durable, and nothing was added meanwhile)."""
        stream = self._streams.get(ask.key)
        if stream is None or stream.epoch != ask.epoch:
            return  # dropped meanwhile (partition lost, endpoint deleted)
        stream.reading = False
        queue = stream.queue
        was_empty = not queue
        taken = 0
        for row in rows:
            if row.delivery_id <= stream.loaded_to:
                continue
            queue.append(
                _Item(
                    delivery_id=row.delivery_id,
                    event_pos=row.event_pos,
                    attempts=row.attempts,
                    next_at=row.next_at,
                )
            )
            stream.loaded_to = row.delivery_id
            taken += 1
        self._in_memory += taken
        self._set_stored(stream, 0 if len(rows) < ask.limit else max(1, stream.stored - taken))
        if queue:
            if was_empty and not stream.in_flight:
                self._push(stream)
            self._check_hungry(stream)
        elif not stream.in_flight and not stream.stored:
            self._drop_empty(stream)

    def refill_failed(self, ask: Refill) -> None:
        """The read did not happen: the stream asks again."""
        stream = self._streams.get(ask.key)
        if stream is not None and stream.epoch == ask.epoch:
            stream.reading = False
            self._check_hungry(stream)

    def _drop_empty(self, stream: _Stream) -> None:
        del self._streams[stream.key]
        state = self._endpoints.get(stream.key[0])
        if state is not None:
            state.streams.discard(stream.key)

    def _push(self, stream: _Stream) -> None:
        stream.token += 1
        head = stream.queue[0]
        heapq.heappush(self._heap, (head.next_at, head.delivery_id, stream.key, stream.token))

    def _live_head(self, entry: tuple[float, int, StreamKey, int]) -> _Stream | None:
        _, _, key, token = entry
        stream = self._streams.get(key)
        if stream is None or stream.token != token or stream.in_flight or not stream.queue:
            return None
        state = self._endpoints.get(key[0])
        return stream if state is not None and state.active else None

    # -- the three questions -------------------------------------------------------------

    def due(self, now: float) -> list[Dispatch]:
        """The heads to post now (marked in flight), within ``max_in_flight``."""
        out: list[Dispatch] = []
        heap = self._heap
        while heap and heap[0][0] <= now and len(self._flying) < self._policy.max_in_flight:
            stream = self._live_head(heapq.heappop(heap))
            if stream is None:
                continue
            head = stream.queue[0]
            head.attempts += 1
            stream.in_flight = True
            self._flying[head.delivery_id] = stream
            out.append(
                Dispatch(
                    delivery_id=head.delivery_id,
                    endpoint_id=stream.key[0],
                    charger_id=stream.key[1],
                    event_pos=head.event_pos,
                    attempt=head.attempts,
                )
            )
        return out

    def next_wakeup(self) -> float | None:
        """When ``due`` will next have something; None: nothing until new work or a record."""
        if len(self._flying) >= self._policy.max_in_flight:
            return None
        heap = self._heap
        while heap and self._live_head(heap[0]) is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def record(self, outcome: Outcome, now: float) -> Decision:
        """Take the result of a posted head; say what becomes of it and of its endpoint."""
        stream = self._flying.pop(outcome.delivery_id)
        stream.in_flight = False
        head = stream.queue[0]
        endpoint_id = stream.key[0]
        live = self._streams.get(stream.key) is stream
        state = self._endpoints.get(endpoint_id) if live else None
        policy = self._policy
        code = outcome.status_code
        reason: str | None = None
        next_at: float | None = None

        if code is not None and 200 <= code < 300:
            verdict = Verdict.SUCCEEDED
            if state is not None:
                state.failing_since = None
        else:
            if state is not None and state.failing_since is None:
                state.failing_since = now
            if code == 410:
                verdict, next_at = Verdict.PAUSED, now
                if state is not None and state.active:
                    reason = "the endpoint answered 410 Gone"
            else:
                step = next_delay(head.attempts, policy.retry_schedule, self._rand, policy.jitter)
                if step is None:
                    verdict = Verdict.FAILED
                else:
                    if code in RETRY_AFTER_CODES:
                        step = retry_delay(step, outcome.retry_after, policy.retry_after_cap)
                    verdict, next_at = Verdict.RETRY, now + step
                if (
                    state is not None
                    and state.active
                    and state.failing_since is not None
                    and now - state.failing_since >= policy.disable_after
                ):
                    reason = f"failing continuously for {_duration(now - state.failing_since)}"
            if reason is not None and state is not None:
                state.active = False
        if next_at is not None:
            head.next_at = next_at
        if verdict in (Verdict.SUCCEEDED, Verdict.FAILED):
            stream.queue.popleft()
            if live:
                self._in_memory -= 1
                self._check_hungry(stream)
        if live:
            if stream.queue:
                self._push(stream)
            elif not stream.stored and not stream.reading:
                self._drop_empty(stream)
        return Decision(
            delivery_id=outcome.delivery_id,
            endpoint_id=endpoint_id,
            verdict=verdict,
            attempts=head.attempts,
            next_at=next_at,
            failing_since=state.failing_since if state is not None else None,
            disabled_reason=reason,
        )

    def discard(self, delivery_id: int) -> None:
        """Drop an in-flight head that cannot be posted (its event is gone); the stream goes on."""
        stream = self._flying.pop(delivery_id)
        stream.in_flight = False
        if self._streams.get(stream.key) is not stream:
            return
        stream.queue.popleft()
        self._in_memory -= 1
        self._check_hungry(stream)
        if stream.queue:
            self._push(stream)
        elif not stream.stored and not stream.reading:
            self._drop_empty(stream)

    def head_failed(self, key: StreamKey) -> bool:
        """Has the stream's head failed (and not been settled since)? What comes behind it
        may then wait for hours, so the fan-out writes it at once."""
        stream = self._streams.get(key)
        if stream is None or not stream.queue:
            return False
        attempts = stream.queue[0].attempts
        return attempts > 1 or (attempts == 1 and not stream.in_flight)

    def postpone(self, delivery_id: int, next_at: float) -> None:
        """An in-flight head that was not posted after all (its lease is about to run out):
        the attempt does not count, and it is due again at ``next_at``."""
        stream = self._flying.pop(delivery_id, None)
        if stream is None:
            return
        stream.in_flight = False
        if self._streams.get(stream.key) is not stream or not stream.queue:
            return
        head = stream.queue[0]
        head.attempts -= 1
        head.next_at = next_at
        self._push(stream)

    def forget(self, delivery_id: int) -> None:
        """An in-flight head that is not this node's to post after all (its partition is not
        held): no decision; the stream goes on (or was dropped)."""
        stream = self._flying.pop(delivery_id, None)
        if stream is not None:
            stream.in_flight = False
            if self._streams.get(stream.key) is stream and stream.queue:
                self._push(stream)

    def drop_streams(self, dropped: Callable[[StreamKey], bool]) -> None:
        """Drop these streams whole, their in-flight heads too (their partition is another
        node's now): an answer still on its way must not touch the scheduler (the same
        delivery may be queued again by a later take-over)."""
        for key in [k for k in self._streams if dropped(k)]:
            stream = self._streams.pop(key)
            self._forget_stream(stream)
            state = self._endpoints.get(key[0])
            if state is not None:
                state.streams.discard(key)
        for delivery_id in [i for i, s in self._flying.items() if dropped(s.key)]:
            del self._flying[delivery_id]

    def snapshot(self) -> dict[str, tuple[int, int | None]]:
        """Per endpoint: deliveries pending (in flight and stored included) and the smallest
        event pos among their heads in memory (the oldest event waiting), or None. A spilled
        stream always has its head in memory but while its next window is read."""
        out: dict[str, tuple[int, int | None]] = {}
        for endpoint_id, state in self._endpoints.items():
            count, oldest = 0, None
            for key in state.streams:
                stream = self._streams[key]
                queue = stream.queue
                count += stream.stored
                if queue:
                    count += len(queue)
                    head = queue[0].event_pos
                    oldest = head if oldest is None else min(oldest, head)
            out[endpoint_id] = (count, oldest)
        return out

    def failing_since(self, endpoint_id: str) -> float | None:
        """The endpoint's health as the scheduler keeps it (its one owner)."""
        state = self._endpoints.get(endpoint_id)
        return None if state is None else state.failing_since

    # -- for tests and metrics -----------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._flying)

    @property
    def pending(self) -> int:
        """Deliveries queued, in memory (in flight included) and in the store."""
        return self._in_memory + self._stored

    @property
    def in_memory(self) -> int:
        return self._in_memory

    @property
    def stored(self) -> int:
        return self._stored
