"""``csms listen`` as a user runs it: a child process against a real CSMS over HTTP, forwarding
to a real receiver that checks every signature with the ``standardwebhooks`` library.

It prints the secret, forwards each event once with one line, keeps going across a server
restart without a gap, stops with status 0 on SIGINT, and fails at once, in one line, when it
cannot start (a wrong token, nothing listening, a malformed URL).

``csms listen`` only speaks HTTP, so these tests run on SQLite alone; the stream itself is
tested on both stores in test_event_stream.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from csms.app import Csms
from tests.conftest import TEST_TOKEN, wait_for
from tests.helpers import REPO_ROOT
from tests.test_event_stream import Producer

SECRET_LINE = re.compile(r"webhook signing secret: (whsec_\S+)")


@pytest.fixture
def backend() -> str:
    return "sqlite"


@dataclass
class Receiver:
    """Takes webhooks; ``answers`` gives the status for an event id. The secret is known only
    once listen printed it (events may come first), so the checks are made on reading."""

    url: str = ""
    secret: str = ""
    requests: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((body, dict(request.headers)))
        event_id = request.headers.get("webhook-id", "")
        return web.Response(status=self.answers.get(event_id, 204))

    @property
    def received(self) -> list[dict[str, Any]]:
        """The envelopes, each verified with the ``standardwebhooks`` library."""
        envelopes = []
        for body, headers in self.requests:
            envelope = Webhook(self.secret).verify(body, headers)
            assert headers["webhook-id"] == envelope["id"]
            assert headers["Content-Type"] == "application/json"
            envelopes.append(envelope)
        return envelopes

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.received]


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


class Listen:
    """``python -m csms listen ...``, its stdout and stderr read line by line as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(process.stdout, self.out)),
            asyncio.create_task(self._read(process.stderr, self.err)),
        ]

    @staticmethod
    async def _read(stream: asyncio.StreamReader, lines: list[str]) -> None:
        while line := await stream.readline():
            lines.append(line.decode().rstrip("\n"))

    async def line(self, pattern: str, *, err: bool = False, timeout: float = 10.0) -> str:
        """The first line (of stdout, or stderr) matching ``pattern``, once there is one."""
        lines = self.err if err else self.out
        found: list[str] = []

        async def seen() -> bool:
            found[:] = [line for line in lines if re.search(pattern, line)]
            return bool(found) or self.process.returncode is not None

        await wait_for(seen, timeout=timeout)
        assert found, f"no line matches {pattern!r}:\n" + "\n".join(self.out + self.err)
        return found[0]

    async def exit_status(self, timeout: float = 10.0) -> int:
        status = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.wait_for(asyncio.gather(*self._readers), timeout)
        return status

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


@contextlib.asynccontextmanager
async def listen(*args: str) -> AsyncIterator[Listen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSMS_", "CHARGEHOOK_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "csms",
        "listen",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(REPO_ROOT),
    )
    running = Listen(process)
    try:
        yield running
    finally:
        running.stop()
        await running.exit_status()


async def started(process: Listen, rec: Receiver) -> None:
    """Wait for the ready line and give its secret to the receiver."""
    line = await process.line("Ready!")
    found = SECRET_LINE.search(line)
    assert found, line
    rec.secret = found.group(1)


async def test_forwards_signed_events_across_a_server_restart_and_stops_on_sigint(
    csms: Csms, csms_factory: Callable[..., Awaitable[Csms]]
) -> None:
    producer = Producer(csms.store)
    await producer.emit(3)  # before it starts: not forwarded
    port = csms.api_port
    async with (
        receiver() as rec,
        listen(
            "--api", f"{csms.api_url}/api/v1", "--token", TEST_TOKEN, "--forward-to", rec.url
        ) as process,
    ):
        await started(process, rec)
        first = await producer.emit(20, "CP-1")
        await wait_for(lambda: _count(rec, 20), timeout=20)
        assert rec.ids == [e.id for e in first]
        for event in first:  # one line each: type, charger, sequence, status, latency
            line = await process.line(re.escape(event.id))
            assert re.search(
                rf"transaction\.updated\s+CP-1\s+#{event.sequence}\s+{event.id}\s+-> 204"
                r".* \(\d+ ms\)$",
                line,
            ), line

        # Events committed right before the server stops, and while listen is away.
        before = await producer.emit(30, "CP-2")
        await csms.close()
        await process.line("reconnecting|lost the stream", err=True)
        restarted = await csms_factory(api={"port": port})
        during = await Producer(restarted.store).emit(30, "CP-3")
        await wait_for(lambda: _count(rec, 80), timeout=30)
        assert rec.ids == [e.id for e in first + before + during]  # no gap, none twice
        await process.line("reconnected", err=True)

        process.process.send_signal(signal.SIGINT)
        assert await process.exit_status() == 0
    assert "Traceback" not in "\n".join(process.err)
    assert process.err[-1] == "csms listen: stopped"


async def test_filters_replays_with_since_and_reports_what_the_receiver_answered(
    csms: Csms,
) -> None:
    producer = Producer(csms.store)
    start = (await producer.emit(1, "CP-1"))[0]
    mixed = [
        *(await producer.emit(2, "CP-1", "transaction.started")),
        *(await producer.emit(2, "CP-2", "transaction.started")),
        *(await producer.emit(1, "CP-1", "charger.boot")),
        *(await producer.emit(1, "CP-1", "transaction.stopped")),
    ]
    wanted = [e for e in mixed if e.charger_id == "CP-1" and e.type.startswith("transaction.")]
    async with receiver() as rec, listen(
        "--api", csms.api_url, "--token", TEST_TOKEN, "--forward-to", rec.url,
        "--events", "transaction.*", "--charger", "CP-1", "--since", start.id,
    ) as process:  # fmt: skip
        rec.answers[wanted[1].id] = 500
        await started(process, rec)
        await wait_for(lambda: _count(rec, len(wanted)), timeout=20)
        assert rec.ids == [e.id for e in wanted]
        assert "-> 500 Internal Server Error" in await process.line(re.escape(wanted[1].id))
        assert "-> 204 No Content" in await process.line(re.escape(wanted[2].id))


async def test_a_receiver_that_does_not_answer_is_reported_and_skipped(csms: Csms) -> None:
    """Three attempts, then one line with the error, and on to the next event."""
    closed_port = _free_port()
    producer = Producer(csms.store)
    async with listen(
        "--api", csms.api_url, "--token", TEST_TOKEN,
        "--forward-to", f"http://127.0.0.1:{closed_port}/hook",
    ) as process:  # fmt: skip
        await process.line("Ready!")
        events = await producer.emit(2)
        for event in events:
            line = await process.line(re.escape(event.id), timeout=20)
            assert "-> failed after 3 attempts: connection refused" in line, line


async def test_a_refused_token_ends_it_at_once_with_one_line(csms: Csms) -> None:
    async with listen(
        "--api", csms.api_url, "--token", "not-a-token-of-ours", "--forward-to", csms.api_url
    ) as process:
        assert await process.exit_status() == 1
    assert process.out == []  # no secret: nothing will be forwarded
    assert process.err == [
        f"csms listen: the API refused the token ({csms.api_url}/api/v1/events/stream: 401"
        " invalid bearer token); check --token"
    ]


async def test_an_api_nobody_listens_on_ends_it_with_one_line() -> None:
    api = f"http://127.0.0.1:{_free_port()}"
    async with listen("--api", api, "--token", TEST_TOKEN, "--forward-to", api) as process:
        assert await process.exit_status() == 1
    assert process.err == [f"csms listen: cannot reach the API at {api}: connection refused"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--api", "127.0.0.1:8080", "--token", TEST_TOKEN, "--forward-to", "http://x/"],
            "csms listen: --api: expected an http:// or https:// URL such as"
            " http://127.0.0.1:8080, not '127.0.0.1:8080'",
        ),
        (
            ["--api", "http://127.0.0.1:1", "--token", TEST_TOKEN, "--forward-to", "hook"],
            "csms listen: --forward-to: expected an http:// or https:// URL such as"
            " http://127.0.0.1:8080, not 'hook'",
        ),
        (
            ["--api", "http://127.0.0.1:1", "--forward-to", "http://x/"],
            "csms listen: --token is required (or set CHARGEHOOK_API_TOKEN)",
        ),
        (
            ["--api", "http://h", "--token", "t", "--forward-to", "http://x/", "--secret", "s"],
            "csms listen: --secret: secret must start with 'whsec_'",
        ),
    ],
)
async def test_bad_options_end_it_with_one_line(args: list[str], message: str) -> None:
    async with listen(*args) as process:
        assert await process.exit_status() == 2
    assert process.err == [message]


async def test_a_stream_of_an_unknown_event_type_is_refused_with_the_servers_reason(
    csms: Csms,
) -> None:
    async with listen(
        "--api", csms.api_url, "--token", TEST_TOKEN, "--forward-to", csms.api_url,
        "--events", "nosuch.*",
    ) as process:  # fmt: skip
        assert await process.exit_status() == 1
    assert (
        len(process.err) == 1
        and "no event type is named or matched by nosuch.*" in (process.err[0])
    )


async def _count(rec: Receiver, count: int) -> bool:
    assert len(rec.requests) <= count, json.dumps(rec.ids)  # never more than sent
    return len(rec.requests) == count


def _free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
