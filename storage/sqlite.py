"""The embedded default store: SQLite through aiosqlite, WAL mode, group commit.

Two connections: one writer, fed by a group committer, and one reader for the API and for
loading state, so reads never queue behind writes (WAL lets them run side by side).

Group commit: units of work that arrive while a transaction is being written wait, and are
then written together in the next transaction, grouped by statement (``executemany``). Each
caller's ``commit()`` returns only once its unit is durable, so an OCPP reply sent after it
is never ahead of the store. ``synchronous=NORMAL`` in WAL mode keeps every committed
transaction through a process crash (kill -9), not through a power loss.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite

from storage import migrations
from storage import sqlite_rows as codec
from storage.cpus import usable_cpus
from storage.records import (
    UnitOfWork,
)
from storage.store import Store

log = logging.getLogger(__name__)
WRITER_CHECKPOINT_PAGES = 40_000  # see ``Writer.__init__``


class Writer:
    """The one write connection to a database file, and the one thread that uses it (or,
    on one CPU, the loops that write through it, one at a time).

    Stores on other event loops (the webhook engine's) share it: two write connections to
    one file take turns through SQLite's busy handler, which sleeps (1, 2, 5, 10 ms ...)
    while the other writes, and each invalidates the other's page cache.
    """

    def __init__(self, path: str, *, inline: bool | None = None) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in _PRAGMAS:
            self.connection.execute(pragma)
        # Checkpoints run on a thread of their own (``Checkpointer``): run by the writer
        # after a commit, each one's flush of the database file stalled the group commit,
        # and the chargers waiting on it (ingest N=1000: the server idle 8% of the time,
        # 12,384 calls/s; without the stall 99.8% busy, 13,990). The writer checkpoints
        # only if the WAL grows past this anyway (the checkpointer stopped or kept from
        # finishing by a long read): 40,000 pages, 160 MiB.
        self.connection.execute(f"PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES}")
        # On one CPU the writer thread only adds hand-offs: each batch woke it, and its
        # answer woke the loop again, a pair of context switches and GIL hand-overs per
        # commit that cost more than many commits' SQLite work (chargehook-webhooks at 1,000
        # MeterValues/s open loop, one core: 866-885 -> 772-789 us of server CPU per call).
        # There the calling loop writes itself (``inline``), the loops that share this
        # writer taking turns on ``_lock``; with more CPUs the thread lets SQLite's work
        # (the GIL released) overlap the loop's.
        self.inline = usable_cpus() < 2 if inline is None else inline
        self.thread = (
            None if self.inline else ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        )
        self._lock = threading.Lock()
        self.commits = 0  # counted by ``thread``; the checkpointer reads it
        self.checkpointer = Checkpointer(path, lambda: self.commits)
        # The last events.pos given out (AUTOINCREMENT's counter: never reused, even when the
        # newest events were pruned). Touched only by ``thread`` from here on.
        self._last_pos: int = self.connection.execute(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
            " COALESCE((SELECT MAX(pos) FROM events), 0))"
        ).fetchone()[0]

    async def write(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> int:
        """Write in one transaction; the pos given to the first event written (the others
        follow it in the order of the statements' rows)."""
        if self.thread is None:
            with self._lock:
                return self._write(statements)
        return await asyncio.get_running_loop().run_in_executor(
            self.thread, self._write, statements
        )

    def _write(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> int:
        """On the writer thread, or inline under ``_lock`` (sqlite3 releases the GIL while
        it works)."""
        conn, pos = self.connection, self._last_pos
        first = pos + 1
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                if sql == codec.EVENT_INSERT:
                    sql, rows = codec.EVENT_INSERT_AT, [(p, *r) for p, r in enumerate(rows, first)]
                    pos += len(rows)
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._last_pos = pos
        self.commits += 1
        return first

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.checkpointer.stop)
        if self.thread is None:
            with self._lock:
                self.connection.close()
            return
        await asyncio.get_running_loop().run_in_executor(self.thread, self.connection.close)
        self.thread.shutdown(wait=True)


class Checkpointer:
    """Copies the WAL back into the database file from a thread and connection of its own.

    A PASSIVE checkpoint takes no lock the writer needs, so commits go on while it copies
    pages and flushes the file; once the whole WAL is copied and no reader still uses it,
    the writer's next transaction starts the WAL over. It looks every ``INTERVAL`` seconds
    and checkpoints when there were commits since its last look. Durability is the WAL's
    either way: a committed transaction is in the WAL before its commit returns.
    """

    # A checkpoint copies each page the WAL holds once, however many commits rewrote it
    # since the last: at 1,000 chargers every commit touches each one's last index pages,
    # so checkpointing less often copies fewer pages per event. Every 1 s instead of 0.25 s
    # (4 commits apart at ingest N=1000): server CPU per MeterValues 98.9 -> 94.7 us
    # (medians of 3 alternating runs); a synthetic replay of those batches, checkpoint CPU
    # per row 14.1 -> 8.4 us. The WAL grows to ~60 MB between checkpoints under that load.
    INTERVAL = 1.0

    def __init__(self, path: str, commits: Callable[[], int]) -> None:
        self._path = path
        self._commits = commits
        self._stopping = threading.Event()
        self.passes = 0  # checkpoints that found the whole WAL copied back (for tests)
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA busy_timeout = 5000")
            seen = -1
            while not self._stopping.wait(self.INTERVAL):
                commits = self._commits()
                if commits == seen:
                    continue
                seen = commits
                try:
                    busy, wal_pages, copied = connection.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchone()
                except sqlite3.Error:
                    log.exception("background checkpoint failed")
                    continue
                if not busy and wal_pages == copied:
                    self.passes += 1
        finally:
            connection.close()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


class SqliteStore(Store):
    """Storage on one SQLite file. Open with ``await SqliteStore.open(path)``.

    Reads go through aiosqlite. Writes go through one plain ``sqlite3`` connection on a
    dedicated writer thread, one thread hop per group-committed batch (none on one CPU:
    ``Writer``): aiosqlite hops once per statement, and those hops (each a GIL hand-over
    between the loop and its thread) cost more than the writes themselves at thousands of
    messages per second.
    """

    def __init__(
        self, path: str, writer: Writer, reader: aiosqlite.Connection, *, owns_writer: bool
    ):
        self.path = path
        self.url = f"sqlite:///{path}"
        self.writer = writer  # shared with stores opened with ``share_writer=self.writer``
        self._owns_writer = owns_writer
        self._reader = reader  # reads of committed state
        super().__init__()

    @classmethod
    async def open(
        cls, path: str, *, share_writer: Writer | None = None, inline: bool | None = None
    ) -> SqliteStore:
        """Open (and migrate) the file. ``share_writer``: write through that store's writer
        (another event loop's store of the same file); it stays its owner's to close.
        ``inline``: ``Writer``'s (None: by the CPUs usable)."""
        if share_writer is None:
            await migrate_file(path)
        reader = await _connect(path)
        writer = share_writer or Writer(path, inline=inline)
        store = cls(path, writer, reader, owns_writer=share_writer is None)
        store._start_committer()
        return store

    async def close(self) -> None:
        await self._stop_committer()
        await self._reader.close()
        if self._owns_writer:
            await self.writer.close()

    # -- writing -------------------------------------------------------------------------

    async def _transaction(self, units: list[UnitOfWork]) -> int:
        statements = codec.statements(units)  # built here, on the loop: the thread only writes
        return await self.writer.write(statements)

    # -- reading -------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._reader.execute_fetchall("SELECT 1")

    async def open_sibling(self) -> SqliteStore:
        """Its own reader, and writes through this store's one writer (two writers to one
        file would take turns through SQLite's sleeping busy handler)."""
        return await SqliteStore.open(self.path, share_writer=self.writer)

    @property
    def default_key_file(self) -> str | None:
        return None if self.path in ("", ":memory:") else f"{self.path}.webhook-key"

    def _glob(self, column: str) -> str:
        return f"{column} GLOB ?"

    def _casefold_equals(self, column: str) -> str:
        return f"{column} = ? COLLATE NOCASE"

    def _indexed_by(self, index: str) -> str:
        """SQLite's statistics keep rows per key on average, not the NULLs' share: after
        ANALYZE it takes ``transaction_id IS NULL`` for a key of a few rows of
        ``meter_values_transaction`` and reads every untransacted sample of every charger
        with it (3 ms instead of 0.2 ms at 200k samples); and it reads a charger's active
        transactions through all of its transactions, in the order it wants them, rather
        than through the partial index."""
        return f" INDEXED BY {index}"

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """Committed rows; for the store's own modules (SQL stays inside ``storage/``).

        Executed and fetched in one step on the reader's thread: a statement left open
        across an ``await`` would pin the reader connection to an old WAL snapshot for every
        other coroutine sharing it, hiding their own just-committed writes.
        """
        return list(await self._reader.execute_fetchall(sql, params))


_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA foreign_keys = OFF",
)


async def migrate_file(path: str) -> list[int]:
    """Create the file (and its folder) if needed and apply the migrations it lacks."""
    if path != ":memory:":
        Path(path).resolve().parent.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    setup = await _connect(path)
    try:
        return await migrations.apply(setup)
    finally:
        await setup.close()


async def _connect(path: str) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    for pragma in _PRAGMAS:
        await conn.execute(pragma)
    return conn


def _commit_error() -> RuntimeError:
    return RuntimeError("the store could not commit this change")
