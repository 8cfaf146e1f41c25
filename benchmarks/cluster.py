"""The cluster section: two ``csms serve`` nodes on one PostgreSQL database (DESIGN 8).

Three measurements, each on a database of its own (``pg.database()``: made for it, dropped
``WITH (FORCE)`` afterwards, also after a failure), with node 1 pinned to CPU 0 and node 2
to CPU 1 (the machine has two cores: one per node). The load client, the webhook receiver
and PostgreSQL are not pinned: they share both cores with the nodes, and the records say
how much CPU each took. Chargers are split between the nodes (charger i on node
``(i - 1) % 2 + 1``), as a TCP load balancer with round robin would.

- ``ingest``: the ingest section's closed loop (``loadclient`` mode ``closed``) over both
  nodes: aggregate calls/s, and per node.
- ``latency``: the latency section's open loop at a fixed offered rate split over both
  nodes, one webhook endpoint registered once (both nodes deliver): end-to-end latency
  from the meterValue timestamp to the receiver.
- ``takeover``: the same open loop with a webhook endpoint; after a while node 1 is killed
  with SIGKILL. Its chargers reconnect to node 2 (``failover``). Which node posted each
  delivery is told by the sender's TCP port: the receiver logs it per POST, and the
  killed node's ports to the receiver are read from /proc just before the kill. A stream
  (endpoint, charger) is "the dead node's" when its last delivery before the kill came from
  the dead node. Figures, from the kill (wall clock, the receiver's arrival time):
  ``streamMs``: the first delivery by the survivor on a dead node's stream (issue 12's
  figure); ``backlogMs``: the first such delivery of an event stored before the kill;
  ``reconnectedMs``: the first such delivery of an event stored after the kill by a
  charger that was on the dead node (it reconnected to the survivor);
  ``allStreamsMs``: when the last of the dead node's streams whose charger stayed on the
  survivor got its first delivery by the survivor (each such charger sends every N/rate s,
  so this is the whole takeover plus up to one interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import pg
from benchmarks.procs import Proc, ProcGroup, cpu_busy, pinning, sample, usage
from benchmarks.sections import (
    CSMS_ARGS,
    PY,
    ROOT,
    Scale,
    Skipped,
    _delivery,
    _per_call,
    _workdir,
    chargehook_config,
    receiver_stats,
    register_webhook,
    start_receiver,
    wait_delivered,
)

NODE_CPUS = (0, 1)
KILLED = 1  # the node killed in the takeover measurement (the webhook is registered on it)
NODE_LOG_LEVEL = os.environ.get("BENCH_NODE_LOG_LEVEL", "WARNING")  # INFO: to look into a run
LOOK_BACK = 2.0  # s before the kill in which a stream's last delivery tells its node


@dataclass(slots=True)
class Node:
    name: str
    proc: Proc
    ocpp_port: int
    api_port: int


async def start_node(
    group: ProcGroup, workdir: Path, n: int, db: pg.Database, lease_ttl: float
) -> Node:
    """Node ``n`` (1 or 2): ``csms serve`` on the database, pinned to CPU ``n - 1``; the nodes
    share the webhook key file (the endpoints' secrets are sealed with it)."""
    nodedir = workdir / f"node{n}"
    nodedir.mkdir(exist_ok=True)
    name = f"node-{n}"
    path = chargehook_config(
        nodedir,
        storage_url=db.url,
        key_file=workdir / "webhook.key",
        cluster={"node_id": name, "lease_ttl": lease_ttl},
    )
    proc = await group.spawn(
        name,
        [PY, *CSMS_ARGS, "serve", "--config", str(path), "--log-level", NODE_LOG_LEVEL],
        cpu=NODE_CPUS[n - 1],
        stderr_path=str(nodedir / "server.err"),
        cwd=str(ROOT),
    )
    ocpp = await proc.wait_line(r"OCPP endpoint ws://[^:]+:(\d+)/", 60)
    api = await proc.wait_line(r"admin API http://[^:]+:(\d+)/", 30)
    return Node(name, proc, int(ocpp.group(1)), int(api.group(1)))


async def start_nodes(
    group: ProcGroup, workdir: Path, db: pg.Database, lease_ttl: float
) -> list[Node]:
    # one after the other: node 1 runs the migrations and writes the key file
    return [await start_node(group, workdir, n, db, lease_ttl) for n in (1, 2)]


def placement() -> str:
    if pinning()["pinned"]:
        return (
            "node 1 pinned to CPU 0, node 2 to CPU 1; the load client, the receiver and"
            " PostgreSQL unpinned (they share both CPUs with the nodes)"
        )
    return f"NOT pinned ({pinning()['why']})"


async def _on_database(measure: Any, scale: Scale) -> dict[str, Any]:
    try:
        async with pg.database() as db:
            return await measure(scale, db)
    except pg.Unavailable as exc:
        raise Skipped(str(exc)) from None


# -- the load --------------------------------------------------------------------------------


@dataclass(slots=True)
class ClusterLoad:
    result: dict[str, Any]
    wall_start: float
    wall_end: float
    nodes: list[dict[str, float] | None]
    client: dict[str, float] | None
    receiver: dict[str, float] | None
    postgres: dict[str, float] | None
    cpu_busy_pct: dict[str, float]  # each CPU's busy share in the window, all processes
    other_pct: float  # CPU taken by processes not ours (nor our database's), % of one core


def _safe_sample(pid: int) -> Any:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return sample(pid)
    return None


async def run_cluster_load(
    group: ProcGroup,
    workdir: Path,
    options: dict[str, Any],
    nodes: list[Node],
    db: pg.Database,
    receiver: Proc | None = None,
    during: Any = None,
    timeout: float = 600.0,
    last_seen: dict[int, Any] | None = None,
) -> ClusterLoad:
    """The load client (unpinned) against both nodes; CPU of every process over the window.
    ``during``: a coroutine function run once the window opened (the kill); ``last_seen``:
    a process's last sample, for one that is gone by the window's end (the killed node)."""
    load = await group.spawn(
        "load",
        [PY, "-m", "benchmarks.loadclient", json.dumps(options)],
        cpu=None,
        stderr_path=str(workdir / "load.err"),
        cwd=str(ROOT),
    )
    m = await load.wait_line(r'"mark": "start", "wall": ([\d.]+)', timeout)
    wall_start = float(m.group(1))
    pids = [n.proc.pid for n in nodes] + [load.pid] + ([receiver.pid] if receiver else [])
    s0 = [_safe_sample(p) for p in pids]
    p0, b0 = pg.cpu(db), cpu_busy()
    if during is not None:
        await during(wall_start)
    m = await load.wait_line(r'"mark": "end", "wall": ([\d.]+)', timeout)
    wall_end = float(m.group(1))
    s1 = [_safe_sample(p) or (last_seen or {}).get(p) for p in pids]
    p1, b1 = pg.cpu(db), cpu_busy()
    span = (s1[-1].at - s0[-1].at) if s1[-1] and s0[-1] else wall_end - wall_start
    used = [usage(a, b) if a and b else None for a, b in zip(s0, s1, strict=True)]
    m = await load.wait_line(r'^\{"result": ', 120)
    result = json.loads(m.string)["result"]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(load.process.wait(), 10)
    busy = {
        f"cpu{c}": round(100 * (b1[c] - b0[c]) / span, 1) if span > 0 else 0.0
        for c in sorted(b1)
        if c in b0
    }
    pg_used = pg.cpu_usage(p0, p1, span)
    pg_used["oursPct"] = (
        round(100 * (pg_used["oursS"] + pg_used["helpersS"]) / span, 1) if span > 0 else 0.0
    )
    ours = sum(u["cpuS"] for u in used if u) + pg_used["oursS"] + pg_used["helpersS"]
    total = sum(b1[c] - b0[c] for c in b1 if c in b0)
    other = round(max(0.0, 100 * (total - ours) / span), 1) if span > 0 else 0.0
    return ClusterLoad(
        result=result,
        wall_start=wall_start,
        wall_end=wall_end,
        nodes=used[: len(nodes)],
        client=used[len(nodes)],
        receiver=used[len(nodes) + 1] if receiver else None,
        postgres=pg_used,
        cpu_busy_pct=busy,
        other_pct=other,
    )


def _base(section_scale: Scale, kind: str, n: int, lease_ttl: float) -> dict[str, Any]:
    return {
        "section": "cluster",
        "variant": f"cluster-{kind}",
        "chargers": n,
        "nodes": 2,
        "leaseTtlS": lease_ttl,
        "reconnectSpreadS": section_scale.reconnect_spread,
        "placement": placement(),
    }


def _nodes_cpu(load: ClusterLoad) -> dict[str, Any]:
    return {f"node{i}": u for i, u in enumerate(load.nodes, start=1) if u is not None} | {
        "postgres": load.postgres,
        "client": load.client,
        "cpuBusyPct": load.cpu_busy_pct,
        "otherProcsPct": load.other_pct,
    }


# -- 1. aggregate ingest ---------------------------------------------------------------------


async def measure_cluster_ingest(scale: Scale) -> dict[str, Any]:
    return await _on_database(_ingest, scale)


async def _ingest(scale: Scale, db: pg.Database) -> dict[str, Any]:
    n, duration = scale.cluster_chargers, scale.ingest_duration
    ttl = scale.cluster_load_lease_ttl
    record = _base(scale, "ingest", n, ttl) | {
        "durationS": duration,
        "workload": (
            f"{n} chargers split over 2 nodes on one PostgreSQL database ({n // 2} each), each:"
            " BootNotification, StatusNotification, StartTransaction, StatusNotification,"
            f" then MeterValues in a closed loop (one CALL in flight); {duration:g} s window"
            f" opened {scale.warmup:g} s after all are looping; no webhook endpoint"
        ),
        "counted": "MeterValues CALLRESULTs received inside the window, both nodes together"
        " (and per node); latency = send to answer; CPU from /proc over the window",
    }
    with _workdir() as workdir:
        async with ProcGroup() as group:
            nodes = await start_nodes(group, workdir, db, ttl)
            load = await run_cluster_load(
                group,
                workdir,
                {
                    "mode": "closed",
                    "ports": [x.ocpp_port for x in nodes],
                    "chargers": n,
                    "duration": duration,
                    "warmup": scale.warmup,
                    "concurrency": 200,
                    "setupTimeout": 180,
                },
                nodes,
                db,
            )
            res = load.result
            by_port = res.get("callsByPort", {})
            node_cpu = sum(u["cpuS"] for u in load.nodes if u)
            record.update(
                callsPerSecond=res["callsPerSecond"],
                calls=res["calls"],
                callsPerSecondByNode={
                    x.name: round(by_port.get(str(x.ocpp_port), 0) / duration, 1) for x in nodes
                },
                latencyMs=res["latencyMs"],
                cpu=_nodes_cpu(load),
                nodesCpuUsPerCall=_per_call(node_cpu, res["calls"]),
                # our database's backends and the server's helpers: other databases' sessions
                # on a shared server (other people's tests) are left out
                postgresCpuUsPerCall=_per_call(
                    load.postgres["oursS"] + load.postgres["helpersS"], res["calls"]
                )
                if load.postgres
                else None,
                postgresDatabase=db.name,
                ready=res["ready"],
                setupS=res["setupS"],
                errors=res["errors"],
            )
    return record


# -- 2. latency at a fixed offered load, both nodes delivering -------------------------------


async def measure_cluster_latency(scale: Scale) -> dict[str, Any]:
    return await _on_database(_latency, scale)


async def _latency(scale: Scale, db: pg.Database) -> dict[str, Any]:
    n, rate, duration = scale.cluster_chargers, scale.cluster_rate, scale.latency_duration
    ttl = scale.cluster_load_lease_ttl
    record = _base(scale, "latency", n, ttl) | {
        "durationS": duration,
        "targetRate": rate,
        "workload": (
            f"{n} chargers split over 2 nodes ({n // 2} each) in a transaction, MeterValues"
            f" offered open loop at {rate:g}/s in total (each charger every {n / rate:g} s,"
            f" random phase), {duration:g} s window after {scale.warmup:g} s; one webhook"
            " endpoint (subscribed to *) registered once, through node 1's API; both nodes"
            " run their delivery engine"
        ),
        "counted": "events of MeterValues scheduled inside the window; e2e = meterValue"
        " timestamp (written just before the send) to arrival at the receiver;"
        " deliveriesByNode: POSTs arrived in the window by the node they came from (its TCP"
        " source port; ports of connections gone by the window's end: unknown)",
    }
    with _workdir() as workdir:
        async with ProcGroup() as group:
            nodes = await start_nodes(group, workdir, db, ttl)
            receiver, receiver_port = await start_receiver(group, workdir, cpu=None, post_log=True)
            await register_webhook(nodes[0].api_port, receiver_port)
            load = await run_cluster_load(
                group,
                workdir,
                {
                    "mode": "open",
                    "ports": [x.ocpp_port for x in nodes],
                    "chargers": n,
                    "rate": rate,
                    "duration": duration,
                    "warmup": scale.warmup,
                    "concurrency": 200,
                    "setupTimeout": 180,
                },
                nodes,
                db,
                receiver,
            )
            senders = {x.name: ports_to(x.proc.pid, receiver_port) for x in nodes}
            stats = await wait_delivered(receiver_port, n, scale.drain_timeout)
            window = await receiver_stats(receiver_port, load.wall_start, load.wall_end)
            by_node = {name: 0 for name in senders} | {"unknown": 0}
            for post in await _posts(receiver_port, load.wall_start):
                if post[0] >= load.wall_end:
                    continue
                name = next((k for k, v in senders.items() if post[1] in v), "unknown")
                by_node[name] += 1
            res = load.result
            record.update(
                deliveriesByNode=by_node,
                offered=res["scheduled"],
                callsPerSecond=res["callsPerSecond"],
                callLatencyMs=res["latencyMs"],
                e2eMs=window["e2eMs"],
                e2eCount=window["e2eCount"],
                eventsPerSecond=round(window["arrivedInWindow"] / duration, 1),
                delivery=_delivery(stats, n, load.wall_end),
                cpu=_nodes_cpu(load) | {"receiver": load.receiver},
                postgresDatabase=db.name,
                errors=res["errors"],
            )
    return record


# -- 3. takeover after kill -9 ---------------------------------------------------------------


def ports_to(pid: int, remote_port: int) -> set[int]:
    """The local ports of process ``pid``'s TCP connections to ``remote_port`` (loopback),
    from its socket inodes in /proc/PID/fd and the kernel's table in /proc/net/tcp{,6}."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) < 10 or parts[9] not in inodes:
                    continue
                if int(parts[2].rsplit(":", 1)[1], 16) == remote_port:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def analyse_takeover(
    posts: list[list[Any]],
    kill: float,
    dead_ports: set[int],
    survivor_ports: set[int],
    dead_chargers: set[str],
    load_end: float,
) -> dict[str, Any]:
    """The figures of the module's docstring from the receiver's POST log: entries
    ``[arrival, sender port, charger, sequence, type, id, stored, sent]``; ``load_end``: when
    the load stopped (its chargers' own disconnects are not counted as lost sockets)."""
    posts = sorted(posts, key=lambda p: p[0])
    owner: dict[str, str] = {}
    for p in posts:
        if kill - LOOK_BACK <= p[0] < kill and p[2] is not None:
            owner[p[2]] = (
                "dead" if p[1] in dead_ports else "survivor" if p[1] in survivor_ports else "?"
            )
    dead_streams = {c for c, o in owner.items() if o == "dead"}
    after = [p for p in posts if p[0] >= kill]
    late = [p for p in after if p[1] in dead_ports]  # written before the kill, read after it
    survivor = [p for p in after if p[1] not in dead_ports]
    on_dead = [p for p in survivor if p[2] in dead_streams]

    def ms(p: list[Any] | None) -> float | None:
        return round((p[0] - kill) * 1000, 1) if p is not None else None

    def first(items: list[list[Any]]) -> list[Any] | None:
        return items[0] if items else None

    stream = first(on_dead)
    backlog = first([p for p in on_dead if p[6] is not None and p[6] < kill])
    reconnected = [
        p
        for p in survivor
        if p[2] in dead_chargers
        and p[6] is not None
        and p[6] >= kill
        and p[4] != "charger.disconnected"
    ]
    first_by_stream: dict[str, float] = {}
    for p in on_dead:
        first_by_stream.setdefault(p[2], p[0])
    # streams of the dead node whose charger stayed connected (to the survivor): they have
    # an event every N/rate s whatever the failover of the dead node's chargers
    staying = [t for c, t in first_by_stream.items() if c not in dead_chargers]
    staying_total = sum(1 for c in dead_streams if c not in dead_chargers)
    # events of the dead node's streams stored before the kill and not delivered before it
    delivered_before = {p[5] for p in posts if p[0] < kill}
    undelivered = {
        p[5]
        for p in after
        if p[2] in dead_streams
        and p[6] is not None
        and p[6] < kill
        and p[5] not in delivered_before
    }
    return {
        "streamMs": ms(stream),
        "streamFirstEvent": _describe(stream, kill),
        "backlogMs": ms(backlog),
        "backlogFirstEvent": _describe(backlog, kill),
        "reconnectedMs": ms(first([p for p in reconnected if p[2] in dead_streams])),
        "reconnectedAnyStreamMs": ms(first(reconnected)),
        "allStreamsMs": round((max(staying) - kill) * 1000, 1)
        if staying and len(staying) == staying_total
        else None,
        "lastResumedStreamMs": round((max(first_by_stream.values()) - kill) * 1000, 1)
        if first_by_stream
        else None,
        "deadStreams": len(dead_streams),
        "deadStreamsResumed": len(first_by_stream),
        "deadStreamsOfStayingChargers": staying_total,
        "deadStreamsOfStayingChargersResumed": len(staying),
        "survivorStreams": sum(1 for o in owner.values() if o == "survivor"),
        "unknownSenderStreams": sum(1 for o in owner.values() if o == "?"),
        "backlogAtKill": len(undelivered),
        "deadNodePostsReadAfterKill": len(late),
        "repostsAfterKill": sum(1 for p in survivor if p[5] in delivered_before),
        "disconnectsBeforeLoadEnd": len(
            {
                p[5]
                for p in after
                if p[4] == "charger.disconnected" and p[6] is not None and p[6] < load_end
            }
        ),
    }


def _describe(p: list[Any] | None, kill: float) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "chargerId": p[2],
        "sequence": p[3],
        "type": p[4],
        "storedBeforeKill": p[6] is not None and p[6] < kill,
    }


async def _posts(port: int, t_from: float) -> list[list[Any]]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/posts?from={t_from}") as resp,
    ):
        data: list[list[Any]] = await resp.json()
        return data


async def measure_cluster_takeover(scale: Scale) -> dict[str, Any]:
    return await _on_database(_takeover, scale)


async def _takeover(scale: Scale, db: pg.Database) -> dict[str, Any]:
    n, rate, ttl = scale.cluster_chargers, scale.cluster_rate, scale.cluster_lease_ttl
    after, hold = scale.takeover_after, scale.takeover_hold
    record = _base(scale, "takeover", n, ttl) | {
        "durationS": after + hold,
        "targetRate": rate,
        "workload": (
            f"{n} chargers split over 2 nodes ({n // 2} each) in a transaction, MeterValues"
            f" offered open loop at {rate:g}/s in total, one webhook endpoint (subscribed to"
            f" *, registered through node 1); {after:g} s into the window node {KILLED} is"
            " killed with SIGKILL; its chargers reconnect to the other node (first try after"
            f" a random 0-{scale.reconnect_spread:g} s, then 0.5-1 s doubling to 4 s), boot,"
            f" start a new transaction and go on; the load goes on {hold:g} s after the kill;"
            f" cluster.lease_ttl = {ttl:g} s"
        ),
        "counted": "from the kill (wall clock) to arrivals at the receiver; the posting node"
        " of each delivery told by its TCP source port (the killed node's ports read from"
        " /proc just before the kill); a dead node's stream = one whose last delivery in the"
        f" {LOOK_BACK:g} s before the kill came from the killed node; see benchmarks/cluster.py",
    }
    with _workdir() as workdir:
        async with ProcGroup() as group:
            nodes = await start_nodes(group, workdir, db, ttl)
            receiver, receiver_port = await start_receiver(group, workdir, cpu=None, post_log=True)
            await register_webhook(nodes[0].api_port, receiver_port)
            victim, survivor = nodes[KILLED - 1], nodes[2 - KILLED]
            seen: dict[str, Any] = {}
            last_seen: dict[int, Any] = {}

            async def kill(wall_start: float) -> None:
                await asyncio.sleep(max(0.0, wall_start + after - time.time()))
                seen["deadPorts"] = ports_to(victim.proc.pid, receiver_port)
                seen["survivorPorts"] = ports_to(survivor.proc.pid, receiver_port)
                last_seen[victim.proc.pid] = _safe_sample(victim.proc.pid)
                seen["kill"] = time.time()
                os.kill(victim.proc.pid, signal.SIGKILL)
                await victim.proc.process.wait()
                seen["reaped"] = time.time()

            load = await run_cluster_load(
                group,
                workdir,
                {
                    "mode": "open",
                    "ports": [x.ocpp_port for x in nodes],
                    "chargers": n,
                    "rate": rate,
                    "duration": after + hold,
                    "warmup": scale.warmup,
                    "concurrency": 200,
                    "setupTimeout": 180,
                    "failover": True,
                    "reconnectSpread": scale.reconnect_spread,
                },
                nodes,
                db,
                receiver,
                during=kill,
                last_seen=last_seen,
            )
            stats = await wait_delivered(receiver_port, n, scale.drain_timeout)
            kill_at = seen["kill"]
            posts = await _posts(receiver_port, kill_at - LOOK_BACK)
            ports = [x.ocpp_port for x in nodes]
            dead_chargers = {
                f"BENCH-{i:05d}"
                for i in range(1, n + 1)
                if ports[(i - 1) % len(ports)] == victim.ocpp_port
            }
            figures = analyse_takeover(
                posts,
                kill_at,
                seen["deadPorts"],
                seen["survivorPorts"],
                dead_chargers,
                load.wall_end,
            )
            fo = load.result.get("failover", {})
            lost = fo.get("lostWall") or []
            record.update(
                killed=victim.name,
                killWall=round(kill_at, 6),
                takeover=figures,
                deadNodeSendersAtKill=len(seen["deadPorts"]),
                failover={
                    "lost": fo.get("lost"),
                    "reconnected": fo.get("reconnected"),
                    "lostInFlight": fo.get("lostInFlight"),
                    # sockets lost before the kill: another cause (a false death) was at work
                    "lostBeforeKill": sum(1 for t in lost if t < kill_at),
                    "lastBackAfterKillMs": round((fo["lastBackWall"] - kill_at) * 1000, 1)
                    if fo.get("lastBackWall")
                    else None,
                },
                delivery=_delivery(stats, n, load.wall_end),
                cpu=_nodes_cpu(load) | {"receiver": load.receiver},
                ready=load.result["ready"],
                postgresDatabase=db.name,
                errors=load.result["errors"],
            )
    return record
