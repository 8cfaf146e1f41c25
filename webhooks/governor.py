"""Charger answers first: how much of a saturated server delivery may take.

The CSMS's loop (charger answers) and the delivery engine's loop (webhooks/threaded.py) run in
one interpreter and take turns on its lock about evenly: left alone, a saturated server would
answer chargers at about half speed while delivery keeps pace. The product decision (issue
15): charger answers come first. Delivery may fall behind, but keeps at least a quarter of
the capacity (``SHARE``), catches up when the load drops, and its lag shows in
``chargehook_webhook_oldest_pending_seconds``.

How, measured on CPU clocks every ``TICK`` (100 ms): the host's thread (the CSMS loop's) and
this engine's own thread. The host *presses* when it used at least ``HOST_BUSY`` of the tick
and the process was saturated (the two threads together, or the whole process, used
``SATURATED`` of what it can). While the host presses, the dispatcher starts no new POST once
its own thread has used ``SHARE`` of the tick; the next tick lets it go on. Answers to POSTs
already on their way are still recorded (that work counts against the next tick). Delivery is
never held below its share, and not at all when the host leaves room: then it catches up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

TICK = 0.1  # seconds between looks at the CPU clocks
SHARE = 0.25  # of a core: what delivery keeps at least while the host presses
HOST_BUSY = 0.5  # of a core: the host's use above which it may press
SATURATED = 0.9  # of what the process can use: above it the server is saturated


def pressing(host: float, own: float, process: float, cpus: int) -> bool:
    """Does the host (charger answers) need the CPU delivery would take? Shares of one core
    over the last tick: the host's thread, delivery's thread, the whole process (``cpus``:
    the cores it may run on; the interpreter's lock makes the two threads share one)."""
    if host < HOST_BUSY:
        return False
    return host + own >= SATURATED or process >= SATURATED * cpus


class Governor:
    def __init__(
        self,
        own_cpu: Callable[[], float] = time.thread_time,
        process_cpu: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._own_cpu = own_cpu  # read on the delivery thread: its own CPU time
        self._process_cpu = process_cpu
        self._clock = clock
        self._host_cpu: Callable[[], float] | None = None  # None: nobody to defer to
        self._cpus = max(1, len(os.sched_getaffinity(0)))
        self._start = 0.0
        self._marks = (0.0, 0.0, 0.0)  # host, own, process CPU at the tick's start
        self.pressed = False  # the host pressed in the last tick
        self.held = 0.0  # seconds delivery was held back, in all (a measure of the policy)

    def defer_to(self, host_cpu: Callable[[], float]) -> None:
        """Give way to the thread whose CPU time ``host_cpu`` reads (the CSMS loop's)."""
        self._host_cpu = host_cpu
        self._start = self._clock()
        self._marks = (host_cpu(), self._own_cpu(), self._process_cpu())

    @property
    def deferring(self) -> bool:
        """Is there a host to give way to?"""
        return self._host_cpu is not None

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
            self.pressed = pressing(
                (host - h0) / elapsed, (own - o0) / elapsed, (process - p0) / elapsed, self._cpus
            )
            self._start, self._marks, elapsed = now, (host, own, process), 0.0
        if not self.pressed or self._own_cpu() - self._marks[1] < SHARE * TICK:
            return 0.0
        wait = TICK - elapsed
        self.held += wait
        return wait
