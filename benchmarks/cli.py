"""``python -m benchmarks [--quick] [--only ingest,latency,sustained,backlog,outage,
connections,cluster] [--runs 3] [--out DIR] [--variants baseline,chargehook-store,
chargehook-webhooks,chargehook-postgres] [--lease-ttl S] [--sustained-seconds S]
[--outage-events E] [--stores sqlite,postgres]``:
run the measurements, print one JSON line per measurement and a Markdown table of the
medians, and write both to ``DIR`` (``benchmarks/results/`` by default).

``chargehook-postgres`` runs on the PostgreSQL server of ``BENCH_POSTGRES_URL`` (default
postgresql://postgres@127.0.0.1:5432/postgres) in a database of its own, made and dropped
by the measurement; it is skipped (and says so) when no server answers. So is ``cluster``:
two nodes on one database of its own (``benchmarks/cluster.py``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import cluster, outage, report, sections, sustained
from benchmarks.procs import LOAD_CPU, pinning

SECTIONS = ("ingest", "latency", "sustained", "backlog", "outage", "connections", "cluster")
VARIANTS = ("baseline", "chargehook-store", "chargehook-webhooks", "chargehook-postgres")
CLUSTER_PARTS = ("ingest", "latency", "takeover")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small and short (< 60 s in all)")
    p.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--runs", type=int, default=3, help="runs of each measurement (median)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="directory for the JSON and table")
    p.add_argument("--report", metavar="JSONL", help="only print the table of an earlier run")
    p.add_argument(
        "--chargers",
        metavar="N[,N]",
        help="ingest sizes, comma-separated (default 100,1000; 50 with --quick)",
    )
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"ingest variants, comma-separated, run in this order (default {','.join(VARIANTS)})",
    )
    p.add_argument(
        "--lease-ttl",
        type=float,
        metavar="S",
        help="[cluster] lease_ttl of the nodes in the cluster section's takeover measurement"
        " (default 2; 1 with --quick; ingest and latency run with the default 10)",
    )
    p.add_argument(
        "--reconnect-spread",
        type=float,
        metavar="S",
        help="cluster takeover: the killed node's chargers make their first reconnect try at"
        " a random moment in 0..S s after losing their socket (default 1)",
    )
    p.add_argument(
        "--sustained-seconds",
        type=float,
        metavar="S",
        help="sustained: the window of each probe (default 60; 5 with --quick)",
    )
    p.add_argument(
        "--sustained-probes",
        type=int,
        metavar="K",
        help="sustained: probes of the rate search per run, at most (default 4; 2 with --quick)",
    )
    p.add_argument(
        "--outage-events",
        type=int,
        metavar="E",
        help="outage: events pending for the endpoint that is down (default 1000000; 20000"
        " with --quick)",
    )
    p.add_argument(
        "--stores",
        default=",".join(sections.STORES),
        metavar="STORES",
        help="backlog: the stores it runs on, comma-separated (default sqlite,postgres)",
    )
    p.add_argument(
        "--outage-stores",
        default="sqlite",
        metavar="STORES",
        help="outage: the stores it runs on, comma-separated (default sqlite; sqlite,postgres"
        " adds PostgreSQL)",
    )
    p.add_argument(
        "--cluster",
        default=",".join(CLUSTER_PARTS),
        metavar="PARTS",
        help="the cluster section's measurements, comma-separated (default"
        f" {','.join(CLUSTER_PARTS)})",
    )
    return p


def emit(record: dict[str, Any], sink: Any) -> None:
    line = json.dumps(record, sort_keys=False)
    print(line, flush=True)
    sink.write(line + "\n")
    sink.flush()


def header(meta: dict[str, Any]) -> str:
    pin = meta["pinning"]
    return (
        f"## chargehook benchmarks, {meta['date']}\n\n"
        f"Machine: {meta['machine']['nproc']} CPUs, {meta['machine']['cpu']}, Python"
        f" {meta['machine']['python']}; "
        + (
            f"server pinned to CPU {pin['serverCpu']},"
            f" load client and receiver to CPU {pin['loadCpu']}"
            if pin["pinned"]
            else f"NOT pinned ({pin['why']})"
        )
        + (" (--quick)" if meta["quick"] else "")
        + f". Commit {meta['revision']['commit']}"
        + (
            " with uncommitted changes in " + ", ".join(meta["revision"]["uncommittedServerFiles"])
            if meta["revision"]["uncommittedServerFiles"]
            else ""
        )
        + ".\n\n"
    )


async def _baseline_for_sustained(scale: sections.Scale) -> dict[str, Any]:
    record = await sections.measure_ingest("baseline", scale.sustained_chargers, scale)
    record["measuredFor"] = "sustained"
    return record


async def _sustained(
    scale: sections.Scale, records: list[dict[str, Any]], run: int
) -> dict[str, Any]:
    """The sustained search from this run's baseline at the same N (measured just before)."""
    base = next(
        (
            r
            for r in reversed(records)
            if r.get("section") == "ingest"
            and r.get("variant") == "baseline"
            and r.get("chargers") == scale.sustained_chargers
            and r.get("run") == run
            and r.get("callsPerSecond")
        ),
        None,
    )
    if base is None:
        raise RuntimeError("no baseline calls/s in this run to start the search from")
    return await sustained.measure_sustained(scale, base)


async def _one(name: str, coro: Any, base: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        record = await coro
    except sections.Skipped as exc:
        record = dict(base, skipped=str(exc))
    except Exception as exc:  # one broken measurement must not stop the others
        traceback.print_exc(file=sys.stderr)
        record = dict(base, error=f"{type(exc).__name__}: {exc}")
    record.setdefault("section", name)
    record["wallS"] = round(time.monotonic() - started, 1)
    return record


def _out_dir(path: str) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


async def run(args: argparse.Namespace) -> int:
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if any(v not in VARIANTS for v in variants):
        print(f"variants are {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    parts = [x.strip() for x in args.cluster.split(",") if x.strip()]
    if not parts or any(x not in CLUSTER_PARTS for x in parts):
        print(f"--cluster takes {', '.join(CLUSTER_PARTS)}", file=sys.stderr)
        return 2
    stores = [x.strip() for x in args.stores.split(",") if x.strip()]
    outage_stores = [x.strip() for x in args.outage_stores.split(",") if x.strip()]
    if any(x not in sections.STORES for x in stores + outage_stores):
        print(f"--stores and --outage-stores take {', '.join(sections.STORES)}", file=sys.stderr)
        return 2
    if not 1 <= args.runs <= 20:
        print("--runs must be 1..20", file=sys.stderr)
        return 2
    scale = sections.QUICK if args.quick else sections.FULL
    if args.chargers:
        try:
            sizes = tuple(int(x) for x in args.chargers.split(",") if x.strip())
        except ValueError:
            sizes = ()
        if not sizes or not all(1 <= x <= 20_000 for x in sizes):
            print("--chargers must be numbers 1..20000, comma-separated", file=sys.stderr)
            return 2
        scale = dataclasses.replace(scale, ingest_chargers=sizes)
    if args.lease_ttl is not None:
        if not 1 <= args.lease_ttl <= 600:
            print("--lease-ttl must be 1..600 (seconds)", file=sys.stderr)
            return 2
        scale = dataclasses.replace(scale, cluster_lease_ttl=args.lease_ttl)
    if args.reconnect_spread is not None:
        if not 0 <= args.reconnect_spread <= 60:
            print("--reconnect-spread must be 0..60 (seconds)", file=sys.stderr)
            return 2
        scale = dataclasses.replace(scale, reconnect_spread=args.reconnect_spread)
    if args.sustained_seconds is not None:
        if not 1 <= args.sustained_seconds <= 600:
            print("--sustained-seconds must be 1..600", file=sys.stderr)
            return 2
        scale = dataclasses.replace(scale, sustained_seconds=args.sustained_seconds)
    if args.sustained_probes is not None:
        if not 1 <= args.sustained_probes <= 12:
            print("--sustained-probes must be 1..12", file=sys.stderr)
            return 2
        scale = dataclasses.replace(scale, sustained_probes=args.sustained_probes)
    if args.outage_events is not None:
        if not 1_000 <= args.outage_events <= 5_000_000:
            print("--outage-events must be 1000..5000000", file=sys.stderr)
            return 2
        scale = dataclasses.replace(scale, outage_events=args.outage_events)
    out = _out_dir(args.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    jsonl = out / f"bench-{stamp}.jsonl"
    pin = pinning()
    with contextlib.suppress(OSError, AttributeError):
        if pin["pinned"]:
            os.sched_setaffinity(0, {LOAD_CPU})  # the orchestrator stays off the server's core
    records: list[dict[str, Any]] = []
    with jsonl.open("w") as sink:
        meta = {
            "section": "meta",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": sections.machine(),
            "revision": sections.revision(),
            "pinning": pin,
            "quick": args.quick,
            "runs": args.runs,
            "sections": only,
            "scale": {k: getattr(scale, k) for k in scale.__dataclass_fields__},
        }
        emit(meta, sink)
        for r in range(1, args.runs + 1):
            jobs: list[tuple[str, dict[str, Any], Any]] = []
            if "ingest" in only:
                for n in scale.ingest_chargers:
                    for v in variants:
                        base = {"section": "ingest", "variant": v, "chargers": n}
                        jobs.append(
                            ("ingest", base, lambda v=v, n=n: sections.measure_ingest(v, n, scale))
                        )
            if "latency" in only:
                base = {
                    "section": "latency",
                    "variant": "chargehook-webhooks",
                    "chargers": scale.latency_chargers,
                }
                jobs.append(("latency", base, lambda: sections.measure_latency(scale)))
            if "sustained" in only:
                sn = scale.sustained_chargers
                if not (
                    "ingest" in only and "baseline" in variants and sn in scale.ingest_chargers
                ):
                    # the search starts from this run's baseline calls/s: measure it
                    base = {"section": "ingest", "variant": "baseline", "chargers": sn}
                    jobs.append(("ingest", base, lambda: _baseline_for_sustained(scale)))
                base = {"section": "sustained", "variant": "chargehook-webhooks", "chargers": sn}
                jobs.append(("sustained", base, lambda r=r: _sustained(scale, records, r)))
            if "backlog" in only:
                for store in stores:
                    base = {
                        "section": "backlog",
                        "variant": sections.webhooks_variant(store),
                        "chargers": scale.backlog_chargers,
                    }
                    jobs.append(
                        ("backlog", base, lambda st=store: sections.measure_backlog(scale, st))
                    )
            if "outage" in only:
                for store in outage_stores:
                    base = {
                        "section": "outage",
                        "variant": sections.webhooks_variant(store),
                        "chargers": scale.outage_chargers,
                    }
                    jobs.append(("outage", base, lambda st=store: outage.measure_outage(scale, st)))
            if "connections" in only:
                base = {
                    "section": "connections",
                    "variant": "chargehook-store",
                    "chargers": scale.connections,
                }
                jobs.append(("connections", base, lambda: sections.measure_connections(scale)))
            if "cluster" in only:
                for kind, measure in (
                    ("ingest", cluster.measure_cluster_ingest),
                    ("latency", cluster.measure_cluster_latency),
                    ("takeover", cluster.measure_cluster_takeover),
                ):
                    if kind not in parts:
                        continue
                    base = {
                        "section": "cluster",
                        "variant": f"cluster-{kind}",
                        "chargers": scale.cluster_chargers,
                    }
                    jobs.append(("cluster", base, lambda m=measure: m(scale)))
            for name, base, make in jobs:
                record = await _one(name, make(), base)
                record["run"] = r
                record["pinning"] = pin
                # other people may change the server's files while a long run goes on
                record["revision"] = sections.revision()
                records.append(record)
                emit(record, sink)
    text = report.table([meta, *records])
    head = header(meta)
    md = out / f"bench-{stamp}.md"
    md.write_text(head + text)
    for src, name in ((jsonl, "latest.jsonl"), (md, "latest.md")):
        target = out / name
        with contextlib.suppress(OSError):
            target.unlink()
        target.write_text(src.read_text())
    print()
    print(head + text, end="")
    print(f"\nwritten: {jsonl} and {md}", file=sys.stderr)
    failed = any("error" in r for r in records)
    return 1 if failed else 0


async def _guarded(args: argparse.Namespace) -> int:
    """SIGINT, SIGTERM and SIGHUP cancel the run, so that every process it started is killed
    on the way out (also when started in the background, where SIGINT is ignored)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await run(args)
    except asyncio.CancelledError:
        print("benchmarks: interrupted; every process started was stopped", file=sys.stderr)
        return 130


def render(path: str) -> int:
    """The Markdown table of an earlier run's JSON lines."""
    records = [json.loads(x) for x in Path(path).read_text().splitlines() if x.startswith("{")]
    meta = next((r for r in records if r.get("section") == "meta"), None)
    if meta is not None:
        print(header(meta), end="")
    print(report.table(records), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.report:
        return render(args.report)
    return asyncio.run(_guarded(args))
