"""Versioned schema migrations: ``storage/migrations/NNNN_name.sql``, applied in order at start.

Each file runs once, inside one transaction together with its row in ``schema_migrations``, so
a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import aiosqlite

log = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class NewerSchemaError(Exception):
    """The database was migrated by a newer version; this one must not write to it."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available(folder: str = "migrations") -> list[Migration]:
    """The migration files shipped in this package under ``folder`` (``/``-separated, e.g.
    ``migrations/postgres``), by version."""
    found = []
    root = resources.files("storage")
    for part in folder.split("/"):
        root = root.joinpath(part)
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


def to_apply(known: list[Migration], done: set[int]) -> list[Migration]:
    """The known migrations not done yet, in order; refuses a database at a version newer
    than any known (this code must not write to a schema it does not know)."""
    newest_known = known[-1].version if known else 0
    if done and max(done) > newest_known:
        raise NewerSchemaError(
            f"the database is at schema version {max(done)}, written by a newer chargehook;"
            f" this one knows versions up to {newest_known}: upgrade chargehook (or point"
            " storage.url at another database)"
        )
    return [m for m in known if m.version not in done]


async def apply(conn: aiosqlite.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the migrations not yet applied; return their versions.

    ``migrations``: the shipped ones unless given (tests give a prefix of them)."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
    )
    async with conn.execute("SELECT version FROM schema_migrations") as cursor:
        done = {row[0] async for row in cursor}
    applied = []
    for migration in to_apply(available() if migrations is None else migrations, done):
        log.info("applying migration %04d_%s", migration.version, migration.name)
        # executescript() commits first; wrap the file and its record in one transaction.
        try:
            await conn.executescript(
                "BEGIN IMMEDIATE;\n"
                + migration.sql
                + f"\nINSERT INTO schema_migrations (version, name) VALUES ({migration.version},"
                f" '{migration.name}');\nCOMMIT;"
            )
        except Exception:
            if conn.in_transaction:
                await conn.rollback()
            raise
        applied.append(migration.version)
    return applied
