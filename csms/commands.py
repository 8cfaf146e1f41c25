"""Sending commands to chargers: a per-charger outbound queue, one CALL in flight.

OCPP-J 1.6, 4.1.1: at most one outstanding CALL per direction. Commands to one charger go
out in the order the API received them; each waits ``ocpp.call_timeout`` for its answer.
A command is stored (with its ``.requested`` event) before it is sent. When a charger
disconnects, its in-flight command and the commands queued behind it fail; commands the
caller asked to queue for an offline charger (``?queue=true``) wait for the next connection,
also across restarts. A command still waiting in its queue can be cancelled (``cancel``): it
fails with error ``cancelled`` and is never sent.

On a cluster (DESIGN 8) the commands table is the queue: a command stored on any node is
sent by the node that holds its charger's socket, which pulls the charger's open commands in
the order they were stored, when told (NOTIFY), when the charger connects, and on a periodic
sweep (a lost notification delays, never loses). ``?wait`` on another node wakes on the
outcome's notification, or finds it in the table.

This module never runs inside the handling of a charger's own message: answers arrive through
``on_answer`` (called by the frame loop) and only resolve a future, so a charger's socket is
never blocked waiting for itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from csms.hub import ChargerHub
from csms.periodic import every
from csms.protocol import commands as logic
from csms.protocol.core import Outcome
from csms.protocol.frames import CallError, CallResult, encode_call
from csms.protocol.schemas import validate_response
from csms.protocol.timefmt import format_timestamp
from storage.records import Command

log = logging.getLogger(__name__)


class CommandRefused(Exception):
    """The API must refuse the command (e.g. 409: charger offline, or Pending)."""


class UnknownCommand(LookupError):
    """No command has this id (404)."""


# The error of a command cancelled before it was sent; the shape of every command error.
CANCELLED = {"code": "cancelled", "message": "cancelled through the API before it was sent"}
SWEEP_INTERVAL = 2.0  # seconds between a cluster node's pulls of commands it was not told of
WAIT_POLL = 1.0  # ... and between reads of a command another node sends, for ?wait=
FINISHED_KEPT = 10_000  # ids of commands finished here that pulls skip (newest kept)
SETTLE_WAIT = 5.0  # at most this long for the in-flight outcome before those behind it fail


@dataclass(slots=True, eq=False)
class _Queue:
    commands: deque[Command] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None
    # The answer the in-flight command waits for: (command id, future of the frame).
    waiting: tuple[str, asyncio.Future[CallResult | CallError]] | None = None
    # Set once the in-flight command's outcome is recorded (or its worker is gone).
    settled: asyncio.Event | None = None
    # Commands whose cancellation is being recorded, by id: they stay in ``commands`` until
    # it is durable (and stay queued if it fails), and nothing sends or fails them meanwhile.
    cancelling: dict[str, asyncio.Event] = field(default_factory=dict)
    # Held while the failures of commands taken off the queue are being recorded: nothing
    # received after them goes out before their outcomes are durable (API order).
    failing: asyncio.Lock = field(default_factory=asyncio.Lock)


class _ConnectionLost(Exception):
    pass


class CommandDispatcher:
    def __init__(
        self,
        hub: ChargerHub,
        *,
        call_timeout: float,
        on_status: Callable[[str, str], None] | None = None,
    ) -> None:
        self.hub = hub
        self.call_timeout = call_timeout
        # (action, status) each time a command is stored with a status: for metrics
        self._on_status = on_status
        self._queues: dict[str, _Queue] = {}
        self._done: dict[str, asyncio.Future[Command]] = {}  # for ?wait=
        self._tasks: set[asyncio.Task[Command]] = set()  # cancellations being recorded
        self._closing = False
        self._shared = hub.cluster.shared
        self._remote: dict[str, str] = {}  # commands stored here for another node: charger id
        # Commands recently taken to be sent, or finished, here: a pull that read the table
        # before they were marked sent or finished must not queue them again.
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._leaving: set[str] = set()  # taken off a queue, their outcomes being recorded
        self._sweeper: asyncio.Task[None] | None = None
        hub.answer_handler = self.on_answer
        hub.on_attach.append(self.on_connected)
        hub.on_detach.append(self.on_disconnected)
        hub.on_lost.append(self.on_charger_lost)
        hub.on_moved.append(self.on_moved)

    # -- API side -------------------------------------------------------------------------

    async def submit(
        self, charger_id: str, action: str, payload: dict[str, Any], *, queue: bool
    ) -> Command:
        """Store a command and queue it; raise CommandRefused when it cannot go now."""
        here = self.hub.connection_of(charger_id) is not None
        connected = here or (self._shared and await self._held_elsewhere(charger_id))
        if not connected and not queue:
            raise CommandRefused(
                f"charger {charger_id} is not connected (add ?queue=true to send it on reconnect)"
            )
        stamp = format_timestamp(self.hub.clock())
        command = Command(
            id=self.hub.ids.command_id(),
            charger_id=charger_id,
            action=action,
            request=payload,
            status=logic.CommandStatus.REQUESTED,
            deferred=queue,
            response=None,
            error=None,
            created_at=stamp,
            sent_at=None,
            completed_at=None,
        )

        def step(snap: Any) -> Any:
            reason = logic.refusal(snap, action)
            if reason is not None:
                raise CommandRefused(reason)
            return logic.request(snap, command)

        await self.hub.apply(charger_id, step)
        if self._on_status is not None:
            self._on_status(action, command.status)
        self._done[command.id] = asyncio.get_running_loop().create_future()
        if not self._shared:
            self._enqueue(command)
        elif here:
            await self.pull(charger_id)  # in stored order with those of other nodes
        else:
            self._remote[command.id] = charger_id
            await self.hub.cluster.notify("command", c=charger_id)
        return command

    async def _held_elsewhere(self, charger_id: str) -> bool:
        owner = (await self.hub.cluster.owners([charger_id])).get(charger_id)
        return owner is not None and owner.live and owner.node_id != self.hub.cluster.node_id

    async def wait(self, command_id: str, timeout: float) -> Command | None:
        """The finished command, or None if it is still running after ``timeout``."""
        future = self._done.get(command_id)
        if future is None:
            return None
        if command_id not in self._remote:
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                return None
        # Sent by another node: its outcome's notification resolves the future; the table is
        # read now and then in case a notification was lost.
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            stored = await self.hub.store.get_command(command_id)
            if stored is not None and stored.done:
                return stored
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            try:
                return await asyncio.wait_for(asyncio.shield(future), min(left, WAIT_POLL))
            except TimeoutError:
                continue

    async def cancel(self, command_id: str) -> Command:
        """Cancel a command still waiting in its charger's queue: recorded as ``failed`` with
        error ``cancelled`` (and its ``{action}.failed`` event) before it leaves the queue, so
        it is not sent, now or after a restart. CommandRefused once it was sent or finished."""
        stored = await self.hub.store.get_command(command_id)
        if stored is None:
            raise UnknownCommand(command_id)
        local = self.hub.connection_of(stored.charger_id) is not None
        if self._shared and local and not stored.done:
            await self.pull(stored.charger_id)  # stored by any node: in the queue by now
        # From here to the mark in ``cancelling`` nothing awaits: the worker, which claims a
        # command (``waiting``) without awaiting either, cannot take it in between.
        queue = self._queues.get(stored.charger_id)
        command = None
        if queue is not None and command_id not in queue.cancelling:
            in_flight = queue.waiting[0] if queue.waiting is not None else None
            command = next(
                (c for c in queue.commands if c.id == command_id and c.id != in_flight), None
            )
        if (queue is None or command is None) and self._shared and not local and not stored.done:
            return await self._cancel_elsewhere(stored)
        if queue is None or command is None:
            raise CommandRefused(await self._not_cancellable(command_id, queue))
        queue.cancelling[command_id] = asyncio.Event()
        # Finished in a task of its own: an API caller that goes away must not leave the
        # outcome recorded and the command still queued (it would be sent).
        task = asyncio.create_task(self._drop_cancelled(queue, command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def _cancel_elsewhere(self, command: Command) -> Command:
        """Cancel a command this node does not hold: the holder of its charger cancels it
        (told by NOTIFY); with no holder, it is recorded here, unless it was sent."""
        if command.sent_at is not None:
            raise CommandRefused(f"command {command.id} was already sent to the charger")
        if await self._held_elsewhere(command.charger_id):
            self._done.setdefault(command.id, asyncio.get_running_loop().create_future())
            self._remote.setdefault(command.id, command.charger_id)
            await self.hub.cluster.notify("cancel", id=command.id, c=command.charger_id)
            final = await self.wait(command.id, 5.0)
            if final is not None and final.error == CANCELLED:
                return final
            raise CommandRefused(await self._not_cancellable(command.id, None))
        return await self._record(command, error=dict(CANCELLED))

    async def on_cancel(self, message: dict[str, Any]) -> None:
        """Another node's API cancels a command of a charger this node holds."""
        try:
            await self.cancel(str(message.get("id")))
        except (CommandRefused, UnknownCommand) as exc:
            log.info("cancel of %s asked by another node: %s", message.get("id"), exc)

    async def _drop_cancelled(self, queue: _Queue, command: Command) -> Command:
        """Record a cancelled command's outcome, then take it out of its queue."""
        try:
            final = await self._record(command, error=dict(CANCELLED))
        except Exception:
            # Not recorded: it stays queued where it was, and goes (or fails) in its turn.
            self._kick(command.charger_id)
            raise
        else:
            queue.commands = deque(c for c in queue.commands if c.id != command.id)
            return final
        finally:
            queue.cancelling.pop(command.id).set()

    async def _not_cancellable(self, command_id: str, queue: _Queue | None) -> str:
        """Why a known command cannot be cancelled (for the 409)."""
        if queue is not None and command_id in queue.cancelling:
            return f"command {command_id} is being cancelled"
        if queue is not None and queue.waiting is not None and queue.waiting[0] == command_id:
            return f"command {command_id} was already sent to the charger"
        current = await self.hub.store.get_command(command_id)
        if current is not None and current.done:
            return f"command {command_id} already finished ({current.status})"
        if current is not None and current.sent_at is not None:
            return f"command {command_id} was already sent to the charger"
        return f"command {command_id} is no longer waiting to be sent"

    # -- queue ----------------------------------------------------------------------------

    def _enqueue(self, command: Command) -> None:
        queue = self._queues.setdefault(command.charger_id, _Queue())
        queue.commands.append(command)
        self._kick(command.charger_id)

    def _kick(self, charger_id: str) -> None:
        queue = self._queues.get(charger_id)
        if queue is None or self._closing:
            return
        if queue.worker is None or queue.worker.done():
            queue.worker = asyncio.create_task(self._run(charger_id), name=f"commands-{charger_id}")

    async def _run(self, charger_id: str) -> None:
        queue = self._queues[charger_id]
        while queue.commands:
            connection = self.hub.connection_of(charger_id)
            if connection is None:
                # Offline: what was asked to wait waits; the rest fails now.
                await self._fail_undeferred(charger_id, "charger is not connected")
                if self.hub.connection_of(charger_id) is None:
                    return
                # Back while we were failing (its on_connected found this worker still
                # running and started none): carry on with what waits for it.
                continue
            command = queue.commands[0]
            cancelling = queue.cancelling.get(command.id)
            if cancelling is not None:
                # Gone once its cancellation is recorded; still first if that failed.
                await cancelling.wait()
                continue
            async with queue.failing:
                pass  # what was received before this command and failed is recorded first
            snapshot = self.hub.live_snapshot(charger_id)
            reason = logic.refusal(snapshot, command.action) if snapshot else None
            if reason is not None:
                # Allowed when it was asked for, not any more (e.g. the charger booted into
                # Pending meanwhile, OCPP 1.6 4.2): it must not go out now.
                queue.commands.popleft()
                await self._finish(command, error={"code": "NotAllowed", "message": reason})
                continue
            sent = replace(command, sent_at=format_timestamp(self.hub.clock()))
            future: asyncio.Future[CallResult | CallError] = (
                asyncio.get_running_loop().create_future()
            )
            queue.waiting = (command.id, future)
            self._remember(command.id)  # taken: a stale pull must not queue it again
            queue.settled = settled = asyncio.Event()
            response: dict[str, Any] | None = None
            error: dict[str, Any] | None = None
            try:
                try:
                    await self._mark_sent(sent)
                    if self.hub.tracing:
                        call = [2, command.id, command.action, command.request]
                        await self.hub.trace(charger_id, [("out", call)])
                    await connection.send(encode_call(command.id, command.action, command.request))
                    frame = await asyncio.wait_for(future, self.call_timeout)
                except TimeoutError:
                    error = {
                        "code": "Timeout",
                        "message": f"no answer within {self.call_timeout:g} s",
                    }
                except _ConnectionLost:
                    error = {"code": "ConnectionLost", "message": "the charger disconnected"}
                else:
                    response, error = _read_answer(command.action, frame)
                finally:
                    queue.waiting = None
                    queue.commands.popleft()
                await self._finish(sent, response=response, error=error)
            finally:
                settled.set()

    async def _mark_sent(self, command: Command) -> None:
        """Record ``sent_at`` before the CALL goes out: after a restart, a queued command that
        may have reached the charger must fail, not be sent a second time (``resume``)."""

        def step(snap: Any) -> Outcome:
            return Outcome(snapshot=snap, reply={}, writes=[command])

        try:
            await self.hub.apply(command.charger_id, step)
        except Exception:
            log.exception(
                "%s: could not record that %s is sent",
                command.charger_id,
                command.id,
                extra={"chargerId": command.charger_id, "commandId": command.id},
            )

    async def _finish(
        self,
        command: Command,
        *,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        try:
            await self._record(command, response=response, error=error)
        except Exception:
            log.exception(
                "%s: could not record the outcome of %s",
                command.charger_id,
                command.id,
                extra={"chargerId": command.charger_id, "commandId": command.id},
            )

    async def _record(
        self,
        command: Command,
        *,
        response: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> Command:
        """Make a command's outcome durable (with its event); wake its ``?wait=`` callers."""
        now = self.hub.clock()
        outcome = await self.hub.apply(
            command.charger_id,
            lambda snap: logic.complete(snap, command, now=now, response=response, error=error),
        )
        final = next(w for w in outcome.writes if isinstance(w, Command))
        self._remember(command.id)
        if self._on_status is not None:
            self._on_status(final.action, final.status)
        future = self._done.pop(command.id, None)
        if future is not None and not future.done():
            future.set_result(final)
        if self._shared and command.id not in self._remote:
            await self.hub.cluster.notify("command_done", id=command.id)
        self._remote.pop(command.id, None)
        return final

    async def _fail_undeferred(
        self,
        charger_id: str,
        message: str,
        *,
        keep: str | None = None,
        after: asyncio.Event | None = None,
    ) -> None:
        """Fail the queued commands not asked to wait for a connection (but ``keep``: the
        command in flight, which its worker ends; and those being cancelled, which ``cancel``
        ends). They leave the queue at once; their outcomes are recorded once ``after`` is set
        (bounded), and nothing else goes out until they are."""
        queue = self._queues.get(charger_id)
        if queue is None:
            return
        stays = {keep, *queue.cancelling}
        failed = [c for c in queue.commands if not c.deferred and c.id not in stays]
        queue.commands = deque(c for c in queue.commands if c.deferred or c.id in stays)
        if not failed:
            return
        error = {"code": "ChargerOffline", "message": message}
        leaving = {c.id for c in failed}
        self._leaving |= leaving  # a pull (a charger back at once) must not queue them again
        try:
            async with queue.failing:  # together: one group commit, not one commit each
                if after is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(after.wait(), SETTLE_WAIT)
                await asyncio.gather(*(self._finish(c, error=error) for c in failed))
        finally:
            self._leaving -= leaving

    # -- charger side ---------------------------------------------------------------------

    async def on_answer(self, charger_id: str, frame: CallResult | CallError) -> None:
        queue = self._queues.get(charger_id)
        waiting = queue.waiting if queue else None
        if waiting is None or waiting[0] != frame.unique_id:
            log.info("%s: ignored an answer to no open command (%s)", charger_id, frame.unique_id)
            return
        if waiting[1].done():
            return
        waiting[1].set_result(frame)
        # Hold the charger's next frame until this outcome is recorded: a charger may follow
        # its answer at once with what the command asked for (the StatusNotification a
        # TriggerMessage allowed in Pending, the StartTransaction of a RemoteStart), and that
        # must meet the state the answer left. Waiting for our own store write, never for the
        # charger, so this cannot deadlock.
        if queue is not None and queue.settled is not None:
            await queue.settled.wait()

    async def on_connected(self, charger_id: str) -> None:
        if self._shared:
            await self.pull(charger_id)
        self._kick(charger_id)

    # -- the cluster ------------------------------------------------------------------------

    async def pull(self, charger_id: str) -> None:
        """Queue the charger's stored commands this node does not know yet, in stored order
        (those another node's API took, or queued for a connect)."""
        if self.hub.connection_of(charger_id) is None:
            return
        stored = await self.hub.store.open_commands(charger_id)
        queue = self._queues.setdefault(charger_id, _Queue())
        known = {c.id for c in queue.commands}
        if queue.waiting is not None:
            known.add(queue.waiting[0])
        for command in stored:
            if (
                command.id in known
                or command.id in self._finished
                or command.id in self._leaving
                or command.sent_at is not None
            ):
                continue
            self._done.setdefault(command.id, asyncio.get_running_loop().create_future())
            queue.commands.append(command)
        self._kick(charger_id)

    def _remember(self, command_id: str) -> None:
        if self._shared:
            self._finished[command_id] = None
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)

    async def on_command_stored(self, message: dict[str, Any]) -> None:
        await self.pull(str(message.get("c")))

    async def on_command_done(self, message: dict[str, Any]) -> None:
        command_id = str(message.get("id"))
        future = self._done.get(command_id)
        if future is None or future.done() or command_id not in self._remote:
            return
        stored = await self.hub.store.get_command(command_id)
        if stored is not None and stored.done:
            self._remote.pop(command_id, None)
            self._done.pop(command_id, None)
            future.set_result(stored)

    async def sweep_once(self) -> None:
        """Pull what a lost notification left waiting; fail what this node's API stored for
        a charger that no node holds any more (it was to be sent now, not on reconnect)."""
        waiting = {c.charger_id for c in await self.hub.store.open_commands()}
        for charger_id in waiting:
            if self.hub.connection_of(charger_id) is not None:
                await self.pull(charger_id)
        for command_id, charger_id in list(self._remote.items()):
            stored = await self.hub.store.get_command(command_id)
            if stored is None or stored.done:
                await self.on_command_done({"id": command_id})
                continue
            if stored.deferred or stored.sent_at is not None:
                continue
            if not await self._held_elsewhere(charger_id):
                self._remote.pop(command_id, None)
                await self._finish(
                    stored,
                    error={"code": "ChargerOffline", "message": "the charger disconnected"},
                )

    async def on_moved(self, charger_id: str) -> None:
        """The charger is on another node now: what is in flight here failed with the old
        socket; what was not sent yet, that node sends."""
        queue = self._queues.get(charger_id)
        if queue is None:
            return
        if queue.waiting is not None and not queue.waiting[1].done():
            queue.waiting[1].set_exception(_ConnectionLost())
        in_flight = queue.waiting[0] if queue.waiting is not None else None
        queue.commands = deque(
            c for c in queue.commands if c.id == in_flight or c.id in queue.cancelling
        )

    async def on_charger_lost(self, charger_id: str) -> None:
        """Its node was lost: what that node had sent, or was to send now, failed with it."""
        error = {"code": "ConnectionLost", "message": "the node holding the charger was lost"}
        for command in await self.hub.store.open_commands(charger_id):
            if command.sent_at is not None or not command.deferred:
                await self._finish(command, error=error)

    async def on_disconnected(self, charger_id: str) -> None:
        queue = self._queues.get(charger_id)
        if queue is None:
            return
        in_flight = None
        if queue.waiting is not None:
            in_flight = queue.waiting[0]
            if not queue.waiting[1].done():
                queue.waiting[1].set_exception(_ConnectionLost())
        if self._shared:
            # What waits for a connection waits in the table, for whichever node the charger
            # connects to next.
            queue.commands = deque(
                c
                for c in queue.commands
                if not c.deferred or c.id == in_flight or c.id in queue.cancelling
            )
        # The commands queued behind fail now, with this connection: not later, when the
        # worker gets to them and the charger may already be back on a new one. Recorded
        # after the one in flight (its worker records it at once): outcomes in API order.
        settled = queue.settled if in_flight is not None else None
        await self._fail_undeferred(
            charger_id, "the charger disconnected", keep=in_flight, after=settled
        )

    # -- life -----------------------------------------------------------------------------

    async def resume(self) -> int:
        """At start: queued-for-reconnect commands wait again; others died with the last run
        (on a cluster: only those of chargers no live node holds)."""
        if self._shared:
            self._sweeper = asyncio.create_task(
                every(SWEEP_INTERVAL, self.sweep_once, "command sweep"), name="command-sweep"
            )
            return await self._resume_shared()
        resumed = 0
        for command in await self.hub.store.open_commands():
            if command.deferred and command.sent_at is None:
                self._done[command.id] = asyncio.get_running_loop().create_future()
                self._queues.setdefault(command.charger_id, _Queue()).commands.append(command)
                resumed += 1
            else:
                await self._finish(
                    command,
                    error={"code": "ServerRestart", "message": "the server restarted"},
                )
        return resumed

    async def _resume_shared(self) -> int:
        stored = await self.hub.store.open_commands()
        owners = await self.hub.cluster.owners(sorted({c.charger_id for c in stored}))
        resumed = 0
        for command in stored:
            owner = owners.get(command.charger_id)
            if owner is not None and owner.live:
                continue  # its charger's node sends it (or fails it)
            if command.deferred and command.sent_at is None:
                resumed += 1  # waits in the table for a connect to any node
            else:
                await self._finish(
                    command, error={"code": "ServerRestart", "message": "the server restarted"}
                )
        return resumed

    async def close(self) -> None:
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        workers = [q.worker for q in self._queues.values() if q.worker and not q.worker.done()]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        # Cancellations being recorded finish before the store closes (each is one write):
        # cut off, their callers would get an error while the outcome may still be written.
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _read_answer(
    action: str, frame: CallResult | CallError
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if isinstance(frame, CallError):
        error = {"code": frame.error_code, "message": frame.description}
        if frame.details:
            error["details"] = frame.details
        return None, error
    violation = validate_response(action, frame.payload)
    if violation is not None:
        return None, {
            "code": "InvalidResponse",
            "message": f"{violation.error_code}: {violation.description}",
            "field": violation.field,
            "response": frame.payload,
        }
    return frame.payload, None
