"""The chargers the server knows: one ``ChargerRuntime`` each, and the only path to change them.

Every change to a charger (an OCPP message, a connect or disconnect, an API edit, a command
outcome) runs through ``ChargerHub.apply()``: under the charger's lock, a pure function turns
the current snapshot into an ``Outcome``; the outcome's rows and events commit in one store
transaction; only then does the in-memory snapshot move on and the caller get its reply. One
lock per charger keeps its event sequence gapless and ordered; chargers never wait for each
other except inside the store's group commit, which they share.

A commit that fails leaves no trace in memory: the snapshot is dropped and read back from the
store on next use (with what lives only in memory taken from the snapshot before), because a
failed commit may still have been written (an outage after the COMMIT was sent). So the next
event gets the sequence after the last one stored, never a number already taken, and a message
re-sent after its CALLERROR is recognised as a duplicate if it had been stored after all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from csms.cluster import Solo
from csms.ids import IdSource
from csms.protocol import core
from csms.protocol.core import DomainEvent, Outcome, Reject
from csms.protocol.evolve import evolve
from csms.protocol.frames import Call, CallError, CallResult, ErrorCode
from csms.protocol.state import (
    RECENT_DIGESTS,
    ChargerSnapshot,
    CoreSettings,
    LookupRequest,
    Lookups,
    RecentDigests,
)
from csms.protocol.timefmt import format_timestamp
from csms.turns import Turns
from storage.records import ChargerRegistration, Delete, Event, UnitOfWork
from storage.store import SequenceTaken, Store, StoreUnavailable

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
RECOVERY_CONCURRENCY = 256  # chargers recovered at once after a restart
# A disconnect that could not be recorded (the store away) is tried again after these delays
# (doubling up to the last), until it is or the charger connects again.
DISCONNECT_RETRY_FIRST = 0.5
DISCONNECT_RETRY_MAX = 5.0
# A unit computed from a state another node moved on meanwhile is computed again from the
# stored state, this many times at most (each loser of a race loses to a committed change).
SEQUENCE_RETRIES = 5
STORE_AWAY = Reject(
    error_code=ErrorCode.INTERNAL_ERROR,
    description="the central system cannot store this message now; send it again later",
)


NO_LOOKUPS = Lookups()  # frozen: shared by every CALL answered without a lookup

INTERNAL_ERROR = Reject(
    error_code=ErrorCode.INTERNAL_ERROR,
    description="the central system could not process this message",
)


def _reply_of(charger_id: str, call: Call, task: asyncio.Future[Any]) -> Any:
    """What a finished ``handle_call`` task answers: its reply, else an InternalError."""
    if not task.cancelled() and task.exception() is None:
        return task.result()
    log.error(
        "%s: failed to handle %s",
        charger_id,
        call.action,
        exc_info=None if task.cancelled() else task.exception(),
    )
    return INTERNAL_ERROR


class NotHeld(Exception):
    """This node no longer holds the charger: another one took it (cluster)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class Connection(Protocol):
    """What the hub needs of a live charger socket (``_Session`` in ``csms/server.py``)."""

    async def close(self, code: int = 1000, reason: str = "") -> None: ...

    async def send(self, text: str) -> None: ...


@dataclass(slots=True, eq=False)
class ChargerRuntime:
    charger_id: str
    lock: Turns = field(default_factory=Turns)
    snapshot: ChargerSnapshot | None = None  # None until (again) loaded from the store
    connection: Connection | None = None  # the live socket, newest wins
    # The snapshot before a commit that failed: what it holds in memory only goes into the
    # snapshot read back from the store.
    dropped: ChargerSnapshot | None = None
    epoch: int = 0  # bumped by each connect: a late retry of an older disconnect stands down
    fence: int = 0  # this node's claim on the charger (cluster), from its newest connect
    # This node holds the claim (from connect to the release after the disconnect): on a
    # cluster, no other node writes the charger then, so the snapshot can be trusted.
    held: bool = False


class ChargerHub:
    def __init__(
        self,
        store: Store,
        ids: IdSource,
        settings: CoreSettings,
        *,
        clock: Clock = utc_now,
        cluster: Solo | None = None,
    ) -> None:
        self.store = store
        # Who else may write this store's chargers: on a cluster, a snapshot is trusted only
        # while this node holds the charger's socket (no other node then writes it).
        self.cluster = cluster if cluster is not None else Solo("local")
        self.ids = ids
        self.settings = settings
        self.clock = clock
        self._runtimes: dict[str, ChargerRuntime] = {}
        # Whether anyone wants a given event type; set by the webhook service when present,
        # so raw ``ocpp.message`` events are stored only when an endpoint asked for them.
        self.wants: Callable[[str], bool] = lambda event_type: False
        # Receives chargers' answers to CSMS-initiated calls (the command dispatcher).
        self.answer_handler: Callable[[str, CallResult | CallError], Awaitable[None]] | None = None
        # Told when a charger's live connection comes and goes (the command dispatcher).
        self.on_attach: list[Callable[[str], Awaitable[None]]] = []
        self.on_detach: list[Callable[[str], Awaitable[None]]] = []
        # Told when this node recorded that a lost node's charger is gone (the dispatcher).
        self.on_lost: list[Callable[[str], Awaitable[None]]] = []
        # Told when another node took a charger whose socket was here (the dispatcher).
        self.on_moved: list[Callable[[str], Awaitable[None]]] = []
        self._retries: set[asyncio.Task[None]] = set()  # disconnects to record once possible
        # close_all ran: a disconnect not recorded by then is left to the next start
        self._closing = False

    def runtime(self, charger_id: str) -> ChargerRuntime:
        runtime = self._runtimes.get(charger_id)
        if runtime is None:
            runtime = self._runtimes[charger_id] = ChargerRuntime(charger_id)
        return runtime

    def live_snapshot(self, charger_id: str) -> ChargerSnapshot | None:
        """The in-memory snapshot, if loaded: fresher than the store for the sequence and
        the last sign of life, which are written only with other changes."""
        runtime = self._runtimes.get(charger_id)
        if runtime is None or (self.cluster.shared and runtime.connection is None):
            return None
        return runtime.snapshot

    def connection_of(self, charger_id: str) -> Connection | None:
        runtime = self._runtimes.get(charger_id)
        return runtime.connection if runtime else None

    async def holders(self, charger_ids: list[str]) -> dict[str, str]:
        """The node holding each charger's socket, of those some live node holds."""
        if not self.cluster.shared:
            node = self.cluster.node_id
            return {c: node for c in charger_ids if self.connection_of(c) is not None}
        owners = await self.cluster.owners(charger_ids)
        return {c: owner.node_id for c, owner in owners.items() if owner.live}

    def connected_count(self) -> int:
        return sum(1 for r in self._runtimes.values() if r.connection is not None)

    async def _load(self, runtime: ChargerRuntime) -> ChargerSnapshot:
        """The snapshot, read from the store if not in memory; hold ``runtime.lock`` (a load
        racing a commit could install a snapshot older than what was just committed)."""
        if runtime.snapshot is not None:
            return runtime.snapshot
        charger_id = runtime.charger_id
        registration = await self.store.get_registration(charger_id)
        snapshot = ChargerSnapshot.new(charger_id, registration)
        state = await self.store.get_charger_state(charger_id)
        if state is None:
            # Never connected, yet it may have events (commands queued for its first connect).
            last_event = await self.store.max_sequence(charger_id)
            if last_event:
                snapshot = evolve(snapshot, sequence=last_event)
        else:
            connectors = await self.store.get_connectors(charger_id)
            active = await self.store.active_transactions(charger_id)
            digests = await self.store.recent_meter_digests(charger_id, limit=RECENT_DIGESTS)
            # Events carry their sequence; the state row's copy may lag behind them.
            last_event = await self.store.max_sequence(charger_id)
            snapshot = evolve(
                snapshot,
                settings=await self.store.charger_settings(charger_id),
                state=state,
                sequence=max(state.last_sequence, last_event),
                last_seen_at=state.last_seen_at,
                connectors={c.connector_id: c for c in connectors},
                active={t.id: t for t in active},
                recent_digests=RecentDigests.of(digests),
            )
        dropped = runtime.dropped
        if dropped is not None:
            # Not in the store: what TriggerMessage and RemoteStartTransaction allowed, and
            # the last sign of life (written only with other changes).
            seen = [t for t in (dropped.last_seen_at, snapshot.last_seen_at) if t is not None]
            snapshot = evolve(
                snapshot,
                triggered=dropped.triggered,
                remote_starts=dropped.remote_starts,
                last_seen_at=max(seen, default=None),
            )
        runtime.snapshot, runtime.dropped = snapshot, None
        return snapshot

    def _drop(self, runtime: ChargerRuntime, before: ChargerSnapshot) -> None:
        """Forget the snapshot after a failed commit: the store has the truth, which may
        include the change that failed (its COMMIT may have reached the database)."""
        runtime.snapshot = None
        runtime.dropped = before

    async def apply(
        self,
        charger_id: str,
        step: Callable[[ChargerSnapshot], Outcome],
        *,
        extra: Callable[[ChargerSnapshot, Outcome], list[Event]] | None = None,
        guard: Callable[[], Awaitable[bool]] | None = None,
    ) -> Outcome:
        """Run ``step`` on the charger's snapshot and make its outcome durable.

        On a cluster another node may have written the charger since the snapshot was taken:
        the unit is then refused by the store (its sequence is taken) and ``step`` runs again
        on the state read back. ``guard``, when given, is asked before each try: False skips
        the change with ``NotHeld``."""
        runtime = self.runtime(charger_id)
        async with runtime.lock:
            for attempt in range(SEQUENCE_RETRIES):
                if guard is not None and not await guard():
                    raise NotHeld(charger_id)
                if self.cluster.shared and not runtime.held:
                    runtime.snapshot = None  # another node may hold it: read the truth
                before = await self._load(runtime)
                outcome = step(before)
                stamp = format_timestamp(self.clock())
                after, unit = core.finish(before, outcome, stamp=stamp, ids=self.ids)
                if extra is not None:
                    unit.put(*extra(after, outcome))
                written = self.store.submit(unit)
                try:
                    await asyncio.shield(written)
                except SequenceTaken:
                    self._drop(runtime, before)
                    if attempt + 1 == SEQUENCE_RETRIES:
                        raise
                    log.info("%s: written by another node meanwhile; computing again", charger_id)
                    continue
                except BaseException:
                    if not written.done():
                        # Cancelled while the unit is being written: keep the lock until it is
                        # (or is not), so nothing is sealed on a sequence it may yet take.
                        await asyncio.wait([written])
                    self._drop(runtime, before)
                    raise
                runtime.snapshot = after
                return outcome
            raise AssertionError("unreachable")

    # -- OCPP -------------------------------------------------------------------------------

    async def handle_call(self, charger_id: str, call: Call) -> Any:
        """Answer a charger's CALL: a reply payload, or a ``Reject`` for a CALLERROR.

        While the store is away the answer is an ``InternalError``: nothing is acknowledged
        that is not stored, and the charger keeps the message to send again (OCPP 1.6, 4.8).
        """
        try:
            return await self._handle_call(charger_id, call)
        except StoreUnavailable as exc:
            log.warning("%s: %s answered InternalError: %s", charger_id, call.action, exc)
            return STORE_AWAY

    def answer_now(self, charger_id: str, call: Call, reply_to: Callable[[Any], None]) -> bool:
        """Answer a CALL without a task, if nothing has to be awaited first: the charger's
        snapshot is in memory, its turn is free, the core needs nothing from the store, and
        (on a cluster) this node holds the charger. Then the CALL is handled now, its unit
        goes to the group commit, and ``reply_to`` gets what ``handle_call`` would have
        returned once the unit is durable (or failed). False: nothing was done; await
        ``handle_call`` instead.

        Why: a task, a shielded future and the lock's await cost more per MeterValues than
        the core's own work; most CALLs of a connected charger need none of them.
        """
        runtime = self._runtimes.get(charger_id)
        if runtime is None or runtime.snapshot is None:
            return False
        if self.cluster.shared and not runtime.held:
            return False
        if call.action == "StartTransaction" and not self.ids.at_hand():
            return False
        before = runtime.snapshot
        if core.lookups_needed(before, call) or not runtime.lock.try_take():
            return False

        def settled(error: BaseException | None) -> None:
            if error is not None:
                self._drop(runtime, before)
            else:
                runtime.snapshot = after
            runtime.lock.give_back()
            if isinstance(error, SequenceTaken):
                # Another node wrote the charger meanwhile: compute it again from the store.
                task = asyncio.ensure_future(self.handle_call(charger_id, call))
                task.add_done_callback(lambda done: reply_to(_reply_of(charger_id, call, done)))
                return
            if isinstance(error, StoreUnavailable):
                log.warning("%s: %s answered InternalError: %s", charger_id, call.action, error)
                reply_to(STORE_AWAY)
            elif error is not None:
                log.error("%s: failed to handle %s", charger_id, call.action, exc_info=error)
                reply_to(INTERNAL_ERROR)
            else:
                reply_to(outcome.reply)

        try:
            now = self.clock()
            outcome = core.handle(
                before, call, NO_LOOKUPS, now=now, ids=self.ids, settings=self.settings
            )
            after, unit = core.finish(before, outcome, stamp=format_timestamp(now), ids=self.ids)
            if self.tracing:
                unit.put(*self._trace(charger_id, call, outcome))
            self.store.submit_then(unit, settled)
        except BaseException:
            runtime.lock.give_back()
            raise
        return True

    async def _handle_call(self, charger_id: str, call: Call) -> Any:
        runtime = self.runtime(charger_id)
        snapshot = runtime.snapshot
        if snapshot is None:
            async with runtime.lock:
                snapshot = await self._load(runtime)
        if call.action == "StartTransaction":
            await self.ids.ready()
        lookups = await self._lookups(charger_id, core.lookups_needed(snapshot, call))
        now = self.clock()
        trace = self.tracing

        def step(current: ChargerSnapshot) -> Outcome:
            return core.handle(
                current, call, lookups, now=now, ids=self.ids, settings=self.settings
            )

        def frames(after: ChargerSnapshot, outcome: Outcome) -> list[Event]:
            return self._trace(charger_id, call, outcome) if trace else []

        outcome = await self.apply(charger_id, step, extra=frames)
        return outcome.reply

    async def _lookups(self, charger_id: str, request: LookupRequest) -> Lookups:
        if not request:
            return NO_LOOKUPS
        id_tag = await self.store.get_id_tag(request.id_tag) if request.id_tag else None
        transaction = None
        if request.transaction_id is not None:
            transaction = await self.store.get_transaction(request.transaction_id)
        elif request.start_key is not None:
            connector_id, id_tag_text, started_at, meter_start = request.start_key
            transaction = await self.store.find_transaction_by_start(
                charger_id=charger_id,
                connector_id=connector_id,
                id_tag=id_tag_text,
                started_at=started_at,
                meter_start=meter_start,
            )
        return Lookups(id_tag=id_tag, transaction=transaction)

    def _trace(self, charger_id: str, call: Call, outcome: Outcome) -> list[Event]:
        reply = outcome.reply
        answer: Any = (
            [4, call.unique_id, reply.error_code.value, reply.description, reply.details]
            if isinstance(reply, Reject)
            else [3, call.unique_id, reply]
        )
        return [
            self._frame_event(charger_id, "in", [2, call.unique_id, call.action, call.payload]),
            self._frame_event(charger_id, "out", answer),
        ]

    def _frame_event(self, charger_id: str, direction: str, message: Any) -> Event:
        """An ``ocpp.message`` event: outside the charger's sequence (DESIGN 4)."""
        return Event(
            id=self.ids.event_id(),
            type="ocpp.message",
            charger_id=charger_id,
            sequence=None,
            timestamp=format_timestamp(self.clock()),
            data={"direction": direction, "message": message},
        )

    @property
    def tracing(self) -> bool:
        """Whether raw frames are recorded: callers build them only then."""
        return self.wants("ocpp.message")

    async def trace(self, charger_id: str, frames: list[tuple[str, Any]]) -> None:
        """Record frames that change no state (bad frames and their CALLERRORs, our commands
        and the chargers' answers) as ``ocpp.message`` events, if anyone subscribed. A frame
        that cannot be parsed is kept as the text received."""
        if frames and self.tracing:
            events = [self._frame_event(charger_id, d, m) for d, m in frames]
            try:
                await self.store.commit(UnitOfWork().put(*events))
            except Exception:
                # A trace must never break the protocol it traces: log and go on.
                log.exception("%s: could not record ocpp.message events", charger_id)

    async def on_charger_answer(self, charger_id: str, frame: CallResult | CallError) -> None:
        """A CALLRESULT/CALLERROR from a charger: the answer to one of our commands."""
        if self.answer_handler is None:
            log.info("%s: ignored an answer to no call of ours (%s)", charger_id, frame.unique_id)
            return
        await self.answer_handler(charger_id, frame)

    # -- connections ------------------------------------------------------------------------

    async def attach(
        self,
        charger_id: str,
        connection: Connection,
        *,
        remote_address: str | None,
        security_profile: int,
        registration: ChargerRegistration | None = None,
    ) -> None:
        """A charger connected: the newest connection wins (DESIGN 3), cluster-wide (8): the
        claim tells the node that held an older socket to close it; this connect records
        that socket's ``replaced`` end."""
        runtime = self.runtime(charger_id)
        runtime.epoch += 1
        claim = await self.cluster.claim(charger_id)
        runtime.fence = claim.fence
        runtime.snapshot = runtime.snapshot if runtime.held else None
        runtime.held = not self.cluster.shared or claim.previous is None
        if claim.previous is not None:
            log.info("%s: taken over from node %s", charger_id, claim.previous)
        now = self.clock()
        old = runtime.connection

        def step(snap: ChargerSnapshot) -> Outcome:
            if registration is not None and snap.registration is None:
                snap = evolve(snap, registration=registration)
            events: list[DomainEvent] = []
            if old is not None or snap.state.connected:
                gone = core.on_disconnect(snap, now=now, reason="replaced")
                snap, events = gone.snapshot, list(gone.events)
            came = core.on_connect(
                snap, now=now, remote_address=remote_address, security_profile=security_profile
            )
            writes = [registration] if registration is not None else []
            return evolve(came, events=[*events, *came.events], writes=writes)

        await self.apply(charger_id, step)
        runtime.connection = connection
        runtime.held = True
        if old is not None:
            log.info("%s: a new connection replaces the old one", charger_id)
            await self._notify(self.on_detach, charger_id)
            await old.close(1000, "replaced by a newer connection")
        await self._notify(self.on_attach, charger_id)

    async def _notify(
        self, listeners: list[Callable[[str], Awaitable[None]]], charger_id: str
    ) -> None:
        for listener in listeners:
            try:
                await listener(charger_id)
            except Exception:
                log.exception("%s: connection listener failed", charger_id)

    async def detach(
        self, charger_id: str, connection: Connection, *, reason: str, close_code: int | None
    ) -> None:
        """A socket closed; recorded only if it was still the charger's live connection (and,
        on a cluster, this node still holds the charger)."""
        runtime = self.runtime(charger_id)
        if runtime.connection is not connection:
            return
        runtime.connection = None
        now, epoch = self.clock(), runtime.epoch
        recorded = False
        try:
            await self._record_disconnect(runtime, epoch, now, reason, close_code)
            recorded = True
        except NotHeld:
            runtime.held = False  # another node took it: the end of this socket is its to record
        except Exception as exc:
            if self._closing:
                # Shutting down: a retry now would outlive the store; the next start records
                # it (``recover_after_restart``).
                log.warning("%s: disconnect not recorded at shutdown: %s", charger_id, exc)
            else:
                # The socket is gone whatever the store says: record it once the store is
                # back (at the time it happened), unless the charger is back first.
                log.warning("%s: could not record the disconnect; will retry: %s", charger_id, exc)
                self._retry_disconnect(runtime, epoch, now, reason, close_code)
        finally:
            await self._notify(self.on_detach, charger_id)
        if recorded:
            await self._release(runtime, epoch)

    async def _release(self, runtime: ChargerRuntime, epoch: int) -> None:
        """The socket's end is recorded: this node no longer holds the charger."""
        if not runtime.held or runtime.epoch != epoch:
            return
        runtime.held = False
        try:
            await self.cluster.release(runtime.charger_id, runtime.fence)
        except Exception as exc:  # its next claim overwrites the row anyway
            log.warning("%s: could not release the charger: %s", runtime.charger_id, exc)

    async def _record_disconnect(
        self,
        runtime: ChargerRuntime,
        epoch: int,
        now: datetime,
        reason: str,
        close_code: int | None,
    ) -> None:
        def step(snap: ChargerSnapshot) -> Outcome:
            if runtime.epoch != epoch or not snap.state.connected:
                # A newer connection took over (it records the old one's end itself), or
                # an earlier try was written after all.
                return Outcome(snapshot=snap, reply={})
            return core.on_disconnect(snap, now=now, reason=reason, close_code=close_code)

        charger_id, fence = runtime.charger_id, runtime.fence
        await self.apply(charger_id, step, guard=self._holder(charger_id, fence))

    def _holder(self, charger_id: str, fence: int) -> Callable[[], Awaitable[bool]] | None:
        """A guard: this node still holds the charger with ``fence`` (clusters only)."""
        if not self.cluster.shared:
            return None
        return lambda: self.cluster.holds(charger_id, fence)

    # -- the cluster ---------------------------------------------------------------------

    async def on_taken(self, message: dict[str, Any]) -> None:
        """Another node claimed a charger (its newest socket is there): close ours without
        recording anything; the new holder recorded our socket's ``replaced`` end."""
        charger_id, fence = str(message.get("c")), int(message.get("f", 0))
        if message.get("n") == self.cluster.node_id:
            return
        runtime = self._runtimes.get(charger_id)
        if runtime is None or runtime.connection is None or runtime.fence >= fence:
            return
        await self._let_go(runtime, "replaced by a newer connection on another node")

    async def _let_go(self, runtime: ChargerRuntime, why: str) -> None:
        connection = runtime.connection
        if connection is None:
            return
        runtime.connection = None
        runtime.epoch += 1  # a disconnect still being retried stands down
        runtime.snapshot, runtime.held = None, False
        log.info("%s: %s", runtime.charger_id, why)
        await self._notify(self.on_moved, runtime.charger_id)
        await connection.close(1000, "replaced by a newer connection")

    async def check_fences(self) -> None:
        """After this node was silent past its lease: close the sockets of chargers another
        node adopted meanwhile (they reconnect, to any node)."""
        for runtime in list(self._runtimes.values()):
            if runtime.connection is None:
                continue
            if not await self.cluster.holds(runtime.charger_id, runtime.fence):
                await self._let_go(runtime, "taken by another node while this one was silent")

    async def on_lost_charger(self, charger_id: str, fence: int) -> None:
        """This node adopted a charger from a lost node: record its ``node_lost`` end (once,
        and not if it is back on another node), then let it go."""
        now = self.clock()

        def step(snap: ChargerSnapshot) -> Outcome:
            if not snap.state.connected:
                return Outcome(snapshot=snap, reply={})
            return core.on_disconnect(snap, now=now, reason="node_lost")

        try:
            await self.apply(charger_id, step, guard=self._holder(charger_id, fence))
        except NotHeld:
            return  # back on a node meanwhile: its connect recorded the end
        await self._notify(self.on_lost, charger_id)
        await self.cluster.release(charger_id, fence)

    def _retry_disconnect(
        self,
        runtime: ChargerRuntime,
        epoch: int,
        now: datetime,
        reason: str,
        close_code: int | None,
    ) -> None:
        async def retry() -> None:
            delay = DISCONNECT_RETRY_FIRST
            while runtime.epoch == epoch and self._runtimes.get(runtime.charger_id) is runtime:
                await asyncio.sleep(delay)
                try:
                    await self._record_disconnect(runtime, epoch, now, reason, close_code)
                except NotHeld:
                    runtime.held = False
                    return
                except Exception as exc:
                    log.debug("%s: disconnect still not recorded: %s", runtime.charger_id, exc)
                else:
                    await self._release(runtime, epoch)
                    return
                delay = min(delay * 2, DISCONNECT_RETRY_MAX)

        task = asyncio.create_task(retry(), name=f"record-disconnect-{runtime.charger_id}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def close_all(self, reason: str = "shutdown") -> None:
        """Close every charger's socket (shutdown); disconnects not recorded by now are left
        to the next start (``recover_after_restart``)."""
        self._closing = True
        for runtime in list(self._runtimes.values()):
            connection = runtime.connection
            if connection is None:
                continue
            await self.detach(runtime.charger_id, connection, reason=reason, close_code=1001)
            await connection.close(1001, "server shutting down")
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)

    async def recover_after_restart(self) -> int:
        """Chargers the store still marks connected lost their socket with the last run (on a
        cluster: those this node held, and those no node holds)."""
        leftovers = await self.cluster.leftovers()
        if leftovers is None:
            leftovers = [
                (charger_id, None) for charger_id in await self.store.connected_charger_ids()
            ]
        now = self.clock()
        # Many at a time, so their units share group commits: a fleet of 10,000 would take
        # tens of seconds one by one before the server listens.
        limit = asyncio.Semaphore(RECOVERY_CONCURRENCY)

        def step(snap: ChargerSnapshot) -> Outcome:
            if not snap.state.connected:  # recorded meanwhile (by another node starting too)
                return Outcome(snapshot=snap, reply={})
            return core.on_disconnect(snap, now=now, reason="restart")

        async def recover(charger_id: str, fence: int | None) -> None:
            async with limit:
                await self.apply(charger_id, step)
                if fence is not None:
                    await self.cluster.release(charger_id, fence)

        await asyncio.gather(*(recover(charger_id, fence) for charger_id, fence in leftovers))
        return len(leftovers)

    # -- registration (admin API) -----------------------------------------------------------

    async def save_registration(self, registration: ChargerRegistration) -> None:
        """Create or update a charger's registration; its snapshot follows."""

        def step(snap: ChargerSnapshot) -> Outcome:
            return Outcome(
                snapshot=evolve(snap, registration=registration),
                reply={},
                writes=[registration],
            )

        await self.apply(registration.id, step)

    async def delete(self, charger_id: str) -> None:
        """Forget a charger's registration and state (its events stay in the log)."""
        runtime = self.runtime(charger_id)
        connection = runtime.connection
        if connection is not None:
            await self.detach(charger_id, connection, reason="deleted", close_code=1008)
            await connection.close(1008, "charger deleted")
        async with runtime.lock:
            try:
                await self.store.commit(
                    UnitOfWork().put(
                        Delete("chargers", charger_id),
                        Delete("charger_state", charger_id),
                        Delete("connectors", charger_id),
                        Delete("charger_settings", charger_id),
                    )
                )
            except BaseException:
                if runtime.snapshot is not None:
                    self._drop(runtime, runtime.snapshot)
                raise
            self._runtimes.pop(charger_id, None)
