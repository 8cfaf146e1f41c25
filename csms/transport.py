"""A WebSocket server on ``picows`` whose upgrade may be refused by an async decision.

``picows`` parses frames in C and calls its listener synchronously per frame, several times
cheaper than ``websockets`` per message; but its upgrade hook is synchronous too, and the
OCPP handshake is not: it reads the charger's registration from the store and may verify a
password with scrypt (tens of ms, in a thread). So the upgrade is read here first: a plain
protocol reads the request head, pauses reading, and asks ``decide`` (a coroutine); a
refusal is answered here (HTTP 4xx, then close); an acceptance hands the socket, with the
bytes read so far, to a ``picows`` protocol whose hook returns the decision already made.

The frame path then costs no task while a connection is idle: a message is first offered to
``Connection.take`` (synchronous; the OCPP side answers most CALLs from a done callback of
the group commit), else ``Connection`` runs its coroutines (``opened``, ``received`` per
message, ``ended``) one at a time, in order, on one task that lives as long as there is
work queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import email.utils
import http
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import picows
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport
from picows.picows import WSProtocol

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # the request line and headers of an upgrade
OPEN_TIMEOUT = 10.0  # the request head, and the decision on it, within this
CLOSE_TIMEOUT = 10.0  # a peer that does not answer our CLOSE is cut off after this
QUEUE_HIGH, QUEUE_LOW = 16, 4  # messages queued on a connection: stop reading, read again

_TEXT, _BINARY, _CONTINUATION, _CLOSE = (
    WSMsgType.TEXT,
    WSMsgType.BINARY,
    WSMsgType.CONTINUATION,
    WSMsgType.CLOSE,
)
_CLOSE_CODES = {code.value: code for code in WSCloseCode}
_GONE = object()  # queued after the last message: the connection ended
_TAKEN = object()  # in place of a task: a message ``take`` took is not done yet


class _QuietLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``picows`` logs every accept and disconnect at INFO; only its warnings are kept.
    (An adapter, not a Logger: picows makes a child Logger per connection of a Logger.)"""

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


_PICOWS_LOG = _QuietLog(logging.getLogger("csms.transport.picows"), {})


@dataclass(frozen=True, slots=True)
class Request:
    """An upgrade request as read off the socket: what ``decide`` needs of it."""

    method: str
    path: str  # the request target, as sent
    headers: tuple[tuple[str, str], ...]  # names as sent; values stripped

    def get(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the upgrade with this HTTP status and plain-text body, then close."""

    status: http.HTTPStatus
    body: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Accept:
    """Complete the upgrade (101), with ``subprotocol`` if not None; frames go to
    ``connection``."""

    connection: Connection
    subprotocol: str | None


Decide = Callable[[Request, asyncio.BaseTransport], Awaitable[Refuse | Accept]]


def parse_head(head: bytes) -> Request | None:
    """The request line and headers (RFC 9112, 3 and 5); None when it is not one."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers.append((name, value.strip(" \t")))
    return Request(parts[0], parts[1], tuple(headers))


def http_response(
    status: http.HTTPStatus, body: str, headers: tuple[tuple[str, str], ...]
) -> bytes:
    content = body.encode()
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        "Connection: close",
        f"Content-Length: {len(content)}",
        "Content-Type: text/plain; charset=utf-8",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + content


class Connection(WSListener):
    """One accepted WebSocket. Subclasses implement ``opened``, ``received`` and ``ended``:
    they run one at a time, in this order, ``received`` once per message (``str`` for text,
    ``bytes`` for binary); ``ended`` runs once after the last."""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.server: WebSocketServer | None = None
        self.subprotocol: str | None = None  # as agreed at the upgrade
        self._queue: deque[Any] | None = None  # made when a message waits for another
        self._task: asyncio.Task[None] | object | None = None  # or _TAKEN
        self._parts: list[bytes] | None = None  # a fragmented message being put together
        self._parts_type = _TEXT
        self._parts_size = 0
        self._paused_reading = False
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self._gone: asyncio.Future[None] | None = None  # made by a close that waits
        self._loop = asyncio.get_running_loop()
        # Resolved once ``ended`` has run: what the server's close waits for.
        self.finished: asyncio.Future[None] = self._loop.create_future()
        # The handlers' tasks run in one context: what ``opened`` sets (log ids) stays.
        self._context = contextvars.copy_context()

    # -- what subclasses implement ---------------------------------------------------------

    async def opened(self) -> None:
        """The upgrade is complete; messages wait until this returns."""

    async def received(self, message: str | bytes) -> None:
        """One message, in the order received."""

    async def ended(self) -> None:
        """The socket is gone (after the last message was handled)."""

    def take(self, message: str | bytes) -> Any:
        """A text message on an idle connection, first offered here, synchronously: None
        means it was taken (no task made) and the connection stays busy until ``resume``;
        anything else is handed to ``received`` on a task. Must not raise."""
        return message

    def resume(self) -> None:
        """What ``take`` took is done: the next message queued runs."""
        queue = self._queue
        if not queue:
            self._task = None
            return
        item = queue.popleft()
        self._task = self._loop.create_task(self._run(item), context=self._context)
        self._resume_reading(queue)

    # -- sending and closing ---------------------------------------------------------------

    @property
    def open(self) -> bool:
        t = self.transport
        return t is not None and not t.is_disconnected and not t.is_close_frame_sent

    def send_text(self, text: str) -> None:
        """Queue a text message for the peer; dropped when the socket is closing or gone."""
        transport = self.transport
        if transport is not None:
            transport.send(_TEXT, text)

    async def writable(self) -> None:
        """Returns once the peer has read enough of what was sent (transport flow control)."""
        if self._writable is not None:
            await asyncio.shield(self._writable)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send CLOSE and wait (bounded) until the peer answers and the socket is gone."""
        transport = self.transport
        if transport is None or transport.is_disconnected:
            return
        loop = asyncio.get_running_loop()
        if self._gone is None:
            self._gone = loop.create_future()
        if not transport.is_close_frame_sent:
            transport.send_close(_CLOSE_CODES.get(code, WSCloseCode.OK), _reason(reason))
        gone = self._gone
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(gone), CLOSE_TIMEOUT)
        if not transport.is_disconnected:
            transport.disconnect(graceful=False)

    def close_info(self) -> tuple[str, int]:
        """How the socket ended: ("closed", the code the peer sent) after a CLOSE from it,
        else ("lost", 1006)."""
        handshake = self.transport.close_handshake if self.transport is not None else None
        if handshake is not None and handshake.recv is not None:
            return "closed", int(handshake.recv.code) or 1005  # 1005: it sent no code
        return "lost", 1006

    def peer(self) -> Any:
        if self.transport is None:
            return None
        return self.transport.underlying_transport.get_extra_info("peername")

    # -- picows callbacks ------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        if self.server is not None:
            self.server.connections.add(self)
        self._push(None)  # None: run ``opened``

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if (
            kind is _TEXT
            and frame.fin
            and self._parts is None
            and not transport.is_close_frame_sent
        ):
            try:
                message = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self._fail(WSCloseCode.INVALID_TEXT, "invalid UTF-8")
                return
            if self._task is None:  # the common case, inlined: an idle connection
                item = self.take(message)
                if item is None:
                    self._task = _TAKEN
                else:
                    self._task = self._loop.create_task(self._run(item), context=self._context)
            else:
                self._push(message)
            return
        if kind is _CLOSE:
            self._on_close(transport, frame)
            return
        if transport.is_close_frame_sent:
            return  # closing: messages that cross our CLOSE are dropped
        if kind is _BINARY or kind is _TEXT:
            if self._parts is not None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
                return
            if frame.fin:
                self._push(frame.get_payload_as_bytes())
                return
            self._parts, self._parts_type, self._parts_size = [], kind, 0
        elif kind is not _CONTINUATION:
            return  # PONG (auto PING answers are picows')
        elif self._parts is None:
            self._fail(WSCloseCode.PROTOCOL_ERROR, "continuation of no message")
            return
        self._parts_size += frame.payload_size
        if self.server is not None and self._parts_size > self.server.max_message:
            self._fail(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        self._parts.append(frame.get_payload_as_bytes())
        if frame.fin:
            data, kind = b"".join(self._parts), self._parts_type
            self._parts = None
            if kind is _BINARY:
                self._push(data)
                return
            try:
                self._push(data.decode("utf-8"))
            except UnicodeDecodeError:
                self._fail(WSCloseCode.INVALID_TEXT, "invalid UTF-8")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        # Still in ``server.connections`` until its end is handled (``_run``): the server's
        # close waits for that, so the disconnect is recorded before the store closes.
        self._push(_GONE)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- inside ----------------------------------------------------------------------------

    def _on_close(self, transport: WSTransport, frame: WSFrame) -> None:
        """The peer's CLOSE: answered with its code (unless it answers ours), then the TCP
        connection is closed from this side (RFC 6455, 7.1.1)."""
        if not transport.is_close_frame_sent:
            code = frame.get_close_code()
            echo = code if int(code) >= 1000 else WSCloseCode.OK  # no code sent: 1000
            with contextlib.suppress(ValueError):
                transport.send_close(echo, _reason(""))
        transport.disconnect()

    def _fail(self, code: WSCloseCode, reason: str) -> None:
        """A protocol error: CLOSE with ``code``, cut off if the peer does not answer."""
        transport = self.transport
        if transport is None or transport.is_close_frame_sent:
            return
        self._parts = None
        transport.send_close(code, _reason(reason))
        asyncio.get_running_loop().call_later(
            CLOSE_TIMEOUT,
            lambda: transport.is_disconnected or transport.disconnect(graceful=False),
        )

    def _push(self, item: Any) -> None:
        if self._task is None:
            self._task = self._loop.create_task(self._run(item), context=self._context)
            return
        if self._queue is None:
            self._queue = deque()
        self._queue.append(item)
        if len(self._queue) >= QUEUE_HIGH and not self._paused_reading and self.transport:
            self._paused_reading = True
            self.transport.underlying_transport.pause_reading()

    async def _run(self, item: Any) -> None:
        """Handles ``item`` and whatever is queued behind it, then ends (no task is left
        waiting on an idle connection)."""
        while True:
            if item is _GONE:
                try:
                    await self.ended()
                except Exception:
                    log.exception("connection end handler failed")
                finally:
                    if self.server is not None:
                        self.server.connections.discard(self)
                    if not self.finished.done():
                        self.finished.set_result(None)
                self._task = self._queue = None
                return
            try:
                if item is None:
                    await self.opened()
                else:
                    await self.received(item)
            except Exception:
                log.exception("connection handler failed")
            queue = self._queue
            if not queue:
                self._task = None
                return
            item = queue.popleft()
            self._resume_reading(queue)

    def _resume_reading(self, queue: deque[Any]) -> None:
        if self._paused_reading and len(queue) <= QUEUE_LOW:
            self._paused_reading = False
            if self.transport is not None and not self.transport.is_disconnected:
                self.transport.underlying_transport.resume_reading()


def _reason(reason: str) -> str:
    """A CLOSE reason fits in 123 bytes (RFC 6455, 5.5)."""
    data = reason.encode()
    return reason if len(data) <= 123 else data[:123].decode("utf-8", errors="ignore")


class _Upgrade(asyncio.Protocol):
    """Reads one upgrade request, awaits the decision on it, then answers or hands over."""

    def __init__(self, server: WebSocketServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.lost = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] (uvloop's is no asyncio.Transport)
        self.server.pending.add(self)
        self.timer = asyncio.get_running_loop().call_later(OPEN_TIMEOUT, self._timed_out)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.task is not None:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._answer(Refuse(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, ""))
            return
        assert self.transport is not None
        self.transport.pause_reading()
        request = parse_head(bytes(self.buffer[:end])) if end <= MAX_HEAD_BYTES else None
        if request is None:
            self._answer(Refuse(http.HTTPStatus.BAD_REQUEST, "not an HTTP/1.1 request\n"))
            return
        self.task = asyncio.get_running_loop().create_task(self._decide(request))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._done()

    def _timed_out(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def _done(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server.pending.discard(self)

    def _answer(self, refusal: Refuse) -> None:
        self._done()
        if self.transport is None or self.lost:
            return
        headers = refusal.headers
        if self.server.server_header:
            headers = (("Server", self.server.server_header), *headers)
        self.transport.write(http_response(refusal.status, refusal.body, headers))
        self.transport.close()

    async def _decide(self, request: Request) -> None:
        assert self.transport is not None
        try:
            decision = await self.server.decide(request, self.transport)
        except Exception:
            log.exception("upgrade failed: %s %.100r", request.method, request.path)
            decision = Refuse(http.HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")
        if self.lost or self.server.closing:
            self._done()
            if not self.lost:
                self.transport.abort()
            return
        if isinstance(decision, Refuse):
            self._answer(decision)
            return
        self._done()
        self.server.hand_over(self.transport, decision, bytes(self.buffer))


class WebSocketServer:
    """The listening socket; ``decide`` rules on each upgrade (see the module docstring)."""

    def __init__(
        self,
        decide: Decide,
        *,
        server_header: str | None,
        ping_interval: float,
        ping_timeout: float,
        max_message: int,
    ) -> None:
        self.decide = decide
        self.server_header = server_header
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_message = max_message
        self.pending: set[_Upgrade] = set()
        self.connections: set[Connection] = set()
        self.closing = False
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, ssl: Any = None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Upgrade(self), host, port, ssl=ssl, reuse_address=True
        )

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        assert self._server is not None
        return tuple(self._server.sockets)

    def stop_accepting(self) -> None:
        """No new connections, no upgrade still being decided; open ones stay."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for upgrade in list(self.pending):
            if upgrade.transport is not None:
                upgrade.transport.abort()

    async def close(self, code: int = 1001, reason: str = "") -> None:
        """Close what is still open, and wait until each has ended."""
        self.stop_accepting()
        connections = list(self.connections)
        await asyncio.gather(*(c.close(code, reason) for c in connections))
        # Their ends handled too (a socket the peer closed just before is still here then).
        if connections:
            await asyncio.wait([c.finished for c in connections], timeout=CLOSE_TIMEOUT)

    def hand_over(self, transport: asyncio.Transport, accept: Accept, data: bytes) -> None:
        """Give the socket to ``picows``, replaying what was read: it parses the request
        again, answers 101 (or 400 if it is no valid upgrade) and calls the listener."""
        connection = accept.connection
        connection.server = self
        connection.subprotocol = accept.subprotocol
        headers = []
        if self.server_header:
            headers.append(("Server", self.server_header))
        if accept.subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", accept.subprotocol))
        response = picows.WSUpgradeResponse.create_101_response(headers)

        def listener_factory(_: picows.WSUpgradeRequest) -> picows.WSUpgradeResponseWithListener:
            return picows.WSUpgradeResponseWithListener(response, connection)

        protocol = WSProtocol(
            None,  # host and port: client side only
            None,  # path: client side only
            False,  # server side
            listener_factory,
            _PICOWS_LOG,
            True,  # disconnect when a listener callback raises
            OPEN_TIMEOUT,
            True,  # ping when idle, and cut off a peer that does not answer
            self.ping_interval,
            self.ping_timeout,
            picows.WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # answer PINGs
            self.max_message,  # per frame; messages are bounded in Connection
            None,  # extra headers: client side only
            4096,  # initial read buffer; OCPP frames are small, it grows when needed
        )
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        view = memoryview(data)
        while view:
            buffer = protocol.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]
            if transport.is_closing():
                return
        transport.resume_reading()
