"""``csms listen``: forward a CSMS's events to a local URL, signed as its webhooks are.

For developing a webhook receiver (like ``stripe listen``): it follows
``GET /api/v1/events/stream`` of any CSMS over HTTP (it needs no access to its store), and
POSTs each event's envelope to ``--forward-to`` with Standard Webhooks headers, signed with a
secret made for the run (or ``--secret``), so the receiver's verification code is the one it
will use in production. One line per event on stdout; what happens to the connection on
stderr.

What it does when things fail:

- Before the first connection succeeds, any failure (a wrong URL, a refused token, nothing
  listening) ends it with one ``csms listen:`` line and exit status 1: a typo must not look
  like a quiet stream.
- Once connected, a lost stream (the server restarting, the network) is resumed from the last
  event handled, with ``Last-Event-ID``, after a back-off from 0.5 s doubling to 10 s, for as
  long as it takes: no event is skipped or sent twice. A token refused on reconnecting, or a
  resume point the server no longer holds, ends it (exit 1), since retrying cannot help.
- A POST that gets no answer (refused, timed out after 10 s) is tried 3 times, 1 s and 2 s
  apart (a receiver restarting on a code change), then reported and skipped; events wait
  behind it, so their order is kept. Any HTTP answer, 4xx or 5xx too, is reported, not
  retried: it is the receiver's answer. ``--since EVENT_ID`` sends events again.
- SIGINT (Ctrl-C) or SIGTERM: stops at once, exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

import aiohttp
from yarl import URL

from webhooks.signing import SecretFormatError, new_secret, secret_key, signature

STREAM_PATH = "/api/v1/events/stream"
TOKEN_ENV = "CHARGEHOOK_API_TOKEN"  # not CSMS_*: those are `csms serve` settings
CONNECT_TIMEOUT = 10.0
# No byte for this long (the server sends a keep-alive every 15 s): the connection is dead.
READ_TIMEOUT = 45.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
FORWARD_TIMEOUT = 10.0
FORWARD_RETRY_DELAYS = (1.0, 2.0)  # so 3 attempts when the receiver does not answer
USER_AGENT = "chargehook-listen"


class ListenError(Exception):
    """Listening cannot go on; the message says why in one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        required=True,
        metavar="URL",
        help="the admin API of the CSMS, e.g. http://127.0.0.1:8080 (as `csms serve` prints)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"an admin API token (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--forward-to", required=True, metavar="URL", help="where to POST each event"
    )
    parser.add_argument(
        "--events",
        action="append",
        default=[],
        metavar="GLOB,...",
        help="event types, names or globs (default: all but ocpp.message, which must be named)",
    )
    parser.add_argument("--charger", metavar="ID", help="only this charger's events")
    parser.add_argument(
        "--secret",
        metavar="whsec_...",
        help="sign with this secret instead of a new one for the run",
    )
    parser.add_argument(
        "--since", metavar="EVENT_ID", help="first send the stored events after this one"
    )


@dataclass(frozen=True)
class Options:
    api: URL
    token: str
    target: URL
    types: tuple[str, ...]
    charger_id: str | None
    secret: str
    since: str | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        if not args.token:
            raise ListenError(f"--token is required (or set {TOKEN_ENV})")
        secret = args.secret or new_secret(secrets.token_bytes)
        try:
            secret_key(secret)
        except SecretFormatError as exc:
            raise ListenError(f"--secret: {exc}") from None
        types = tuple(t.strip() for raw in args.events for t in raw.split(",") if t.strip())
        return cls(
            api=_api_base(args.api),
            token=args.token,
            target=_http_url("--forward-to", args.forward_to),
            types=types,
            charger_id=args.charger or None,
            secret=secret,
            since=args.since or None,
        )

    @property
    def api_text(self) -> str:
        return str(self.api).rstrip("/")

    @property
    def stream_url(self) -> URL:
        return self.api.with_path(self.api.path.rstrip("/") + STREAM_PATH)


def _http_url(option: str, raw: str) -> URL:
    try:
        url = URL(raw)
    except (ValueError, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ListenError(
            f"{option}: expected an http:// or https:// URL such as http://127.0.0.1:8080,"
            f" not {raw!r}"
        )
    return url


def _api_base(raw: str) -> URL:
    """The API's base URL; ``.../api/v1`` (as `csms serve` prints it) is taken too."""
    url = _http_url("--api", raw)
    path = url.path.rstrip("/")
    if path.endswith("/api/v1"):
        path = path[: -len("/api/v1")]
    return url.with_path(path or "/").with_query(None).with_fragment(None)


@dataclass
class Message:
    """One Server-Sent Events message: ``id`` is None when the block set none."""

    event: str = "message"
    data: str | None = None
    id: str | None = None


@dataclass
class SseParser:
    """Incremental ``text/event-stream`` parsing (WHATWG HTML, server-sent events)."""

    _buffer: bytes = b""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _id: str | None = None
    _fields: bool = False

    def feed(self, chunk: bytes) -> Iterator[Message]:
        self._buffer += chunk
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                return
            raw, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if self._fields:
                    data = "\n".join(self._data) if self._data else None
                    yield Message(event=self._event or "message", data=data, id=self._id)
                self._data, self._event, self._id, self._fields = [], "", None, False
                continue
            if line.startswith(":"):
                continue  # a comment: the keep-alive
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "id" and "\0" not in value:
                self._id = value
            else:
                continue
            self._fields = True


class Listener:
    """The stream in, signed POSTs out; ``last_id`` is the resume point (the last event
    handled, or the position a keep-alive gave)."""

    def __init__(self, options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr):
        self.options = options
        self.out = out
        self.err = err
        self.key = secret_key(options.secret)
        self.last_id = options.since
        self.connected = False

    def say(self, text: str) -> None:
        print(f"csms listen: {text}", file=self.err, flush=True)

    async def run(self) -> None:
        """Raises ``ListenError`` when it cannot go on; otherwise runs until cancelled."""
        api_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
        )
        headers = {"Authorization": f"Bearer {self.options.token}", "User-Agent": USER_AGENT}
        async with (
            aiohttp.ClientSession(headers=headers, timeout=api_timeout) as api,
            aiohttp.ClientSession(
                headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT),
            ) as forward,
        ):
            delay = BACKOFF_FIRST
            while True:
                try:
                    ended = await self._follow(api, forward)
                    delay = BACKOFF_FIRST
                    self.say(f"the stream ended ({ended}); reconnecting{self._resume_note()}")
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    if not self.connected:
                        raise ListenError(
                            f"cannot reach the API at {self.options.api_text}: {_describe(exc)}"
                        ) from None
                    self.say(
                        f"lost the stream ({_describe(exc)}); retrying in {delay:g} s"
                        f"{self._resume_note()}"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)

    def _resume_note(self) -> str:
        return f", resuming after {self.last_id}" if self.last_id else ""

    async def _follow(self, api: aiohttp.ClientSession, forward: aiohttp.ClientSession) -> str:
        """One connection: handle its events until it ends; why it ended."""
        params: dict[str, str] = {}
        if self.options.types:
            params["type"] = ",".join(self.options.types)
        if self.options.charger_id:
            params["chargerId"] = self.options.charger_id
        headers = {"Accept": "text/event-stream"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        async with api.get(self.options.stream_url, params=params, headers=headers) as response:
            await self._check(response)
            if not self.connected:
                self.connected = True
                print(
                    f"Ready! Forwarding events of {self.options.api_text} to {self.options.target};"
                    f" webhook signing secret: {self.options.secret} (Ctrl-C to quit)",
                    file=self.out,
                    flush=True,
                )
            else:
                self.say("reconnected")
            parser = SseParser()
            async for chunk in response.content.iter_any():
                for message in parser.feed(chunk):
                    if message.event == "stream.closed":
                        return _closed_reason(message.data)
                    if message.data is not None:
                        await self._forward(forward, message)
                    if message.id:
                        self.last_id = message.id
        return "the server closed the connection"

    async def _check(self, response: aiohttp.ClientResponse) -> None:
        if response.status == 200 and response.content_type == "text/event-stream":
            return
        detail = await _error_detail(response)
        where = f"{self.options.stream_url}: {response.status} {detail}"
        if response.status == 401:
            raise ListenError(f"the API refused the token ({where}); check --token")
        if response.status == 400:
            raise ListenError(f"the API refused the request: {where}")
        if response.status == 404 or response.status == 200:
            raise ListenError(f"{where}: is --api the admin API of a chargehook CSMS?")
        if not self.connected:
            raise ListenError(f"the API failed: {where}")
        raise aiohttp.ClientResponseError(
            response.request_info, (), status=response.status, message=detail
        )

    async def _forward(self, session: aiohttp.ClientSession, message: Message) -> None:
        """POST one event, signed; print one line with its outcome."""
        body = (message.data or "").encode()
        try:
            envelope = json.loads(body)
        except json.JSONDecodeError:
            envelope = {}
        event_id = message.id or str(envelope.get("id", ""))
        attempts = len(FORWARD_RETRY_DELAYS) + 1
        loop = asyncio.get_running_loop()
        for attempt in range(1, attempts + 1):
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "webhook-id": event_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": signature(self.key, event_id, stamp, body),
            }
            started = loop.time()
            try:
                async with session.post(
                    self.options.target, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    await answer.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                if attempt < attempts:
                    await asyncio.sleep(FORWARD_RETRY_DELAYS[attempt - 1])
                    continue
                outcome = f"failed after {attempts} attempts: {_describe(exc)}"
            else:
                outcome = f"{answer.status} {answer.reason or ''}".rstrip()
            millis = round((loop.time() - started) * 1000)
            self._print_event(envelope, event_id, f"{outcome} ({millis} ms)")
            return

    def _print_event(self, envelope: dict[str, object], event_id: str, outcome: str) -> None:
        sequence = envelope.get("sequence")
        print(
            f"{time.strftime('%H:%M:%S')}  {envelope.get('type', '?')}"
            f"  {envelope.get('chargerId') or '-'}"
            f"  {'#' + str(sequence) if sequence is not None else '-'}"
            f"  {event_id}  -> {outcome}",
            file=self.out,
            flush=True,
        )


def _closed_reason(data: str | None) -> str:
    try:
        found = json.loads(data or "")
        return f"{found['reason']}: {found['message']}"
    except (ValueError, KeyError, TypeError):
        return data or "closed by the server"


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    """The error message of the API's JSON error body, else the status reason."""
    with contextlib.suppress(Exception):
        body = await response.json(content_type=None)
        return str(body["error"]["message"])
    return response.reason or ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused"
        return exc.os_error.strerror or str(exc.os_error)
    return str(exc) or type(exc).__name__


async def _main(options: Options) -> int:
    listener = Listener(options)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    work = asyncio.create_task(listener.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if work.done():
        stopping.cancel()
        work.result()  # raises ListenError
        return 1
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    listener.say("stopped")
    return 0


def run(args: argparse.Namespace) -> int:
    """The ``csms listen`` command: its exit status."""
    try:
        options = Options.from_args(args)
    except ListenError as exc:
        print(f"csms listen: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_main(options))
    except ListenError as exc:
        print(f"csms listen: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the signal handlers were in place
        return 0
