"""A long receiver outage: many events pending for one endpoint that is down, then drained.

chargehook-webhooks (on SQLite, or on a fresh PostgreSQL database) with one endpoint on
``*`` whose port is closed and a retry schedule long enough that nothing is given up while
it is down. N chargers run a transaction with MeterValues in a closed loop until about
``outage_events`` events exist (or ``outage_pileup_max`` s), then disconnect; then the
receiver starts on that port and everything drains. The server's RSS is read from /proc
every ``SAMPLE_EVERY`` s throughout: the peak while the events pile up and the peak while
they drain (VmHWM too: a peak between two samples still counts). Counted as in the backlog
section: drain events/s from the receiver up to the last arrival, order kept, none lost.

The machine is shared: if the server's RSS passes ``outage_rss_cap_mb`` the pile-up stops
there (the load is stopped, its chargers' sockets close) and the record says so; the drain
is measured all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

import aiohttp

from benchmarks import pg
from benchmarks.procs import LOAD_CPU, ProcGroup, sample, usage
from benchmarks.sections import (
    PER_CHARGER_EVENTS,
    PY,
    ROOT,
    TOKEN,
    Scale,
    _delivery,
    _on_pg_words,
    _workdir,
    free_port,
    on_store,
    register_webhook,
    start_chargehook,
    start_receiver,
    wait_delivered,
    webhooks_variant,
)

SAMPLE_EVERY = 0.5  # s between two reads of the server's RSS
RETRY_EVERY_S = 2  # the retry schedule's step while the endpoint is down
MAX_SERIES = 240  # points of the RSS series kept in the record


class RssWatch:
    """Samples a process's RSS; the peak per phase, and a flag once it passes a cap."""

    def __init__(self, pid: int, cap_mb: float) -> None:
        self.pid = pid
        self.cap = cap_mb * 2**20
        self.phase = "idle"
        self.peak: dict[str, int] = {}
        self.series: list[tuple[float, str, float]] = []
        self.capped = asyncio.Event()
        self.t0 = time.monotonic()

    def read(self) -> int:
        rss = sample(self.pid).rss
        self.peak[self.phase] = max(self.peak.get(self.phase, 0), rss)
        self.series.append((round(time.monotonic() - self.t0, 1), self.phase, _mb(rss)))
        if rss > self.cap:
            self.capped.set()
        return rss

    async def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # the process ended
            while True:
                self.read()
                await asyncio.sleep(SAMPLE_EVERY)

    def peak_mb(self, phase: str) -> float | None:
        return _mb(self.peak[phase]) if phase in self.peak else None

    def thinned(self) -> list[tuple[float, str, float]]:
        step = max(1, math.ceil(len(self.series) / MAX_SERIES))
        return self.series[::step]


def _mb(n: int) -> float:
    return round(n / 2**20, 1)


async def pending_deliveries(api_port: int) -> float | None:
    """``chargehook_webhook_pending`` summed over endpoints, from GET /metrics."""
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(
                f"http://127.0.0.1:{api_port}/metrics",
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as resp,
        ):
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("chargehook_webhook_pending{")
    ]
    return sum(values) if values else None


async def measure_outage(scale: Scale, store: str = "sqlite") -> dict[str, Any]:
    return await on_store(store, lambda db: _measure(scale, db))


async def _measure(scale: Scale, db: pg.Database | None) -> dict[str, Any]:
    n, events = scale.outage_chargers, scale.outage_events
    target = max(n, events - PER_CHARGER_EVENTS * n)
    pile_max, drain_max = scale.outage_pileup_max, scale.outage_drain_max
    # retries every 2 s for longer than the pile-up can last: nothing is given up
    retries = math.ceil((pile_max + 120) / RETRY_EVERY_S)
    record: dict[str, Any] = {
        "section": "outage",
        "variant": webhooks_variant("sqlite" if db is None else "postgres"),
        "chargers": n,
        "eventsTarget": events,
        "workload": (
            f"one endpoint on * whose port is closed; {n} chargers run a transaction with"
            f" MeterValues in a closed loop until about {events} events exist (at most"
            f" {pile_max:g} s), then disconnect; then the receiver starts on that port."
            f" retry_schedule = {retries} x {RETRY_EVERY_S}s so nothing is given up while it"
            f" is down; the pile-up stops early if the server's RSS passes"
            f" {scale.outage_rss_cap_mb:g} MB" + _on_pg_words(db)
        ),
        "counted": (
            f"server RSS from /proc every {SAMPLE_EVERY:g} s, its peak while the events pile up"
            " (VmHWM included) and while they drain (VmHWM included when it grew then); drain"
            " rate = unique events received / (last arrival - receiver up); order kept = no"
            " charger's sequence ever went back; none lost = every stream 1, 2, 3, ... to its"
            " charger.disconnected, no gap"
        ),
    }
    if db is not None:
        record["postgresDatabase"] = db.name
    with _workdir() as workdir:
        async with ProcGroup() as group:
            server = await start_chargehook(
                group,
                workdir,
                retry_schedule=[f"{RETRY_EVERY_S}s"] * retries,
                storage_url=db.url if db is not None else None,
            )
            assert server.api_port is not None
            port = free_port()
            await register_webhook(server.api_port, port)
            idle = sample(server.proc.pid)
            watch = RssWatch(server.proc.pid, scale.outage_rss_cap_mb)
            watcher = asyncio.create_task(watch.run())
            try:
                watch.phase = "pileup"
                t_gen = time.monotonic()
                load = await group.spawn(
                    "load",
                    [
                        PY,
                        "-m",
                        "benchmarks.loadclient",
                        json.dumps(
                            {
                                "mode": "generate",
                                "port": server.ocpp_port,
                                "chargers": n,
                                "target": target,
                                "maxTime": pile_max,
                                "concurrency": 200,
                                "setupTimeout": 120,
                            }
                        ),
                    ],
                    cpu=LOAD_CPU,
                    stderr_path=str(workdir / "load.err"),
                    cwd=str(ROOT),
                )
                await load.wait_line(r'"mark": "start"', 180)
                ended = asyncio.create_task(load.wait_line(r'^\{"result": ', pile_max + 120))
                capped = asyncio.create_task(watch.capped.wait())
                await asyncio.wait({ended, capped}, return_when=asyncio.FIRST_COMPLETED)
                result: dict[str, Any] = {}
                if ended.done():
                    capped.cancel()
                    result = json.loads(ended.result().string)["result"]
                else:  # past the cap: stop piling up (the chargers' sockets close)
                    ended.cancel()
                    await load.stop()
                with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                    await ended
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(load.process.wait(), 30)
                generate_s = time.monotonic() - t_gen
                await asyncio.sleep(1.0)  # the last disconnects are stored
                at_up = sample(server.proc.pid)
                watch.read()
                pending = await pending_deliveries(server.api_port)
                pileup_peak = max(watch.peak.get("pileup", 0), at_up.hwm)

                watch.phase = "drain"
                receiver, _ = await start_receiver(group, workdir, port)
                up = time.time()
                s0, r0 = sample(server.proc.pid), sample(receiver.pid)
                p0 = pg.cpu(db) if db is not None else None
                stats = await wait_delivered(port, n, drain_max, quiet=15.0, every=1.0)
                s1, r1 = sample(server.proc.pid), sample(receiver.pid)
                if db is not None and p0 is not None:
                    record["postgres"] = pg.cpu_usage(p0, pg.cpu(db), s1.at - s0.at)
                watch.read()
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
    drain_peak = watch.peak.get("drain", 0)
    if s1.hwm > at_up.hwm:  # the high-water mark grew while draining
        drain_peak = max(drain_peak, s1.hwm)
    total = stats["received"]
    span_up = stats["lastArrival"] - up if total else 0.0
    delivery = _delivery(stats, n, up)
    record.update(
        events=total,
        meterValues=result.get("meterValues"),
        generateS=round(generate_s, 1),
        ingestCallsPerSecond=result.get("callsPerSecond"),
        rssCapHit=watch.capped.is_set(),
        pendingAtUp=pending,
        idleRssMB=_mb(idle.rss),
        rssAtUpMB=_mb(at_up.rss),
        pileupRssPeakMB=_mb(pileup_peak),
        drainRssPeakMB=_mb(drain_peak),
        rssEndMB=_mb(s1.rss),
        drainS=round(span_up, 3),
        eventsPerSecond=round(total / span_up, 1) if span_up > 0 else 0.0,
        firstArrivalAfterUpS=round(stats["firstArrival"] - up, 3) if total else None,
        orderKept=stats["outOfOrder"] == 0,
        noneLost=stats["chargersComplete"] >= n and stats["gaps"] == 0 and stats["missing"] == 0,
        delivery=delivery,
        server=usage(s0, s1),
        receiver=usage(r0, r1),
        rssSeriesMB=watch.thinned(),
        errors=result.get("errors"),
    )
    return record
