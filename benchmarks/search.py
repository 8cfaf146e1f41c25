"""The sustained section's search for the highest offered rate that passes: pure functions.

A probe offers one open-loop rate for a fixed window and passes when delivery kept pace
(``verdict``). The search (``next_rate``) starts at a multiple of the same run's baseline
calls/s (the target, so the first probe already says met or not), doubles or halves until it
has a passing rate below a failing one, then bisects (geometric midpoint) until the two are
within ``precision`` of each other or the probes run out. The answer is the highest rate that
passed; what the probes saw is in the record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

E2E_P99_MAX_MS = 1000.0  # the "e2e p99 <= 1 s"
KEEP_PACE = 0.95  # delivered per second in the window, at least this share of the offered rate
EDGE_SLACK = 0.01
MIN_RATE = 10.0  # events/s: no probe below (the search has failed by then)


@dataclass(frozen=True, slots=True)
class Probe:
    rate: float
    passed: bool


def bracket(probes: Sequence[Probe]) -> tuple[float | None, float | None]:
    """The highest passing rate, and the lowest failing rate above it (None: none yet)."""
    lo = max((p.rate for p in probes if p.passed), default=None)
    hi = min((p.rate for p in probes if not p.passed and (lo is None or p.rate > lo)), default=None)
    return lo, hi


def next_rate(
    probes: Sequence[Probe],
    *,
    start: float,
    max_probes: int,
    precision: float = 0.1,
    step: float = 2.0,
) -> float | None:
    """The next rate to offer, or None when the search is done: ``max_probes`` spent, the
    bracket within ``precision`` (relative), or no rate left worth a probe."""
    if not probes:
        return round(start)
    if len(probes) >= max_probes:
        return None
    lo, hi = bracket(probes)
    if lo is None:
        assert hi is not None
        nxt = hi / step  # everything failed so far: go down
        return round(nxt) if nxt >= MIN_RATE else None
    if hi is None:
        return round(lo * step)  # everything passed so far: go up
    if hi <= lo * (1 + precision):
        return None
    nxt = round(math.sqrt(lo * hi))
    return nxt if lo < nxt < hi else None


def verdict(
    *,
    offered: float,
    e2e_p99_ms: float | None,
    delivered_per_s: float | None,
    window_events: int,
    window_delivered: int,
    all_delivered: bool,
) -> dict[str, Any]:
    """Did delivery keep pace at ``offered`` events/s? e2e p99 (scheduled moment to arrival,
    over every MeterValues scheduled in the window, late arrivals included) within 1 s;
    the window's events delivered at >= 95% of the offered rate while it lasted; every
    event of the window delivered in the end, every stream complete and in order."""
    reasons = []
    if e2e_p99_ms is None or e2e_p99_ms > E2E_P99_MAX_MS:
        reasons.append(f"e2e p99 {e2e_p99_ms} ms > {E2E_P99_MAX_MS:g} ms")
    if delivered_per_s is None or delivered_per_s < KEEP_PACE * offered:
        reasons.append(f"delivered {delivered_per_s}/s < {KEEP_PACE:g} x offered {offered:g}/s")
    # the edges of the window are read from two clocks (the client's loop, the receiver's
    # wall time): a few events at an edge may fall on either side
    if window_delivered < window_events * (1 - EDGE_SLACK):
        reasons.append(f"{window_events - window_delivered} of the window's events not delivered")
    if not all_delivered:
        reasons.append("not every stream complete and in order at the end")
    return {"passed": not reasons, "why": "; ".join(reasons) or "kept pace"}
