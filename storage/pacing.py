"""Group commits that wait a little for company when the process is busy.

Every commit has a cost of its own, whatever it holds: SQLite's BEGIN and COMMIT, a WAL frame
for each page the commit dirtied (the tables' and indexes' last pages, rewritten by every
commit), a turn of the loop to answer, the delivery engine woken once more; PostgreSQL's round
trips. Under a closed loop the group commit fills itself (hundreds of units a commit); under
an open loop of thousands of chargers each sending now and then, each commit held ~5 units
(chargehook-webhooks at 2,400 MeterValues/s, 1,000 chargers, one core: ~500 commits/s).

So, when the process used much of the CPU it may use over the last ``WINDOW``, a commit
waits until ``gap`` after the previous one began, ``gap`` growing from nothing at ``CALM``
to ``MAX_GAP`` at ``BUSY``, or until ``ENOUGH`` units are pending (a closed loop of a few
chargers, each waiting for its answer before it sends again, must not wait out the gap:
100 chargers and a 20 ms gap would cap them at 5,000 calls/s). An idle or moderately loaded
server commits at once (no added latency); a busy one spends its CPU on messages rather
than on commits.

Measured with ``python -m benchmarks.profile --variant chargehook-webhooks --offered R``
(1,000 chargers, open loop, one core; server CPU at a fixed offered rate):
- a fixed wait before every commit of the charger-facing store, at 2,400/s: units per commit
  5 -> 10 -> 15 -> 21 and server CPU 95 -> 92 -> 84 -> 78% for no wait, 2, 5 and 10 ms;
  the same wait on the delivery engine's store gained nothing.
- this rule at 3,000/s: 96.4 / 96.3% with ``MAX_GAP`` 8 ms (ramp 50-90%), 87.9 / 87.5% with
  20 ms (ramp 65-95%). At 1,000/s (the latency section, ~63% busy) e2e p50 2.2 ms, p99
  12.8 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from storage.cpus import usable_cpus

WINDOW = 0.1  # seconds over which the process's CPU use is read
CALM = 0.65  # of the CPU it may use: below it, commits never wait
BUSY = 0.95  # of the CPU it may use: from it on, commits wait up to MAX_GAP
MAX_GAP = 0.02  # seconds between the starts of two commits, at most (the latency it adds)
ENOUGH = 64  # units pending: a commit begins at once, however short the gap so far


def gap_for(busy: float) -> float:
    """The least time between two commits' starts, for the share of its CPU the process
    used (``busy``, 0..1)."""
    if busy <= CALM:
        return 0.0
    return MAX_GAP * min(1.0, (busy - CALM) / (BUSY - CALM))


class CommitPacer:
    def __init__(
        self,
        cpus: float | None = None,
        process_cpu: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cpus = usable_cpus() if cpus is None else cpus
        self._process_cpu = process_cpu
        self._clock = clock
        self._window_start = clock()
        self._window_cpu = process_cpu()
        self._last_start = float("-inf")
        self.gap = 0.0  # the current least time between two commits' starts

    def wait(self) -> float:
        """Seconds to wait before the next commit begins (0: begin now)."""
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed >= WINDOW:
            cpu = self._process_cpu()
            self.gap = gap_for((cpu - self._window_cpu) / elapsed / self._cpus)
            self._window_start, self._window_cpu = now, cpu
        return max(0.0, self._last_start + self.gap - now)

    def began(self) -> None:
        """A commit begins now."""
        self._last_start = self._clock()
