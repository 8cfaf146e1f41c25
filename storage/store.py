"""The store every backend is: group-committed units of work in, typed records out.

``csms/`` and ``webhooks/`` hold a ``Store`` and never know which backend runs. A backend
brings its connections, its commit path and its migrations; the reads are shared SQL, written
once here with ``?`` placeholders (a backend rewrites them for its driver), with the few
dialect differences (glob and case-insensitive matches) as small hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from storage import sqlite_rows as codec
from storage.pacing import ENOUGH, CommitPacer
from storage.records import (
    ApiToken,
    ChargerRegistration,
    ChargerState,
    Command,
    Connector,
    Event,
    EventFilter,
    IdTag,
    MeterSample,
    Page,
    Transaction,
    UnitOfWork,
)

log = logging.getLogger(__name__)

# The charger's newest samples (Store.recent_meter_digests), chosen from indexes alone: the
# ids of those of no transaction, and of those of its newest transactions, each transaction's
# newest from a lower bound on the id (the id ``limit`` back), so that each transaction's
# index range read is at most ``limit`` entries; only the rows chosen are read.
# Parameters: (charger, limit) three times, limit - 1, limit, charger.
_RECENT_METER_DIGESTS = (
    "SELECT digest FROM meter_values WHERE id IN ("
    " SELECT id FROM ("
    "  SELECT id FROM meter_values{untransacted} WHERE charger_id = ? AND transaction_id IS NULL"
    "  ORDER BY id DESC LIMIT ?) AS loose"
    " UNION ALL"
    " SELECT m.id FROM ("
    "  SELECT id FROM ("
    "   SELECT id FROM transactions WHERE charger_id = ?"
    "   ORDER BY created_at DESC, id DESC LIMIT ?) AS newest"
    "  UNION SELECT id FROM ("
    "   SELECT id FROM transactions{active} WHERE charger_id = ? AND stopped_at IS NULL"
    "   ORDER BY created_at DESC, id DESC LIMIT ?) AS active) AS t"
    " JOIN meter_values AS m ON m.transaction_id = t.id"
    "  AND m.id >= COALESCE((SELECT b.id FROM meter_values AS b WHERE b.transaction_id = t.id"
    "  ORDER BY b.id DESC LIMIT 1 OFFSET ?), 0)"
    " ORDER BY id DESC LIMIT ?)"
    " AND charger_id = ? ORDER BY id"
)

# Called with the events of a commit and the pos of the first (the others follow it).
CommitListener = Callable[[Sequence[Event], int], None]
# Called once a submitted unit is durable (None) or not (the error ``commit()`` would raise).
Settled = Callable[[BaseException | None], None]


class Store(ABC):
    """One database. Open with ``storage.open_store(url)``.

    Group commit, the same for every backend: units of work that arrive while a transaction
    is being written wait, and are then written together in the next one (``_transaction``,
    the backend's). Each caller's ``commit()`` returns only once its unit is durable, so an
    OCPP reply sent after it is never ahead of the store.
    """

    url: str  # as configured, for messages

    def __init__(self) -> None:
        self._pending: list[tuple[UnitOfWork, Settled]] = []
        self._wakeup = asyncio.Event()
        self._listeners: list[CommitListener] = []
        self._committer: asyncio.Task[None] | None = None
        self._closed = False
        # Commits wait a little for more units while the process is busy (storage/pacing.py);
        # None: every commit begins at once. For the charger-facing store, whose commits
        # come one per message under an open loop.
        self.pacer: CommitPacer | None = None
        self._enough = asyncio.Event()  # set once ENOUGH units are pending: no more waiting

    # -- what each backend provides ------------------------------------------------------

    @abstractmethod
    async def _transaction(self, units: list[UnitOfWork]) -> int:
        """Write the units in one transaction; the pos given to its first event (the others
        follow it in the order of the units), in commit order."""

    @abstractmethod
    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Committed rows (indexable by column name and position); for ``storage/`` only."""

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Any | None:
        found = await self.fetch_all(sql, params)
        return found[0] if found else None

    @abstractmethod
    async def ping(self) -> None:
        """A round trip to the database (the health check)."""

    @abstractmethod
    async def open_sibling(self) -> Store:
        """The same database for another event loop (the webhook engine's thread); run it on
        that loop. It shares what must be one per database in this process."""

    @property
    @abstractmethod
    def default_key_file(self) -> str | None:
        """Where the webhook secret key lives unless configured; None: it must be."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def _glob(self, column: str) -> str:
        """A condition: ``column`` matches the ``?`` pattern (``*``, ``?``, ``[...]``)."""

    def _glob_pattern(self, pattern: str) -> str:
        return pattern

    def _indexed_by(self, index: str) -> str:
        """Text after a table name that makes the read use ``index``, where the planner could
        misjudge it (nothing: PostgreSQL weighs NULLs from its statistics)."""
        return ""

    @abstractmethod
    def _casefold_equals(self, column: str) -> str:
        """A condition: ``column`` equals ``?`` ignoring ASCII case."""

    def _casefold_param(self, value: str) -> str:
        return value

    def _sequence_taken(self, exc: BaseException) -> bool:
        """Whether a unit was refused because a charger's sequence it writes is taken (the
        unique index ``events_charger``): computed from a stale state, not a bad unit."""
        return "events_charger" in str(exc) or "events.charger_id, events.sequence" in str(exc)

    # -- group commit --------------------------------------------------------------------

    def _start_committer(self) -> None:
        self._committer = asyncio.create_task(self._run_committer(), name="store-committer")

    async def _stop_committer(self) -> None:
        """Write what is queued, then stop taking units."""
        self._closed = True
        self._wakeup.set()
        self._enough.set()  # a commit waiting for company begins now
        if self._committer is not None:
            await self._committer

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Called after every commit that wrote events (to wake the delivery engine)."""
        self._listeners.append(listener)

    async def commit(self, unit: UnitOfWork) -> None:
        """Write the unit in one transaction; return once it is durable.

        Raises ``StoreUnavailable`` when the database did not answer (the unit may or may not
        have been committed), any other error when the unit itself was refused (it was not).
        """
        if unit:
            # Each unit has its own future: a caller cancelled here cancels only that future;
            # its unit is still written with the batch (the committer skips futures done).
            await self.submit(unit)

    def submit(self, unit: UnitOfWork) -> asyncio.Future[None]:
        """Queue the unit for the next group commit; the future resolves as ``commit()``
        returns. For a caller that must learn the outcome even when it is cancelled."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not unit:
            future.set_result(None)
        elif self._closed:
            future.set_exception(RuntimeError("store is closed"))
        else:
            self._queue(unit, partial(_resolve, future))
        return future

    def submit_then(self, unit: UnitOfWork, settled: Settled) -> None:
        """Queue the unit like ``submit``; the committer calls ``settled`` itself once the
        batch is written, with no future and no turn of the loop in between (those cost ~2
        us per MeterValues, measured). ``settled`` never runs before this returns."""
        if not unit or self._closed:
            error = RuntimeError("store is closed") if unit else None
            asyncio.get_running_loop().call_soon(_tell, settled, error)
            return
        self._queue(unit, settled)

    def _queue(self, unit: UnitOfWork, settled: Settled) -> None:
        self._pending.append((unit, settled))
        self._wakeup.set()
        if len(self._pending) >= ENOUGH:
            self._enough.set()  # a commit waiting for company need not wait longer

    async def _run_committer(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()  # units that come while it waits or writes wake it again
            pacer = self.pacer
            if pacer is not None and not self._closed and len(self._pending) < ENOUGH:
                wait = pacer.wait()
                if wait > 0:  # more units come meanwhile: one commit for all
                    self._enough.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._enough.wait()
            batch, self._pending = self._pending, []
            if batch:
                if pacer is not None:
                    pacer.began()
                await self._write_batch(batch)
            elif self._closed:
                return

    async def _write_batch(self, batch: list[tuple[UnitOfWork, Settled]]) -> None:
        try:
            first_pos = await self._transaction([unit for unit, _ in batch])
        except StoreUnavailable as exc:
            # Not the units' fault: writing them one by one would only wait out the outage
            # once per unit. Every caller hears of it now (and may try again).
            log.warning("commit of %d units failed: %s", len(batch), exc)
            for _, settled in batch:
                _tell(settled, StoreUnavailable(str(exc)))
            return
        except Exception as exc:
            if len(batch) == 1:
                _, settled = batch[0]
                if self._sequence_taken(exc):
                    error: Exception = SequenceTaken(
                        "another writer committed this charger's next event first"
                    )
                else:
                    log.exception("commit failed")
                    error = _commit_error()
                _tell(settled, error)
                return
            # One bad unit must not fail the others: write them one by one.
            for item in batch:
                await self._write_batch([item])
            return
        events = [w for unit, _ in batch for w in unit.writes if isinstance(w, Event)]
        for _, settled in batch:
            _tell(settled, None)
        if events:
            for listener in self._listeners:
                try:
                    listener(events, first_pos)
                except Exception:
                    log.exception("commit listener failed")

    # -- reads ---------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        row = await self.fetch_one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    async def list_api_tokens(self) -> list[ApiToken]:
        rows = await self.fetch_all("SELECT * FROM api_tokens ORDER BY created_at, id")
        return [codec.api_token(r) for r in rows]

    async def get_registration(self, charger_id: str) -> ChargerRegistration | None:
        row = await self.fetch_one("SELECT * FROM chargers WHERE id = ?", (charger_id,))
        return None if row is None else codec.registration(row)

    async def list_registrations(
        self, *, limit: int, starting_after: str | None = None
    ) -> Page[ChargerRegistration]:
        sql, params = "SELECT * FROM chargers", []
        if starting_after is not None:
            sql += " WHERE id > ?"
            params.append(starting_after)
        rows = await self.fetch_all(sql + " ORDER BY id LIMIT ?", [*params, limit + 1])
        return Page(items=[codec.registration(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def get_charger_state(self, charger_id: str) -> ChargerState | None:
        row = await self.fetch_one(
            "SELECT * FROM charger_state WHERE charger_id = ?", (charger_id,)
        )
        return None if row is None else codec.charger_state(row)

    async def get_charger_states(self, charger_ids: Sequence[str]) -> dict[str, ChargerState]:
        if not charger_ids:
            return {}
        marks = ",".join("?" * len(charger_ids))
        rows = await self.fetch_all(
            f"SELECT * FROM charger_state WHERE charger_id IN ({marks})", list(charger_ids)
        )
        return {row["charger_id"]: codec.charger_state(row) for row in rows}

    async def max_sequence(self, charger_id: str) -> int:
        row = await self.fetch_one(
            "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE charger_id = ?", (charger_id,)
        )
        return int(row[0]) if row else 0

    async def connected_charger_ids(self) -> list[str]:
        rows = await self.fetch_all("SELECT charger_id FROM charger_state WHERE connected = 1")
        return [row[0] for row in rows]

    async def get_connectors(self, charger_id: str) -> list[Connector]:
        rows = await self.fetch_all(
            "SELECT * FROM connectors WHERE charger_id = ? ORDER BY connector_id", (charger_id,)
        )
        return [codec.connector(r) for r in rows]

    async def get_connectors_of(self, charger_ids: Sequence[str]) -> dict[str, list[Connector]]:
        if not charger_ids:
            return {}
        marks = ",".join("?" * len(charger_ids))
        rows = await self.fetch_all(
            f"SELECT * FROM connectors WHERE charger_id IN ({marks})"
            " ORDER BY charger_id, connector_id",
            list(charger_ids),
        )
        result: dict[str, list[Connector]] = {}
        for row in rows:
            result.setdefault(row["charger_id"], []).append(codec.connector(row))
        return result

    async def max_transaction_id(self) -> int:
        row = await self.fetch_one("SELECT COALESCE(MAX(id), 0) FROM transactions")
        return int(row[0]) if row else 0

    async def get_transaction(self, transaction_id: int) -> Transaction | None:
        row = await self.fetch_one("SELECT * FROM transactions WHERE id = ?", (transaction_id,))
        return None if row is None else codec.transaction(row)

    async def active_transactions(self, charger_id: str) -> list[Transaction]:
        rows = await self.fetch_all(
            "SELECT * FROM transactions WHERE charger_id = ? AND stopped_at IS NULL ORDER BY id",
            (charger_id,),
        )
        return [codec.transaction(r) for r in rows]

    async def find_transaction_by_start(
        self, *, charger_id: str, connector_id: int, id_tag: str, started_at: str, meter_start: int
    ) -> Transaction | None:
        row = await self.fetch_one(
            "SELECT * FROM transactions WHERE charger_id = ? AND connector_id = ?"
            " AND started_at = ? AND id_tag = ? AND meter_start = ? ORDER BY id LIMIT 1",
            (charger_id, connector_id, started_at, id_tag, meter_start),
        )
        return None if row is None else codec.transaction(row)

    async def list_transactions(
        self,
        *,
        charger_id: str | None = None,
        active: bool | None = None,
        limit: int,
        starting_after: int | None = None,
    ) -> Page[Transaction]:
        where, params = _where(
            ("charger_id = ?", charger_id),
            ("id < ?", starting_after),
        )
        if active is not None:
            where.append("stopped_at IS NULL" if active else "stopped_at IS NOT NULL")
        sql = "SELECT * FROM transactions" + _clause(where) + " ORDER BY id DESC LIMIT ?"
        rows = await self.fetch_all(sql, [*params, limit + 1])
        return Page(items=[codec.transaction(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def meter_samples(self, transaction_id: int, *, limit: int = 10_000) -> list[MeterSample]:
        rows = await self.fetch_all(
            "SELECT * FROM meter_values WHERE transaction_id = ? ORDER BY id LIMIT ?",
            (transaction_id, limit),
        )
        return [codec.meter_sample(r) for r in rows]

    async def recent_meter_digests(self, charger_id: str, *, limit: int) -> list[str]:
        """Digests of the charger's latest meter values and unknown stops (to drop re-sends),
        oldest first: the unknown stops, then the ``limit`` newest samples by id.

        Read without an index on every sample's charger (migration 0011: it cost the writer a
        WAL page per MeterValues). Samples of no transaction come from the partial index
        ``meter_values_untransacted``; those of a transaction (only ever the charger's own)
        from ``meter_values_transaction``, for the charger's ``limit`` newest transactions
        and ``limit`` newest active ones, each one's ``limit`` newest samples (enough: a
        sample further back has ``limit`` newer ones of the charger).

        The answer is the old query's (the newest by ``charger_id`` alone) but for one case:
        a sample of a stopped transaction older than the charger's ``limit`` newest (a late
        MeterValues naming it, after ``limit`` newer transactions started) is left out, and an
        older sample takes its place in the window.

        Newest transactions are by ``created_at``, the CSMS's clock when each started, not by
        id: on a cluster each node hands out ids from a block of its own, so a charger that
        moved to a node with an older block gets smaller ids for its newer transactions.
        Node clocks that disagree by seconds misorder only transactions started within those
        seconds (and the active ones are read whatever their order). Samples are still
        ordered by ``meter_values.id``: the table's insertion order, in which a charger's
        units commit. Samples stored before 7dc1407 could name a transaction not the
        charger's (or none that exists); they are left out (and may shorten the window), but
        their digests were made with that id, which the current code never uses for them, so
        no re-send is missed for it.
        """
        meters = await self.fetch_all(
            _RECENT_METER_DIGESTS.format(
                untransacted=self._indexed_by("meter_values_untransacted"),
                active=self._indexed_by("transactions_active"),
            ),
            (*(charger_id, limit) * 3, max(limit - 1, 0), limit, charger_id),
        )
        stops = await self.fetch_all(
            "SELECT digest FROM unknown_stops WHERE charger_id = ? ORDER BY id DESC LIMIT ?",
            (charger_id, limit),
        )
        return [row[0] for row in reversed(stops)] + [row[0] for row in meters]

    async def get_id_tag(self, id_tag: str) -> IdTag | None:
        """The id tag, compared case-insensitively (OCPP 1.6 IdToken is a CiString20Type).

        The exact spelling first, so the common case uses the primary key; then any case
        (ASCII case folding, as SQLite's NOCASE does), a scan of the table.
        """
        row = await self.fetch_one("SELECT * FROM id_tags WHERE id_tag = ?", (id_tag,))
        if row is None:
            row = await self.fetch_one(
                f"SELECT * FROM id_tags WHERE {self._casefold_equals('id_tag')}"
                " ORDER BY id_tag LIMIT 1",
                (self._casefold_param(id_tag),),
            )
        return None if row is None else codec.id_tag(row)

    async def list_id_tags(self, *, limit: int, starting_after: str | None = None) -> Page[IdTag]:
        where, params = _where(("id_tag > ?", starting_after))
        rows = await self.fetch_all(
            "SELECT * FROM id_tags" + _clause(where) + " ORDER BY id_tag LIMIT ?",
            [*params, limit + 1],
        )
        return Page(items=[codec.id_tag(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def get_event(self, event_id: str) -> Event | None:
        row = await self.fetch_one("SELECT * FROM events WHERE id = ?", (event_id,))
        return None if row is None else codec.event(row)

    async def list_events(self, query: EventFilter) -> Page[Event]:
        where, params = _where(
            ("charger_id = ?", query.charger_id),
            ("timestamp >= ?", query.since),
            ("timestamp < ?", query.until),
        )
        if query.types:
            where.append("(" + " OR ".join(self._glob("type") for _ in query.types) + ")")
            params.extend(self._glob_pattern(t) for t in query.types)
        if query.starting_after is not None:
            anchor = await self.fetch_one(
                "SELECT pos FROM events WHERE id = ?", (query.starting_after,)
            )
            if anchor is None:
                raise LookupError(query.starting_after)
            where.append("pos > ?" if query.ascending else "pos < ?")
            params.append(anchor[0])
        order = "ASC" if query.ascending else "DESC"
        sql = "SELECT * FROM events" + _clause(where) + f" ORDER BY pos {order} LIMIT ?"
        rows = await self.fetch_all(sql, [*params, query.limit + 1])
        items = [codec.event(r) for r in rows[: query.limit]]
        return Page(items=items, has_more=len(rows) > query.limit)

    async def get_command(self, command_id: str) -> Command | None:
        row = await self.fetch_one("SELECT * FROM commands WHERE id = ?", (command_id,))
        return None if row is None else codec.command(row)

    async def open_commands(self, charger_id: str | None = None) -> list[Command]:
        """Commands not finished yet, in the order they were stored (to resume or fail them
        at start; on a cluster, for the node that holds their charger to send)."""
        if charger_id is None:
            rows = await self.fetch_all(
                "SELECT * FROM commands WHERE status = 'requested' ORDER BY pos"
            )
        else:
            rows = await self.fetch_all(
                "SELECT * FROM commands WHERE status = 'requested' AND charger_id = ? ORDER BY pos",
                (charger_id,),
            )
        return [codec.command(r) for r in rows]

    async def list_commands(
        self,
        *,
        charger_id: str | None = None,
        statuses: Sequence[str] = (),
        deferred: bool | None = None,
        limit: int,
        starting_after: str | None = None,
    ) -> Page[Command]:
        """Commands newest first (by ``pos``, migration 0006); ``starting_after`` is the id of
        the last one seen (LookupError when no command has it)."""
        where, params = _where(
            ("charger_id = ?", charger_id),
            ("deferred = ?", None if deferred is None else int(deferred)),
        )
        if statuses:
            where.append("status IN (" + ",".join("?" * len(statuses)) + ")")
            params.extend(statuses)
        if starting_after is not None:
            anchor = await self.fetch_one(
                "SELECT pos FROM commands WHERE id = ?", (starting_after,)
            )
            if anchor is None:
                raise LookupError(starting_after)
            where.append("pos < ?")
            params.append(anchor[0])
        sql = "SELECT * FROM commands" + _clause(where) + " ORDER BY pos DESC LIMIT ?"
        rows = await self.fetch_all(sql, [*params, limit + 1])
        return Page(items=[codec.command(r) for r in rows[:limit]], has_more=len(rows) > limit)

    async def charger_settings(self, charger_id: str) -> dict[str, Any]:
        rows = await self.fetch_all(
            "SELECT key, value FROM charger_settings WHERE charger_id = ? ORDER BY key",
            (charger_id,),
        )
        return {row["key"]: codec.loads(row["value"]) for row in rows}

    async def events_of_charger(self, charger_id: str) -> list[Event]:
        rows = await self.fetch_all(
            "SELECT * FROM events WHERE charger_id = ? ORDER BY pos", (charger_id,)
        )
        return [codec.event(r) for r in rows]


class StoreUnavailable(RuntimeError):
    """The database did not answer: unreachable, or the connection was lost or timed out.

    Raised by a backend instead of its driver's error so that callers can tell an outage
    from a bad unit. From a commit it means the outcome is unknown: the transaction may have
    been committed (its COMMIT sent, the answer lost), so whoever keeps state derived from
    the unit must read it back from the store rather than assume either outcome.
    """


class SequenceTaken(RuntimeError):
    """A unit was computed from a charger's state that another writer (another node, or an
    API call) moved on meanwhile: nothing of it was written; compute it again from the store."""


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    """``submit``'s future, unless its caller gave up on it (cancelled)."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _tell(settled: Settled, error: BaseException | None) -> None:
    try:
        settled(error)
    except Exception:
        log.exception("a committed unit's callback failed")


def _commit_error() -> RuntimeError:
    return RuntimeError("the store could not commit this change")


def _where(*conditions: tuple[str, Any]) -> tuple[list[str], list[Any]]:
    where, params = [], []
    for clause, value in conditions:
        if value is not None:
            where.append(clause)
            params.append(value)
    return where, params


def _clause(where: list[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""
