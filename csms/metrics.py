"""Prometheus metrics of one CSMS, in a registry of its own (several CSMS in one process, as in
the tests, must not share counters).

Why plain integers on the hot path: every OCPP CALL and every stored event passes here, and
``Counter.labels(...).inc()`` takes a lock and a label lookup each time. The ingest counters
and the call-latency histogram are kept as dicts of ints, touched only on the main event loop
(no lock needed), and turned into metric families by a collector at scrape time. The webhook
figures come from the delivery engine's thread through ``prometheus_client`` metrics, which
lock; they are per delivery, not per message.

No label carries a charger id: the series would grow with the fleet.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from csms.protocol.schemas import CHARGE_POINT_ACTIONS
from storage.records import Event

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The action label of a CALL whose action we do not know (bounded: a charger may send any
# string), and of a frame that could not be parsed at all.
OTHER_ACTION = "other"
INVALID_FRAME = "invalid"
OK = "ok"

CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELIVERY_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
)  # fmt: skip

# endpoint id -> (deliveries pending, id of the oldest event among them or None)
PendingSnapshot = Mapping[str, tuple[int, str | None]]

_KNOWN_ACTIONS = frozenset(CHARGE_POINT_ACTIONS)


class _Histogram:
    """Bucket counts as plain ints: one ``bisect`` per observation, no lock."""

    __slots__ = ("counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def buckets(self, bounds: Sequence[float]) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip((*bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class Metrics:
    """What the CSMS counts; ``exposition()`` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._calls: dict[tuple[str, str], int] = {}  # (action, result) -> count
        self._call_seconds: dict[str, _Histogram] = {}  # action -> latencies
        self._events: dict[str, int] = {}  # event type -> count (main loop)
        self._other_events: dict[str, int] = {}  # ... stored by the webhook thread's store
        self._connected: Callable[[], int] = lambda: 0
        self._partitions: Callable[[], int] = lambda: 0
        self._held_back: Callable[[], float] = lambda: 0.0
        self._pending: PendingSnapshot = {}
        self.commands = Counter(
            "chargehook_commands",
            "Commands (CSMS-initiated calls) by action and status reached: requested when"
            " accepted by the API, then accepted, rejected or failed",
            ["action", "status"],
            registry=self.registry,
        )
        # Per delivery, on the engine's thread: plain ints (it alone writes them), turned into
        # the families prometheus_client's Counter and Histogram made (same samples, _created
        # included) at scrape time. Their locks and label lookups cost ~2 us a delivery.
        self._delivered = 0
        self._undelivered = 0
        self._delivery_seconds = _Histogram(DELIVERY_BUCKETS)
        self._delivery_created = time.time()
        self.registry.register(_DeliveryCollector(self))
        self.pending = Gauge(
            "chargehook_webhook_pending",
            "Deliveries waiting for their endpoint, in flight included",
            ["webhook"],
            registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "chargehook_webhook_oldest_pending_seconds",
            "How long the oldest pending delivery of the endpoint has waited",
            ["webhook"],
            registry=self.registry,
        )
        self.registry.register(_IngestCollector(self))

    # -- the main event loop (hot path) --------------------------------------------------

    def ocpp_call(self, action: str, result: str, seconds: float) -> None:
        """A CALL answered: ``result`` is ``ok`` or the CALLERROR code sent."""
        if action not in _KNOWN_ACTIONS:
            action = OTHER_ACTION
        key = (action, result)
        calls = self._calls
        calls[key] = calls.get(key, 0) + 1
        histogram = self._call_seconds.get(action)
        if histogram is None:
            histogram = self._call_seconds[action] = _Histogram(CALL_BUCKETS)
        histogram.counts[bisect.bisect_left(CALL_BUCKETS, seconds)] += 1
        histogram.total += seconds

    def bad_frame(self, error_code: str) -> None:
        """A frame that could not be parsed (answered or not): counted, no latency."""
        key = (INVALID_FRAME, error_code)
        self._calls[key] = self._calls.get(key, 0) + 1

    def on_commit(self, events: Sequence[Event], first_pos: int) -> None:
        """The main store's commit listener: count stored events by type."""
        counts = self._events
        for event in events:
            counts[event.type] = counts.get(event.type, 0) + 1

    def on_other_commit(self, events: Sequence[Event], first_pos: int) -> None:
        """The same for the webhook service's own store (its thread; a dict of its own)."""
        counts = self._other_events
        for event in events:
            counts[event.type] = counts.get(event.type, 0) + 1

    def count_connected(self, connected: Callable[[], int]) -> None:
        self._connected = connected

    def count_partitions(self, held: Callable[[], int]) -> None:
        """The delivery partitions this node holds (all of them on SQLite: one node)."""
        self._partitions = held

    def count_held_back(self, held_back: Callable[[], float]) -> None:
        """Seconds delivery held back new requests so that charger answers came first."""
        self._held_back = held_back

    def command(self, action: str, status: str) -> None:
        self.commands.labels(action, status).inc()

    # -- the webhook engine's thread -----------------------------------------------------

    def delivery(self, event_id: str, succeeded: bool, answered_at: float) -> None:
        """One attempt answered; the latency is measured from the event id's clock, which
        is the time it was made and stored (``storage.ids``), in unix seconds."""
        if not succeeded:
            self._undelivered += 1
            return
        self._delivered += 1
        made = event_time(event_id)
        if made is not None:
            seconds = max(0.0, answered_at - made)
            histogram = self._delivery_seconds
            histogram.counts[bisect.bisect_left(DELIVERY_BUCKETS, seconds)] += 1
            histogram.total += seconds

    # -- scrape --------------------------------------------------------------------------

    def set_pending(self, snapshot: PendingSnapshot, now: float) -> None:
        """What the engine reported at this scrape (computed on its own loop): per endpoint,
        deliveries pending and the oldest event among them, whose id tells when it was
        stored. Endpoints deleted since the last scrape disappear."""
        self.pending.clear()
        self.oldest_pending.clear()
        for webhook, (count, oldest) in snapshot.items():
            self.pending.labels(webhook).set(count)
            made = event_time(oldest) if oldest is not None else None
            self.oldest_pending.labels(webhook).set(0.0 if made is None else max(0.0, now - made))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _DeliveryCollector(Collector):
    """The delivery counters as ``chargehook_webhook_deliveries`` (a counter by outcome) and
    ``chargehook_webhook_delivery_seconds`` (a histogram), read at scrape time from another
    thread: each int is read whole; a delivery counted meanwhile shows at the next scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        created = m._delivery_created
        deliveries = CounterMetricFamily(
            "chargehook_webhook_deliveries",
            "Webhook delivery attempts by outcome (success: a 2xx answer)",
            labels=["outcome"],
        )
        deliveries.add_metric(["success"], m._delivered, created=created)
        deliveries.add_metric(["failure"], m._undelivered, created=created)
        yield deliveries
        histogram = m._delivery_seconds
        total, counts = histogram.total, list(histogram.counts)
        snapshot = _Histogram(DELIVERY_BUCKETS)
        snapshot.counts, snapshot.total = counts, total
        seconds = HistogramMetricFamily(
            "chargehook_webhook_delivery_seconds",
            "From an event stored to a 2xx answer of a webhook endpoint for it",
        )
        seconds.add_metric([], snapshot.buckets(DELIVERY_BUCKETS), sum_value=total)
        seconds.samples.append(Sample(f"{seconds.name}_created", {}, created))
        yield seconds


class _IngestCollector(Collector):
    """The main loop's plain counters as metric families, read at scrape time (on the same
    loop, so nothing changes while they are read)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        yield GaugeMetricFamily(
            "chargehook_chargers_connected", "Chargers with an open OCPP connection",
            value=m._connected(),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "chargehook_webhook_partitions_owned",
            "Delivery partitions this node holds the lease of (it delivers their streams)",
            value=m._partitions(),
        )
        yield CounterMetricFamily(
            "chargehook_webhook_held_back_seconds",
            "Seconds webhook delivery started no new request because charger traffic"
            " saturated the server (charger answers first; delivery keeps a quarter)",
            value=m._held_back(),
        )
        calls = CounterMetricFamily(
            "chargehook_ocpp_calls",
            "OCPP CALLs from chargers by action and result (ok or the CALLERROR code sent);"
            " action 'other' for an unknown one, 'invalid' for a frame that did not parse",
            labels=["action", "result"],
        )
        for (action, result), count in sorted(tuple(m._calls.items())):
            calls.add_metric([action, result], count)
        yield calls
        seconds = HistogramMetricFamily(
            "chargehook_ocpp_call_seconds",
            "From a CALL received to its reply written",
            labels=["action"],
        )
        for action, histogram in sorted(tuple(m._call_seconds.items())):
            seconds.add_metric([action], histogram.buckets(CALL_BUCKETS), sum_value=histogram.total)
        yield seconds
        events = CounterMetricFamily("chargehook_events", "Events stored, by type", labels=["type"])
        for event_type, count in _summed(m._events, m._other_events):
            events.add_metric([event_type], count)
        yield events


def _summed(*counts: Mapping[str, int]) -> Iterable[tuple[str, int]]:
    total: dict[str, int] = {}
    for found in counts:
        for key, count in tuple(found.items()):  # one copy: another thread may add a key
            total[key] = total.get(key, 0) + count
    return sorted(total.items())


_SORTABLE = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGIT = {c: i for i, c in enumerate(_SORTABLE)}
_TIME_CHARS = 7


def event_time(event_id: str) -> float | None:
    """Unix seconds from the millisecond clock an event id starts with (``evt_`` + 7
    sortable base62 characters, ``storage.ids.time_ordered_id``); None if it has none."""
    prefix, _, rest = event_id.partition("_")
    if not prefix or len(rest) < _TIME_CHARS:
        return None
    low = _PAIRS.get(rest[5:7])
    if low is None:
        return None
    head = rest[:5]
    last = _last_head  # (head, its value): one object, swapped whole (two threads read it)
    if head == last[0]:
        high = last[1]
    else:
        high = 0
        for char in head:
            digit = _DIGIT.get(char)
            if digit is None:
                return None
            high = high * 62 + digit
        _remember(head, high)
    return (high * 3844 + low) / 1000.0


# The clock's last two characters (3,844 ms) read as one, and its first five remembered:
# consecutive events share them (measured: 2.2 us -> 0.5 us per delivery observed).
_PAIRS = {a + b: _DIGIT[a] * 62 + _DIGIT[b] for a in _SORTABLE for b in _SORTABLE}
_last_head: tuple[str, int] = ("", 0)


def _remember(head: str, high: int) -> None:
    global _last_head
    _last_head = (head, high)
