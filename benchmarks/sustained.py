"""Sustained delivery: the highest open-loop rate at which delivery keeps pace.

chargehook-webhooks with one endpoint on ``*`` (the loopback receiver); N chargers in a
transaction send MeterValues open loop at a total offered rate R (each charger every N/R s,
random phase, one CALL in flight: a call due while the last is out waits, and its clock
runs from the moment it was due). The meterValue timestamp is that scheduled moment, so
the receiver's end-to-end latency runs from when the charger meant to send to when the
event arrived: a server that falls behind on answers or on deliveries shows either way.

A probe offers R for a window (60 s by default) after a warm-up, on a fresh server, and
passes when delivery kept pace (``search.verdict``). The search (``search.next_rate``)
starts at 1.5 x the same run's baseline calls/s (the issue's target) and doubles, halves or
bisects for a bounded number of probes; the figure is the highest rate that passed, and its
ratio to that baseline.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import search
from benchmarks.procs import ProcGroup
from benchmarks.sections import (
    Scale,
    _delivery,
    _per_call,
    _workdir,
    receiver_stats,
    register_webhook,
    run_load,
    start_chargehook,
    start_receiver,
    wait_delivered,
)

START_MULTIPLE = 1.5  # the first probe: the target, x the baseline's calls/s
PENDING_AFTER_S = 1.0  # "nothing piling up": the window's events not arrived 1 s after it


async def measure_sustained(scale: Scale, baseline: dict[str, Any]) -> dict[str, Any]:
    """The search; ``baseline`` is the same run's baseline ingest record (N chargers)."""
    n, window = scale.sustained_chargers, scale.sustained_seconds
    base_cps = float(baseline["callsPerSecond"])
    record: dict[str, Any] = {
        "section": "sustained",
        "variant": "chargehook-webhooks",
        "chargers": n,
        "durationS": window,
        "workload": (
            f"{n} chargers in a transaction, MeterValues offered open loop at R/s in total"
            f" (each charger every {n}/R s, random phase, one CALL in flight), one webhook"
            f" endpoint on *; per probe a fresh server, {scale.warmup:g} s warm-up, then a"
            f" {window:g} s window; R searched from {START_MULTIPLE:g} x the same run's"
            f" baseline calls/s, at most {scale.sustained_probes} probes"
        ),
        "counted": (
            "a probe passes when e2e p99 <= 1 s (meterValue timestamp = the moment the"
            " MeterValues was due, to arrival at the receiver; every MeterValues due in the"
            " window, late arrivals included), the window's arrivals >= 95% of R, and every"
            " event delivered, every stream complete and in order at the end; the figure ="
            " the highest R that passed, and R / baseline calls/s"
        ),
        "baselineCallsPerSecond": base_cps,
        "baselineRun": baseline.get("run"),
        "baselineMeasuredFor": baseline.get("measuredFor"),
    }
    probes: list[search.Probe] = []
    seen: list[dict[str, Any]] = []
    started = time.monotonic()
    while True:
        rate = search.next_rate(
            probes, start=START_MULTIPLE * base_cps, max_probes=scale.sustained_probes
        )
        if rate is None:
            break
        result = await _probe(scale, float(rate))
        result["ratio"] = round(rate / base_cps, 3) if base_cps else None
        seen.append(result)
        probes.append(search.Probe(float(rate), bool(result["passed"])))
    lo, hi = search.bracket(probes)
    record.update(
        probes=seen,
        sustainedRate=lo or 0.0,
        ratio=round(lo / base_cps, 3) if lo and base_cps else 0.0,
        lowestFailingRate=hi,
        targetRatePassed=next(
            (p.passed for p in probes if p.rate == round(START_MULTIPLE * base_cps)), None
        ),
        searchS=round(time.monotonic() - started, 1),
    )
    return record


async def _probe(scale: Scale, rate: float) -> dict[str, Any]:
    """One window at ``rate`` on a fresh server; its figures and verdict."""
    n, window = scale.sustained_chargers, scale.sustained_seconds
    with _workdir() as workdir:
        async with ProcGroup() as group:
            server = await start_chargehook(group, workdir)
            assert server.api_port is not None
            receiver, receiver_port = await start_receiver(group, workdir)
            await register_webhook(server.api_port, receiver_port)
            load = await run_load(
                group,
                workdir,
                {
                    "mode": "open",
                    "port": server.ocpp_port,
                    "chargers": n,
                    "rate": rate,
                    "duration": window,
                    "warmup": scale.warmup,
                    "concurrency": 200,
                    "setupTimeout": 120,
                    "stampScheduled": True,
                },
                server.proc.pid,
                receiver.pid,
                timeout=window + 300,
            )
            stats = await wait_delivered(receiver_port, n, scale.sustained_catch_up, quiet=5.0)
            w = await receiver_stats(
                receiver_port,
                load.wall_start,
                load.wall_end,
                arrived_by=load.wall_end + PENDING_AFTER_S,
            )
    res = load.result
    span = load.wall_end - load.wall_start
    delivered_per_s = round(w["arrivedInWindow"] / span, 1) if span > 0 else None
    delivery = _delivery(stats, n, load.wall_end)
    judged = search.verdict(
        offered=rate,
        e2e_p99_ms=w["e2eMs"]["p99"] if w["e2eCount"] else None,
        delivered_per_s=delivered_per_s,
        window_events=int(res["scheduled"]),
        window_delivered=int(w["e2eCount"]),
        all_delivered=bool(delivery["allDelivered"]),
    )
    return {
        "rate": rate,
        "passed": judged["passed"],
        "why": judged["why"],
        "scheduled": res["scheduled"],
        "callsPerSecond": res["callsPerSecond"],
        "callLatencyMs": res["latencyMs"],  # from the scheduled moment
        "deliveredPerSecond": delivered_per_s,
        "e2eMs": w["e2eMs"],
        "e2eCount": w["e2eCount"],
        "pendingAfterWindow": max(0, int(w["e2eCount"]) - int(w["e2eArrivedBy"] or 0)),
        "catchUpS": delivery["lastArrivalAfterLoadS"],
        "delivery": delivery,
        "server": load.server,
        "serverCpuUsPerCall": _per_call(load.server["cpuS"], res["calls"]),
        "client": {"cpuPct": res["clientCpuPct"]},
        "receiver": load.receiver,
        # the load client and the receiver share the other core: near 100, it is the limit
        "loadCorePct": round(res["clientCpuPct"] + (load.receiver or {}).get("cpuPct", 0.0), 1),
        "otherLoadPct": load.other_load,
        "errors": res["errors"],
    }
