"""The four measurements: ingest, latency at fixed load, backlog drain, idle connections.

Each ``measure_*`` starts its own processes (server pinned to CPU 0; load client and webhook
receiver on CPU 1), returns one JSON-able record, and kills every process it started, whatever
happens. Records state their workload: variant, chargers, duration, what was counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import pg
from benchmarks.procs import (
    LOAD_CPU,
    SERVER_CPU,
    Proc,
    ProcGroup,
    cpu_busy,
    others,
    sample,
    usage,
)

PY = sys.executable
# How to start chargehook: the arguments after the interpreter, before "serve". Override with
# BENCH_CSMS_ARGS, e.g. "-m cProfile -o /tmp/csms.prof -m csms" to profile the server.
CSMS_ARGS = shlex.split(os.environ.get("BENCH_CSMS_ARGS", "-m csms"))
TOKEN = "benchmark-token-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


class Skipped(Exception):
    """The measurement cannot run here (for example the webhooks API is not wired yet)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale:
    """How big each section is (``--quick`` shrinks everything)."""

    ingest_chargers: tuple[int, ...] = (100, 1000)
    ingest_duration: float = 10.0
    warmup: float = 3.0
    latency_chargers: int = 1000
    latency_rate: float = 1000.0
    latency_duration: float = 10.0
    backlog_events: int = 100_000
    backlog_chargers: int = 1000
    connections: int = 10_000
    connections_hold: float = 25.0
    heartbeat_interval: int = 10
    drain_timeout: float = 120.0
    cluster_chargers: int = 2000  # split over the two nodes
    cluster_rate: float = 1000.0  # events/s offered in the cluster's latency and takeover
    cluster_lease_ttl: float = 2.0  # [cluster] lease_ttl of both nodes in the takeover
    cluster_load_lease_ttl: float = 10.0  # ... in ingest and latency (the shipped default)
    takeover_after: float = 3.0  # s into the window when a node is killed
    takeover_hold: float = 12.0  # s the load goes on after the kill
    reconnect_spread: float = 1.0  # s: a failed-over charger's first try, random in 0..this
    sustained_chargers: int = 1000
    sustained_seconds: float = 60.0  # the window of each probe
    sustained_probes: int = 4  # at most, per run
    sustained_catch_up: float = 30.0  # s after a probe's load for its last events to arrive
    outage_events: int = 1_000_000  # pending for the endpoint that is down
    outage_chargers: int = 1000
    outage_pileup_max: float = 600.0  # s: the pile-up stops there, whatever it reached
    outage_drain_max: float = 600.0  # s: the drain is waited for this long at most
    outage_rss_cap_mb: float = 4096.0  # the pile-up stops if the server gets this big


FULL = Scale()
QUICK = Scale(
    ingest_chargers=(50,),
    ingest_duration=2.0,
    warmup=1.0,
    latency_chargers=50,
    latency_rate=500.0,
    latency_duration=2.0,
    backlog_events=5_000,
    backlog_chargers=50,
    connections=500,
    connections_hold=3.0,
    heartbeat_interval=1,
    drain_timeout=30.0,
    cluster_chargers=100,
    cluster_rate=200.0,
    cluster_lease_ttl=1.0,
    takeover_after=1.0,
    takeover_hold=5.0,
    sustained_chargers=50,
    sustained_seconds=5.0,
    sustained_probes=2,
    sustained_catch_up=10.0,
    outage_events=20_000,
    outage_chargers=50,
    outage_pileup_max=60.0,
    outage_drain_max=60.0,
)


@contextlib.contextmanager
def _workdir() -> Any:
    """A fresh directory for the server's database and the processes' stderr; kept (and
    named on stderr) when BENCH_KEEP is set, for looking into a run."""
    if os.environ.get("BENCH_KEEP"):
        path = Path(tempfile.mkdtemp(prefix="chb-"))
        print(f"benchmarks: keeping {path}", file=sys.stderr)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="chb-") as tmp:
        yield Path(tmp)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- servers ---------------------------------------------------------------------------------


def chargehook_config(
    workdir: Path,
    *,
    heartbeat_interval: int = 300,
    retry_schedule: list[str] | None = None,
    storage_url: str | None = None,
    key_file: Path | None = None,
    cluster: dict[str, Any] | None = None,
) -> Path:
    """The server's config: a fresh SQLite file in ``workdir``, or ``storage_url`` (PostgreSQL,
    whose webhook key file then lives in ``workdir``, or at ``key_file``: the nodes of one
    cluster share it); ``cluster`` fills the ``[cluster]`` table (strings and numbers)."""
    url = storage_url or f"sqlite:///{workdir / 'csms.db'}"
    lines = [
        "[ocpp]",
        'host = "127.0.0.1"',
        "port = 0",
        "allow_unknown_chargers = true",
        'authorization = "accept_all"',
        f"heartbeat_interval = {heartbeat_interval}",
        "",
        "[api]",
        'host = "127.0.0.1"',
        "port = 0",
        f'tokens = ["{TOKEN}"]',
        "",
        "[storage]",
        f'url = "{url}"',
        "",
        "[webhooks]",
        "allow_private_targets = true",
    ]
    if storage_url is not None:
        lines.append(f'secret_key_file = "{key_file or workdir / "webhook.key"}"')
    if retry_schedule is not None:
        lines.append("retry_schedule = [" + ", ".join(f'"{r}"' for r in retry_schedule) + "]")
    if cluster:
        lines += ["", "[cluster]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in cluster.items()]
    path = workdir / "csms.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(slots=True)
class Server:
    proc: Proc
    ocpp_port: int
    api_port: int | None


async def start_chargehook(group: ProcGroup, workdir: Path, **config: Any) -> Server:
    """``csms serve`` pinned to the server's CPU; ``config`` as ``chargehook_config``."""
    path = chargehook_config(workdir, **config)
    proc = await group.spawn(
        "chargehook",
        [PY, *CSMS_ARGS, "serve", "--config", str(path), "--log-level", "WARNING"],
        cpu=SERVER_CPU,
        stderr_path=str(workdir / "server.err"),
        cwd=str(ROOT),
    )
    ocpp = await proc.wait_line(r"OCPP endpoint ws://[^:]+:(\d+)/", 60)
    api = await proc.wait_line(r"admin API http://[^:]+:(\d+)/", 30)
    return Server(proc, int(ocpp.group(1)), int(api.group(1)))


async def start_baseline(group: ProcGroup, workdir: Path) -> Server:
    proc = await group.spawn(
        "baseline",
        [PY, "-m", "benchmarks.baseline_server", "--port", "0"],
        cpu=SERVER_CPU,
        stderr_path=str(workdir / "server.err"),
        cwd=str(ROOT),
    )
    m = await proc.wait_line(r"OCPP endpoint ws://[^:]+:(\d+)/", 60)
    return Server(proc, int(m.group(1)), None)


async def start_receiver(
    group: ProcGroup,
    workdir: Path,
    port: int = 0,
    *,
    cpu: int | None = LOAD_CPU,
    post_log: bool = False,
) -> tuple[Proc, int]:
    proc = await group.spawn(
        "receiver",
        [PY, "-m", "benchmarks.receiver", "--port", str(port)]
        + (["--post-log"] if post_log else []),
        cpu=cpu,
        stderr_path=str(workdir / "receiver.err"),
        cwd=str(ROOT),
    )
    m = await proc.wait_line(r"receiver: listening (\d+)", 30)
    return proc, int(m.group(1))


async def api_call(api_port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{api_port}/api/v1{path}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, url, json=body, headers=headers) as resp,
    ):
        try:
            data = await resp.json(content_type=None)
        except (ValueError, aiohttp.ContentTypeError):
            data = await resp.text()
        return resp.status, data


async def register_webhook(api_port: int, receiver_port: int) -> str:
    status, data = await api_call(
        api_port,
        "POST",
        "/webhooks",
        {"url": f"http://127.0.0.1:{receiver_port}/hook", "enabledEvents": ["*"]},
    )
    if status == 404:
        raise Skipped("POST /api/v1/webhooks answers 404: WebhookService is not wired into csms")
    if status not in (200, 201):
        raise RuntimeError(f"registering the webhook endpoint failed: {status} {data}")
    return str(data["data"]["id"])


async def receiver_stats(
    port: int,
    t_from: float | None = None,
    t_to: float | None = None,
    *,
    lite: bool = False,
    arrived_by: float | None = None,
) -> Any:
    params = []
    if t_from is not None and t_to is not None:
        params.append(f"from={t_from}&to={t_to}")
    if arrived_by is not None:
        params.append(f"arrivedBy={arrived_by}")
    if lite:
        params.append("lite=1")
    query = "?" + "&".join(params) if params else ""
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/stats{query}") as resp,
    ):
        return await resp.json()


async def wait_delivered(
    port: int, chargers: int, timeout: float, quiet: float = 5.0, *, every: float = 0.25
) -> Any:
    """Poll the receiver until every charger's stream ended with charger.disconnected (all
    delivered), or nothing arrived for ``quiet`` s after the load, or ``timeout``. The polls
    leave the latency figures out (ask for them afterwards)."""
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while True:
        stats = await receiver_stats(port, lite=True)
        if stats["chargersComplete"] >= chargers:
            return stats
        now = time.monotonic()
        if stats["received"] != last_count:
            last_count, last_change = stats["received"], now
        elif now - last_change > quiet:
            return stats
        if now > deadline:
            return stats
        await asyncio.sleep(every)


# -- load ------------------------------------------------------------------------------------


@dataclass(slots=True)
class LoadRun:
    result: dict[str, Any]
    wall_start: float
    wall_end: float
    server: dict[str, float]
    receiver: dict[str, float] | None
    at_ready: dict[str, float] | None = None
    other_load: dict[str, float] | None = None  # % of each CPU used by processes not ours
    postgres: dict[str, float] | None = None  # the PostgreSQL server's CPU in the window


async def run_load(
    group: ProcGroup,
    workdir: Path,
    options: dict[str, Any],
    server_pid: int,
    receiver_pid: int | None = None,
    timeout: float = 600.0,
    postgres: pg.Database | None = None,
) -> LoadRun:
    load = await group.spawn(
        "load",
        [PY, "-m", "benchmarks.loadclient", json.dumps(options)],
        cpu=LOAD_CPU,
        stderr_path=str(workdir / "load.err"),
        cwd=str(ROOT),
    )
    at_ready = None
    if options["mode"] == "idle":
        m = await load.wait_line(r'"mark": "ready", "wall": ([\d.]+)', timeout)
        await asyncio.sleep(1.0)  # let the last handshakes settle before reading RSS
        ready = sample(server_pid)
        at_ready = {"rssMB": round(ready.rss / 2**20, 1)}
        s0 = ready
    else:
        m = await load.wait_line(r'"mark": "start", "wall": ([\d.]+)', timeout)
        s0 = sample(server_pid)
    r0 = sample(receiver_pid) if receiver_pid else None
    l0 = sample(load.pid)
    p0 = pg.cpu(postgres) if postgres else None
    b0 = cpu_busy()
    wall_start = float(m.group(1))
    m = await load.wait_line(r'"mark": "end", "wall": ([\d.]+)', timeout)
    s1 = sample(server_pid)
    r1 = sample(receiver_pid) if receiver_pid else None
    l1 = sample(load.pid)
    p1 = pg.cpu(postgres) if postgres else None
    b1 = cpu_busy()
    wall_end = float(m.group(1))
    on_load_cpu = (l1.cpu - l0.cpu) + ((r1.cpu - r0.cpu) if r0 and r1 else 0.0)
    other_load = others(b0, b1, s1.at - s0.at, {SERVER_CPU: s1.cpu - s0.cpu, LOAD_CPU: on_load_cpu})
    pg_usage = None
    if p0 is not None and p1 is not None:
        pg_usage = pg.cpu_usage(p0, p1, s1.at - s0.at)
        # PostgreSQL runs unpinned: it shows in every CPU's "other" share; what is left of the
        # other share once its CPU time is taken out is the rest of the machine's
        rest = sum(other_load.values()) - pg_usage["cpuPct"]
        other_load = other_load | {"besidesPostgres": round(max(0.0, rest), 1)}
    m = await load.wait_line(r'^\{"result": ', 120)
    result = json.loads(m.string)["result"]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.process.wait(), 10)
    return LoadRun(
        result=result,
        wall_start=wall_start,
        wall_end=wall_end,
        server=usage(s0, s1),
        receiver=usage(r0, r1) if r0 and r1 else None,
        at_ready=at_ready,
        other_load=other_load,
        postgres=pg_usage,
    )


# -- 1. ingest -------------------------------------------------------------------------------


async def measure_ingest(variant: str, chargers: int, scale: Scale) -> dict[str, Any]:
    if variant == "chargehook-postgres":
        try:
            async with pg.database() as db:
                return await _measure_ingest(variant, chargers, scale, db)
        except pg.Unavailable as exc:
            raise Skipped(str(exc)) from None
    return await _measure_ingest(variant, chargers, scale, None)


async def _measure_ingest(
    variant: str, chargers: int, scale: Scale, db: pg.Database | None
) -> dict[str, Any]:
    duration = scale.ingest_duration
    record: dict[str, Any] = {
        "section": "ingest",
        "variant": variant,
        "chargers": chargers,
        "durationS": duration,
        "workload": (
            f"{chargers} chargers, each: BootNotification, StatusNotification, StartTransaction,"
            " StatusNotification, then MeterValues in a closed loop (one CALL in flight);"
            f" {duration:g} s window opened {scale.warmup:g} s after all are looping"
        ),
        "counted": "MeterValues CALLRESULTs received inside the window; latency = send to answer",
    }
    if db is not None:
        record["workload"] += (
            f"; storage.url = PostgreSQL ({pg.redact(pg.ADMIN_URL).rsplit('/', 1)[0]}, a fresh"
            " database), the PostgreSQL server unpinned"
        )
        record["counted"] += (
            "; postgres CPU = utime+stime of the postmaster and its children (alive, and"
            " reaped: cutime+cstime) over the window, from /proc"
        )
    with _workdir() as workdir:
        async with ProcGroup() as group:
            receiver_port = None
            receiver: Proc | None = None
            if variant == "baseline":
                server = await start_baseline(group, workdir)
            else:
                server = await start_chargehook(
                    group, workdir, storage_url=db.url if db is not None else None
                )
            if variant == "chargehook-webhooks":
                assert server.api_port is not None
                receiver, receiver_port = await start_receiver(group, workdir)
                await register_webhook(server.api_port, receiver_port)
            idle = sample(server.proc.pid)
            load = await run_load(
                group,
                workdir,
                {
                    "mode": "closed",
                    "port": server.ocpp_port,
                    "chargers": chargers,
                    "duration": duration,
                    "warmup": scale.warmup,
                    "concurrency": 200,
                    "setupTimeout": 120,
                },
                server.proc.pid,
                receiver.pid if receiver else None,
                postgres=db,
            )
            res = load.result
            record.update(
                callsPerSecond=res["callsPerSecond"],
                calls=res["calls"],
                latencyMs=res["latencyMs"],
                server=load.server | {"idleRssMB": round(idle.rss / 2**20, 1)},
                serverCpuUsPerCall=_per_call(load.server["cpuS"], res["calls"]),
                callsPerServerCpuS=round(res["calls"] / load.server["cpuS"], 1)
                if load.server["cpuS"]
                else None,
                otherLoadPct=load.other_load,
                client={"cpuPct": res["clientCpuPct"], "cpuS": res["clientCpuS"]},
                ready=res["ready"],
                setupS=res["setupS"],
                errors=res["errors"],
            )
            if load.postgres is not None:
                pg_cpu = load.postgres["cpuS"]
                assert db is not None
                record.update(
                    postgresDatabase=db.name,  # made for this measurement, dropped after it
                    postgres=load.postgres,
                    postgresCpuUsPerCall=_per_call(pg_cpu, res["calls"]),
                    totalCpuUsPerCall=_per_call(load.server["cpuS"] + pg_cpu, res["calls"]),
                )
            if receiver_port is not None:
                stats = await wait_delivered(receiver_port, chargers, scale.drain_timeout)
                window = await receiver_stats(receiver_port, load.wall_start, load.wall_end)
                record.update(
                    counted=record["counted"]
                    + "; events: unique webhook POSTs at the receiver; e2e = meterValue"
                    " timestamp (written just before the send) to arrival at the receiver",
                    eventsPerSecond=round(window["arrivedInWindow"] / duration, 1),
                    e2eMs=window["e2eMs"],
                    e2eCount=window["e2eCount"],
                    delivery=_delivery(stats, chargers, load.wall_end),
                    receiver=load.receiver,
                )
    return record


def _per_call(cpu_s: float, calls: int) -> float | None:
    return round(cpu_s * 1e6 / calls, 1) if calls else None


def _delivery(stats: dict[str, Any], chargers: int, wall_end: float) -> dict[str, Any]:
    return {
        "received": stats["received"],
        "duplicates": stats["duplicates"],
        "outOfOrder": stats["outOfOrder"],
        "gaps": stats["gaps"],
        "chargersComplete": stats["chargersComplete"],
        "missing": stats["missing"],
        "incompleteSample": stats["incomplete"][:5],
        "allDelivered": stats["chargersComplete"] >= chargers
        and stats["gaps"] == 0
        and stats["outOfOrder"] == 0,
        "lastArrivalAfterLoadS": round(max(0.0, stats["lastArrival"] - wall_end), 3),
    }


# -- 2. latency at fixed load ----------------------------------------------------------------


async def measure_latency(scale: Scale) -> dict[str, Any]:
    n, rate, duration = scale.latency_chargers, scale.latency_rate, scale.latency_duration
    record: dict[str, Any] = {
        "section": "latency",
        "variant": "chargehook-webhooks",
        "chargers": n,
        "durationS": duration,
        "targetRate": rate,
        "workload": (
            f"{n} chargers in a transaction, MeterValues offered open loop at {rate:g}/s in"
            f" total (each charger every {n / rate:g} s, random phase), {duration:g} s;"
            " each MeterValues makes one transaction.updated event"
        ),
        "counted": "events of MeterValues scheduled inside the window; e2e = meterValue"
        " timestamp (written just before the send) to arrival at the receiver",
    }
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
                    "duration": duration,
                    "warmup": scale.warmup,
                    "concurrency": 200,
                },
                server.proc.pid,
                receiver.pid,
            )
            stats = await wait_delivered(receiver_port, n, scale.drain_timeout)
            window = await receiver_stats(receiver_port, load.wall_start, load.wall_end)
            res = load.result
            record.update(
                offered=res["scheduled"],
                callsPerSecond=res["callsPerSecond"],
                callLatencyMs=res["latencyMs"],
                e2eMs=window["e2eMs"],
                e2eCount=window["e2eCount"],
                eventsPerSecond=round(window["arrivedInWindow"] / duration, 1),
                delivery=_delivery(stats, n, load.wall_end),
                server=load.server,
                serverCpuUsPerCall=_per_call(load.server["cpuS"], res["calls"]),
                client={"cpuPct": res["clientCpuPct"]},
                receiver=load.receiver,
                otherLoadPct=load.other_load,
                errors=res["errors"],
            )
    return record


# -- 3. backlog drain ------------------------------------------------------------------------

BACKLOG_RETRY = ["2s"] * 150  # covers 300 s of receiver down time without giving up


STORES = ("sqlite", "postgres")
PER_CHARGER_EVENTS = 8  # connected, boot, 2 x status, started, stopped, disconnected, +1


def webhooks_variant(store: str) -> str:
    """The variant name of a webhook section on ``store``."""
    return "chargehook-webhooks" if store == "sqlite" else "chargehook-webhooks-postgres"


async def on_store(store: str, measure: Any) -> dict[str, Any]:
    """``measure(db)`` with ``db`` None on SQLite, or a fresh PostgreSQL database (dropped
    afterwards, whatever happened; skipped when no server answers)."""
    if store == "sqlite":
        return dict(await measure(None))
    try:
        async with pg.database() as db:
            return dict(await measure(db))
    except pg.Unavailable as exc:
        raise Skipped(str(exc)) from None


def _on_pg_words(db: pg.Database | None) -> str:
    if db is None:
        return ""
    return (
        f"; storage.url = PostgreSQL ({pg.redact(pg.ADMIN_URL).rsplit('/', 1)[0]}, a fresh"
        " database), the PostgreSQL server unpinned"
    )


async def measure_backlog(scale: Scale, store: str = "sqlite") -> dict[str, Any]:
    return await on_store(store, lambda db: _measure_backlog(scale, db))


async def _measure_backlog(scale: Scale, db: pg.Database | None) -> dict[str, Any]:
    n = scale.backlog_chargers
    target = max(n, scale.backlog_events - PER_CHARGER_EVENTS * n)
    record: dict[str, Any] = {
        "section": "backlog",
        "variant": webhooks_variant("sqlite" if db is None else "postgres"),
        "chargers": n,
        "workload": (
            f"receiver down (port closed); {n} chargers run a transaction with MeterValues in a"
            f" closed loop until about {scale.backlog_events} events exist, then disconnect;"
            " then the receiver starts. retry_schedule = 150 x 2s so nothing is given up"
            " while it is down" + _on_pg_words(db)
        ),
        "counted": "unique events received; rate = events / (last arrival - receiver up);"
        " order kept = no charger's sequence ever went back; missing = events of streams that"
        " ended (charger.disconnected) that never arrived",
    }
    if db is not None:
        record["postgresDatabase"] = db.name
    with _workdir() as workdir:
        async with ProcGroup() as group:
            server = await start_chargehook(
                group,
                workdir,
                retry_schedule=BACKLOG_RETRY,
                storage_url=db.url if db is not None else None,
            )
            assert server.api_port is not None
            port = free_port()
            await register_webhook(server.api_port, port)
            t_gen = time.monotonic()
            load = await run_load(
                group,
                workdir,
                {
                    "mode": "generate",
                    "port": server.ocpp_port,
                    "chargers": n,
                    "target": target,
                    "maxTime": 240,
                    "concurrency": 200,
                },
                server.proc.pid,
            )
            generate_s = time.monotonic() - t_gen
            await asyncio.sleep(1.0)
            s0 = sample(server.proc.pid)
            p0 = pg.cpu(db) if db is not None else None
            receiver, _ = await start_receiver(group, workdir, port)
            r0 = sample(receiver.pid)
            up = time.time()
            stats = await wait_delivered(port, n, scale.drain_timeout * 3, quiet=15.0)
            s1 = sample(server.proc.pid)
            r1 = sample(receiver.pid)
            if db is not None and p0 is not None:
                record["postgres"] = pg.cpu_usage(p0, pg.cpu(db), s1.at - s0.at)
            total = stats["received"]
            span_up = stats["lastArrival"] - up if total else 0.0
            span_first = stats["lastArrival"] - stats["firstArrival"] if total else 0.0
            record.update(
                events=total,
                meterValues=load.result["meterValues"],
                generateS=round(generate_s, 1),
                ingestCallsPerSecond=load.result["callsPerSecond"],
                drainS=round(span_up, 3),
                eventsPerSecond=round(total / span_up, 1) if span_up > 0 else 0.0,
                eventsPerSecondFromFirst=round(total / span_first, 1) if span_first > 0 else 0.0,
                firstArrivalAfterUpS=round(stats["firstArrival"] - up, 3) if total else None,
                orderKept=stats["outOfOrder"] == 0,
                delivery=_delivery(stats, n, up),
                server=usage(s0, s1),
                receiver=usage(r0, r1),
                errors=load.result["errors"],
            )
    return record


# -- 4. idle connections ---------------------------------------------------------------------


async def measure_connections(scale: Scale) -> dict[str, Any]:
    n, hold, interval = scale.connections, scale.connections_hold, scale.heartbeat_interval
    record: dict[str, Any] = {
        "section": "connections",
        "variant": "chargehook-store",
        "chargers": n,
        "durationS": hold,
        "workload": (
            f"{n} chargers connect and send BootNotification (200 at a time);"
            f" then Heartbeat every {interval} s ([ocpp] heartbeat_interval) for {hold:g} s"
        ),
        "counted": "connect time = first connect to last BootNotification answered; RSS of"
        " the server once all are connected and at the end; heartbeats sent vs answered",
    }
    with _workdir() as workdir:
        async with ProcGroup() as group:
            server = await start_chargehook(group, workdir, heartbeat_interval=interval)
            idle = sample(server.proc.pid)
            load = await run_load(
                group,
                workdir,
                {
                    "mode": "idle",
                    "port": server.ocpp_port,
                    "chargers": n,
                    "duration": hold,
                    "concurrency": 200,
                    "setupTimeout": 180,
                    "grace": 10,
                },
                server.proc.pid,
            )
            res = load.result
            assert load.at_ready is not None
            record.update(
                connected=res["ready"],
                connectAllS=res["connectAllS"],
                connectMs=res["connectMs"],
                rssMB=max(load.at_ready["rssMB"], load.server["rssMB"]),
                rssAtReadyMB=load.at_ready["rssMB"],
                idleRssMB=round(idle.rss / 2**20, 1),
                kbPerCharger=round(
                    (max(load.at_ready["rssMB"], load.server["rssMB"]) - idle.rss / 2**20)
                    * 1024
                    / n,
                    1,
                ),
                heartbeatsSent=res["heartbeatsSent"],
                heartbeatsAnswered=res["heartbeatsAnswered"],
                heartbeatsUnanswered=res["heartbeatsUnanswered"],
                server=load.server,
                client={"cpuPct": res["clientCpuPct"]},
                otherLoadPct=load.other_load,
                errors=res["errors"],
            )
    return record


def revision() -> dict[str, Any]:
    """The commit measured, and whether the working tree had changes (they were measured too)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.rstrip()  # not strip(): a status line starts with a space (" M path")
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        if line[3:].startswith(("csms/", "webhooks/", "storage/"))
    ]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommittedServerFiles": dirty}


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}
