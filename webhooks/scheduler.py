"""The pure delivery scheduler: what to post when. No clock, no sockets, no storage.

Streams are keyed by (endpoint, charger): each keeps its deliveries FIFO (by delivery id,
which is event order for fan-out) and has at most its head in flight, so event N+1 of a
charger never reaches an endpoint before event N succeeded there or was given up, while
other streams go on (DESIGN section 5). ``now`` is a plain float (unix seconds) passed in by
the caller; jitter comes from an injected random source. The engine persists what this
decides; on restart it rebuilds the scheduler from the pending rows.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """A delivery to queue: one event for one endpoint."""

    delivery_id: int
    endpoint_id: str
    charger_id: str | None
    event_pos: int
    attempts: int = 0  # already made (a restart resumes the count)
    next_at: float = 0.0  # not before


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    """Post this now; ``attempt`` counts from 1 and is to be recorded before posting."""

    delivery_id: int
    endpoint_id: str
    charger_id: str | None
    event_pos: int
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    delivery_id: int
    status_code: int | None  # None: no HTTP answer (refused, timed out, ...)
    retry_after: float | None = None  # seconds, from ``parse_retry_after``


@dataclass(frozen=True, slots=True, kw_only=True)
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
    queue: deque[_Item] = field(default_factory=deque)
    in_flight: bool = False  # the head is being posted
    token: int = 0  # bumped on each (re)scheduling; older heap entries are stale


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
        self._pending = 0  # deliveries queued, in flight included

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
            stream = self._streams.pop(key)
            self._pending -= len(stream.queue)

    def is_active(self, endpoint_id: str) -> bool:
        state = self._endpoints.get(endpoint_id)
        return state is not None and state.active

    # -- queueing ------------------------------------------------------------------------

    def add(self, items: Iterable[Pending]) -> None:
        for pending in items:
            state = self._endpoints.get(pending.endpoint_id)
            if state is None:
                continue  # deleted meanwhile
            key = (pending.endpoint_id, pending.charger_id)
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = _Stream(key=key)
                state.streams.add(key)
            item = _Item(
                delivery_id=pending.delivery_id,
                event_pos=pending.event_pos,
                attempts=pending.attempts,
                next_at=pending.next_at,
            )
            queue = stream.queue
            if not queue or queue[-1].delivery_id < item.delivery_id:
                queue.append(item)
            else:  # committed out of id order: keep FIFO by id, behind an in-flight head
                index = len(queue)
                floor = 1 if stream.in_flight else 0
                while index > floor and queue[index - 1].delivery_id > item.delivery_id:
                    index -= 1
                queue.insert(index, item)
            self._pending += 1
            if not stream.in_flight and queue[0] is item:
                self._push(stream)

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
                self._pending -= 1
        if live:
            if stream.queue:
                self._push(stream)
            elif state is not None:
                del self._streams[stream.key]
                state.streams.discard(stream.key)
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
        self._pending -= 1
        if stream.queue:
            self._push(stream)
        else:
            del self._streams[stream.key]
            self._endpoints[stream.key[0]].streams.discard(stream.key)

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
            self._pending -= len(stream.queue)
            state = self._endpoints.get(key[0])
            if state is not None:
                state.streams.discard(key)
        for delivery_id in [i for i, s in self._flying.items() if dropped(s.key)]:
            del self._flying[delivery_id]

    def snapshot(self) -> dict[str, tuple[int, int | None]]:
        """Per endpoint: deliveries queued (in flight included) and the smallest event pos
        among their heads (the oldest event waiting), or None."""
        out: dict[str, tuple[int, int | None]] = {}
        for endpoint_id, state in self._endpoints.items():
            count, oldest = 0, None
            for key in state.streams:
                queue = self._streams[key].queue
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
        return self._pending
