"""The OCPP-J 1.6 WebSocket endpoint: handshake, charger authentication, the frame loop.

Handshake (OCPP-J 1.6, 3.1): the path is ``/ocpp/{chargerId}`` (URL-decoded, 1-48
characters); an unregistered id gets HTTP 404 unless ``allow_unknown_chargers``; a charger
with a password must send HTTP Basic auth with its id as user name (Security Whitepaper,
profile 1; profile 2 when TLS is configured), else HTTP 401; a client certificate (profile 3)
and the charger's registered profile are checked in ``handshake_security.py`` (401/403).
None of these reaches OCPP handling.
Subprotocol ``ocpp1.6`` is negotiated; a client that offers none we speak gets the handshake
completed without the header and is then closed (3.1.2).

Frames are handled one at a time per connection: parse (``frames.py``), hand the CALL to the
hub (which commits before it returns), write the reply. Nothing here raises at the peer: a
bad frame is a CALLERROR and the socket stays up (4.2.3).

The WebSocket layer is ``csms/transport.py`` (``picows``): the upgrade is decided here by a
coroutine (store lookup, scrypt off the loop), the frames then cost no task per message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from csms import handshake_security as security
from csms.config import OcppSettings
from csms.hub import INTERNAL_ERROR, ChargerHub
from csms.logs import set_log_context
from csms.metrics import OK, Metrics
from csms.passwords import VerifiedCache, verify_password
from csms.protocol.core import Reject
from csms.protocol.frames import (
    Call,
    CallError,
    CallResult,
    FrameError,
    encode_call_error,
    encode_call_result,
    parse_frame,
)
from csms.protocol.timefmt import format_timestamp
from csms.transport import Accept, Connection, Refuse, Request, WebSocketServer
from storage.records import ChargerRegistration

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
MAX_ID_LENGTH = 48
PING_INTERVAL = 20.0  # with PING_TIMEOUT: a dead peer is noticed within 40 s
PING_TIMEOUT = 20.0
MAX_FRAME_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the handshake proved a connection to be (kept on the connection object)."""

    charger_id: str
    registration: ChargerRegistration | None  # None: unknown, registered on connect
    security_profile: int
    remote_address: str | None


def charger_id_from_path(path: str) -> str | None:
    """``/ocpp/{chargerId}`` -> the id, URL-decoded; None when the path is not one."""
    parts = urlsplit(path).path.split("/")
    if len(parts) != 3 or parts[0] != "" or parts[1] != "ocpp":
        return None
    charger_id = unquote(parts[2])
    return charger_id if valid_charger_id(charger_id) else None


# Dot-segments: URL clients drop them from a path (RFC 3986, 5.2.4), so no URL names them.
DOT_SEGMENTS = frozenset({".", ".."})


def valid_charger_id(charger_id: str) -> bool:
    """1-48 characters, no '/', no control characters, not '.' or '..': what a path segment
    can carry."""
    return (
        1 <= len(charger_id) <= MAX_ID_LENGTH
        and charger_id not in DOT_SEGMENTS
        and not any(ord(c) < 0x20 or c in "/\x7f" for c in charger_id)
    )


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """The (user, password) of an HTTP Basic ``Authorization`` value; None if it is none."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class OcppServer:
    def __init__(
        self, hub: ChargerHub, settings: OcppSettings, metrics: Metrics | None = None
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.metrics = metrics
        self._verified = VerifiedCache()
        self._server: WebSocketServer | None = None
        # Told of each CALL answered with a result, once the answer is out (e.g. a signed
        # certificate follows an accepted SignCertificate: csms/certificates.py).
        self.after_reply: list[Callable[[str, Call, Any], Awaitable[None]]] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        scheme = "wss" if self.settings.tls else "ws"
        return f"{scheme}://{self.settings.host}:{self.port}/ocpp"

    async def start(self) -> None:
        ssl_context = security.server_context(self.settings)
        # No compression (OCPP-J 5.1; it would also nearly triple memory per idle socket):
        # none is offered back, whatever the client asks.
        self._server = WebSocketServer(
            self._decide,
            server_header="chargehook",
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            max_message=MAX_FRAME_BYTES,
        )
        await self._server.start(self.settings.host, self.settings.port, ssl=ssl_context)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.stop_accepting()
        await self.hub.close_all("shutdown")
        await self._server.close(1001, "server shutting down")

    def forget_password(self, charger_id: str) -> None:
        self._verified.forget(charger_id)

    # -- handshake ------------------------------------------------------------------------

    async def _decide(self, request: Request, transport: asyncio.BaseTransport) -> Refuse | Accept:
        peer = _peer(transport.get_extra_info("peername"))
        charger_id = charger_id_from_path(request.path)
        if charger_id is None:
            log.info(
                "refused upgrade from %s: HTTP 404, path %.100r is not /ocpp/{chargerId}",
                peer,
                request.path,
            )
            return Refuse(http.HTTPStatus.NOT_FOUND, "expected /ocpp/{chargerId}\n")
        registration = await self.hub.store.get_registration(charger_id)
        if registration is None and not self.settings.allow_unknown_chargers:
            log.info("refused charger %r from %s: HTTP 404, not registered", charger_id, peer)
            return Refuse(http.HTTPStatus.NOT_FOUND, "unknown charger\n")
        # Profile 3: a client certificate is the credential (csms/handshake_security.py).
        names = security.client_common_names(transport)
        denied = security.certificate_refusal(charger_id, names)
        basic = False
        if denied is None and names is None and registration and registration.password_hash:
            refusal = await self._authenticate(charger_id, registration.password_hash, request)
            if refusal is not None:
                log.info("refused charger %r from %s: HTTP 401, %s", charger_id, peer, refusal)
                return Refuse(
                    http.HTTPStatus.UNAUTHORIZED,
                    "unauthorized\n",
                    (("WWW-Authenticate", 'Basic realm="chargehook", charset="UTF-8"'),),
                )
            basic = True
        profile = security.achieved_profile(
            certificate=names is not None, basic=basic, tls=self.settings.tls
        )
        denied = denied or security.profile_refusal(registration, profile)
        if denied is not None:
            log.info(
                "refused charger %r from %s: HTTP %d, %s",
                charger_id,
                peer,
                denied.status,
                denied.reason,
            )
            return Refuse(denied.status, f"{denied.status.phrase.lower()}\n")
        # An empty offer is no offer: the handshake completes without the header and the
        # socket is then closed, as for any unsupported offer (OCPP-J 1.6, 3.1.2).
        offered = {
            token.strip()
            for value in request.get_all("Sec-WebSocket-Protocol")
            for token in value.split(",")
        }
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
        identity = Identity(charger_id, registration, profile, peer)
        return Accept(_Session(self, identity), subprotocol)

    async def _authenticate(self, charger_id: str, stored: str, request: Request) -> str | None:
        """None when the Basic credentials are the charger's; else why not, for the log
        (an operator tells a charger with no password set from one with the wrong one)."""
        header = request.get("Authorization")
        if not header:
            return "no Authorization header (no password sent)"
        credentials = basic_credentials(header)
        if credentials is None:
            return "Authorization is not valid HTTP Basic"
        if credentials[0] != charger_id:
            return f"Basic user name {credentials[0][:48]!r} is not the charger id"
        password = credentials[1]
        if self._verified.known(charger_id, stored, password):
            return None
        # scrypt takes tens of ms: keep it off the event loop.
        if await asyncio.to_thread(verify_password, password, stored):
            self._verified.add(charger_id, stored, password)
            return None
        return "wrong password"

    # -- frames ---------------------------------------------------------------------------

    async def on_message(self, session: _Session, message: str | bytes | Call) -> None:
        received = perf_counter()
        frame = message if isinstance(message, Call) else parse_frame(message)
        if isinstance(frame, Call):
            answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            try:
                if self.hub.answer_now(session.charger_id, frame, answered.set_result):
                    reply = await answered
                else:
                    reply = await self.hub.handle_call(session.charger_id, frame)
            except Exception:
                log.exception("%s: failed to handle %s", session.charger_id, frame.action)
                reply = INTERNAL_ERROR
            # A reply lost with its socket is re-sent by the charger (OCPP 1.6, 4.8).
            text, result = encode_reply(frame.unique_id, reply)
            session.send_text(text)
            if result == OK:
                for hook in self.after_reply:
                    await hook(session.charger_id, frame, reply)
            if self.metrics is not None:
                self.metrics.ocpp_call(frame.action, result, perf_counter() - received)
            await session.writable()  # the next frame waits while the peer is not reading
        elif isinstance(frame, FrameError):
            log.warning(
                "%s: bad frame (%s: %s): %.200r",
                session.charger_id,
                frame.error_code,
                frame.description,
                message,
            )
            answer = None
            if frame.unique_id is not None:
                answer = encode_call_error(frame.unique_id, frame.error_code, frame.description)
            if self.hub.tracing:  # parsed again for the event only when someone wants it
                frames: list[tuple[str, Any]] = [("in", _readable(message))]
                if answer is not None:
                    frames.append(("out", _readable(answer)))
                await self.hub.trace(session.charger_id, frames)
            if answer is not None:
                await session.send(answer)
            if self.metrics is not None:
                self.metrics.bad_frame(frame.error_code)
        elif isinstance(frame, CallResult | CallError):
            if self.hub.tracing:
                await self.hub.trace(session.charger_id, [("in", _readable(message))])
            await self.hub.on_charger_answer(session.charger_id, frame)


class _Session(Connection):
    """One charger's socket: the hub's handle on it (``send``, ``close``), and its life from
    the upgrade (attached to the hub) to its end (detached)."""

    def __init__(self, server: OcppServer, identity: Identity) -> None:
        super().__init__()
        self.ocpp = server
        self.identity = identity
        self.charger_id = identity.charger_id
        self.closed_by_server = False
        self.attached = False

    async def send(self, text: str) -> None:
        # A message lost with its socket: a reply is re-sent by the charger (OCPP 1.6, 4.8),
        # a CALL of ours times out in the dispatcher.
        self.send_text(text)
        await self.writable()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_by_server = True
        await super().close(code, reason)

    async def opened(self) -> None:
        identity, hub = self.identity, self.ocpp.hub
        charger_id = self.charger_id
        set_log_context(chargerId=charger_id)  # every line logged for this charger carries it
        if self.subprotocol != SUBPROTOCOL:
            # OCPP-J 1.6, 3.1.2: complete the handshake without the header, then close.
            log.info("%s: closing, no supported subprotocol offered", charger_id)
            await self.close(1002, "subprotocol ocpp1.6 required")
            return
        new_registration = None
        if identity.registration is None:
            stamp = format_timestamp(hub.clock())
            new_registration = ChargerRegistration(
                id=charger_id,
                password_hash=None,
                description="",
                registration_policy="Accepted",
                created_at=stamp,
                updated_at=stamp,
                # One that came with a client certificate keeps needing one.
                security_profile=3 if identity.security_profile == 3 else 0,
            )
        self.attached = True
        await hub.attach(
            charger_id,
            self,
            remote_address=identity.remote_address,
            security_profile=identity.security_profile,
            registration=new_registration,
        )
        log.info("%s: connected from %s", charger_id, identity.remote_address)

    async def received(self, message: str | bytes | Call) -> None:
        if self.attached:
            await self.ocpp.on_message(self, message)

    def take(self, message: str | bytes) -> Any:
        """A CALL the hub can answer without awaiting (``ChargerHub.answer_now``) is handled
        with no task: the reply goes out from the commit's done callback, then the next
        message runs. Else the parsed CALL (or the message) goes the awaiting way."""
        ocpp = self.ocpp
        if not self.attached or ocpp.after_reply or self._writable is not None:
            return message
        frame = parse_frame(message)
        if not isinstance(frame, Call):
            return message
        received = perf_counter()
        try:
            taken = ocpp.hub.answer_now(
                self.charger_id, frame, lambda reply: self._answered(frame, reply, received)
            )
        except Exception:
            log.exception("%s: failed to handle %s", self.charger_id, frame.action)
            taken = False
        return None if taken else frame

    def _answered(self, call: Call, reply: Any, received: float) -> None:
        try:
            # A reply lost with its socket is re-sent by the charger (OCPP 1.6, 4.8).
            text, result = encode_reply(call.unique_id, reply)
            self.send_text(text)
            metrics = self.ocpp.metrics
            if metrics is not None:
                metrics.ocpp_call(call.action, result, perf_counter() - received)
        except Exception:
            log.exception("%s: failed to answer %s", self.charger_id, call.action)
        finally:
            self.resume()

    async def ended(self) -> None:
        if not self.attached:
            return
        reason, code = self.close_info()
        log.info("%s: disconnected (%s, code %s)", self.charger_id, reason, code)
        await self.ocpp.hub.detach(self.charger_id, self, reason=reason, close_code=code)


def encode_reply(unique_id: str, reply: Any) -> tuple[str, str]:
    """The frame answering a CALL, and its result for the metrics: OK or the error code."""
    if isinstance(reply, Reject):
        text = encode_call_error(unique_id, reply.error_code, reply.description, reply.details)
        return text, reply.error_code
    return encode_call_result(unique_id, reply), OK


def _readable(message: str | bytes) -> Any:
    """A frame as an event shows it: parsed JSON, else the text received."""
    text = message.decode("utf-8", errors="replace") if isinstance(message, bytes) else message
    try:
        return orjson.loads(text)
    except ValueError:
        return text


def _peer(address: Any) -> str | None:
    if isinstance(address, tuple) and address:
        return f"{address[0]}:{address[1]}"
    return None
