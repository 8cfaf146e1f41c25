"""Medians over runs and the Markdown table (with the issue's targets)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

Record = dict[str, Any]


def _get(record: Record, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def median(records: Iterable[Record], path: str) -> Any:
    values = [_get(r, path) for r in records]
    values = [v for v in values if v is not None]
    if not values:
        return None
    if all(isinstance(v, bool) for v in values):
        return all(values)
    return statistics.median(values)


def _ok(records: list[Record]) -> list[Record]:
    return [r for r in records if "error" not in r and "skipped" not in r]


def run_ratio(
    rs: list[Record], base: list[Record], path: str = "callsPerSecond"
) -> tuple[float | None, list[float]]:
    """The ratio to the baseline measured in the same run: each run's ratio (paired by run
    number), and their median; without a pair for any run, the ratio of the medians."""
    by_run = {r.get("run"): _get(r, path) for r in base}
    each = [
        v / by_run[r.get("run")]
        for r in rs
        if (v := _get(r, path)) is not None and by_run.get(r.get("run"))
    ]
    if each:
        return statistics.median(each), each
    mine, theirs = median(rs, path), median(base, path)
    return (mine / theirs if mine is not None and theirs else None), []


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float | int):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def summarise(records: list[Record]) -> dict[str, Any]:
    """Medians per (section, variant, chargers)."""
    groups: dict[tuple[str, str, int], list[Record]] = {}
    notes: list[str] = []
    for r in records:
        if r.get("section") == "meta":
            continue
        key = (r["section"], r.get("variant", ""), int(r.get("chargers") or 0))
        groups.setdefault(key, []).append(r)
        if "error" in r:
            notes.append(f"{key[0]} {key[1]} N={key[2]} run {r.get('run')}: error: {r['error']}")
        elif "skipped" in r:
            notes.append(f"{key[0]} {key[1]} N={key[2]}: skipped: {r['skipped']}")
    return {"groups": groups, "notes": sorted(set(notes))}


STORE_NAMES = {"chargehook-webhooks": "SQLite", "chargehook-webhooks-postgres": "PostgreSQL"}
INGEST_ORDER = ("baseline", "chargehook-store", "chargehook-webhooks", "chargehook-postgres")


def _order(variant: str) -> int:
    return INGEST_ORDER.index(variant) if variant in INGEST_ORDER else len(INGEST_ORDER)


def postgres_table(groups: dict[tuple[str, str, int], list[Record]]) -> list[str]:
    """The CPU split of the PostgreSQL ingest variant: the node (pinned) and the database
    server (unpinned), per call and in % of one core."""
    keys = sorted(k for k in groups if k[0] == "ingest" and k[1] == "chargehook-postgres")
    if not keys:
        return []
    out = [
        "#### Ingest on PostgreSQL: where the CPU goes",
        "",
        "| N | calls/s | x baseline | node CPU us/call | postgres CPU us/call | node+postgres"
        " us/call | node CPU % | postgres CPU % (one core = 100) | of it our backends %"
        " | other procs % (both CPUs, besides postgres) |",
        "| ---: |" + " ---: |" * 9,
    ]
    for key in keys:
        rs = _ok(groups[key])
        if not rs:
            out.append(f"| {key[2]} | (no result: see notes) |" + " |" * 8)
            continue
        base = _ok(groups.get(("ingest", "baseline", key[2]), []))
        cps = median(rs, "callsPerSecond")
        base_cps = median(base, "callsPerSecond") if base else None
        pg_s, ours_s = median(rs, "postgres.cpuS"), median(rs, "postgres.oursS")
        out.append(
            f"| {key[2]} | {_fmt(cps, 0)}"
            f" | {f'{cps / base_cps:.2f}x' if base_cps else '-'}"
            f" | {_fmt(median(rs, 'serverCpuUsPerCall'), 0)}"
            f" | {_fmt(median(rs, 'postgresCpuUsPerCall'), 0)}"
            f" | {_fmt(median(rs, 'totalCpuUsPerCall'), 0)}"
            f" | {_fmt(median(rs, 'server.cpuPct'))} | {_fmt(median(rs, 'postgres.cpuPct'))}"
            f" | {_fmt(100 * ours_s / pg_s if pg_s and ours_s is not None else None)}"
            f" | {_fmt(median(rs, 'otherLoadPct.besidesPostgres'))} |"
        )
    out.append("")
    return out


def table(records: list[Record]) -> str:
    s = summarise(records)
    groups: dict[tuple[str, str, int], list[Record]] = s["groups"]
    runs = max((int(r.get("run", 1)) for r in records if r.get("section") != "meta"), default=0)
    out: list[str] = []
    out.append(f"Medians of {runs} run(s).")
    out.append("")

    # ingest
    out.append("### 1. Ingest (closed loop of MeterValues, one CALL in flight per charger)")
    out.append("")
    out.append(
        "| variant | N | calls/s | x baseline | server CPU us/call | x baseline by CPU/call"
        " | p50 ms | p99 ms | server CPU % | server RSS MB | load CPU % | other procs CPU0 %"
        " | events/s | e2e p50 ms | e2e p99 ms | all delivered |"
    )
    out.append("| --- | ---: |" + " ---: |" * 13 + " --- |")
    ingest = (k for k in groups if k[0] == "ingest")
    ingest_keys = sorted(ingest, key=lambda k: (k[2], _order(k[1])))
    for key in ingest_keys:
        rs = _ok(groups[key])
        if not rs:
            out.append(f"| {key[1]} | {key[2]} | (no result: see notes) |" + " |" * 13)
            continue
        base = _ok(groups.get(("ingest", "baseline", key[2]), []))
        cps = median(rs, "callsPerSecond")
        ratio = run_ratio(rs, base)[0] if base else None
        us = median(rs, "serverCpuUsPerCall")
        base_us = median(base, "serverCpuUsPerCall") if base else None
        cpu_ratio = base_us / us if base_us and us else None
        webhooks = key[1] == "chargehook-webhooks"
        load_cpu = median(rs, "client.cpuPct")
        if webhooks:
            rcv = median(rs, "receiver.cpuPct")
            load_cpu_txt = f"{_fmt(load_cpu)} (+{_fmt(rcv)} receiver)"
        else:
            load_cpu_txt = _fmt(load_cpu)
        out.append(
            "| "
            + " | ".join(
                [
                    key[1],
                    str(key[2]),
                    _fmt(cps, 0),
                    f"{ratio:.2f}x" if ratio else "-",
                    _fmt(us, 0),
                    f"{cpu_ratio:.2f}x" if cpu_ratio else "-",
                    _fmt(median(rs, "latencyMs.p50")),
                    _fmt(median(rs, "latencyMs.p99")),
                    _fmt(median(rs, "server.cpuPct")),
                    _fmt(median(rs, "server.rssMB")),
                    load_cpu_txt,
                    _fmt(median(rs, "otherLoadPct.cpu0")),
                    _fmt(median(rs, "eventsPerSecond"), 0) if webhooks else "-",
                    _fmt(median(rs, "e2eMs.p50")) if webhooks else "-",
                    _fmt(median(rs, "e2eMs.p99")) if webhooks else "-",
                    _fmt(median(rs, "delivery.allDelivered")) if webhooks else "-",
                ]
            )
            + " |"
        )
    out.append("")
    out.extend(postgres_table(groups))

    # latency
    out.append("### 2. End-to-end latency at a fixed offered load (chargehook-webhooks)")
    out.append("")
    out.append(
        "| N | offered events/s | delivered events/s | e2e p50 ms | e2e p99 ms | e2e max ms"
        " | call p99 ms | server CPU % | all delivered |"
    )
    out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for key in sorted(k for k in groups if k[0] == "latency"):
        rs = _ok(groups[key])
        if not rs:
            out.append(f"| {key[2]} | (no result: see notes) |" + " |" * 7)
            continue
        out.append(
            f"| {key[2]} | {_fmt(median(rs, 'targetRate'), 0)}"
            f" | {_fmt(median(rs, 'eventsPerSecond'), 0)}"
            f" | {_fmt(median(rs, 'e2eMs.p50'))} | {_fmt(median(rs, 'e2eMs.p99'))}"
            f" | {_fmt(median(rs, 'e2eMs.max'))} | {_fmt(median(rs, 'callLatencyMs.p99'))}"
            f" | {_fmt(median(rs, 'server.cpuPct'))}"
            f" | {_fmt(median(rs, 'delivery.allDelivered'))} |"
        )
    out.append("")

    out.extend(sustained_table(groups))

    # backlog
    out.append("### 4. Backlog drain (receiver down while the events are made, then up)")
    out.append("")
    out.append(
        "| store | N | events | drain s | events/s (from receiver up) | events/s (from first"
        " arrival) | order kept | streams incomplete | all delivered | server CPU %"
        " | receiver CPU % |"
    )
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |")
    for key in sorted((k for k in groups if k[0] == "backlog"), key=lambda k: (k[2], k[1])):
        rs = _ok(groups[key])
        store = STORE_NAMES.get(key[1], key[1])
        if not rs:
            out.append(f"| {store} | {key[2]} | (no result: see notes) |" + " |" * 8)
            continue
        out.append(
            f"| {store} | {key[2]} | {_fmt(median(rs, 'events'), 0)} | {_fmt(median(rs, 'drainS'))}"
            f" | {_fmt(median(rs, 'eventsPerSecond'), 0)}"
            f" | {_fmt(median(rs, 'eventsPerSecondFromFirst'), 0)}"
            f" | {_fmt(all(_get(r, 'delivery.outOfOrder') == 0 for r in rs))}"
            f" | {', '.join(str(key[2] - (_get(r, 'delivery.chargersComplete') or 0)) for r in rs)}"
            f" | {_fmt(median(rs, 'delivery.allDelivered'))}"
            f" | {_fmt(median(rs, 'server.cpuPct'))} | {_fmt(median(rs, 'receiver.cpuPct'))} |"
        )
    out.append("")
    out.extend(outage_table(groups))

    # connections
    out.append("### 6. Idle connections (boot, then heartbeats)")
    out.append("")
    out.append(
        "| N | connected | connect all s | connect p99 ms | server RSS MB | KB per charger"
        " | heartbeats sent | unanswered | server CPU % |"
    )
    out.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key in sorted(k for k in groups if k[0] == "connections"):
        rs = _ok(groups[key])
        if not rs:
            out.append(f"| {key[2]} | (no result: see notes) |" + " |" * 7)
            continue
        out.append(
            f"| {key[2]} | {_fmt(median(rs, 'connected'), 0)} | {_fmt(median(rs, 'connectAllS'))}"
            f" | {_fmt(median(rs, 'connectMs.p99'))} | {_fmt(median(rs, 'rssMB'))}"
            f" | {_fmt(median(rs, 'kbPerCharger'))} | {_fmt(median(rs, 'heartbeatsSent'), 0)}"
            f" | {_fmt(max((r.get('heartbeatsUnanswered') or 0) for r in rs), 0)}"
            f" | {_fmt(median(rs, 'server.cpuPct'))} |"
        )
    out.append("")
    out.extend(cluster_table(groups))
    out.extend(targets(groups))
    if s["notes"]:
        out.append("")
        out.append("Notes:")
        out.extend(f"- {n}" for n in s["notes"])
    return "\n".join(_drop_empty(out)) + "\n"


def _drop_empty(lines: list[str]) -> list[str]:
    """Leave out a section whose table has no row (a section not run): its heading, the
    table's two header lines and the blank lines after each."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if (
            lines[i].startswith("### ")
            and i + 3 < len(lines)
            and lines[i + 1] == ""
            and lines[i + 2].startswith("|")
            and lines[i + 3].startswith("| ---")
            and (i + 4 >= len(lines) or not lines[i + 4].startswith("|"))
        ):
            i += 4
            while i < len(lines) and lines[i] == "":
                i += 1
            continue
        out.append(lines[i])
        i += 1
    return out


def _probes_text(record: Record) -> str:
    """A run's probes in the order made: rate, pass or fail, e2e p99."""
    parts = []
    for p in record.get("probes") or []:
        mark = "ok" if p.get("passed") else "**fail**"
        busy = p.get("loadCorePct")
        # the load client and the receiver share one core: near 100% they may be the limit
        tail = f", load core {_fmt(busy, 0)}%" if busy is not None and busy >= 90 else ""
        # other people's work on the server's core: the server got less than a core
        other = _get(p, "otherLoadPct.cpu0")
        if other is not None and other >= 10:
            tail += f", others {_fmt(other, 0)}% of the server's core"
        parts.append(f"{_fmt(p.get('rate'), 0)} {mark} ({_fmt(_get(p, 'e2eMs.p99'), 0)} ms{tail})")
    return ", ".join(parts) or "-"


def sustained_table(groups: dict[tuple[str, str, int], list[Record]]) -> list[str]:
    """Section 3: the highest open-loop rate at which delivery kept pace, per run and the
    median, with each run's probes (rate, verdict, e2e p99)."""
    keys = sorted(k for k in groups if k[0] == "sustained")
    if not keys:
        return []
    out = [
        "### 3. Sustained: highest open-loop rate at which delivery keeps pace"
        " (chargehook-webhooks; e2e p99 <= 1 s from the moment each MeterValues was due)",
        "",
        "| N | window s | baseline calls/s | sustained events/s | x baseline | per run"
        " | probes per run: offered/s verdict (e2e p99) | server CPU % at the highest pass |",
        "| ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for key in keys:
        rs = _ok(groups[key])
        if not rs:
            out.append(f"| {key[2]} | (no result: see notes) |" + " |" * 6)
            continue
        per_run = ", ".join(
            f"{_fmt(r.get('sustainedRate'), 0)} ({_fmt(r.get('ratio'), 2)}x)" for r in rs
        )
        probes = "; ".join(f"run {r.get('run')}: {_probes_text(r)}" for r in rs)
        best_cpu = [
            _get(p, "server.cpuPct")
            for r in rs
            for p in r.get("probes") or []
            if p.get("passed") and p.get("rate") == r.get("sustainedRate")
        ]
        out.append(
            f"| {key[2]} | {_fmt(median(rs, 'durationS'), 0)}"
            f" | {_fmt(median(rs, 'baselineCallsPerSecond'), 0)}"
            f" | {_fmt(median(rs, 'sustainedRate'), 0)} | {_fmt(median(rs, 'ratio'), 2)}x"
            f" | {per_run} | {probes}"
            f" | {_fmt(statistics.median(best_cpu)) if best_cpu else '-'} |"
        )
    out.append("")
    return out


def outage_table(groups: dict[tuple[str, str, int], list[Record]]) -> list[str]:
    """Section 5: many events pending for an endpoint that is down; RSS while they pile up
    and while they drain, the drain rate, order and losses."""
    keys = sorted((k for k in groups if k[0] == "outage"), key=lambda k: (k[2], k[1]))
    if not keys:
        return []
    out = [
        "### 5. Outage: events pending for one endpoint that is down, then drained",
        "",
        "| store | N | events | pile-up s | ingest calls/s | pending at receiver up"
        " | server RSS peak piling up MB | server RSS peak draining MB | RSS at the end MB"
        " | drain s | drain events/s | order kept | none lost | RSS cap hit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
        " --- |",
    ]
    for key in keys:
        rs = _ok(groups[key])
        store = STORE_NAMES.get(key[1], key[1])
        if not rs:
            out.append(f"| {store} | {key[2]} | (no result: see notes) |" + " |" * 11)
            continue
        out.append(
            f"| {store} | {key[2]} | {_fmt(median(rs, 'events'), 0)}"
            f" | {_fmt(median(rs, 'generateS'))} | {_fmt(median(rs, 'ingestCallsPerSecond'), 0)}"
            f" | {_fmt(median(rs, 'pendingAtUp'), 0)}"
            f" | {_fmt(median(rs, 'pileupRssPeakMB'))} | {_fmt(median(rs, 'drainRssPeakMB'))}"
            f" | {_fmt(median(rs, 'rssEndMB'))} | {_fmt(median(rs, 'drainS'))}"
            f" | {_fmt(median(rs, 'eventsPerSecond'), 0)} | {_fmt(median(rs, 'orderKept'))}"
            f" | {_fmt(median(rs, 'noneLost'))}"
            f" | {'yes' if any(r.get('rssCapHit') for r in rs) else 'no'} |"
        )
    out.append("")
    return out


def verdict(*checks: tuple[Any, Callable[[Any], bool]]) -> str:
    """met / **not met** / not measured: one check failing is enough to miss the target,
    all measured and passing to meet it."""
    if any(v is not None and not ok(v) for v, ok in checks):
        return "**not met**"
    if any(v is None for v, _ in checks):
        return "not measured"
    return "met"


def targets(groups: dict[tuple[str, str, int], list[Record]]) -> list[str]:
    """Issue 15's targets, each with the median measured and met or not."""

    def ok(key: tuple[str, str, int]) -> list[Record]:
        return _ok(groups.get(key, []))

    def med(key: tuple[str, str, int], path: str) -> Any:
        rs = ok(key)
        return median(rs, path) if rs else None

    def big_n(section: str) -> int:
        ns = [k[2] for k in groups if k[0] == section]
        return max(ns) if ns else 0

    def ratio_of(variant: str, n: int) -> tuple[float | None, Any]:
        base, rs = ok(("ingest", "baseline", n)), ok(("ingest", variant, n))
        if not base or not rs:
            return None, None
        return run_ratio(rs, base)[0], median(rs, "callsPerSecond")

    def x(r: float | None) -> str:
        return f"{r:.2f}x" if r is not None else "-"

    n = big_n("ingest") or 1000
    base = med(("ingest", "baseline", n), "callsPerSecond")
    rs_, store = ratio_of("chargehook-store", n)
    rh, hooks = ratio_of("chargehook-webhooks", n)
    hooks_all = med(("ingest", "chargehook-webhooks", n), "delivery.allDelivered")
    rp, on_pg = ratio_of("chargehook-postgres", n)
    sn = big_n("sustained") or 1000
    sus = ok(("sustained", "chargehook-webhooks", sn))
    sus_ratio = median(sus, "ratio") if sus else None
    sus_rate = median(sus, "sustainedRate") if sus else None
    sus_window = median(sus, "durationS") if sus else None
    ln = big_n("latency")
    p50 = med(("latency", "chargehook-webhooks", ln), "e2eMs.p50")
    p99 = med(("latency", "chargehook-webhooks", ln), "e2eMs.p99")
    rate = med(("latency", "chargehook-webhooks", ln), "targetRate") or 1000
    bn = big_n("backlog")
    drain_sq = med(("backlog", "chargehook-webhooks", bn), "eventsPerSecond")
    drain_pg = med(("backlog", "chargehook-webhooks-postgres", bn), "eventsPerSecond")
    backlog_events = med(("backlog", "chargehook-webhooks", bn), "events") or med(
        ("backlog", "chargehook-webhooks-postgres", bn), "events"
    )
    cn = big_n("connections") or 10_000
    rss = med(("connections", "chargehook-store", cn), "rssMB")
    crs = ok(("connections", "chargehook-store", cn))
    unanswered = max((r.get("heartbeatsUnanswered") or 0) for r in crs) if crs else None

    def at_least(limit: float) -> Callable[[Any], bool]:
        return lambda v: v >= limit

    def at_most(limit: float) -> Callable[[Any], bool]:
        return lambda v: v <= limit

    rows = [
        (
            f"ingest N={n}, SQLite store (chargehook-store)",
            ">= 4.0x baseline calls/s",
            f"{x(rs_)} ({_fmt(store, 0)} vs {_fmt(base, 0)} calls/s)",
            verdict((rs_, at_least(4.0))),
        ),
        (
            f"ingest N={n}, one webhook endpoint on * (chargehook-webhooks)",
            ">= 2.0x baseline calls/s, every event delivered in order after the window",
            f"{x(rh)} ({_fmt(hooks, 0)} calls/s), all delivered in order: {_fmt(hooks_all)}",
            verdict((rh, at_least(2.0)), (hooks_all, bool)),
        ),
        (
            f"sustained: highest open-loop rate at which delivery keeps pace (e2e p99 <= 1 s"
            f" over {_fmt(sus_window or 60, 0)} s), N={sn}",
            ">= 1.5x baseline calls/s",
            f"{x(sus_ratio)} ({_fmt(sus_rate, 0)} events/s)",
            verdict((sus_ratio, at_least(1.5))),
        ),
        (
            f"ingest N={n}, PostgreSQL store (chargehook-postgres)",
            ">= 2.0x baseline calls/s",
            f"{x(rp)} ({_fmt(on_pg, 0)} calls/s)",
            verdict((rp, at_least(2.0))),
        ),
        (
            f"e2e latency at {_fmt(rate, 0)} events/s",
            "p50 <= 5 ms, p99 <= 50 ms",
            f"p50 {_fmt(p50)} ms, p99 {_fmt(p99)} ms",
            verdict((p50, at_most(5)), (p99, at_most(50))),
        ),
        (
            f"backlog drain ({_fmt(backlog_events or 100_000, 0)} events)",
            ">= 5,000 events/s on SQLite and on PostgreSQL",
            f"SQLite {_fmt(drain_sq, 0)}, PostgreSQL {_fmt(drain_pg, 0)} events/s",
            verdict((drain_sq, at_least(5000)), (drain_pg, at_least(5000))),
        ),
    ]
    outage_keys = sorted((k for k in groups if k[0] == "outage"), key=lambda k: k[1])
    for key in outage_keys or [("outage", "chargehook-webhooks", 0)]:
        rs = ok(key)
        events = median(rs, "events") if rs else None
        wanted = median(rs, "eventsTarget") if rs else None
        up, down = median(rs, "pileupRssPeakMB"), median(rs, "drainRssPeakMB")
        drain = median(rs, "eventsPerSecond")
        in_order, kept = median(rs, "orderKept"), median(rs, "noneLost")
        short = wanted is not None and wanted < 1_000_000
        rows.append(
            (
                f"{_fmt(wanted or 1_000_000, 0)} events pending for one endpoint that is down"
                f" ({STORE_NAMES.get(key[1], key[1])})"
                + (" (**fewer than the target's 1,000,000**)" if short else ""),
                "server RSS <= 300 MB while they pile up and while they drain; drain >= 5,000"
                " events/s, in order, none lost",
                f"RSS peak {_fmt(up)} MB piling up, {_fmt(down)} MB draining;"
                f" {_fmt(drain, 0)} events/s; {_fmt(events, 0)} events, in order:"
                f" {_fmt(in_order)}, none lost: {_fmt(kept)}",
                verdict(
                    (up, at_most(300)),
                    (down, at_most(300)),
                    (drain, at_least(5000)),
                    (in_order, bool),
                    (kept, bool),
                ),
            )
        )
    rows.append(
        (
            f"{_fmt(cn, 0)} idle chargers",
            "<= 300 MB RSS (no heartbeat unanswered, all connected)",
            f"{_fmt(rss)} MB, {_fmt(unanswered, 0)} unanswered, all connected:"
            f" {_fmt(all(r.get('connected') == cn for r in crs) if crs else None)}",
            verdict(
                (rss, at_most(300)),
                (unanswered, lambda v: v == 0),
                (all(r.get("connected") == cn for r in crs) if crs else None, bool),
            ),
        )
    )
    out = [
        "### Targets (issue 15; ratios to the baseline measured in the same run, medians)",
        "",
        "| figure | target | measured (median) | |",
        "| --- | --- | --- | --- |",
    ]
    out.extend(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    return out


def _false_death(record: Record) -> bool:
    """Chargers lost their socket before the kill: a live node was taken for dead (its
    heartbeat late by more than lease_ttl), so that run measured more than one takeover."""
    return bool(_get(record, "failover.lostBeforeKill"))


def _runs(rs: list[Record], path: str, digits: int = 0) -> str:
    """The median and, with several runs, every run's value (a run without one shows -; a
    run with a false death before the kill is marked *)."""
    values = [_get(r, path) for r in rs]
    med = median(rs, path)
    if len(values) < 2:
        return _fmt(med, digits) + ("*" if rs and _false_death(rs[0]) else "")
    marks = ["*" if _false_death(r) else "" for r in rs]
    each = [_fmt(v, digits) + m for v, m in zip(values, marks, strict=True)]
    return f"{_fmt(med, digits)} ({', '.join(each)})"


def cluster_table(groups: dict[tuple[str, str, int], list[Record]]) -> list[str]:
    """Section 5: two nodes on one PostgreSQL database; one row per size, the three
    measurements side by side."""
    sizes = sorted({k[2] for k in groups if k[0] == "cluster"})
    if not sizes:
        return []
    out = [
        "### 7. Cluster: two nodes on one PostgreSQL database (node 1 on CPU 0, node 2 on"
        " CPU 1; load client, receiver and PostgreSQL unpinned)",
        "",
        "| N | calls/s (both nodes) | node 1 / node 2 calls/s | call p99 ms"
        " | node 1 / node 2 CPU % | postgres CPU % (our database) | other procs CPU %"
        " (of 200) | e2e at events/s | e2e p50 ms | e2e p99 ms"
        " | all delivered | delivered by node 1 / node 2 in the window | takeover lease_ttl s"
        " | takeover: dead node's stream ms"
        " | of an event stored before the kill ms | of a reconnected charger's new event ms"
        " | all its streams ms | its streams resumed |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
        + " ---: |" * 6,
    ]
    for n in sizes:
        ing = _ok(groups.get(("cluster", "cluster-ingest", n), []))
        lat = _ok(groups.get(("cluster", "cluster-latency", n), []))
        tko = _ok(groups.get(("cluster", "cluster-takeover", n), []))
        ttl = median(tko, "leaseTtlS")
        per_node = (
            f"{_fmt(median(ing, 'callsPerSecondByNode.node-1'), 0)} /"
            f" {_fmt(median(ing, 'callsPerSecondByNode.node-2'), 0)}"
        )
        cpu = f"{_fmt(median(ing, 'cpu.node1.cpuPct'))} / {_fmt(median(ing, 'cpu.node2.cpuPct'))}"
        resumed = ", ".join(
            f"{_get(r, 'takeover.deadStreamsResumed')}/{_get(r, 'takeover.deadStreams')}"
            for r in tko
        )
        out.append(
            f"| {n} | {_fmt(median(ing, 'callsPerSecond'), 0)} | {per_node}"
            f" | {_fmt(median(ing, 'latencyMs.p99'))} | {cpu}"
            f" | {_fmt(median(ing, 'cpu.postgres.oursPct'))}"
            f" | {_fmt(median(ing, 'cpu.otherProcsPct'))}"
            f" | {_fmt(median(lat, 'targetRate'), 0)} | {_fmt(median(lat, 'e2eMs.p50'))}"
            f" | {_fmt(median(lat, 'e2eMs.p99'))} | {_fmt(median(lat, 'delivery.allDelivered'))}"
            f" | {_fmt(median(lat, 'deliveriesByNode.node-1'), 0)} /"
            f" {_fmt(median(lat, 'deliveriesByNode.node-2'), 0)}"
            f" | {_fmt(ttl)}"
            f" | {_runs(tko, 'takeover.streamMs')} | {_runs(tko, 'takeover.backlogMs')}"
            f" | {_runs(tko, 'takeover.reconnectedMs')} | {_runs(tko, 'takeover.allStreamsMs')}"
            f" | {resumed or '-'} |"
        )
    if any(_false_death(r) for k, g in groups.items() if k[0] == "cluster" for r in _ok(g)):
        out.append("")
        out.append(
            "\\* chargers lost their socket before the kill in that run (a live node was taken"
            " for dead: its heartbeat came later than lease_ttl): more than the kill was"
            " measured; see failover.lostBeforeKill in its record."
        )
    out.append("")
    return out
