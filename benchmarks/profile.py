"""Profile a server under the ingest load: ``python -m benchmarks.profile``.

Starts the server pinned to CPU 0 (``chargehook-store``, ``chargehook-webhooks``,
``chargehook-postgres`` (on a database of its own, see ``benchmarks/pg.py``) or ``baseline``),
drives it with the benchmark's closed-loop MeterValues load on CPU 1, and
samples it with ``py-spy record --format raw`` (py-spy on CPU 1 too, so it takes no time from
the server). Prints the functions with the largest share of the server's CPU samples, by self
time and inclusive, and keeps the raw collapsed stacks (flame-graph input) in ``--out``.

py-spy is not a dependency of the project: ``.venv/bin/pip install py-spy``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import pg, sections
from benchmarks.procs import LOAD_CPU, ProcGroup, pinning, sample, usage

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    """``func (path/to/mod.py:12)`` -> ``func (to/mod.py)``; lines folded together."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    parts = m.group("file").replace("\\", "/").split("/")
    for anchor in ("site-packages", "python3.11", "main"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    return f"{m.group('func')} ({'/'.join(parts[-3:])})"


def summarise(raw: str, top: int = 25) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        count = int(m.group(2))
        frames = [_short(f) for f in m.group(1).split(";") if f]
        if not frames:
            continue
        # py-spy puts "process ..." / "thread ..." pseudo-frames first: skip them
        frames = [f for f in frames if not f.startswith(("process ", "thread "))] or frames
        total += count
        self_time[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
        leaf = frames[-1]
        mod = leaf[leaf.rfind("(") + 1 : -1].split("/")[0] if "(" in leaf else leaf
        modules[mod] += count

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {
        "samples": total,
        "self": pct(self_time),
        "inclusive": pct(inclusive),
        "selfByTopPackage": pct(modules),
    }


async def record(
    spy: str,
    variant: str,
    chargers: int,
    seconds: float,
    raw_path: Path,
    rate: int,
    offered: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the load and py-spy; the load's result and the server's CPU and RSS meanwhile."""
    if variant == "chargehook-postgres":
        async with pg.database() as db:
            return await _record(spy, variant, chargers, seconds, raw_path, rate, offered, db)
    return await _record(spy, variant, chargers, seconds, raw_path, rate, offered, None)


async def _record(
    spy: str,
    variant: str,
    chargers: int,
    seconds: float,
    raw_path: Path,
    rate: int,
    offered: float | None,
    db: pg.Database | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    with sections._workdir() as workdir:
        async with ProcGroup() as group:
            receiver = None
            if variant == "baseline":
                server = await sections.start_baseline(group, workdir)
            else:
                server = await sections.start_chargehook(
                    group, workdir, storage_url=db.url if db is not None else None
                )
            if variant == "chargehook-webhooks":
                assert server.api_port is not None
                receiver, port = await sections.start_receiver(group, workdir)
                await sections.register_webhook(server.api_port, port)
            options: dict[str, Any] = {
                "mode": "closed" if offered is None else "open",
                "port": server.ocpp_port,
                "chargers": chargers,
                "duration": seconds + 4,
                "warmup": 3.0,
                "concurrency": 200,
            }
            if offered is not None:
                options["rate"] = offered
            load = await group.spawn(
                "load",
                [sys.executable, "-m", "benchmarks.loadclient", json.dumps(options)],
                cpu=LOAD_CPU,
                stderr_path=str(workdir / "load.err"),
                cwd=str(sections.ROOT),
            )
            await load.wait_line(r'"mark": "start"', 180)
            s0 = sample(server.proc.pid)
            p0 = pg.cpu(db) if db is not None else None
            spy_proc = await group.spawn(
                "py-spy",
                [
                    spy,
                    "record",
                    "--pid",
                    str(server.proc.pid),
                    "--duration",
                    str(int(seconds)),
                    "--rate",
                    str(rate),
                    "--format",
                    "raw",
                    "--output",
                    str(raw_path),
                    "--nonblocking",
                ],
                cpu=LOAD_CPU,
                stderr_path=str(workdir / "py-spy.err"),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(spy_proc.process.wait(), seconds + 30)
            s1 = sample(server.proc.pid)
            p1 = pg.cpu(db) if db is not None else None
            m = await load.wait_line(r'^\{"result": ', seconds + 120)
            result = json.loads(m.string)["result"]
            del receiver
    server: dict[str, Any] = dict(usage(s0, s1))
    if p0 is not None and p1 is not None:
        server["postgres"] = pg.cpu_usage(p0, p1, s1.at - s0.at)
    return result, server


def report(
    variant: str,
    chargers: int,
    seconds: float,
    raw_path: Path,
    result: dict[str, Any],
    server: dict[str, Any],
) -> int:
    if not raw_path.exists():
        print("py-spy wrote nothing (run with BENCH_KEEP=1 to see its stderr)", file=sys.stderr)
        return 1
    summary = summarise(raw_path.read_text())
    report = {
        "variant": variant,
        "chargers": chargers,
        "seconds": seconds,
        "pinning": pinning(),
        "callsPerSecond": result["callsPerSecond"],
        "server": server,
        "raw": str(raw_path),
        **summary,
    }
    raw_path.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("variant", "chargers", "callsPerSecond", "server")}))
    print(f"\n{summary['samples']} samples of the server; % of its CPU samples\n")
    for title, key in (
        ("self time", "self"),
        ("inclusive", "inclusive"),
        ("self time by top package", "selfByTopPackage"),
    ):
        print(f"## {title}")
        for name, share in summary[key]:
            print(f"{share:6.1f}%  {name}")
        print()
    print(f"raw stacks: {raw_path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    p.add_argument(
        "--variant",
        default="chargehook-store",
        choices=["baseline", "chargehook-store", "chargehook-webhooks", "chargehook-postgres"],
    )
    p.add_argument("--chargers", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument(
        "--offered",
        type=float,
        default=None,
        help="open loop: MeterValues per second in total (as the latency section); default:"
        " closed loop (as ingest)",
    )
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    raw_path = out / f"profile-{args.variant}-{args.chargers}-{stamp}.txt"
    try:
        result, server = asyncio.run(
            record(
                spy, args.variant, args.chargers, args.seconds, raw_path, args.rate, args.offered
            )
        )
    except pg.Unavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    return report(args.variant, args.chargers, args.seconds, raw_path, result, server)


if __name__ == "__main__":
    sys.exit(main())
