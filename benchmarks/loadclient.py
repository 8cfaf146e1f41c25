"""The benchmark's load process: N chargers over raw WebSocket frames (``wsclient``) + ``json``.

Run by the orchestrator as ``python -m benchmarks.loadclient '<json options>'`` pinned to the
load core. It prints JSON lines on stdout: ``{"mark": ...}`` at the edges of the measured
window (so the orchestrator samples the server's /proc counters right then) and one
``{"result": {...}}`` at the end.

Modes (``mode`` in the options):

- ``closed``: each charger boots, reports Available, starts a transaction, reports Charging,
  then sends MeterValues in a closed loop (the next CALL as soon as the last is answered:
  one CALL in flight per charger, OCPP-J 4.1.1). The window opens when every charger is in
  its loop and lasts ``duration`` s; calls answered inside it are counted, latency from the
  frame leaving the client to its answer arriving.
- ``open``: the same chargers, but MeterValues are scheduled at ``rate`` per second over all
  of them (each charger every N/rate s, random phase). A call due while the last is still
  out waits for it (one in flight); latency is counted from the scheduled time, so queueing
  in the server shows. With ``stampScheduled`` the meterValue timestamp is the scheduled
  moment too (wall clock), not the send: the receiver's end-to-end latency then includes a
  call that waited behind a slow answer (the sustained section).
- ``generate``: closed loop until ``target`` MeterValues have been answered in total (or
  ``max_time``), to fill a webhook backlog.
- ``idle``: each charger connects and boots, then sends Heartbeat at the interval the CSMS
  gave in BootNotification.conf; after ``hold`` s, heartbeats still unanswered are counted.

Several nodes (the cluster section): ``ports`` lists their OCPP ports and charger i (from 1)
connects to ``ports[(i - 1) % len(ports)]``; calls answered in the window are also counted
per port. With ``failover``, a charger whose socket the server side drops while it is in its
loop connects to the next port of the list, sets up again (boot, status, a new transaction)
and goes on with its loop; the result says when each was lost and back (wall clock). Like
real chargers it does not all come back in the same millisecond: the first try waits a
random 0..``reconnectSpread`` s (default 1), a failed one 0.5..1 s, doubling up to 4 s; a
port that refuses sends it on to the next; bounded by the run's end.

Every MeterValues carries a meterValue timestamp with microseconds taken from the wall clock
just before the frame is written: the webhook receiver reads it back from the event's raw
``meterValue`` to measure end-to-end latency (same machine, same clock). After the window,
each charger stops its transaction and closes its socket (bounded by ``grace``).
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from array import array
from collections import Counter
from typing import Any

from benchmarks.wsclient import WsClient

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads

MAX_CHARGERS = 20_000
MAX_TIME = 900.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class WallClock:
    """ISO-8601 UTC with microseconds for ``time.time()``, the seconds part cached."""

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def iso(self, now: float) -> str:
        sec = int(now)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{int((now - sec) * 1_000_000):06d}Z"


def percentiles(values: array[float] | list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}

    def rank(q: float) -> float:
        i = max(0, min(len(ordered) - 1, int(q / 100 * len(ordered) + 0.5) - 1))
        return round(ordered[i] * 1000, 3)

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": round(ordered[-1] * 1000, 3)}


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Run:
    """Shared state of one load run; chargers report to it."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.o = options
        self.mode: str = options["mode"]
        self.loop = asyncio.get_running_loop()
        self.clock = WallClock()
        self.n: int = options["chargers"]
        self.host: str = options.get("host", "127.0.0.1")
        self.ports: list[int] = [int(p) for p in options.get("ports") or [options["port"]]]
        self.failover = bool(options.get("failover"))
        self.calls_by_port: Counter[int] = Counter()
        self.lost_wall: list[float] = []  # failover: when each charger's socket was lost
        self.back_wall: list[float] = []  # ... and when it was set up again elsewhere
        self.lost_in_flight = 0  # failover: CALLs whose socket went before their answer
        self.reconnects: set[asyncio.Task[None]] = set()
        self.prefix: str = options.get("idPrefix", "BENCH-")
        self.errors: Counter[str] = Counter()
        self.ready = 0
        self.ready_event = asyncio.Event()
        self.done = 0
        self.done_event = asyncio.Event()
        self.connected = 0
        self.window_start = float("inf")  # loop time
        self.window_end = float("inf")
        self.measuring = False
        self.latencies: array[float] = array("d")
        self.calls_in_window = 0
        self.sent_mv = 0  # generate mode: MeterValues sent in total
        self.answered_mv = 0
        self.target: int = int(options.get("target", 0))
        # open mode, stampScheduled: meterValue timestamps are the scheduled moments
        self.stamp_scheduled = bool(options.get("stampScheduled"))
        self.wall_offset = time.time() - self.loop.time()
        self.stopping = False
        self.scheduled_in_window = 0  # open mode
        # idle mode
        self.hb_sent = 0
        self.hb_answered = 0
        self.connect_times: array[float] = array("d")
        self.first_connect = 0.0
        self.last_ready = 0.0

    def charger_ready(self) -> None:
        self.ready += 1
        self.last_ready = self.loop.time()
        if self.ready >= self.n:
            self.ready_event.set()

    def charger_done(self) -> None:
        self.done += 1
        if self.done >= self.n:
            self.done_event.set()


class Charger:
    __slots__ = (
        "backlog",
        "cid",
        "connect_started",
        "energy",
        "ever_ready",
        "finished",
        "interval",
        "next_id",
        "pending",
        "period",
        "phase",
        "port",
        "run",
        "setup_done",
        "step",
        "timer",
        "tx_id",
        "ws",
    )

    def __init__(self, run: Run, cid: str, port: int) -> None:
        self.run = run
        self.cid = cid
        self.port = port
        self.ever_ready = False
        self.ws: WsClient | None = None
        self.next_id = 0
        self.pending: tuple[str, str, float, float] | None = None  # id, action, sent, scheduled
        self.step = 0
        self.tx_id: int | None = None
        self.energy = 0
        self.phase = "connecting"  # setup, loop, stopping, closing, done
        self.period = 0.0
        self.backlog: list[float] = []
        self.interval = 10.0
        self.timer: asyncio.TimerHandle | None = None
        self.connect_started = 0.0
        self.setup_done: asyncio.Future[bool] | None = None  # resolved when set up or lost
        self.finished = False

    def reset(self) -> None:
        """Before a (re)connection: a fresh session."""
        self.ws = None
        self.pending = None
        self.step = 0
        self.tx_id = None
        self.phase = "connecting"
        self.setup_done = self.run.loop.create_future()

    def _setup_result(self, ok: bool) -> None:
        if self.setup_done is not None and not self.setup_done.done():
            self.setup_done.set_result(ok)

    # -- wire ------------------------------------------------------------------------------

    def call(self, action: str, payload: dict[str, Any], scheduled: float = 0.0) -> None:
        self.next_id += 1
        uid = str(self.next_id)
        now = self.run.loop.time()
        self.pending = (uid, action, now, scheduled or now)
        assert self.ws is not None
        self.ws.send_text(_dumps([2, uid, action, payload]))

    def on_open(self) -> None:
        self.run.connected += 1
        self.phase = "setup"
        self.step = 0
        self.setup_next(None)

    def on_close(self, reason: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.phase in ("connecting", "setup"):
            # lost before it was set up: ``connect_one`` decides whether to try again
            self.run.errors[f"setup-lost:{reason}"] += 1
            self._setup_result(False)
            return
        if self.phase == "loop" and self.run.failover and not self.run.stopping:
            self.fail_over()
            return
        if self.phase not in ("closing", "done"):
            self.run.errors[f"disconnect:{reason}"] += 1
        self.finish()

    def fail_over(self) -> None:
        """The server side dropped the socket (its node died): go on at the next node."""
        run = self.run
        run.lost_wall.append(time.time())
        if self.pending is not None:
            run.lost_in_flight += 1
        self.backlog.clear()
        ports = run.ports
        self.port = ports[(ports.index(self.port) + 1) % len(ports)]
        task = asyncio.ensure_future(reconnect(run, self))
        run.reconnects.add(task)
        task.add_done_callback(run.reconnects.discard)

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.phase = "done"
            self.run.charger_done()

    def on_text(self, data: bytes) -> None:
        try:
            frame = _loads(data)
            kind = frame[0]
        except (ValueError, IndexError, TypeError):
            self.run.errors["bad-frame"] += 1
            return
        if kind == 2:  # a CSMS-initiated CALL: not served by the load client
            assert self.ws is not None
            self.ws.send_text(_dumps([4, frame[1], "NotSupported", "load client", {}]))
            return
        pending = self.pending
        if pending is None or frame[1] != pending[0]:
            self.run.errors["unexpected-answer"] += 1
            return
        self.pending = None
        if kind == 4:
            self.run.errors[f"CALLERROR:{pending[1]}:{frame[2]}"] += 1
            payload: dict[str, Any] = {}
        else:
            payload = frame[2] if isinstance(frame[2], dict) else {}
        if self.phase == "setup":
            self.setup_next(payload)
        elif self.phase == "loop":
            self.loop_answer(pending)
        elif self.phase == "stopping":
            self.close()

    # -- setup: boot, status, transaction --------------------------------------------------

    def status(self, status: str) -> dict[str, Any]:
        return {
            "connectorId": 1,
            "errorCode": "NoError",
            "status": status,
            "timestamp": self.run.clock.iso(time.time()),
        }

    def setup_next(self, answer: dict[str, Any] | None) -> None:
        run = self.run
        step = self.step
        self.step += 1
        if step == 0:
            self.call(
                "BootNotification",
                {
                    "chargePointVendor": "chargehook-bench",
                    "chargePointModel": "LOAD",
                    "chargePointSerialNumber": self.cid,
                },
            )
            return
        if step == 1:
            if (answer or {}).get("status") != "Accepted":
                run.errors[f"boot:{(answer or {}).get('status')}"] += 1
            if run.mode == "idle":
                self.interval = float((answer or {}).get("interval") or 10)
                run.connect_times.append(run.loop.time() - self.connect_started)
                self.phase = "loop"
                run.charger_ready()
                self._setup_result(True)
                self.schedule_heartbeat(first=True)
                return
            self.call("StatusNotification", self.status("Available"))
            return
        if step == 2:
            self.call(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": "BENCHTAG",
                    "meterStart": 0,
                    "timestamp": run.clock.iso(time.time()),
                },
            )
            return
        if step == 3:
            tx = (answer or {}).get("transactionId")
            self.tx_id = tx if isinstance(tx, int) else None
            if self.tx_id is None:
                run.errors["no-transaction"] += 1
            self.call("StatusNotification", self.status("Charging"))
            return
        self.phase = "loop"
        if not self.ever_ready:
            self.ever_ready = True
            run.charger_ready()
        self._setup_result(True)
        # the loop starts when every charger is set up (main_async), on an idle server

    # -- the loop --------------------------------------------------------------------------

    def send_meter(self, scheduled: float = 0.0) -> None:
        run = self.run
        self.energy += 1
        now = time.time()
        if scheduled and run.stamp_scheduled:
            now = min(now, scheduled + run.wall_offset)
        payload: dict[str, Any] = {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": run.clock.iso(now),
                    "sampledValue": [
                        {
                            "value": str(self.energy),
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                        },
                        {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
                    ],
                }
            ],
        }
        if self.tx_id is not None:
            payload["transactionId"] = self.tx_id
        if run.mode == "generate":
            run.sent_mv += 1
        self.call("MeterValues", payload, scheduled)

    def loop_answer(self, pending: tuple[str, str, float, float]) -> None:
        run = self.run
        now = run.loop.time()
        _, action, sent, scheduled = pending
        mode = run.mode
        if mode == "closed":
            if run.window_start <= now <= run.window_end:
                run.latencies.append(now - sent)
                run.calls_in_window += 1
                run.calls_by_port[self.port] += 1
            if now < run.window_end and not run.stopping:
                self.send_meter()
            else:
                self.stop()
        elif mode == "generate":
            run.answered_mv += 1
            if run.sent_mv < run.target and not run.stopping:
                self.send_meter()
            else:
                self.stop()
        elif mode == "open":
            if run.window_start <= scheduled < run.window_end:
                run.latencies.append(now - scheduled)
                run.calls_in_window += 1
                run.calls_by_port[self.port] += 1
            if self.backlog:
                self.send_meter(self.backlog.pop(0))
            elif run.stopping or now >= run.window_end:
                self.stop()
        elif mode == "idle":
            if action == "Heartbeat":
                run.hb_answered += 1
            if run.stopping:
                self.close()

    def tick(self, scheduled: float) -> None:
        """Open mode: a MeterValues is due at ``scheduled``."""
        run = self.run
        self.timer = None
        if self.phase != "loop":
            return
        if run.window_start <= scheduled < run.window_end:
            run.scheduled_in_window += 1
        if self.pending is None:
            self.send_meter(scheduled)
        else:
            self.backlog.append(scheduled)
        nxt = scheduled + self.period
        if nxt < run.window_end:
            self.timer = run.loop.call_at(nxt, self.tick, nxt)
        elif self.pending is None and not self.backlog:
            self.stop()

    def schedule_heartbeat(self, first: bool = False) -> None:
        run = self.run
        delay = random.random() * self.interval if first else self.interval
        self.timer = run.loop.call_later(delay, self.heartbeat)

    def heartbeat(self) -> None:
        run = self.run
        self.timer = None
        if run.stopping or self.phase != "loop":
            return
        if self.pending is None:
            run.hb_sent += 1
            self.call("Heartbeat", {})
        else:
            run.errors["heartbeat-overlap"] += 1
        self.schedule_heartbeat()

    # -- teardown --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the transaction (not counted), then close."""
        if self.phase in ("stopping", "closing", "done"):
            return
        if self.tx_id is not None and self.ws is not None and self.ws.open:
            self.phase = "stopping"
            tx, self.tx_id = self.tx_id, None
            self.call(
                "StopTransaction",
                {
                    "transactionId": tx,
                    "meterStop": self.energy,
                    "timestamp": self.run.clock.iso(time.time()),
                    "reason": "Local",
                },
            )
        else:
            self.close()

    def close(self) -> None:
        if self.phase in ("closing", "done"):
            return
        self.phase = "closing"
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.ws is not None and self.ws.open:
            self.ws.close()
        else:
            self.finish()


async def connect_all(run: Run, chargers: list[Charger], concurrency: int, deadline: float) -> None:
    """Connect and set up every charger, ``concurrency`` at a time (a slot is held from the TCP
    connect to the end of the charger's setup); a charger lost before it was set up is tried
    again, up to 4 times in all."""
    sem = asyncio.Semaphore(concurrency)
    loop = run.loop

    async def one(c: Charger) -> None:
        for attempt in range(4):
            if loop.time() > deadline or run.stopping:
                break
            async with sem:
                c.reset()
                assert c.setup_done is not None
                c.connect_started = loop.time()
                try:
                    await loop.create_connection(lambda c=c: _protocol(run, c), run.host, c.port)
                except OSError as exc:
                    run.errors[f"connect:{type(exc).__name__}"] += 1
                else:
                    try:
                        if await asyncio.wait_for(
                            asyncio.shield(c.setup_done), max(0.1, deadline - loop.time())
                        ):
                            return
                    except TimeoutError:
                        run.errors["setup:deadline"] += 1
                        if c.ws is not None:
                            c.ws.abort()
                        break
            await asyncio.sleep(0.2 * (attempt + 1))
        run.errors["gave-up"] += 1
        c.phase = "done"
        c.finish()

    await asyncio.gather(*(one(c) for c in chargers))


async def reconnect(run: Run, c: Charger) -> None:
    """Failover: connect ``c`` to its (new) port and set it up again, then resume its loop;
    with the waits of the module's docstring, until the run stops or its window has ended."""
    loop = run.loop
    await asyncio.sleep(random.random() * float(run.o.get("reconnectSpread", 1.0)))
    backoff = 0.5
    while not run.stopping and loop.time() < run.window_end:
        c.reset()
        assert c.setup_done is not None
        try:
            await loop.create_connection(lambda c=c: _protocol(run, c), run.host, c.port)
        except OSError as exc:
            run.errors[f"reconnect:{type(exc).__name__}"] += 1
            ports = run.ports  # refused: that node is down too, try the next one
            c.port = ports[(ports.index(c.port) + 1) % len(ports)]
        else:
            try:
                ok = await asyncio.wait_for(asyncio.shield(c.setup_done), 10.0)
            except TimeoutError:
                ok = False
                if c.ws is not None:
                    c.ws.abort()
            if ok:
                run.back_wall.append(time.time())
                if run.mode == "open" and c.period:
                    first = loop.time() + random.random() * c.period
                    c.timer = loop.call_at(first, c.tick, first)
                else:
                    c.send_meter()
                return
        await asyncio.sleep(backoff * (1 + random.random()))
        backoff = min(4.0, backoff * 2)
    run.errors["reconnect:gave-up"] += 1
    c.phase = "done"
    c.finish()


def _protocol(run: Run, c: Charger) -> WsClient:
    ws = WsClient(
        run.host,
        c.port,
        f"/ocpp/{c.cid}",
        on_open=c.on_open,
        on_text=c.on_text,
        on_close=c.on_close,
    )
    c.ws = ws
    return ws


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), max(0.0, timeout))
        return True
    except TimeoutError:
        return False


async def main_async(o: dict[str, Any]) -> dict[str, Any]:
    run = Run(o)
    loop = run.loop
    n = run.n
    if not 1 <= n <= MAX_CHARGERS:
        raise SystemExit(f"chargers must be 1..{MAX_CHARGERS}")
    duration = min(float(o.get("duration", 10.0)), MAX_TIME)
    setup_timeout = float(o.get("setupTimeout", 120.0))
    grace = float(o.get("grace", 10.0))
    ports = run.ports
    chargers = [
        Charger(run, f"{run.prefix}{i:05d}", ports[(i - 1) % len(ports)]) for i in range(1, n + 1)
    ]
    t_begin = loop.time()
    cpu_begin = cpu_seconds()
    run.first_connect = t_begin
    connecting = asyncio.create_task(
        connect_all(run, chargers, int(o.get("concurrency", 200)), t_begin + setup_timeout)
    )
    all_ready = await wait_event(run.ready_event, setup_timeout)
    ready_at = loop.time()
    result: dict[str, Any] = {
        "mode": run.mode,
        "chargers": n,
        "ready": run.ready,
        "allReady": all_ready,
        "setupS": round(ready_at - t_begin, 3),
    }
    cpu0 = cpu_seconds()
    warmup = float(o.get("warmup", 2.0))
    if run.mode in ("closed", "open"):
        # warm-up: the load runs, the window opens after it
        if run.mode == "open":
            rate = float(o["rate"])
            period = n / rate
            ticks = ready_at + 0.1
            run.window_start = ready_at + warmup
            run.window_end = run.window_start + duration
            for c in chargers:
                if c.phase == "loop":
                    c.period = period
                    first = ticks + random.random() * period
                    c.timer = loop.call_at(first, c.tick, first)
            await asyncio.sleep(max(0.0, run.window_start - loop.time()))
        else:
            for c in chargers:
                if c.phase == "loop":
                    c.send_meter()
            await asyncio.sleep(warmup)
            run.window_start = loop.time()
            run.window_end = run.window_start + duration
        cpu0 = cpu_seconds()
        emit({"mark": "start", "wall": time.time()})
        await asyncio.sleep(max(0.0, run.window_end - loop.time()))
        cpu1 = cpu_seconds()
        emit({"mark": "end", "wall": time.time()})
        run.stopping = True
        result.update(
            durationS=duration,
            calls=run.calls_in_window,
            callsPerSecond=round(run.calls_in_window / duration, 1),
            latencyMs=percentiles(run.latencies),
            clientCpuS=round(cpu1 - cpu0, 3),
            clientCpuPct=round(100 * (cpu1 - cpu0) / duration, 1),
        )
        if run.mode == "open":
            result.update(
                targetRate=float(o["rate"]),
                scheduled=run.scheduled_in_window,
                latencyFrom="scheduled",
            )
        else:
            result["latencyFrom"] = "sent"
    elif run.mode == "generate":
        for c in chargers:
            if c.phase == "loop":
                c.send_meter()
        emit({"mark": "start", "wall": time.time()})
        t0 = loop.time()
        cap = min(float(o.get("maxTime", 300.0)), MAX_TIME)
        while run.answered_mv < run.target and loop.time() - t0 < cap and run.done < n:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        elapsed = loop.time() - t0
        run.stopping = True
        cpu1 = cpu_seconds()
        emit({"mark": "end", "wall": time.time()})
        result.update(
            meterValues=run.answered_mv,
            sent=run.sent_mv,
            elapsedS=round(elapsed, 3),
            callsPerSecond=round(run.answered_mv / elapsed, 1) if elapsed else 0.0,
            clientCpuS=round(cpu1 - cpu0, 3),
        )
    elif run.mode == "idle":
        emit({"mark": "ready", "wall": time.time()})
        hold = duration
        await asyncio.sleep(hold)
        run.stopping = True
        # answers to heartbeats already sent may still arrive: wait for them, bounded
        t_wait = loop.time()
        while run.hb_answered < run.hb_sent and loop.time() - t_wait < grace:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        cpu1 = cpu_seconds()
        emit({"mark": "end", "wall": time.time()})
        connect = sorted(run.connect_times)
        result.update(
            holdS=hold,
            connectAllS=round(run.last_ready - t_begin, 3),
            connectMs=percentiles(connect),
            heartbeatsSent=run.hb_sent,
            heartbeatsAnswered=run.hb_answered,
            heartbeatsUnanswered=run.hb_sent - run.hb_answered,
            clientCpuS=round(cpu1 - cpu0, 3),
            clientCpuPct=round(100 * (cpu1 - cpu0) / max(hold, 1e-9), 1),
        )
    # teardown: stop transactions and close sockets, bounded
    for c in chargers:
        if c.phase == "loop" and c.pending is None and not c.backlog:
            c.stop()
        elif c.phase in ("setup", "connecting"):
            c.close()
    await wait_event(run.done_event, grace)
    for c in chargers:
        if not c.finished and c.ws is not None:
            c.ws.abort()
    connecting.cancel()
    for task in list(run.reconnects):
        task.cancel()
    await asyncio.gather(connecting, *run.reconnects, return_exceptions=True)
    if len(ports) > 1:
        result["callsByPort"] = {str(p): run.calls_by_port[p] for p in ports}
    if run.failover:
        result["failover"] = {
            "lost": len(run.lost_wall),
            "reconnected": len(run.back_wall),
            "lostInFlight": run.lost_in_flight,
            "firstLostWall": min(run.lost_wall, default=None),
            "lastLostWall": max(run.lost_wall, default=None),
            "firstBackWall": min(run.back_wall, default=None),
            "lastBackWall": max(run.back_wall, default=None),
            "lostWall": [round(t, 4) for t in run.lost_wall],
        }
    result["teardownComplete"] = run.done >= n
    result["errors"] = dict(run.errors)
    result["clientCpuTotalS"] = round(cpu_seconds() - cpu_begin, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    options = json.loads(args[0])
    raise_nofile()
    if options.get("seed") is not None:
        random.seed(options["seed"])
    result = asyncio.run(main_async(options))
    emit({"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
