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
        base_cps = median(base, "callsPerSecond") if base else None
        ratio = cps / base_cps if base_cps else None
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

    # backlog
    out.append("### 3. Backlog drain (receiver down while the events are made, then up)")
    out.append("")
    out.append(
        "| N | events | drain s | events/s (from receiver up) | events/s (from first arrival)"
        " | order kept | streams incomplete | all delivered | server CPU % | receiver CPU % |"
    )
    out.append("| ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |")
    for key in sorted(k for k in groups if k[0] == "backlog"):
        rs = _ok(groups[key])
        if not rs:
            out.append(f"| {key[2]} | (no result: see notes) |" + " |" * 8)
            continue
        out.append(
            f"| {key[2]} | {_fmt(median(rs, 'events'), 0)} | {_fmt(median(rs, 'drainS'))}"
            f" | {_fmt(median(rs, 'eventsPerSecond'), 0)}"
            f" | {_fmt(median(rs, 'eventsPerSecondFromFirst'), 0)}"
            f" | {_fmt(all(_get(r, 'delivery.outOfOrder') == 0 for r in rs))}"
            f" | {', '.join(str(key[2] - (_get(r, 'delivery.chargersComplete') or 0)) for r in rs)}"
            f" | {_fmt(median(rs, 'delivery.allDelivered'))}"
            f" | {_fmt(median(rs, 'server.cpuPct'))} | {_fmt(median(rs, 'receiver.cpuPct'))} |"
        )
    out.append("")

    # connections
    out.append("### 4. Idle connections (boot, then heartbeats)")
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
    return "\n".join(out) + "\n"


def targets(groups: dict[tuple[str, str, int], list[Record]]) -> list[str]:
    def med(key: tuple[str, str, int], path: str) -> Any:
        rs = _ok(groups.get(key, []))
        return median(rs, path) if rs else None

    def big_n(section: str) -> int:
        ns = [k[2] for k in groups if k[0] == section]
        return max(ns) if ns else 0

    n = big_n("ingest")
    base = med(("ingest", "baseline", n), "callsPerSecond")
    store = med(("ingest", "chargehook-store", n), "callsPerSecond")
    hooks = med(("ingest", "chargehook-webhooks", n), "callsPerSecond")
    hooks_all = med(("ingest", "chargehook-webhooks", n), "delivery.allDelivered")
    pg = med(("ingest", "chargehook-postgres", n), "callsPerSecond")
    ln = big_n("latency")
    p50 = med(("latency", "chargehook-webhooks", ln), "e2eMs.p50")
    p99 = med(("latency", "chargehook-webhooks", ln), "e2eMs.p99")
    rate = med(("latency", "chargehook-webhooks", ln), "targetRate")
    bn = big_n("backlog")
    backlog_events = med(("backlog", "chargehook-webhooks", bn), "events")
    drain = med(("backlog", "chargehook-webhooks", bn), "eventsPerSecond")
    cn = big_n("connections")
    rss = med(("connections", "chargehook-store", cn), "rssMB")
    crs = _ok(groups.get(("connections", "chargehook-store", cn), []))
    unanswered = max((r.get("heartbeatsUnanswered") or 0) for r in crs) if crs else None
    connected_all = all(r.get("connected") == cn for r in crs) if crs else None

    def ratio(x: Any) -> float | None:
        return x / base if x is not None and base else None

    def met(cond: Callable[[], bool], *needed: Any) -> str:
        if any(v is None for v in needed):
            return "not measured"
        return "met" if cond() else "**not met**"

    rs, rh, rp = ratio(store), ratio(hooks), ratio(pg)
    rows = [
        (
            f"ingest N={n}, chargehook-store",
            ">= 3.0x baseline calls/s",
            f"{rs:.2f}x ({_fmt(store, 0)} vs {_fmt(base, 0)})" if rs else "-",
            met(lambda: rs >= 3.0, rs),
        ),
        (
            f"ingest N={n}, chargehook-webhooks",
            ">= 2.0x baseline calls/s, every event delivered",
            f"{rh:.2f}x ({_fmt(hooks, 0)}), all delivered: {_fmt(hooks_all)}" if rh else "-",
            met(lambda: rh >= 2.0 and bool(hooks_all), rh, hooks_all),
        ),
        (
            f"ingest N={n}, chargehook-postgres",
            ">= 2.0x baseline calls/s (durable before the reply)",
            f"{rp:.2f}x ({_fmt(pg, 0)})" if rp else "-",
            met(lambda: rp >= 2.0, rp),
        ),
        (
            f"e2e latency at {_fmt(rate, 0)} events/s",
            "p50 <= 5 ms, p99 <= 50 ms",
            f"p50 {_fmt(p50)} ms, p99 {_fmt(p99)} ms",
            met(lambda: p50 <= 5 and p99 <= 50, p50, p99),
        ),
        (
            f"backlog drain ({_fmt(backlog_events, 0)} events)",
            ">= 5,000 events/s",
            f"{_fmt(drain, 0)} events/s",
            met(lambda: drain >= 5000, drain),
        ),
        (
            f"{_fmt(cn, 0)} idle chargers",
            "RSS <= 300 MB, no heartbeat unanswered",
            f"{_fmt(rss)} MB, {unanswered} unanswered, all connected: {_fmt(connected_all)}",
            met(lambda: rss <= 300 and unanswered == 0 and bool(connected_all), rss, unanswered),
        ),
    ]
    out = [
        "### Targets (issue 6)",
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
        "### 5. Cluster: two nodes on one PostgreSQL database (node 1 on CPU 0, node 2 on"
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
