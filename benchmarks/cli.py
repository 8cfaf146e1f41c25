"""``python -m benchmarks [--quick] [--only ingest,latency,backlog,connections,cluster]
[--runs 3] [--out DIR] [--variants baseline,chargehook-store,chargehook-webhooks,
chargehook-postgres] [--lease-ttl S]``:
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

from benchmarks import cluster, report, sections
from benchmarks.procs import LOAD_CPU, pinning

SECTIONS = ("ingest", "latency", "backlog", "connections", "cluster")
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
            if "backlog" in only:
                base = {
                    "section": "backlog",
                    "variant": "chargehook-webhooks",
                    "chargers": scale.backlog_chargers,
                }
                jobs.append(("backlog", base, lambda: sections.measure_backlog(scale)))
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
