"""The server store: PostgreSQL through asyncpg, group commit, event positions in commit order.

One write connection fed by the group committer (``Store``): each batch of units is one
transaction, its statements sent with ``executemany`` (one pipelined round trip per
statement). Reads go through a small pool, so they never queue behind a commit.

Event positions (``events.pos``) follow commit order, which fan-out relies on ("every event
after pos N"): each transaction that writes events bumps the ``store_counters`` row
``events_pos`` first. Its row lock is held until commit, so no transaction that got a lower
pos can become visible after one with a higher pos, whatever process wrote it. A sequence or
identity column would not do: its values are taken before commit, in any order.

The SQL is the shared, portable text of ``storage/`` with ``?`` placeholders, rewritten once
per statement to asyncpg's ``$n``.

Losing the database (a restart, a network cut, a half-open connection) is survived without a
restart of ours, and fails fast instead of hanging: every connection attempt, statement and
group commit has a deadline, and the outage surfaces as ``StoreUnavailable``. A writer
connection that broke is replaced on the next transaction; the read pool replaces its own.
A transaction whose connection broke mid-way may still commit on the server (its COMMIT sent,
the answer lost), so its backend is an *orphan*: before the next read or write, the orphan is
made to end (``pg_terminate_backend`` and wait), so that what is read afterwards is final and
nothing derived from it can collide with a COMMIT landing late.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from storage import pg_migrations
from storage import sqlite_rows as codec
from storage import webhook_tables as tables
from storage.records import MeterSample, TransactionProgress, UnitOfWork
from storage.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

_BUMP_EVENTS_POS = (
    "UPDATE store_counters SET value = value + $1 WHERE name = 'events_pos' RETURNING value"
)
# The counter bump as the first part of a merged statement (below): $1 is the number of events.
_BUMP_PART = (
    "bump AS (UPDATE store_counters SET value = value + $1 WHERE name = 'events_pos'"
    " RETURNING value - $1 + 1 AS first)"
)
POOL_SIZE = 8  # readers: the API and the engine's loads; writes have their own connection

# Deadlines, so that an outage fails a charger's CALL within seconds instead of hanging it.
CONNECT_TIMEOUT = 2.0  # one connection attempt (a cut network may swallow it silently)
WRITE_DEADLINE = 5.0  # one group commit, BEGIN to COMMIT's answer (normally milliseconds)
READ_TIMEOUT = 5.0  # one read, waiting for a pooled connection included (normally ms)
PING_TIMEOUT = 1.5  # the health check, connecting included: a 503 within ~2 s
CLOSE_TIMEOUT = 2.0
ORPHAN_WAIT_MS = 3000  # how long to wait for an orphaned writer backend to end
# A writer backend whose client vanished mid-transaction would keep its locks (the events_pos
# counter row: every commit waits behind it) until TCP keepalive noticed, hours by default.
WRITER_SETTINGS = {"idle_in_transaction_session_timeout": "10000"}  # ms
# Errors that say the database was not there, rather than that it refused what we sent.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError too
    asyncpg.InterfaceError,  # the connection is closed or in an unknown state
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.OperatorInterventionError,  # class 57: shutdown, cannot connect now, cancelled
)


@dataclass(frozen=True, slots=True)
class _Unnested:
    """A statement of ``storage/`` written for all its rows of a batch at once: the rows go as
    column arrays (``{0}`` in ``sql``), unpacked by ``unnest``. On the server that is one
    execution instead of one per row: about half the CPU for the webhook bookkeeping."""

    table: str  # the one table it touches
    sql: str
    types: tuple[str, ...]  # of the row's parameters, in order
    # Keyed by these parameters (an UPDATE, or an upsert): only the last row of a key is
    # written, which is what running the rows one by one would leave.
    last_by: tuple[int, ...] | None = None

    def arrays(self, rows: list[tuple[Any, ...]]) -> list[list[Any]]:
        """The rows as column arrays, one row per key when keyed."""
        if self.last_by is not None:
            key = self.last_by
            rows = list({tuple(row[i] for i in key): row for row in rows}.values())
        return [list(column) for column in zip(*rows, strict=True)]

    def statement(self, first: int = 1) -> str:
        """``sql`` with its arrays as parameters ``$first``, ``$first+1``, ..."""
        arrays = ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(self.types))
        return self.sql.format(arrays)


# What each MeterValues writes (its event, its samples, the transaction's running reading):
# under load every await of a transaction is a round trip *and* a wait for the event loop's
# turn (tens of ms while the chargers' messages queue), so these go as one statement, with the
# events_pos bump, instead of one round trip each.
_MERGED: dict[str, _Unnested] = {
    codec.EVENT_INSERT: _Unnested(
        "events",
        "INSERT INTO events (pos, id, type, charger_id, sequence, timestamp, data)"
        " SELECT bump.first + r.n - 1, r.c1, r.c2, r.c3, r.c4, r.c5, r.c6"
        " FROM bump, unnest({0}) WITH ORDINALITY AS r(c1, c2, c3, c4, c5, c6, n)",
        ("text", "text", "text", "bigint", "text", "text"),
    ),
    codec._SQL[MeterSample]: _Unnested(
        "meter_values",
        "INSERT INTO meter_values (charger_id, connector_id, transaction_id, timestamp, digest,"
        " sampled_value) SELECT * FROM unnest({0})",
        ("text", "bigint", "bigint", "text", "text", "text"),
    ),
    codec._SQL[TransactionProgress]: _Unnested(
        "transactions",
        "UPDATE transactions AS t SET last_meter = r.c1, energy_wh = r.c2, updated_at = r.c3"
        " FROM unnest({0}) AS r(c1, c2, c3, c4) WHERE t.id = r.c4",
        ("text", "float8", "text", "bigint"),
        last_by=(3,),
    ),
}
_MENTIONS = {m.table: re.compile(rf"\b{m.table}\b", re.IGNORECASE) for m in _MERGED.values()}


def _fenced_insert_run(
    insert: str, types: tuple[str, ...], key: tuple[int, ...] | None
) -> _Unnested:
    """A fenced ``INSERT ... SELECT ... WHERE fence [ON CONFLICT ...]`` of ``webhook_tables``
    (the fence's three parameters last) as one ``INSERT ... SELECT ... FROM unnest``."""
    head, _, rest = insert.partition(" SELECT ")
    _, _, conflict = rest.partition(" ON CONFLICT ")
    n = len(types)
    names = ", ".join(f"c{i}" for i in range(1, n + 1))
    values = ", ".join(f"r.c{i}" for i in range(1, n - 2))
    return _Unnested(
        head.split()[2],
        f"{head} SELECT {values} FROM unnest({{0}}) AS r({names}) WHERE {_fence(n)}"
        + (f" ON CONFLICT {conflict}" if conflict else ""),
        types,
        last_by=key,
    )


def _fence(n: int) -> str:
    """``webhook_tables``' lease check, on the last three of ``n`` unnested columns."""
    return (
        f"EXISTS (SELECT 1 FROM delivery_leases AS l WHERE l.partition = r.c{n - 2}"
        f" AND l.node_id = r.c{n - 1} AND l.token = r.c{n})"
    )


# The engine's bookkeeping (on PostgreSQL every write of it is fenced), written at thousands
# of rows a second while it delivers: a run of one of these in a transaction is one statement.
# A key's last row is what running them in order leaves: the upserts of a delivery set only
# its status, attempts and next attempt, and its other columns never change.
_DELIVERY_TYPES = ("bigint", "text", "bigint", "text", "text", "text", "bigint", "float8", "text")
_FENCE_TYPES = ("bigint", "text", "bigint")
_RUNS: dict[str, _Unnested] = {
    tables.FENCED_SETTLE: _Unnested(
        "webhook_deliveries",
        "UPDATE webhook_deliveries AS d SET status = r.c1, attempts = r.c2,"
        " next_attempt_at = r.c3 FROM unnest({0}) AS r(c1, c2, c3, c4, c5, c6, c7)"
        f" WHERE d.id = r.c4 AND {_fence(7)}",
        ("text", "bigint", "float8", "bigint", *_FENCE_TYPES),
        last_by=(3,),
    ),
    tables.FENCED_INSERT_DELIVERY: _fenced_insert_run(
        tables.FENCED_INSERT_DELIVERY, (*_DELIVERY_TYPES, *_FENCE_TYPES), None
    ),
    tables.FENCED_UPSERT_DELIVERY: _fenced_insert_run(
        tables.FENCED_UPSERT_DELIVERY, (*_DELIVERY_TYPES, *_FENCE_TYPES), (0,)
    ),
    tables.FENCED_UPSERT_ATTEMPT: _fenced_insert_run(
        tables.FENCED_UPSERT_ATTEMPT,
        (
            *("bigint", "bigint", "text", "text", "text", "text", "text"),
            *("bigint", "float8", "text", "text"),
            *_FENCE_TYPES,
        ),
        (0, 1),
    ),
}
_RUN_STATEMENTS = {sql: run.statement() for sql, run in _RUNS.items()}
# Fewer rows go row by row: a run of 2-4 rows cost PostgreSQL as much as executemany (its
# commit dominates), 16 rows a third less, 64 rows two thirds less. Small runs also coincided
# with a node of a two-node cluster falling seconds behind in delivery (cluster section of
# ``make bench``, e2e p99 10-16 s in 3 of 4 runs against 0.1-0.4 s without); not explained.
RUN_MIN_ROWS = 16


@dataclass(frozen=True, slots=True)
class Backend:
    """A server process, named by its start too, so that a reused pid is never taken for it."""

    pid: int
    started: datetime


class PostgresStore(Store):
    """Storage on one PostgreSQL database. Open with ``await PostgresStore.open(url)``."""

    # The writer whose next transaction is already open: BEGIN went with the last COMMIT.
    _begun: asyncpg.Connection | None = None
    # The cluster node these connections belong to: each is recorded in cluster_backends, so
    # that a node that finds this one lost can end them (``storage.cluster``).
    owner: str | None = None

    def __init__(
        self,
        url: str,
        writer: asyncpg.Connection,
        backend: Backend,
        pool: asyncpg.Pool,
        *,
        server_version: int,
    ) -> None:
        super().__init__()
        self.url = url
        self._writer: asyncpg.Connection | None = writer  # None: lost, reconnect on next use
        self._backend = backend  # the writer's server process
        self._pool = pool
        self._server_version = server_version  # major
        self._orphans: set[Backend] = set()  # writer backends lost mid-transaction
        self._orphans_lock = asyncio.Lock()
        self._writer_suspect = False  # a read found the database away: replace the writer too
        self._sql: dict[str, str] = {}  # "?" text -> "$n" text
        self.runs_written = 0  # statements written as one run (``_RUNS``), for tests

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> PostgresStore:
        """Connect (and migrate, once per database even when several processes start)."""
        if migrate:
            # Its own connection: waiting for another process's migration (the advisory
            # lock) or a long migration must not run into the writer's statement deadline.
            setup = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
            try:
                await pg_migrations.apply(setup)
            finally:
                await setup.close()
        writer, backend = await _connect_writer(url)
        made: list[PostgresStore] = []

        async def record(conn: asyncpg.Connection) -> None:
            if made:
                await made[0]._record_backend(conn)

        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT,
                command_timeout=READ_TIMEOUT,
                init=record,
                reset=_no_session_state,
            )
        except BaseException:
            writer.terminate()
            raise
        version = writer.get_server_version().major
        store = cls(url, writer, backend, pool, server_version=version)
        made.append(store)
        store._start_committer()
        return store

    async def set_owner(self, node_id: str) -> None:
        """Record this store's sessions (now and later ones) as ``node_id``'s."""
        self.owner = node_id
        if self._writer is not None:
            await self._record_backend(self._writer)
        await self._pool.expire_connections()  # replaced on next use, recorded then

    async def _record_backend(self, conn: asyncpg.Connection) -> None:
        if self.owner is None:
            return
        await conn.execute(
            "INSERT INTO cluster_backends (pid, backend_start, node_id)"
            " SELECT pid, backend_start, $1 FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            " ON CONFLICT (pid) DO UPDATE SET backend_start = EXCLUDED.backend_start,"
            " node_id = EXCLUDED.node_id",
            self.owner,
        )

    async def close(self) -> None:
        await self._stop_committer()
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except Exception:  # the database is away: nothing to close politely
            self._pool.terminate()
        if self._writer is not None:
            try:
                await self._writer.close(timeout=CLOSE_TIMEOUT)
            except Exception:
                self._writer.terminate()

    async def open_sibling(self) -> PostgresStore:
        """Connections of its own: asyncpg connections belong to the loop that made them."""
        sibling = await PostgresStore.open(self.url, migrate=False)
        if self.owner is not None:
            await sibling.set_owner(self.owner)
        return sibling

    @property
    def default_key_file(self) -> str | None:
        return None  # webhooks.secret_key_file: the same file on every node

    # -- writing -------------------------------------------------------------------------

    async def _transaction(self, units: list[UnitOfWork]) -> int:
        statements = codec.statements(units)
        writer = await self._ready_writer()
        try:
            async with asyncio.timeout(WRITE_DEADLINE):
                return await self._write(writer, statements)
        except Exception as exc:
            if not _lost(exc) and not writer.is_closed() and await self._rolled_back(writer):
                # The server (or the driver, before sending) turned this batch down: nothing
                # of it committed, and the group commit retries its units one by one.
                raise
            await self._lose_writer(writer)
            raise StoreUnavailable(f"PostgreSQL write failed: {_describe(exc)}") from exc
        except BaseException:  # cancelled mid-transaction: its outcome is unknown
            await self._lose_writer(writer)
            raise

    async def _write(
        self, writer: asyncpg.Connection, statements: list[tuple[str, list[tuple[Any, ...]]]]
    ) -> int:
        # Each await here is a round trip that also waits for the event loop's turn, which
        # under load is long: the fewer, the sooner the batch is durable. A batch of
        # MeterValues is two: the merged statement, and COMMIT (with the next BEGIN).
        begun, self._begun = self._begun is writer, None
        if not begun:
            await writer.execute("BEGIN")
        merged, args, with_events, statements = _merge(statements)
        count = sum(len(rows) for sql, rows in statements if sql == codec.EVENT_INSERT)
        first = 0
        if count:  # events left out of the merged statement: the counter is still first
            last = await writer.fetchval(_BUMP_EVENTS_POS, count)
            first = last - count + 1
        if merged is not None:
            answer = await writer.fetchval(merged, *args)
            if with_events:
                if answer is None:
                    raise RuntimeError("store_counters has no events_pos row")
                first = answer
        pos = first
        for sql, rows in statements:
            if sql == codec.EVENT_INSERT:
                sql = codec.EVENT_INSERT_AT
                rows = [(p, *r) for p, r in enumerate(rows, pos)]
                pos += len(rows)
            run = _RUNS.get(sql)
            if run is not None and len(rows) >= RUN_MIN_ROWS:
                await writer.execute(_RUN_STATEMENTS[sql], *run.arrays(rows))
                self.runs_written += 1
            else:
                await writer.executemany(self._native(sql), rows)
        if self._pending:
            # Units wait for the next batch, which starts at once: its BEGIN goes with this
            # COMMIT (one query, run in order: the COMMIT is durable before BEGIN runs).
            await writer.execute("COMMIT; BEGIN")
            self._begun = writer
        else:
            await writer.execute("COMMIT")
        return first

    async def _rolled_back(self, writer: asyncpg.Connection) -> bool:
        """Whether the connection is good again (out of the failed transaction)."""
        try:
            async with asyncio.timeout(WRITE_DEADLINE):
                await writer.execute("ROLLBACK")
        except Exception:
            return False
        return True

    async def _ready_writer(self) -> asyncpg.Connection:
        """The writer connection; a new one if the last was lost (one attempt, bounded)."""
        writer = self._writer
        if writer is not None and not writer.is_closed() and not self._writer_suspect:
            return writer
        self._writer_suspect = False
        if writer is not None:  # closed or suspect while idle: no transaction of ours open
            self._writer = None
            writer.terminate()
        try:
            writer, backend = await _connect_writer(self.url)
        except Exception as exc:
            raise StoreUnavailable(f"PostgreSQL unreachable: {_describe(exc)}") from exc
        try:
            await self._settle_orphans(writer)
            await self._record_backend(writer)
        except BaseException:
            writer.terminate()
            raise
        log.info("PostgreSQL writer connection re-established")
        self._writer, self._backend = writer, backend
        return writer

    async def _lose_writer(self, writer: asyncpg.Connection) -> None:
        """Drop a writer whose transaction's fate is unknown; its backend becomes an orphan.
        The pooled connections most likely went the same way: they are replaced too."""
        if self._writer is writer:
            self._writer = None
            self._orphans.add(self._backend)
        writer.terminate()
        await self._pool.expire_connections()

    async def _settle_orphans(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        """Make sure no orphaned writer backend is still inside its transaction: until it is
        over, its COMMIT may yet land, after reads that then missed it (a charger's sequence
        reloaded too low), and its row locks hold every commit up. Each is ended (and waited
        for, PostgreSQL 14+); one that cannot be ended counts as settled once it is idle."""
        async with self._orphans_lock:
            if not self._orphans:
                return
            orphans = set(self._orphans)
            try:
                live = await _live(conn, orphans)
                for orphan in live:
                    log.info("ending an interrupted writer's server process (pid %d)", orphan.pid)
                    try:
                        await conn.fetchval(*_terminate(orphan.pid, self._server_version))
                    except asyncpg.PostgresError as exc:  # not allowed, say: it may end alone
                        if isinstance(exc, UNAVAILABLE):
                            raise
                        log.warning("could not end pid %d: %s", orphan.pid, exc)
                busy = [b for b, state in (await _live(conn, set(live))).items() if state != "idle"]
            except UNAVAILABLE as exc:
                raise StoreUnavailable(f"PostgreSQL unreachable: {_describe(exc)}") from exc
            if busy:
                raise StoreUnavailable(
                    f"an interrupted write (server pid {busy[0].pid}) has not ended yet"
                )
            self._orphans -= orphans

    # -- reading -------------------------------------------------------------------------

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        return await self._within(READ_TIMEOUT, "read failed", self._fetch(sql, params))

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[asyncpg.Record]:
        if self._orphans:
            await self._settle_orphans(self._pool)
        return await self._pool.fetch(self._native(sql), *params)

    async def ping(self) -> None:
        """A round trip through the pool, within PING_TIMEOUT (connecting included)."""
        await self._within(PING_TIMEOUT, "unreachable", self._pool.fetchval("SELECT 1"))

    async def _within(self, deadline: float, what: str, work: Awaitable[T]) -> T:
        """``work`` (on the pool) within ``deadline`` seconds. Late, it is left to end by
        itself: cancelling a query on a dead path waits for a cancel request of its own (a
        new connection), which would double the wait."""
        task = asyncio.ensure_future(work)
        task.add_done_callback(_retrieve)
        try:
            done, _ = await asyncio.wait([task], timeout=deadline)
        except BaseException:
            task.cancel()
            raise
        if not done:
            task.cancel()
            raise await self._pool_failed(what, TimeoutError())
        try:
            return task.result()
        except UNAVAILABLE as exc:
            raise await self._pool_failed(what, exc) from exc

    async def _pool_failed(self, what: str, exc: BaseException) -> StoreUnavailable:
        """After one pooled connection failed, replace them all on next use (and the writer
        before its next transaction): the others most likely went the same way, and on a
        half-open path each would otherwise have to time out in turn."""
        await self._pool.expire_connections()
        self._writer_suspect = True
        return StoreUnavailable(f"PostgreSQL {what}: {_describe(exc)}")

    def _glob(self, column: str) -> str:
        return f"{column} ~ ?"

    def _glob_pattern(self, pattern: str) -> str:
        return glob_to_regex(pattern)

    def _casefold_equals(self, column: str) -> str:
        return f"lower({column}) = ?"  # the columns are COLLATE "C": lower() folds ASCII only

    def _casefold_param(self, value: str) -> str:
        return value.translate(_ASCII_LOWER)  # as SQLite's NOCASE: ASCII letters only

    def _native(self, sql: str) -> str:
        native = self._sql.get(sql)
        if native is None:
            native = self._sql[sql] = to_dollar_params(sql)
        return native


def _merge(
    statements: list[tuple[str, list[tuple[Any, ...]]]],
) -> tuple[str | None, list[Any], bool, list[tuple[str, list[tuple[Any, ...]]]]]:
    """The statements of ``_MERGED`` in the batch as one (run first), its arguments, whether
    it writes events (then it bumps the counter and answers the first pos), and the rest.

    One goes in only if it is the batch's only statement on its table, so that running it
    first (and in one snapshot with the others merged) changes nothing; the events first
    also keeps the counter the first lock a transaction takes.
    """
    found = [sql for sql, _ in statements if sql in _MERGED]
    if not found:
        return None, [], False, statements
    eligible = {
        sql
        for sql in found
        if found.count(sql) == 1
        and not any(
            other != sql and _MENTIONS[_MERGED[sql].table].search(other) for other, _ in statements
        )
    }
    if not eligible:
        return None, [], False, statements
    by_sql = dict(statements)
    with_events = codec.EVENT_INSERT in eligible
    parts: list[str] = []
    args: list[Any] = []
    if with_events:
        parts.append(_BUMP_PART)
        args.append(len(by_sql[codec.EVENT_INSERT]))
    for sql, form in _MERGED.items():  # a fixed order: one prepared text per combination
        if sql not in eligible:
            continue
        parts.append(f"write_{form.table} AS ({form.statement(len(args) + 1)})")
        args.extend(form.arrays(by_sql[sql]))
    select = "SELECT first FROM bump" if with_events else "SELECT 0"
    rest = [(sql, rows) for sql, rows in statements if sql not in eligible]
    return f"WITH {', '.join(parts)} {select}", args, with_events, rest


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """The pool's reset: its connections only ever run single reads (``fetch_all``, no
    SET, LISTEN, cursor or advisory lock), so there is no session state to undo. asyncpg's
    default sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every
    release, a round trip per read; an open transaction is still rolled back before this."""


async def _connect_writer(url: str) -> tuple[asyncpg.Connection, Backend]:
    """A writer connection and its server process (to settle it should it be orphaned)."""
    conn = await asyncpg.connect(
        url,
        timeout=CONNECT_TIMEOUT,
        command_timeout=WRITE_DEADLINE,
        server_settings=WRITER_SETTINGS,
    )
    try:
        row = await conn.fetchrow(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
    except BaseException:
        conn.terminate()
        raise
    return conn, Backend(row[0], row[1])


async def _live(
    conn: asyncpg.Connection | asyncpg.Pool, backends: set[Backend]
) -> dict[Backend, str | None]:
    """Those of the backends that still run, with their state (``idle``: in no transaction)."""
    if not backends:
        return {}
    rows = await conn.fetch(
        "SELECT pid, backend_start, state FROM pg_stat_activity WHERE pid = ANY($1::int[])",
        [b.pid for b in backends],
    )
    running = {Backend(row[0], row[1]): row[2] for row in rows}
    return {b: state for b, state in running.items() if b in backends}


def _terminate(pid: int, server_version: int) -> tuple[Any, ...]:
    """The statement that ends a server process, and waits until it has (PostgreSQL 14+)."""
    if server_version >= 14:
        return "SELECT pg_terminate_backend($1, $2)", pid, ORPHAN_WAIT_MS
    return "SELECT pg_terminate_backend($1)", pid


def _lost(exc: BaseException) -> bool:
    """The connection failed (or timed out) under the transaction: its outcome is unknown."""
    return isinstance(
        exc, OSError | asyncpg.PostgresConnectionError | asyncpg.OperatorInterventionError
    )


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a probe's failure as seen (it is reported by whoever awaited it, if anyone)."""
    if not task.cancelled():
        task.exception()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


_PLACEHOLDER = re.compile(r"\?")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def to_dollar_params(sql: str) -> str:
    """``?`` placeholders as ``$1, $2, ...`` (the SQL of ``storage/`` has no ``?`` in literals)."""
    numbers = iter(range(1, sql.count("?") + 1))
    return _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", sql)


def glob_to_regex(pattern: str) -> str:
    """An anchored POSIX regex matching what SQLite's GLOB matches: ``*``, ``?``, ``[...]``."""
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out) + "$"
