"""Charger answers first: how much of a saturated server delivery may take.

The CSMS's loop (charger answers) and the delivery engine's loop (webhooks/threaded.py) run in
one interpreter and take turns on its lock about evenly: left alone, a saturated server
answers chargers at about half speed while delivery keeps pace. The product decision (issue
15): charger answers come first. Delivery may fall behind, but keeps at least a quarter of
the capacity (``SHARE``), catches up when the load drops, and its lag shows in
``chargehook_webhook_oldest_pending_seconds``.

How, every ``TICK`` (100 ms). The host (the CSMS loop) *presses* when its loop is behind and
the process is saturated. Behind: a no-op callback posted to it from here ran ``LAG_BUSY``
(20 ms) or more after it was posted (an idle loop runs it within the interpreter's switch
interval, 5 ms; a loop with more ready work than it gets CPU for runs it only after that
work). Saturated: the host's and this engine's threads used ``SATURATED`` of a core together
(they share the interpreter's lock), or the whole process that much of the cores it may use
(the CPU clocks of the two threads and of the process). While the host presses, the
dispatcher starts no new POST once delivery (its thread and the HTTP client's) has used
``SHARE`` of the tick; the next tick lets it go on. Answers to POSTs already on their way are
still recorded, and what delivery used past its share in a pressed tick is carried into the
next ones (at most ``MAX_OVER``): without that, up to ``max_in_flight`` POSTs released at a
tick's start and their answers took about half the core, not a quarter (measured at N=1000
closed loop: delivery 0.50 of the core while pressed; 0.27 with the carry, and ingest
3,488 -> 5,025 calls/s). Delivery is never held below its share, and not at all when the
host keeps up: then it catches up. ``held`` adds up the time it gave way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from storage.cpus import usable_cpus

TICK = 0.1  # seconds between looks at the host
SHARE = 0.25  # of a core: what delivery keeps at least while the host presses
LAG_BUSY = 0.02  # seconds: a host loop this late to run a callback has more work than CPU
SATURATED = 0.9  # of what the process can use: above it the server is saturated
MAX_OVER = 2 * SHARE * TICK  # delivery's CPU past its share carried to later ticks, at most

Post = Callable[[Callable[[], None]], None]  # run this callback on the host's loop
# The HTTP client posts from a thread of its own (pyreqwest's Rust runtime): its CPU is
# delivery's too, and ``time.thread_time`` on the delivery thread does not see it.
CLIENT_THREAD_NAMES = frozenset({"pyreqwest"})
RESCAN = 1.0  # seconds between looks for the client's threads (they start with the client)


def _thread_cpu(tid: int) -> float:
    """A thread's CPU time by its kernel id: Linux's per-thread CPU clock (clockid
    ``(~tid << 3) | 6``, as glibc builds for ``pthread_getcpuclockid``); 0 once it ended."""
    try:
        return time.clock_gettime((~tid << 3) | 6)
    except OSError:
        return 0.0


def _threads_named(names: frozenset[str]) -> list[int]:
    tids = []
    try:
        for entry in os.scandir("/proc/self/task"):
            try:
                with open(f"{entry.path}/comm") as comm:
                    if comm.read().strip() in names:
                        tids.append(int(entry.name))
            except OSError:
                continue  # the thread ended meanwhile
    except OSError:
        return []
    return tids


class DeliveryCpu:
    """CPU time of delivery: the calling (delivery) thread's and the HTTP client's threads'.
    Without that, a client that posts from its own threads takes more than its share while
    the governor holds back (measured: at 1.5x the baseline's rate, charger answers fell
    seconds behind while delivery kept pace)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tids: list[int] = []
        self._scanned = -RESCAN

    def __call__(self) -> float:
        now = self._clock()
        if now - self._scanned >= RESCAN:
            self._tids, self._scanned = _threads_named(CLIENT_THREAD_NAMES), now
        total = time.thread_time()  # read on every dispatcher turn while pressed: no genexpr
        for tid in self._tids:
            total += _thread_cpu(tid)
        return total


def pressing(lag: float, threads: float, process: float, cpus: float) -> bool:
    """Does the host (charger answers) need the CPU delivery would take? ``lag``: how late
    its loop ran a callback (seconds); ``threads``: the host's and delivery's threads' CPU
    over the tick, in cores; ``process``: the whole process's; ``cpus``: the cores it may
    use (its affinity, capped by a container's CPU quota)."""
    return lag >= LAG_BUSY and (threads >= SATURATED or process >= SATURATED * cpus)


class Governor:
    def __init__(
        self,
        own_cpu: Callable[[], float] | None = None,
        process_cpu: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Read on the delivery thread: its own CPU time and the HTTP client's threads'.
        self._own_cpu = own_cpu if own_cpu is not None else DeliveryCpu()
        self._process_cpu = process_cpu
        self._clock = clock
        self._host_cpu: Callable[[], float] | None = None  # None: nobody to defer to
        self._post: Post | None = None
        self._cpus = usable_cpus()
        self._start = 0.0
        self._marks = (0.0, 0.0, 0.0)  # host, own, process CPU at the tick's start
        self._sent = 0.0  # when the probe on its way was posted to the host's loop
        self._ran: float | None = 0.0  # when it ran there (None: not yet)
        self.pressed = False  # the host pressed in the last tick
        self._over = 0.0  # delivery's CPU over its share in the ticks the host pressed (s)
        self.held = 0.0  # seconds delivery was held back, in all (a measure of the policy)

    @property
    def deferring(self) -> bool:
        """Is there a host to give way to?"""
        return self._host_cpu is not None

    def defer_to(self, host_cpu: Callable[[], float], post: Post) -> None:
        """Give way to the loop that ``post`` runs callbacks on, whose thread's CPU time
        ``host_cpu`` reads (the CSMS loop)."""
        self._host_cpu, self._post = host_cpu, post
        self._start = self._clock()
        self._marks = (host_cpu(), self._own_cpu(), self._process_cpu())
        self._probe(self._start)

    def _probe(self, now: float) -> None:
        assert self._post is not None
        self._sent, self._ran = now, None
        self._post(self._mark)

    def _mark(self) -> None:  # on the host's loop
        self._ran = self._clock()

    def pause(self) -> float:
        """Seconds to wait before starting more POSTs (0: go on). Call on the delivery thread."""
        host_cpu = self._host_cpu
        if host_cpu is None:
            return 0.0
        now = self._clock()
        elapsed = now - self._start
        if elapsed >= TICK:
            host, own, process = host_cpu(), self._own_cpu(), self._process_cpu()
            h0, o0, p0 = self._marks
            ran = self._ran
            lag = (now if ran is None else ran) - self._sent
            over = self._over + own - o0 - SHARE * elapsed if self.pressed else 0.0
            self._over = min(max(over, 0.0), MAX_OVER)
            self.pressed = pressing(
                lag, (host - h0 + own - o0) / elapsed, (process - p0) / elapsed, self._cpus
            )
            self._start, self._marks, elapsed = now, (host, own, process), 0.0
            if ran is not None:
                self._probe(now)
        if not self.pressed or self._over + self._own_cpu() - self._marks[1] < SHARE * TICK:
            return 0.0
        wait = TICK - elapsed
        self.held += wait
        return wait
