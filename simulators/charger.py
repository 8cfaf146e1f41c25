"""The I/O shell around `ChargerModel`: one WebSocket, one CALL in flight, timers.

It only moves frames and time: frames in go to `commands.handle()` or resolve the CALL
in flight; what the model wants to send goes through the `Outbox`, which survives
disconnects and reboots. Incoming CALLs are answered first and acted on after, so the
charger never waits for the CSMS inside a CSMS request.

Tests drive it as a library and wait on what it records:

    async with Charger(url, "SIM-1", sample_interval=0.1) as ch:   # connected and booted
        mark = ch.mark()
        ch.plug_in(1); ch.present_tag(1, "TAG-1")
        started = await ch.wait_for(EventKind.TRANSACTION_STARTED, since=mark)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from simulators import commands, security
from simulators.frames import Call, CallError, CallResult, ErrorCode, Unreadable, encode, parse
from simulators.model import ChargerModel
from simulators.net import (
    BAD_URL,
    SUBPROTOCOL,
    ConnectProblem,
    basic_auth,
    connect_problem,
    endpoint,
    ssl_context,
)
from simulators.outbox import TRANSACTION_ACTIONS, Outbox, Outgoing, payload_for
from simulators.status import ErrorCode as FaultCode

LOG = logging.getLogger("simulators.charger")


class EventKind(enum.StrEnum):
    """What a `Charger` records, for tests and logs to wait on."""

    CONNECTED = "connected"
    CONNECT_FAILED = "connect_failed"  # `detail`: what is wrong, in words
    GAVE_UP = "gave_up"  # no more connect attempts (`connect_attempts`, or a bad URL)
    DISCONNECTED = "disconnected"
    BOOTED = "booted"  # any BootNotification.conf; `answer["status"]` says which
    CALL_RECEIVED = "call_received"  # a CSMS CALL, after it was answered
    SENT = "sent"  # one of our CALLs went out
    ANSWERED = "answered"  # ... and got its CALLRESULT
    CALL_FAILED = "call_failed"  # ... or a CALLERROR / time-out, given up
    TRANSACTION_STARTED = "transaction_started"  # StartTransaction.conf, with the id
    TRANSACTION_STOPPED = "transaction_stopped"  # StopTransaction.conf
    REBOOTING = "rebooting"
    ANSWER_LOST = "answer_lost"  # `lose_answer()`: the link dropped as this answer arrived


@dataclass(frozen=True, slots=True, kw_only=True)
class SimEvent:
    kind: EventKind
    index: int  # position in `Charger.events`
    action: str | None = None
    connector_id: int | None = None
    transaction_id: int | None = None
    payload: dict[str, Any] | None = None  # what was sent / received
    answer: dict[str, Any] | None = None  # the reply to it
    detail: str | None = None


class ConnectFailed(ConnectionError):
    """The charger gave up connecting before it ever got in; `problem` says why."""

    def __init__(self, problem: ConnectProblem) -> None:
        super().__init__(problem.line())
        self.problem = problem


class Charger:
    """One simulated charge point on a real WebSocket."""

    def __init__(
        self,
        url: str,
        charger_id: str,
        *,
        password: str | None = None,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        connectors: int = 1,
        model: ChargerModel | None = None,
        call_timeout: float = 30.0,
        sample_interval: float | None = None,
        heartbeat_interval: float | None = None,
        boot_retry: float = 30.0,
        step_delay: float = 1.0,
        reboot_delay: float = 1.0,
        reconnect_delay: float = 1.0,
        retry_interval: float | None = None,
        connect_attempts: int | None = None,
        clock: Callable[[], datetime] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.url = url
        self.charger_id = charger_id
        self.model = model or ChargerModel(connectors=connectors)
        if password:
            self.model.config.set("AuthorizationKey", password)
        self.ca = ca
        self.cert, self.key = cert, key  # security profile 3: the client certificate
        self.model.security.common_name = charger_id  # the CN of its CSRs
        self.call_timeout = call_timeout  # seconds to wait for the CSMS's answer
        self.sample_interval = sample_interval  # overrides MeterValueSampleInterval (tests)
        self.heartbeat_interval = heartbeat_interval  # overrides the interval from boot
        self.boot_retry = boot_retry  # wait after Pending/Rejected when interval is 0
        self.step_delay = step_delay  # time between diagnostics / firmware statuses
        self.reboot_delay = reboot_delay  # how long a reboot keeps the charger away
        self.reconnect_delay = reconnect_delay  # first back-off after a failed connect
        self.retry_interval = retry_interval  # overrides TransactionMessageRetryInterval
        # Before the first connection: give up after this many failed connects, or at once
        # on a refusal no retry can fix (404, 401, not OCPP). None: keep trying (a real
        # charger). After a connection, reconnects always go on; a bad URL always ends it.
        self.connect_attempts = connect_attempts
        self.gave_up: ConnectProblem | None = None
        self.now = clock or (lambda: datetime.now(UTC))
        self.log = logger or LOG
        self.outbox = Outbox()  # everything we send, in order; kept while offline
        self.events: list[SimEvent] = []  # what happened, in order
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._ws: ClientConnection | None = None  # the open socket, if any
        self._in_flight: tuple[str, asyncio.Future[CallResult | CallError]] | None = None
        self._in_flight_action: str | None = None  # the action of the CALL in flight
        self._lose: dict[str, int] = {}  # action -> answers still to lose (`lose_answer`)
        self._wake = asyncio.Event()  # something was pushed into the outbox
        self._timers = asyncio.Event()  # a timer-related configuration key changed
        self._sampling = asyncio.Event()  # the same, for the meter sample clock
        self._online = asyncio.Event()  # cleared by go_offline(): do not reconnect
        self._online.set()
        self._reboot: bool | None = None  # a reboot is under way (True: hard)
        self._closing = False
        self._tasks: set[asyncio.Task[None]] = set()  # background work to cancel on stop
        self._tx_connector: dict[int, int] = {}  # transaction ref -> connector id
        self._ids = itertools.count(1)

    # ----- life cycle ----------------------------------------------------------------

    async def __aenter__(self) -> Charger:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, *, wait_boot: bool = True, timeout: float = 10.0) -> None:
        """Connect and, unless told not to, wait until BootNotification is Accepted.

        Raises `ConnectFailed` as soon as the charger gives up connecting."""
        self._spawn(self._run())
        self._spawn(self._clock_loop())
        if wait_boot:
            await self.wait_until(
                lambda: self.model.registration == "Accepted" or self.gave_up is not None,
                timeout=timeout,
            )
            if self.gave_up is not None:
                raise ConnectFailed(self.gave_up)

    async def stop(self) -> None:
        """Close the socket and stop every task (queued messages are abandoned)."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, fut in self._waiters:
            if not fut.done():
                fut.cancel()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----- waiting for things (for tests and scenarios) ------------------------------

    def mark(self) -> int:
        """The index the next event will get: pass it as `since` to wait for what follows."""
        return len(self.events)

    def find(self, kind: EventKind, *, since: int = 0, **match: Any) -> SimEvent | None:
        """The first event of `kind` at or after `since` whose fields equal `match`."""
        for event in self.events[since:]:
            if event.kind == kind and all(getattr(event, k) == v for k, v in match.items()):
                return event
        return None

    async def wait_for(
        self,
        kind: EventKind,
        *,
        since: int = 0,
        timeout: float = 10.0,
        **match: Any,
    ) -> SimEvent:
        """Wait (bounded) for an event like `find()` would return."""
        await self.wait_until(
            lambda: self.find(kind, since=since, **match) is not None, timeout=timeout
        )
        found = self.find(kind, since=since, **match)
        assert found is not None
        return found

    async def wait_until(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait (bounded) until `predicate()` holds; re-checked after every recorded change."""
        if predicate():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything queued has been sent and answered."""
        await self.wait_until(
            lambda: len(self.outbox) == 0 and self._in_flight is None, timeout=timeout
        )

    def _emit(self, kind: EventKind, **fields: Any) -> SimEvent:
        event = SimEvent(kind=kind, index=len(self.events), **fields)
        self.events.append(event)
        self._changed()
        return event

    def _changed(self) -> None:
        for predicate, fut in list(self._waiters):
            if not fut.done() and predicate():
                fut.set_result(None)

    # ----- the driver's actions (pushed through the outbox) --------------------------

    def plug_in(self, connector_id: int = 1) -> None:
        self._push(self.model.plug_in(connector_id, self.now()))

    def unplug(self, connector_id: int = 1) -> None:
        self._push(self.model.unplug(connector_id, self.now()))

    def present_tag(self, connector_id: int, id_tag: str) -> None:
        self._push(
            self.model.present_tag(connector_id, id_tag, self.now(), online=self._accepted_online)
        )

    def stop_transaction(
        self, connector_id: int = 1, reason: str = "Local", id_tag: str | None = None
    ) -> None:
        self._push(self.model.stop_transaction(connector_id, reason, self.now(), id_tag=id_tag))

    def fault(
        self,
        connector_id: int,
        error_code: FaultCode = FaultCode.GROUND_FAILURE,
        info: str | None = None,
    ) -> None:
        self._push(self.model.fault(connector_id, error_code, self.now(), info=info))

    def recover(self, connector_id: int) -> None:
        self._push(self.model.recover(connector_id, self.now()))

    # The security extension's charger-initiated messages (Security Whitepaper 5).

    def security_event(self, kind: str, tech_info: str | None = None) -> None:
        """SecurityEventNotification (N01), e.g. ``TamperDetectionActivated``."""
        self._push([security.security_event(kind, self.now(), tech_info)])

    def request_certificate(self) -> None:
        """SignCertificate with a new key pair's CSR (A03); CertificateSigned completes it."""
        self._push([security.sign_certificate(self.model)])

    def log_status(self, status: str, request_id: int | None = None) -> None:
        """LogStatusNotification (N02)."""
        self._push([security.log_status(self.model, status, request_id)])

    def signed_firmware_status(self, status: str, request_id: int | None = None) -> None:
        """SignedFirmwareStatusNotification (L01)."""
        self._push([security.signed_firmware_status(self.model, status, request_id)])

    async def go_offline(self) -> None:
        """Lose the connection and stay away until `go_online()`; charging goes on."""
        self._online.clear()
        if self._ws is not None:
            await self._ws.close()
        await self.wait_until(lambda: self._ws is None, timeout=self.call_timeout)

    def go_online(self) -> None:
        self._online.set()

    def lose_answer(self, action: str, count: int = 1) -> None:
        """Fault injection: the next `count` answers to our `action` CALLs never arrive.

        The link drops the moment such an answer comes in, before the charger reads it:
        the CSMS has handled the CALL, the charger cannot know. The message stays at the
        head of the outbox and is sent again after the reconnect (4.8), as a real charger
        whose connection died mid-exchange would do. Recorded as `ANSWER_LOST`."""
        self._lose[action] = self._lose.get(action, 0) + count

    @property
    def _accepted_online(self) -> bool:
        return self._ws is not None and self.model.registration == "Accepted"

    def _push(self, messages: list[Outgoing]) -> None:
        for message in messages:
            self.outbox.push(message, online=self._accepted_online)
        if messages:
            self._wake.set()
            self._changed()

    # ----- connection ----------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.reconnect_delay
        failures = 0  # failed connects before the first connection
        connected_once = False
        while not self._closing:
            await self._online.wait()
            try:
                ws = await self._connect()
            except (OSError, InvalidHandshake, InvalidURI, ValueError, TimeoutError) as exc:
                problem = connect_problem(
                    exc, self.url, self.charger_id, password=bool(self._password())
                )
                self._emit(EventKind.CONNECT_FAILED, detail=problem.message)
                failures += 1
                limit = None if connected_once else self.connect_attempts
                if problem.kind == BAD_URL or (
                    limit is not None and (problem.final or failures >= limit)
                ):
                    self.gave_up = problem
                    self._emit(EventKind.GAVE_UP, detail=problem.message)
                    return  # the one who started us says it (`start()` raises)
                if limit is not None:
                    self.log.info(
                        "%s: connect failed (attempt %d of %d, again in %g s): %s",
                        self.charger_id,
                        failures,
                        limit,
                        backoff,
                        problem.line(),
                    )
                else:
                    self.log.warning("%s: connect failed: %s", self.charger_id, problem.line())
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = self.reconnect_delay
            connected_once = True
            try:
                await self._serve(ws)
            finally:
                await ws.close()
                self._ws = None
                self._in_flight = None
                self._emit(EventKind.DISCONNECTED)
                self.log.info("%s: disconnected", self.charger_id)
            if self._reboot is not None and not self._closing:
                await asyncio.sleep(self.reboot_delay)
                self.outbox.forget_volatile()
                self.model.reboot(self.now())
                self._reboot = None

    def _password(self) -> str:
        return self.model.config.get_text("AuthorizationKey")

    async def _connect(self) -> ClientConnection:
        key = self._password()
        headers = basic_auth(self.charger_id, key) if key else {}
        ws = await connect(
            endpoint(self.url, self.charger_id),
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            additional_headers=headers,
            ssl=ssl_context(self.url, self.ca, self.cert, self.key),
            open_timeout=self.call_timeout,
        )
        if ws.subprotocol != SUBPROTOCOL:  # OCPP-J 3.1.2: no agreed version, no OCPP
            await ws.close()
            raise InvalidHandshake(f"server did not agree to {SUBPROTOCOL}")
        self.log.info("%s: connected to %s", self.charger_id, self.url)
        return ws

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._emit(EventKind.CONNECTED)
        reader = asyncio.create_task(self._read_loop(ws))
        driver = asyncio.create_task(self._drive())
        try:
            await asyncio.wait({reader, driver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, driver):
                task.cancel()
            await asyncio.gather(reader, driver, return_exceptions=True)
        for task in (reader, driver):
            if (
                not task.cancelled()
                and task.exception()
                and not isinstance(task.exception(), ConnectionClosed)
            ):
                self.log.error("%s: %r", self.charger_id, task.exception())

    async def _drive(self) -> None:
        """Boot if this connection needs it (4.2), then heartbeats and the outbox."""
        if self.model.registration != "Accepted":
            await self._boot()
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            await self._send_loop()
        finally:
            heartbeat.cancel()

    async def _boot(self) -> None:
        """BootNotification until Accepted; Pending/Rejected retry after the interval (4.2)."""
        while True:
            message = self.model.boot_notification()
            try:
                reply = await self._call(message.action, message.payload)
            except TimeoutError:
                await asyncio.sleep(self.boot_retry)
                continue
            if isinstance(reply, CallError):
                await asyncio.sleep(self.boot_retry)
                continue
            follow = self.model.on_boot(reply.payload, self.now())
            self._emit(
                EventKind.BOOTED,
                action=message.action,
                payload=message.payload,
                answer=reply.payload,
            )
            if self.model.registration == "Accepted":
                self._push(follow)
                return
            retry = float(reply.payload.get("interval") or 0) or self.boot_retry
            # Shown also with --quiet: otherwise a charger the CSMS keeps Pending looks hung.
            self.log.warning(
                "%s: BootNotification answered %s; asking again in %g s (the CSMS decides:"
                " the charger's registrationPolicy)",
                self.charger_id,
                self.model.registration,
                retry,
            )
            await asyncio.sleep(retry)

    async def _send_loop(self) -> None:
        attempts = 0
        while True:
            message = self.outbox.head()
            if message is None or self._reboot is not None:
                self._wake.clear()
                await self._wake.wait()
                continue
            payload = payload_for(message, self.model.tx_ids)
            attempts += 1
            try:
                reply: CallResult | CallError | None = await self._call(message.action, payload)
            except TimeoutError:
                reply = None
            if isinstance(reply, CallResult):
                attempts = 0
                self.outbox.pop()
                self._answered(message, payload, reply.payload)
                continue
            limit = self.model.config.get_int("TransactionMessageAttempts")
            if message.action in TRANSACTION_ACTIONS and attempts < limit:
                interval = self.retry_interval
                if interval is None:
                    interval = self.model.config.get_int("TransactionMessageRetryInterval")
                await asyncio.sleep(interval * attempts)  # 4.8: back off, then retry
                continue
            attempts = 0
            self.outbox.pop()
            detail = f"{reply.code}: {reply.description}" if reply else "time-out"
            self._emit(EventKind.CALL_FAILED, action=message.action, payload=payload, detail=detail)

    def _answered(self, message: Outgoing, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        now = self.now()
        follow = self.model.on_result(message, answer, now)
        self._emit(EventKind.ANSWERED, action=message.action, payload=payload, answer=answer)
        if message.action == "StartTransaction" and message.tx_ref is not None:
            connector_id = int(payload["connectorId"])
            self._tx_connector[message.tx_ref] = connector_id
            self._emit(
                EventKind.TRANSACTION_STARTED,
                connector_id=connector_id,
                transaction_id=int(answer["transactionId"]),
                payload=payload,
                answer=answer,
            )
        elif message.action == "StopTransaction" and message.tx_ref is not None:
            self._emit(
                EventKind.TRANSACTION_STOPPED,
                connector_id=self._tx_connector.get(message.tx_ref),
                transaction_id=payload.get("transactionId"),
                payload=payload,
                answer=answer,
            )
        elif message.action == "BootNotification":
            self._emit(EventKind.BOOTED, action=message.action, payload=payload, answer=answer)
        self._push(follow)

    async def _call(self, action: str, payload: dict[str, Any]) -> CallResult | CallError:
        """Send one CALL and wait (bounded) for its answer; the reader resolves it."""
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected")
        unique_id = f"{self.charger_id}-{next(self._ids)}"
        fut: asyncio.Future[CallResult | CallError] = asyncio.get_running_loop().create_future()
        self._in_flight = (unique_id, fut)
        self._in_flight_action = action
        text = encode(Call(unique_id=unique_id, action=action, payload=payload))
        try:
            self.log.info("%s > %s", self.charger_id, text)
            await ws.send(text)
            self._emit(EventKind.SENT, action=action, payload=payload)
            return await asyncio.wait_for(fut, self.call_timeout)
        finally:
            self._in_flight = None
            self._in_flight_action = None
            self._changed()

    async def _read_loop(self, ws: ClientConnection) -> None:
        async for raw in ws:
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            self.log.info("%s < %s", self.charger_id, text)
            frame = parse(text)
            if isinstance(frame, Call):
                await self._answer(ws, frame)
            elif isinstance(frame, CallResult | CallError):
                action = self._in_flight_action
                if (
                    self._in_flight is not None
                    and self._in_flight[0] == frame.unique_id
                    and action is not None
                    and self._lose.get(action, 0) > 0
                ):
                    self._lose[action] -= 1
                    self._emit(EventKind.ANSWER_LOST, action=action, detail=frame.unique_id)
                    self.log.info("%s: losing the answer to %s", self.charger_id, action)
                    await ws.close()
                    return
                if self._in_flight is not None and self._in_flight[0] == frame.unique_id:
                    if not self._in_flight[1].done():
                        self._in_flight[1].set_result(frame)
                else:
                    self.log.warning("%s: answer to no CALL in flight: %s", self.charger_id, text)
            elif isinstance(frame, Unreadable) and frame.unique_id is not None:
                error = CallError(
                    unique_id=frame.unique_id,
                    code=ErrorCode.FORMATION_VIOLATION,
                    description=frame.reason,
                )
                await self._send_frame(ws, encode(error))

    async def _answer(self, ws: ClientConnection, call: Call) -> None:
        """Answer a CSMS CALL at once; queue its consequences behind the answer."""
        try:
            reply = commands.handle(self.model, call.action, call.payload, self.now(), online=True)
        except Exception as exc:  # a bug of ours: tell the CSMS, keep the connection
            self.log.exception("%s: handling %s failed", self.charger_id, call.action)
            reply = commands.Reply(error=(ErrorCode.INTERNAL_ERROR, repr(exc)))
        if reply.error is not None:
            frame: CallResult | CallError = CallError(
                unique_id=call.unique_id, code=reply.error[0], description=reply.error[1]
            )
        else:
            frame = CallResult(unique_id=call.unique_id, payload=reply.payload or {})
        await self._send_frame(ws, encode(frame))
        self._emit(
            EventKind.CALL_RECEIVED,
            action=call.action,
            payload=call.payload,
            answer=reply.payload,
            detail=reply.error[0] if reply.error else None,
        )
        if reply.effect is not None:
            self._apply(reply.effect)
        self._push(reply.then)

    async def _send_frame(self, ws: ClientConnection, text: str) -> None:
        self.log.info("%s > %s", self.charger_id, text)
        await ws.send(text)

    # ----- effects that take time ----------------------------------------------------

    def _apply(self, effect: commands.Effect) -> None:
        if isinstance(effect, commands.Reboot):
            if effect.hard:
                self._reboot = True  # 5.14: no graceful stop; queued Stops go after boot
            self._spawn(self._do_reboot(hard=effect.hard))
        elif isinstance(effect, commands.UploadDiagnostics):
            self._spawn(self._do_diagnostics(effect.statuses))
        elif isinstance(effect, commands.InstallFirmware):
            self._spawn(self._do_firmware(effect))
        elif isinstance(effect, commands.UploadLog):
            self._spawn(self._do_log_upload(effect))
        elif isinstance(effect, commands.InstallSignedFirmware):
            self._spawn(self._do_signed_firmware(effect))
        elif isinstance(effect, commands.ConfigChanged):
            self._timers.set()
            self._sampling.set()

    async def _do_reboot(self, *, hard: bool) -> None:
        """Reset (5.14): Soft sends its StopTransactions first, Hard just goes."""
        if not hard:
            with contextlib.suppress(TimeoutError):  # still queued: sent after the reboot
                await self.drain(timeout=self.call_timeout)
        self._reboot = hard  # from here on the sender starts nothing new
        self._emit(EventKind.REBOOTING, detail="hard" if hard else "soft")
        with contextlib.suppress(TimeoutError):  # let the exchange in flight finish
            await self.wait_until(lambda: self._in_flight is None, timeout=2.0)
        if self._ws is not None:
            await self._ws.close()

    async def _do_diagnostics(self, statuses: tuple[str, ...]) -> None:
        for status in statuses:
            await asyncio.sleep(self.step_delay)
            self._push([commands.diagnostics_status(self.model, status)])

    async def _do_firmware(self, effect: commands.InstallFirmware) -> None:
        delay = (effect.retrieve_at - self.now()).total_seconds()
        await asyncio.sleep(max(0.0, delay))
        for status in ("Downloading", "Downloaded", "Installing", "Installed"):
            self._push([commands.firmware_status(self.model, status, effect.location)])
            await asyncio.sleep(self.step_delay)
        for tx in self.model.transactions():
            self.stop_transaction(tx.connector_id, "Reboot")
        await self._do_reboot(hard=False)

    async def _do_log_upload(self, effect: commands.UploadLog) -> None:
        for status in effect.statuses:
            await asyncio.sleep(self.step_delay)
            self._push([security.log_status(self.model, status, effect.request_id)])

    async def _do_signed_firmware(self, effect: commands.InstallSignedFirmware) -> None:
        """L01: download, verify the signature, install, report each step, reboot."""
        delay = (effect.retrieve_at - self.now()).total_seconds()
        await asyncio.sleep(max(0.0, delay))
        statuses = ("Downloading", "Downloaded", "SignatureVerified", "Installing")
        for status in statuses:
            if self.model.security.firmware_request != effect.request_id:
                return  # replaced by a newer SignedUpdateFirmware (AcceptedCanceled)
            self._push([security.signed_firmware_status(self.model, status, effect.request_id)])
            await asyncio.sleep(self.step_delay)
        self._push(
            [
                security.signed_firmware_status(self.model, "Installed", effect.request_id),
                security.security_event("FirmwareUpdated", self.now(), effect.location),
            ]
        )
        self.model.security.firmware_request = None
        self.model.security.firmware_status = "Idle"

    # ----- timers --------------------------------------------------------------------

    def _heartbeat_seconds(self) -> float:
        if self.heartbeat_interval is not None:
            return self.heartbeat_interval
        return float(self.model.config.get_int("HeartbeatInterval"))

    async def _heartbeat_loop(self) -> None:
        """Heartbeat at the interval the CSMS gave (4.6); 0 means none."""
        while True:
            interval = self._heartbeat_seconds()
            self._timers.clear()
            try:
                await asyncio.wait_for(self._timers.wait(), interval if interval > 0 else None)
                continue  # the interval changed: start over with the new one
            except TimeoutError:
                pass
            self._push([Outgoing(action="Heartbeat")])

    def _sample_seconds(self) -> float:
        if self.sample_interval is not None:
            return self.sample_interval
        return float(self.model.config.get_int("MeterValueSampleInterval"))

    async def _clock_loop(self) -> None:
        """Meter samples at MeterValueSampleInterval (3.16.1), reservation expiry: also offline.

        The next sample is due one interval after the last; a changed interval wakes the
        loop, so it takes effect at once (60 s -> 1 s samples within a second, not after
        the 60 s already scheduled)."""
        loop = asyncio.get_running_loop()
        last_sample = loop.time()
        while True:
            interval = self._sample_seconds()
            wait = 1.0
            if interval > 0:
                wait = min(1.0, max(0.0, last_sample + interval - loop.time()))
            self._sampling.clear()
            try:
                await asyncio.wait_for(self._sampling.wait(), wait)
                continue  # the interval changed: schedule on the new one
            except TimeoutError:
                pass
            now = self.now()
            messages = self.model.tick(now)
            interval = self._sample_seconds()
            if interval > 0 and loop.time() >= last_sample + interval:
                last_sample = loop.time()
                messages += self.model.sample(now)
            self._push(messages)
