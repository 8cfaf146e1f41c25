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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from storage import pg_migrations
from storage import sqlite_rows as codec
from storage.records import UnitOfWork
from storage.store import Store

_BUMP_EVENTS_POS = (
    "UPDATE store_counters SET value = value + $1 WHERE name = 'events_pos' RETURNING value"
)
POOL_SIZE = 8  # readers: the API and the engine's loads; writes have their own connection


class PostgresStore(Store):
    """Storage on one PostgreSQL database. Open with ``await PostgresStore.open(url)``."""

    def __init__(self, url: str, writer: asyncpg.Connection, pool: asyncpg.Pool) -> None:
        super().__init__()
        self.url = url
        self._writer = writer
        self._pool = pool
        self._sql: dict[str, str] = {}  # "?" text -> "$n" text

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> PostgresStore:
        """Connect (and migrate, once per database even when several processes start)."""
        writer = await asyncpg.connect(url)
        try:
            if migrate:
                await pg_migrations.apply(writer)
            pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE)
        except BaseException:
            await writer.close()
            raise
        store = cls(url, writer, pool)
        store._start_committer()
        return store

    async def close(self) -> None:
        await self._stop_committer()
        await self._pool.close()
        await self._writer.close()

    async def open_sibling(self) -> PostgresStore:
        """Connections of its own: asyncpg connections belong to the loop that made them."""
        return await PostgresStore.open(self.url, migrate=False)

    @property
    def default_key_file(self) -> str | None:
        return None  # webhooks.secret_key_file: the same file on every node

    # -- writing -------------------------------------------------------------------------

    async def _transaction(self, units: list[UnitOfWork]) -> int:
        statements = codec.statements(units)
        count = sum(len(rows) for sql, rows in statements if sql == codec.EVENT_INSERT)
        first = 0
        async with self._writer.transaction():
            if count:
                last = await self._writer.fetchval(_BUMP_EVENTS_POS, count)
                first = last - count + 1
            pos = first
            for sql, rows in statements:
                if sql == codec.EVENT_INSERT:
                    sql = codec.EVENT_INSERT_AT
                    rows = [(p, *r) for p, r in enumerate(rows, pos)]
                    pos += len(rows)
                await self._writer.executemany(self._native(sql), rows)
        return first

    # -- reading -------------------------------------------------------------------------

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        return await self._pool.fetch(self._native(sql), *params)

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

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
