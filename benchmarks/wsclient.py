"""A minimal RFC 6455 client as an asyncio ``Protocol``: just enough for the load client.

Why not the ``websockets`` library: the load runs on one core and must stay well below the
server's cost per call, so that the server, not the client, is what is measured. This does
the HTTP upgrade (offering ``ocpp1.6``, no extensions, so no permessage-deflate), writes
masked text frames, reads unmasked text frames, answers pings and close. No coroutines on the
hot path: the owner gets ``on_open``/``on_text``/``on_close`` callbacks.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import struct
from collections.abc import Callable
from typing import Any

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10
MAX_HANDSHAKE = 16 * 1024
MAX_MESSAGE = 1 << 20


def _mask(data: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte key repeated (RFC 6455, 5.3), via one big-int operation."""
    n = len(data)
    if not n:
        return b""
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")


def _frame(opcode: int, payload: bytes) -> bytes:
    key = random.getrandbits(32).to_bytes(4, "little")
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + _mask(payload, key)


class WsClient(asyncio.Protocol):
    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        *,
        subprotocol: str = "ocpp1.6",
        on_open: Callable[[], Any],
        on_text: Callable[[bytes], Any],
        on_close: Callable[[str], Any],
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.subprotocol = subprotocol
        self.on_open, self.on_text, self.on_close = on_open, on_text, on_close
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.closed = False
        self._buf = bytearray()
        self._fragments: list[bytes] = []
        self._close_reason = "eof"

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {self.subprotocol}\r\n"
            "\r\n"
        )
        transport.write(request.encode())

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self.open:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HANDSHAKE:
                    self._fail("handshake:too-long")
                return
            head = bytes(self._buf[:end]).decode("latin-1")
            del self._buf[: end + 4]
            status = head.split("\r\n", 1)[0].split(" ")
            if len(status) < 2 or status[1] != "101":
                self._fail(f"handshake:{status[1] if len(status) > 1 else '?'}")
                return
            self.open = True
            self.on_open()
            if self.closed:
                return
        self._frames()

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        self.open = False
        if not was_closed:
            self.on_close(self._close_reason if exc is None else f"lost:{type(exc).__name__}")

    # -- frames ----------------------------------------------------------------------------

    def _frames(self) -> None:
        buf = self._buf
        while len(buf) >= 2 and not self.closed:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = (buf[2] << 8) | buf[3]
                pos = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack_from("!Q", buf, 2)[0]
                pos = 10
            masked = b1 & 0x80
            if masked:
                pos += 4
            if n > MAX_MESSAGE:
                self._fail("frame:too-big")
                return
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos : pos + n])
            if masked:
                payload = _mask(payload, bytes(buf[pos - 4 : pos]))
            del buf[: pos + n]
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode in (_OP_TEXT, _OP_BINARY):
                if fin:
                    self.on_text(payload)
                else:
                    self._fragments = [payload]
            elif opcode == _OP_CONT:
                self._fragments.append(payload)
                if fin:
                    message = b"".join(self._fragments)
                    self._fragments = []
                    self.on_text(message)
            elif opcode == _OP_PING:
                self._write(_frame(_OP_PONG, payload))
            elif opcode == _OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self._close_reason = f"closed:{code}"
                self._write(_frame(_OP_CLOSE, payload[:2]))
                self._shutdown()
                return

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- API -------------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self._write(_frame(_OP_TEXT, text.encode()))

    def close(self, code: int = 1000) -> None:
        """Send a close frame; the server answers and closes the TCP connection."""
        if self.open and not self.closed:
            self._close_reason = "closed:client"
            self._write(_frame(_OP_CLOSE, struct.pack("!H", code)))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str) -> None:
        self._close_reason = reason
        if self.transport is not None:
            self.transport.abort()
