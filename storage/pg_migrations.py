"""PostgreSQL schema migrations: ``storage/migrations/postgres/NNNN_name.sql``.

The same version numbers and names as the SQLite migrations (``storage/migrations.py``), so a
version in ``schema_migrations`` means the same schema on both backends. Each file runs once,
in one transaction together with its row in ``schema_migrations``. Several processes may
start against one database at the same moment: a session advisory lock makes them migrate
one after the other, so each file is applied once and the others find it done.

Tables are created in the connection's current schema (the first of its ``search_path``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from storage.migrations import Migration, available, to_apply

log = logging.getLogger(__name__)

FOLDER = "migrations/postgres"

# The pg_advisory_lock key held while migrating: a fixed 64-bit number ("chk-migr" in ASCII)
# that no other user of the database is expected to take. It is per database, not per schema.
LOCK_KEY = int.from_bytes(b"chk-migr", "big", signed=True)

_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    ' version BIGINT PRIMARY KEY, name TEXT COLLATE "C" NOT NULL,'
    ' applied_at TEXT COLLATE "C" NOT NULL'
    """ DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))"""
)


async def apply(
    conn: asyncpg.Connection, migrations: Sequence[Migration] | None = None
) -> list[int]:
    """Apply the migrations not yet applied; return their versions.

    ``migrations``: the shipped PostgreSQL migrations unless given (tests give others).
    Raises NewerSchemaError, without changing anything, when the database has a version
    newer than any known here.
    """
    if conn.is_in_transaction():
        # Each migration must commit on its own; inside the caller's transaction a failed one
        # would also leave that transaction aborted, and the lock could not be released.
        raise RuntimeError("apply() needs a connection outside a transaction")
    known = sorted(available(FOLDER) if migrations is None else migrations, key=_version)
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        return await _apply_locked(conn, known)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _apply_locked(conn: asyncpg.Connection, known: list[Migration]) -> list[int]:
    """Under the lock: nobody else migrates this database meanwhile."""
    await conn.execute(_CREATE_TABLE)
    done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    applied = []
    for migration in to_apply(known, done):
        log.info("applying migration %04d_%s (postgres)", migration.version, migration.name)
        async with conn.transaction():
            # No arguments: the simple query protocol, which runs a file of statements.
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
        applied.append(migration.version)
    return applied


def _version(migration: Migration) -> int:
    return migration.version
