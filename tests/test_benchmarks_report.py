"""The benchmark's pure parts: the sustained section's rate search and verdict, the ratio to
the same run's baseline, and issue 15's targets table (from hand-made records; the smoke
test runs the harness itself)."""

from __future__ import annotations

from typing import Any

from benchmarks import report, search
from benchmarks.search import Probe


def test_the_search_starts_at_the_target_and_doubles_while_it_passes() -> None:
    assert search.next_rate([], start=3000.4, max_probes=4) == 3000
    assert search.next_rate([Probe(3000, True)], start=3000, max_probes=4) == 6000


def test_the_search_halves_while_it_fails_and_gives_up_below_the_floor() -> None:
    assert search.next_rate([Probe(3000, False)], start=3000, max_probes=4) == 1500
    probes = [Probe(30, False), Probe(15, False)]
    assert search.next_rate(probes, start=30, max_probes=9) is None  # 7.5/s: below the floor


def test_the_search_bisects_a_bracket_and_stops_within_precision_or_probes() -> None:
    probes = [Probe(3000, True), Probe(6000, False)]
    assert search.next_rate(probes, start=3000, max_probes=4) == 4243  # geometric midpoint
    assert search.next_rate(probes, start=3000, max_probes=2) is None  # probes spent
    close = [Probe(3000, True), Probe(3200, False)]
    assert search.next_rate(close, start=3000, max_probes=9, precision=0.1) is None
    assert search.bracket(close) == (3000, 3200)


def test_a_failure_below_the_highest_pass_does_not_bound_the_bracket() -> None:
    # noise: a lower rate failed, a higher one passed; the bracket is above the pass
    probes = [Probe(3000, False), Probe(1500, True), Probe(2121, True)]
    assert search.bracket(probes) == (2121, 3000)
    assert search.bracket([Probe(2000, False), Probe(2500, True)]) == (2500, None)


def _verdict(**over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "offered": 4000.0,
        "e2e_p99_ms": 40.0,
        "delivered_per_s": 3990.0,
        "window_events": 240_000,
        "window_delivered": 240_000,
        "all_delivered": True,
    }
    return search.verdict(**(args | over))


def test_a_probe_passes_only_when_delivery_kept_pace() -> None:
    assert _verdict() == {"passed": True, "why": "kept pace"}
    assert not _verdict(e2e_p99_ms=1000.5)["passed"]
    assert not _verdict(e2e_p99_ms=None)["passed"]
    assert not _verdict(delivered_per_s=3700.0)["passed"]
    assert not _verdict(window_delivered=200_000)["passed"]
    assert not _verdict(all_delivered=False)["passed"]
    why = _verdict(e2e_p99_ms=5000.0, all_delivered=False)["why"]
    assert "e2e p99 5000.0 ms" in why and "in order" in why


def _rec(section: str, variant: str, n: int, run: int, **fields: Any) -> dict[str, Any]:
    return {"section": section, "variant": variant, "chargers": n, "run": run, **fields}


def test_the_ratio_is_taken_within_each_run_then_the_median() -> None:
    base = [
        _rec("ingest", "baseline", 1000, r, callsPerSecond=v) for r, v in ((1, 2000), (2, 3000))
    ]
    mine = [_rec("ingest", "x", 1000, r, callsPerSecond=v) for r, v in ((1, 4000), (2, 3000))]
    ratio, each = report.run_ratio(mine, base)
    assert each == [2.0, 1.0] and ratio == 1.5  # the ratio of the medians would be 1.4


def _full_run(run: int, **over: Any) -> list[dict[str, Any]]:
    """One run of every section, each figure just meeting issue 15's target."""
    hooks = "chargehook-webhooks"
    delivered = {"allDelivered": True, "outOfOrder": 0, "chargersComplete": 1000}
    records = [
        _rec("ingest", "baseline", 1000, run, callsPerSecond=2500.0),
        _rec("ingest", "chargehook-store", 1000, run, callsPerSecond=10000.0),
        _rec("ingest", hooks, 1000, run, callsPerSecond=5000.0, delivery=delivered),
        _rec("ingest", "chargehook-postgres", 1000, run, callsPerSecond=5000.0),
        _rec("latency", hooks, 1000, run, targetRate=1000.0, e2eMs={"p50": 5.0, "p99": 50.0}),
        _rec("sustained", hooks, 1000, run, durationS=60.0, sustainedRate=3750.0, ratio=1.5),
        _rec("backlog", hooks, 1000, run, events=99000, eventsPerSecond=5000.0),
        _rec("backlog", f"{hooks}-postgres", 1000, run, events=99000, eventsPerSecond=5000.0),
        _rec(
            "outage",
            hooks,
            1000,
            run,
            events=1_000_000,
            eventsTarget=1_000_000,
            pileupRssPeakMB=300.0,
            drainRssPeakMB=290.0,
            eventsPerSecond=5000.0,
            orderKept=True,
            noneLost=True,
        ),
        _rec("connections", "chargehook-store", 10000, run, connected=10000, rssMB=250.0),
    ]
    for r in records:
        r.update(over.get(f"{r['section']}/{r['variant']}", {}))
    return records


def _targets(records: list[dict[str, Any]]) -> list[list[str]]:
    lines = report.targets(report.summarise(records)["groups"])
    assert lines[0].startswith("### Targets (issue 15")
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[4:]]


def test_the_targets_table_has_issue_15s_rows_all_met_at_the_limits() -> None:
    rows = _targets(_full_run(1))
    assert [r[1] for r in rows] == [
        ">= 4.0x baseline calls/s",
        ">= 2.0x baseline calls/s, every event delivered in order after the window",
        ">= 1.5x baseline calls/s",
        ">= 2.0x baseline calls/s",
        "p50 <= 5 ms, p99 <= 50 ms",
        ">= 5,000 events/s on SQLite and on PostgreSQL",
        "server RSS <= 300 MB while they pile up and while they drain; drain >= 5,000"
        " events/s, in order, none lost",
        "<= 300 MB RSS (no heartbeat unanswered, all connected)",
    ]
    assert [r[3] for r in rows] == ["met"] * 8, rows
    assert rows[0][2] == "4.00x (10,000 vs 2,500 calls/s)"


def test_each_target_is_missed_by_its_own_figure() -> None:
    misses = {
        "ingest/chargehook-store": {"callsPerSecond": 9999.0},
        "sustained/chargehook-webhooks": {"ratio": 1.49},
        "backlog/chargehook-webhooks-postgres": {"eventsPerSecond": 4999.0},
        "outage/chargehook-webhooks": {"drainRssPeakMB": 301.0},
    }
    rows = _targets(_full_run(1, **misses))
    assert [r[3] for r in rows] == [
        "**not met**",
        "met",
        "**not met**",
        "met",
        "met",
        "**not met**",
        "**not met**",
        "met",
    ]
    lost = _targets(_full_run(1, **{"outage/chargehook-webhooks": {"noneLost": False}}))
    assert lost[6][3] == "**not met**"


def test_a_section_not_run_is_not_measured_and_a_small_outage_says_so() -> None:
    records = [r for r in _full_run(1) if r["section"] not in ("sustained", "backlog")]
    for r in records:
        if r["section"] == "outage":
            r.update(events=200_000, eventsTarget=200_000)
    rows = _targets(records)
    assert rows[2][3] == "not measured" and rows[5][3] == "not measured"
    assert "fewer than the target's 1,000,000" in rows[6][0]
    # one store measured and short of the target: not met, whatever the other gives
    sqlite_only = [r for r in _full_run(1) if r["variant"] != "chargehook-webhooks-postgres"]
    sqlite_only[6]["eventsPerSecond"] = 100.0
    assert _targets(sqlite_only)[5][3] == "**not met**"


def test_the_table_leaves_out_sections_that_did_not_run() -> None:
    text = report.table([r for r in _full_run(1) if r["section"] in ("ingest", "outage")])
    assert "### 1. Ingest" in text and "### 5. Outage" in text
    assert "### 2." not in text and "### 4. Backlog" not in text and "### 6." not in text
    assert "### Targets" in text
