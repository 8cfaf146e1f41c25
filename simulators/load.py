"""Many chargers in one process, to measure a CSMS (`csms-sim load`).

Lean on purpose, so that the client is not what is measured: raw WebSocket frames and
`json`, no schema validation, no `ocpp` library, one CALL in flight per charger (OCPP-J
4.1.1). Connections ramp up over `ramp` seconds instead of arriving all at once; the run
is bounded in chargers and time (hard stop at duration + grace) and refuses non-loopback
targets unless told otherwise. A run in which no charger got in says why (`failure` in the
summary: what the upgrades were answered), and long runs report progress as they go.

Closed loop by default (each charger sends its next CALL when the last is answered); with
`rate` it is open loop: calls are scheduled at `rate` per second over all chargers and
latency is counted from the scheduled time, so a slow server cannot hide its queueing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from simulators.net import (
    NOT_OCPP,
    NOT_REGISTERED,
    PASSWORD,
    REFUSED,
    SUBPROTOCOL,
    ConnectProblem,
    basic_auth,
    check_url,
    connect_problem,
    endpoint,
    ssl_context,
)
from simulators.timefmt import iso

MAX_CHARGERS = 20_000
MAX_DURATION = 3_600.0
SCENARIOS = ("meter", "idle", "session")
API_PREFIX = "/api/v1"
PROGRESS_EVERY = 5.0  # seconds between progress lines

# What to do when every upgrade was refused the same way, by `ConnectProblem.kind`.
HINTS = {
    NOT_REGISTERED: "not registered; pass --register-api URL --token T",
    PASSWORD: "wrong or missing password; pass the --password they are registered with",
    NOT_OCPP: "not an OCPP endpoint; --url is the ws://HOST:PORT/ocpp that csms serve prints",
    REFUSED: "connection refused; is the CSMS running?",
}


class LoadError(ValueError):
    """Options the load driver refuses to run with."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOptions:
    url: str
    chargers: int
    duration: float
    scenario: str = "meter"
    rate: float | None = None  # total CALLs/s over all chargers; None: closed loop
    ramp: float = 0.0  # seconds over which connections are opened
    id_prefix: str = "LOAD-"
    password: str | None = None
    ca: str | None = None
    call_timeout: float = 30.0
    grace: float = 10.0  # after `duration`: finish transactions, then hard stop
    heartbeat_interval: float | None = None  # idle: overrides the CSMS's interval
    seed: int | None = None

    def validate(self) -> None:
        if problem := check_url(self.url):
            raise LoadError(problem)
        if not 1 <= self.chargers <= MAX_CHARGERS:
            raise LoadError(f"--chargers must be 1..{MAX_CHARGERS}")
        if not 0 < self.duration <= MAX_DURATION:
            raise LoadError(f"--duration must be in (0, {MAX_DURATION:.0f}]")
        if self.scenario not in SCENARIOS:
            raise LoadError(f"--scenario must be one of {', '.join(SCENARIOS)}")
        if self.rate is not None and self.rate <= 0:
            raise LoadError("--rate must be positive")
        if not 0 <= self.ramp <= self.duration:
            raise LoadError("--ramp must be between 0 and --duration")

    def charger_ids(self) -> list[str]:
        return [f"{self.id_prefix}{n:05d}" for n in range(1, self.chargers + 1)]


@dataclass(slots=True)
class Stats:
    """What the run measured; summarised by `summary()`."""

    latencies: array[float] = field(default_factory=lambda: array("d"))  # seconds
    calls_by_action: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    connected: set[str] = field(default_factory=set)  # ids that got a session open
    connect_failures: int = 0
    connect_problems: dict[str, ConnectProblem] = field(default_factory=dict)  # first per kind
    teardown_calls: int = 0  # StopTransactions after the measured window


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(stats: Stats, options: LoadOptions, *, elapsed: float, cpu: float) -> dict[str, Any]:
    """The JSON summary the CLI prints."""
    ordered = sorted(stats.latencies)
    calls = len(ordered)

    def ms(value: float) -> float:
        return round(value * 1000, 3)

    return {
        "scenario": options.scenario,
        "mode": "open" if options.rate else "closed",
        "targetRate": options.rate,
        "chargers": options.chargers,
        "connected": len(stats.connected),
        "connectFailures": stats.connect_failures,
        "calls": calls,
        "callsPerSecond": round(calls / elapsed, 1) if elapsed > 0 else 0.0,
        "callsByAction": dict(stats.calls_by_action),
        "teardownCalls": stats.teardown_calls,
        "latencyMs": {
            "p50": ms(percentile(ordered, 50)),
            "p90": ms(percentile(ordered, 90)),
            "p99": ms(percentile(ordered, 99)),
            "max": ms(ordered[-1]) if ordered else 0.0,
            "mean": ms(sum(ordered) / calls) if calls else 0.0,
        },
        "latencyFrom": "scheduled" if options.rate else "sent",
        "errors": dict(stats.errors),
        "durationS": round(elapsed, 3),
        "rampS": options.ramp,
        "clientCpuS": round(cpu, 3),
        "failure": None if stats.connected else not_connected(stats),
    }


def not_connected(stats: Stats) -> str:
    """Why no charger got in, in one line: how the connects failed and what to do."""
    failures = sorted(
        ((n, key) for key, n in stats.errors.items() if key.startswith("connect:")),
        key=lambda item: (-item[0], item[1]),
    )
    parts: list[str] = []
    for n, key in failures:
        problem = stats.connect_problems.get(key)
        if problem is not None and problem.status is not None:
            what = f"{n} upgrade{'s' if n != 1 else ''} answered HTTP {problem.status}"
        else:
            what = f"{n} connect{'s' if n != 1 else ''} failed"
        hint = key if problem is None else HINTS.get(problem.kind, problem.message)
        parts.append(f"{what} ({hint})")
    registering = sorted(key for key in stats.errors if key.startswith("register:"))
    if registering:
        parts.append(f"registering failed: {', '.join(registering)}")
    if not parts:
        return "no charger connected (no connect finished within the run)"
    return "no charger connected: " + "; ".join(parts)


class CallFailed(Exception):
    """A CALL answered with CALLERROR or not at all; `kind` goes into the error counts."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class LeanCharger:
    """One charger of the load: a socket, a counter for message ids, one CALL at a time."""

    def __init__(
        self, charger_id: str, options: LoadOptions, stats: Stats, deadline: float
    ) -> None:
        self.charger_id = charger_id
        self.options = options
        self.stats = stats
        self.deadline = deadline  # loop time when the measured window ends
        self.ws: ClientConnection | None = None
        self.next_id = 0
        self.interval = options.heartbeat_interval or 300.0  # idle heartbeat period
        self.energy_wh = 0.0
        self.transaction_id: int | None = None
        self.measuring = True  # False during teardown

    async def call(
        self, action: str, payload: dict[str, Any], *, scheduled: float | None = None
    ) -> dict[str, Any]:
        """Send a CALL and read frames until its answer; CSMS CALLs meanwhile get NotSupported."""
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        self.next_id += 1
        unique_id = str(self.next_id)
        sent = loop.time()
        await self.ws.send(json.dumps([2, unique_id, action, payload], separators=(",", ":")))
        limit = sent + self.options.call_timeout
        while True:
            remaining = limit - loop.time()
            if remaining <= 0:
                raise CallFailed("timeout")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), remaining)
            except TimeoutError:
                raise CallFailed("timeout") from None
            try:
                frame = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(frame, list) or len(frame) < 3:
                continue
            if frame[0] == 2:  # the CSMS asks something of us: not served by the load client
                error = [4, frame[1], "NotSupported", "load client", {}]
                await self.ws.send(json.dumps(error))
                continue
            if frame[1] != unique_id:
                continue
            if frame[0] == 4:
                raise CallFailed(f"CALLERROR:{frame[2]}")
            done = loop.time()
            if self.measuring and done <= self.deadline:
                self.stats.latencies.append(done - (scheduled if scheduled is not None else sent))
                self.stats.calls_by_action[action] += 1
            elif not self.measuring:
                self.stats.teardown_calls += 1
            return frame[2] if isinstance(frame[2], dict) else {}

    async def run(self, start_at: float) -> None:
        """Connect at `start_at`, play the scenario until the deadline, reconnect if dropped."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        while loop.time() < self.deadline:
            try:
                self.ws = await self._connect()
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.stats.connect_failures += 1
                kind = (
                    f"connect:{exc.response.status_code}"
                    if isinstance(exc, InvalidStatus)
                    else f"connect:{type(exc).__name__}"
                )
                self.stats.errors[kind] += 1
                if kind not in self.stats.connect_problems:
                    self.stats.connect_problems[kind] = connect_problem(
                        exc, self.options.url, self.charger_id, password=bool(self.options.password)
                    )
                await asyncio.sleep(
                    min(1.0 + random.random(), max(0.0, self.deadline - loop.time()))
                )
                continue
            self.stats.connected.add(self.charger_id)
            try:
                await self._play()
            except ConnectionClosed:
                self.stats.errors["disconnect"] += 1
            except CallFailed as exc:
                self.stats.errors[exc.kind] += 1
            finally:
                if loop.time() >= self.deadline:
                    await self._teardown()
                await self.ws.close()
                self.ws = None

    async def _connect(self) -> ClientConnection:
        o = self.options
        headers = basic_auth(self.charger_id, o.password) if o.password else {}
        return await connect(
            endpoint(o.url, self.charger_id),
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            additional_headers=headers,
            ssl=ssl_context(o.url, o.ca),
            open_timeout=o.call_timeout,
            ping_interval=None,  # the server pings; answering is automatic
            compression=None,
        )

    async def _guarded(
        self, action: str, payload: dict[str, Any], scheduled: float | None = None
    ) -> dict[str, Any] | None:
        """A CALL whose CALLERROR is counted and survived (time-outs and drops end the run)."""
        try:
            return await self.call(action, payload, scheduled=scheduled)
        except CallFailed as exc:
            if exc.kind == "timeout":
                raise
            self.stats.errors[exc.kind] += 1
            return None

    async def _boot(self) -> bool:
        """BootNotification until Accepted (4.2); False if the window closed first."""
        loop = asyncio.get_running_loop()
        while loop.time() < self.deadline:
            answer = await self._guarded(
                "BootNotification",
                {
                    "chargePointVendor": "chargehook",
                    "chargePointModel": "SIM-LOAD",
                    "chargePointSerialNumber": self.charger_id,
                },
            )
            status = (answer or {}).get("status")
            if status == "Accepted":
                if self.options.heartbeat_interval is None and answer and answer.get("interval"):
                    self.interval = float(answer["interval"])
                return True
            self.stats.errors[f"boot:{status}"] += 1
            wait = float((answer or {}).get("interval") or 5)
            await asyncio.sleep(min(wait, max(0.0, self.deadline - loop.time())))
        return False

    def _status(self, status: str) -> dict[str, Any]:
        return {
            "connectorId": 1,
            "errorCode": "NoError",
            "status": status,
            "timestamp": iso(datetime.now(UTC)),
        }

    async def _start(self) -> None:
        tag = f"TAG-{self.charger_id}"
        answer = await self._guarded(
            "StartTransaction",
            {
                "connectorId": 1,
                "idTag": tag,
                "meterStart": int(self.energy_wh),
                "timestamp": iso(datetime.now(UTC)),
            },
        )
        self.transaction_id = int(answer["transactionId"]) if answer else None

    def _meter_values(self) -> dict[str, Any]:
        self.energy_wh += 11_000 / 3600  # a second at 11 kW per sample, rising
        payload: dict[str, Any] = {
            "connectorId": 1,
            "meterValue": [
                {
                    "timestamp": iso(datetime.now(UTC)),
                    "sampledValue": [
                        {
                            "value": f"{self.energy_wh:.1f}",
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                        },
                        {"value": "11000.0", "measurand": "Power.Active.Import", "unit": "W"},
                    ],
                }
            ],
        }
        if self.transaction_id is not None:
            payload["transactionId"] = self.transaction_id
        return payload

    async def _stop(self) -> None:
        if self.transaction_id is None:
            return
        payload = {
            "transactionId": self.transaction_id,
            "meterStop": int(self.energy_wh),
            "timestamp": iso(datetime.now(UTC)),
            "reason": "Local",
        }
        self.transaction_id = None
        await self._guarded("StopTransaction", payload)

    async def _teardown(self) -> None:
        """After the window: close a running transaction, if the grace allows."""
        self.measuring = False
        if self.transaction_id is None or self.ws is None:
            return
        with contextlib.suppress(CallFailed, ConnectionClosed, TimeoutError):
            await asyncio.wait_for(self._stop(), self.options.grace / 2)

    async def _play(self) -> None:
        if not await self._boot() or asyncio.get_running_loop().time() >= self.deadline:
            return  # too late to start anything inside the measured window
        await self._guarded("StatusNotification", self._status("Available"))
        scenario = self.options.scenario
        if scenario == "meter":
            await self._guarded("StatusNotification", self._status("Preparing"))
            await self._start()
            await self._guarded("StatusNotification", self._status("Charging"))
            await self._loop(lambda: ("MeterValues", self._meter_values()))
        elif scenario == "idle":
            await self._loop(
                lambda: ("Heartbeat", {}), period=None if self.options.rate else self.interval
            )
        else:
            await self._sessions()

    async def _loop(
        self, make: Callable[[], tuple[str, dict[str, Any]]], period: float | None = None
    ) -> None:
        """Repeat a CALL until the deadline: closed loop, every `period` s, or open loop."""
        loop = asyncio.get_running_loop()
        o = self.options
        if o.rate:
            period = o.chargers / o.rate
        next_at = loop.time() + (random.random() * period if period else 0.0)
        while True:
            if period:
                if next_at >= self.deadline:
                    await asyncio.sleep(max(0.0, self.deadline - loop.time()))
                    return
                await asyncio.sleep(max(0.0, next_at - loop.time()))
            elif loop.time() >= self.deadline:
                return
            action, payload = make()
            await self._guarded(action, payload, scheduled=next_at if o.rate else None)
            if period:
                next_at += period

    async def _sessions(self) -> None:
        """Authorize, StartTransaction, three MeterValues, StopTransaction; again."""
        loop = asyncio.get_running_loop()
        while loop.time() < self.deadline:
            await self._guarded("Authorize", {"idTag": f"TAG-{self.charger_id}"})
            await self._start()
            for _ in range(3):
                await self._guarded("MeterValues", self._meter_values())
            await self._stop()


def api_root(url: str) -> str:
    """`http://HOST:PORT` from the admin API URL in either form: as `csms serve` prints it
    (`.../api/v1`) or without the prefix."""
    base = url.rstrip("/")
    if base.endswith(API_PREFIX):
        base = base[: -len(API_PREFIX)]
    return base.rstrip("/")


async def register(
    api: str, token: str, ids: list[str], password: str | None, stats: Stats
) -> None:
    """Register every id through the admin API (DESIGN 6); 409 means it already exists.

    Raises `LoadError` when not one registration went through (a wrong token or URL):
    the run could only count refused upgrades after that."""
    import aiohttp

    root = api_root(api)
    if urlsplit(root).scheme not in ("http", "https"):
        raise LoadError(
            f"--register-api {api} is not an http:// URL (e.g. http://127.0.0.1:8080/api/v1)"
        )
    url = f"{root}{API_PREFIX}/chargers"
    sem = asyncio.Semaphore(16)
    headers = {"Authorization": f"Bearer {token}"}
    registered = 0
    first: dict[str, str] = {}  # error kind -> what it was, for the message

    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(charger_id: str) -> None:
            nonlocal registered
            body: dict[str, Any] = {"id": charger_id}
            if password:
                body["password"] = password
            else:  # connects without Basic auth: say so, or a key would be generated
                body["securityProfile"] = 0
            async with sem:
                try:
                    async with session.post(url, json=body) as resp:
                        if resp.status in (200, 201, 409):
                            registered += 1
                            return
                        kind = f"register:{resp.status}"
                        first.setdefault(kind, f"HTTP {resp.status}")
                except aiohttp.ClientError as exc:
                    kind = f"register:{type(exc).__name__}"
                    first.setdefault(kind, str(exc) or type(exc).__name__)
                stats.errors[kind] += 1

        await asyncio.gather(*(one(i) for i in ids))
    if registered == 0 and first:
        raise LoadError(_register_failure(url, first))


def _register_failure(url: str, first: dict[str, str]) -> str:
    """One line for a registration that never went through, by how it failed."""
    if "register:401" in first:
        return f"registering at {url} failed: HTTP 401, the admin API refused the token (--token)"
    if "register:404" in first:
        return (
            f"registering at {url} failed: HTTP 404, no admin API there; --register-api is the"
            " admin API URL csms serve prints (http://HOST:PORT/api/v1)"
        )
    what = next(iter(first.values()))
    return f"registering at {url} failed: {what}"


async def _report(
    progress: Callable[[str], None],
    every: float,
    chargers: list[LeanCharger],
    stats: Stats,
    t0: float,
) -> None:
    """A progress line every `every` seconds until cancelled: connected, calls, errors."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)  # a clock, not a wait for something
        open_now = sum(1 for c in chargers if c.ws is not None)
        errors = sum(stats.errors.values())
        progress(
            f"{loop.time() - t0:.0f} s: {open_now}/{len(chargers)} connected,"
            f" {len(stats.latencies)} calls, {errors} errors"
        )


def raise_fd_limit(needed: int) -> None:
    """Each charger holds a socket; lift the soft open-file limit towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_load(
    options: LoadOptions,
    *,
    register_api: str | None = None,
    token: str | None = None,
    progress: Callable[[str], None] | None = None,
    progress_every: float = PROGRESS_EVERY,
) -> dict[str, Any]:
    """Run the whole load and return its summary; `progress` gets a line every few seconds."""
    options.validate()
    if register_api and not token:
        raise LoadError("--register-api needs --token (the admin API token)")
    if options.seed is not None:
        random.seed(options.seed)
    raise_fd_limit(options.chargers + 256)
    stats = Stats()
    ids = options.charger_ids()
    if register_api:
        await register(register_api, token or "", ids, options.password, stats)
    loop = asyncio.get_running_loop()
    cpu0, wall0 = _cpu(), time.perf_counter()
    t0 = loop.time()
    deadline = t0 + options.duration
    step = options.ramp / options.chargers if options.chargers else 0.0
    chargers = [LeanCharger(cid, options, stats, deadline) for cid in ids]
    tasks = [asyncio.create_task(c.run(t0 + n * step)) for n, c in enumerate(chargers)]
    reporter = None
    if progress is not None:
        reporter = asyncio.create_task(_report(progress, progress_every, chargers, stats, t0))
    try:
        done, pending = await asyncio.wait(tasks, timeout=options.duration + options.grace)
    finally:
        if reporter is not None:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
    for task in pending:
        task.cancel()
    if pending:
        stats.errors["hardStop"] += len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            stats.errors[f"crash:{type(task.exception()).__name__}"] += 1
    elapsed = min(time.perf_counter() - wall0, options.duration)
    return summary(stats, options, elapsed=elapsed, cpu=_cpu() - cpu0)
