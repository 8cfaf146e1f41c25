"""`make demo` / `python -m simulators.demo`: watch chargehook work end to end.

It starts the CSMS as a child process (`python -m csms serve` on free loopback ports, a
throw-away SQLite file), a small webhook receiver that prints each event it is sent and
checks its Standard Webhooks signature, registers the receiver, a charger (with a
password) and an id tag through the admin API, and plays one simulated charger through
a session and a remote start. Then it prints a summary and shuts everything down.

Like the rest of `simulators`, it talks to the CSMS over the wire only: HTTP for the
admin API, a WebSocket for the charger, HTTP for the webhooks. Everything stays on
127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from simulators.charger import Charger, EventKind
from simulators.scenarios import SCENARIOS, ScenarioError, ScenarioOptions

LOOPBACK = "127.0.0.1"
CHARGER_ID = "DEMO-CP-1"
ID_TAG = "DEMO-TAG-1"
PASSWORD = secrets.token_urlsafe(18)  # 24 characters: a valid AuthorizationKey (16-40)
OCPP_LINE = re.compile(r"OCPP endpoint (ws://\S+)/\{chargerId\}")
API_LINE = re.compile(r"admin API (http://\S+/api/v1)")


class DemoError(RuntimeError):
    """Something the demo needs did not happen; the message says what."""


@dataclass(frozen=True, slots=True)
class Timing:
    charge: float  # seconds the local session charges
    sample: float  # MeterValueSampleInterval, seconds
    remote_samples: int  # meter values to wait for during the remote session
    wait: float  # bound on each wait for the CSMS
    deliver: float  # bound on waiting for the last webhook


FULL = Timing(charge=5.0, sample=1.0, remote_samples=4, wait=15.0, deliver=20.0)
QUICK = Timing(charge=1.0, sample=0.25, remote_samples=3, wait=10.0, deliver=15.0)


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


# ----- the webhook receiver ----------------------------------------------------------


@dataclass
class Receiver:
    """Prints and checks every delivery; the secret arrives when the endpoint is made."""

    secret: asyncio.Future[str]
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # by event id
    verified: dict[str, bool] = field(default_factory=dict)
    deliveries: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        from standardwebhooks import Webhook, WebhookVerificationError

        body = await request.read()
        secret = await asyncio.wait_for(asyncio.shield(self.secret), 10.0)
        try:
            envelope = Webhook(secret).verify(body, dict(request.headers))
            ok = True
        except WebhookVerificationError:
            envelope, ok = json.loads(body), False
        self.deliveries += 1
        event_id = str(envelope.get("id"))
        again = event_id in self.events
        self.events[event_id] = envelope
        self.verified[event_id] = ok and self.verified.get(event_id, True)
        sequence = envelope.get("sequence")
        print(
            f"  webhook #{sequence if sequence is not None else '-':<3} "
            f"{envelope.get('type', '?'):<38} {envelope.get('chargerId') or '-':<10} "
            f"{'signature verified' if ok else 'SIGNATURE NOT VERIFIED'}"
            f"{'  (redelivery)' if again else ''}{_detail(envelope)}",
            flush=True,
        )
        self.changed.set()
        return web.Response(status=204)

    def sequences(self, charger_id: str) -> list[int]:
        return sorted(
            e["sequence"]
            for e in self.events.values()
            if e.get("chargerId") == charger_id and e.get("sequence") is not None
        )

    async def wait_until_sequence(self, charger_id: str, last: int, timeout: float) -> None:
        async def loop() -> None:
            while set(range(1, last + 1)) - set(self.sequences(charger_id)):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


def _detail(envelope: dict[str, Any]) -> str:
    """A few words about what happened, for the eye."""
    data = envelope.get("data") or {}
    kind = envelope.get("type", "")
    if kind == "connector.status_changed":
        return f"  connector {data.get('connectorId')}: {data.get('status')}"
    if kind.startswith("transaction."):
        parts = [f"tx {data.get('transactionId')}"]
        if "energyWh" in data:
            parts.append(f"{data['energyWh']} Wh")
        if "powerW" in data:
            parts.append(f"{data['powerW']} W")
        if "reason" in data:
            parts.append(f"reason {data['reason']}")
        return "  " + ", ".join(parts)
    if kind == "charger.disconnected":
        return f"  reason {data.get('reason')}"
    return ""


# ----- the CSMS child process --------------------------------------------------------


@dataclass
class CsmsProcess:
    process: asyncio.subprocess.Process
    ocpp_url: str  # ws://127.0.0.1:PORT/ocpp (without the charger id)
    api_url: str  # http://127.0.0.1:PORT/api/v1
    log: Path
    drain: asyncio.Task[None]


def write_config(directory: Path, token: str) -> Path:
    path = directory / "demo.toml"
    database = (directory / "csms.db").resolve()
    path.write_text(
        f"""# written by simulators.demo; removed when it ends
[ocpp]
host = "{LOOPBACK}"
port = 0
call_timeout = 10

[api]
host = "{LOOPBACK}"
port = 0
tokens = ["{token}"]

[storage]
url = "sqlite:///{database}"

[webhooks]
allow_private_targets = true   # the receiver is on loopback
timeout = 5
retry_schedule = ["1s", "2s", "5s"]
""",
        encoding="utf-8",
    )
    return path


async def start_csms(config: Path, log: Path, timeout: float) -> CsmsProcess:
    say(f"starting the CSMS: {Path(sys.executable).name} -m csms serve --config {config}")
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "csms",
            "serve",
            "--config",
            str(config),
            "--log-level",
            "WARNING",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    assert process.stdout is not None
    ocpp = api = None
    try:
        async with asyncio.timeout(timeout):
            while ocpp is None or api is None:
                line = (await process.stdout.readline()).decode("utf-8", "replace")
                if not line:
                    raise DemoError(f"the CSMS exited before it was ready; see {_tail(log)}")
                if found := OCPP_LINE.search(line):
                    ocpp = found.group(1)
                if found := API_LINE.search(line):
                    api = found.group(1)
    except BaseException:
        await stop_process(process)
        raise
    return CsmsProcess(process, ocpp, api, log, asyncio.create_task(_drain(process.stdout)))


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keep reading the child's stdout so that it never blocks on a full pipe."""
    while await stream.readline():
        pass


async def stop_process(process: asyncio.subprocess.Process, grace: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within `grace` seconds."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await asyncio.wait_for(process.wait(), grace)
    return process.returncode if process.returncode is not None else -1


def _tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "its log:\n" + "\n".join(text)


# ----- the admin API -----------------------------------------------------------------


class Admin:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.session.request(method, self.base + path, json=body) as response:
            text = await response.text()
            if response.status != expect:
                raise DemoError(f"{method} {path}: HTTP {response.status} {text[:300]}")
            return json.loads(text)["data"] if text else None


# ----- the story ---------------------------------------------------------------------


async def run_demo(quick: bool) -> int:
    timing = QUICK if quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix="chargehook-demo-"))
    token = secrets.token_urlsafe(24)
    csms: CsmsProcess | None = None
    runner: web.AppRunner | None = None
    charger: Charger | None = None
    loop = asyncio.get_running_loop()
    receiver = Receiver(secret=loop.create_future())
    try:
        csms = await start_csms(write_config(workdir, token), workdir / "csms.log", timing.wait)
        say(f"CSMS up: OCPP {csms.ocpp_url}/{{chargerId}}, admin API {csms.api_url}")

        app = web.Application()
        app.router.add_post("/hooks", receiver.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        port = runner.addresses[0][1]
        hook_url = f"http://{LOOPBACK}:{port}/hooks"

        headers = {"Authorization": f"Bearer {token}"}
        timeout = aiohttp.ClientTimeout(total=timing.wait)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            admin = Admin(session, csms.api_url)
            endpoint = await admin.call(
                "POST",
                "/webhooks",
                {"url": hook_url, "enabledEvents": ["*"], "description": "make demo"},
                expect=201,
            )
            receiver.secret.set_result(endpoint["secret"])
            say(f"webhook receiver {hook_url} registered as {endpoint['id']} (all events)")
            await admin.call("POST", "/chargers", {"id": CHARGER_ID, "password": PASSWORD}, 201)
            await admin.call("POST", "/id-tags", {"idTag": ID_TAG}, 201)
            say(f"charger {CHARGER_ID} registered with a password; id tag {ID_TAG} allowed")

            charger = Charger(
                csms.ocpp_url,
                CHARGER_ID,
                password=PASSWORD,
                call_timeout=timing.wait,
                sample_interval=timing.sample,
                reconnect_delay=0.2,
            )
            say(f"-- {CHARGER_ID} connects (security profile 1) and boots")
            await charger.start(timeout=timing.wait)
            await charger.drain(timeout=timing.wait)

            say(f"-- session: plug in, badge {ID_TAG}, charge {timing.charge:g} s, stop, unplug")
            options = ScenarioOptions(id_tag=ID_TAG, duration=timing.charge, wait=timing.wait)
            await SCENARIOS["session"](charger, options)

            say("-- remote start: RemoteStartTransaction through the admin API")
            mark = charger.mark()
            command = await admin.call(
                "POST",
                f"/chargers/{CHARGER_ID}/commands/RemoteStartTransaction?wait={timing.wait:g}",
                {"connectorId": 1, "idTag": ID_TAG},
            )
            if command["status"] != "accepted":
                raise DemoError(f"RemoteStartTransaction was {command['status']}: {command}")
            started = await charger.wait_for(
                EventKind.TRANSACTION_STARTED, since=mark, timeout=timing.wait
            )
            mark = started.index
            await charger.wait_until(
                lambda: _meter_values_since(charger, mark) >= timing.remote_samples,
                timeout=timing.wait + timing.remote_samples * timing.sample,
            )
            say(f"-- remote stop: RemoteStopTransaction for transaction {started.transaction_id}")
            command = await admin.call(
                "POST",
                f"/chargers/{CHARGER_ID}/commands/RemoteStopTransaction?wait={timing.wait:g}",
                {"transactionId": started.transaction_id},
            )
            if command["status"] != "accepted":
                raise DemoError(f"RemoteStopTransaction was {command['status']}: {command}")
            await charger.wait_for(EventKind.TRANSACTION_STOPPED, since=mark, timeout=timing.wait)
            charger.unplug(1)
            await charger.drain(timeout=timing.wait)

            say(f"-- {CHARGER_ID} disconnects")
            await charger.stop()
            charger = None
            last = await _last_sequence(admin, timing.wait)
            with contextlib.suppress(TimeoutError):  # what did not come is reported below
                await receiver.wait_until_sequence(CHARGER_ID, last, timing.deliver)
        return summarize(receiver, last)
    except (DemoError, ScenarioError, aiohttp.ClientError) as exc:
        say(f"FAILED: {exc}")
        if csms is not None and csms.process.returncode is not None:
            say(_tail(csms.log))
        return 1
    except TimeoutError:  # a bounded wait inside (the demo's own deadline cancels instead)
        say("FAILED: timed out waiting for the CSMS or the charger")
        if csms is not None and csms.process.returncode is not None:
            say(_tail(csms.log))
        return 1
    finally:
        if charger is not None:
            await charger.stop()
        if runner is not None:
            await runner.cleanup()
        if csms is not None:
            code = await stop_process(csms.process)
            csms.drain.cancel()
            say(f"CSMS stopped (exit code {code})")
        shutil.rmtree(workdir, ignore_errors=True)


def _meter_values_since(charger: Charger, mark: int) -> int:
    return sum(
        1
        for e in charger.events[mark:]
        if e.kind == EventKind.ANSWERED and e.action == "MeterValues"
    )


async def _last_sequence(admin: Admin, timeout: float) -> int:
    """The charger's last event sequence once its disconnection is recorded."""
    deadline = time.monotonic() + timeout
    while True:
        state = await admin.call("GET", f"/chargers/{CHARGER_ID}")
        if not state["connected"]:
            return int(state["lastSequence"])
        if time.monotonic() > deadline:
            raise DemoError("the CSMS still shows the charger connected")
        await asyncio.sleep(0.1)  # polling the API: there is nothing to await from outside


def summarize(receiver: Receiver, last: int) -> int:
    got = receiver.sequences(CHARGER_ID)
    missing = sorted(set(range(1, last + 1)) - set(got))
    unverified = [i for i, ok in receiver.verified.items() if not ok]
    total = len(receiver.events)
    redelivered = receiver.deliveries - total
    say(
        f"summary: {total} events received ({receiver.deliveries} deliveries"
        f"{f', {redelivered} redelivered' if redelivered else ''}); "
        f"{CHARGER_ID} sequences 1..{last}"
    )
    if unverified:
        say(f"summary: {len(unverified)} of {total} signatures did NOT verify")
    else:
        say(f"summary: all {total} events verified (Standard Webhooks signature)")
    if missing:
        say(f"summary: missing by sequence: {missing}")
    else:
        say("summary: none missing by sequence")
    ok = not unverified and not missing and total > 0
    say("OK" if ok else "FAILED")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.demo",
        description="CSMS + a printing webhook receiver + one simulated charger, on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="shorter charging (for tests)")
    parser.add_argument("--timeout", type=float, default=180.0, help="bound on the whole demo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        import standardwebhooks  # noqa: F401
    except ImportError:
        print("demo: needs the standardwebhooks package (`make demo` installs it)", file=sys.stderr)
        return 2

    async def bounded() -> int:
        # SIGTERM (and Ctrl-C, through asyncio.run) cancel the demo: its clean-up still runs.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            async with asyncio.timeout(args.timeout):
                return await run_demo(args.quick)
        except TimeoutError:
            say(f"FAILED: did not finish within {args.timeout:g} s")
            return 1

    try:
        return asyncio.run(bounded())
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        say("stopped")
        return 143


if __name__ == "__main__":
    sys.exit(main())
