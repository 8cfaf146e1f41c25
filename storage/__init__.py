"""Persistence behind one async interface (``storage.store.Store``): SQLite (aiosqlite), the
embedded default, or PostgreSQL (asyncpg). ``open_store(url)`` picks by the URL's scheme."""

from __future__ import annotations

from storage.store import Store

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def sqlite_path(url: str) -> str:
    """``sqlite:///rel`` -> ``rel``; ``sqlite:////abs`` -> ``/abs`` (as in SQLAlchemy)."""
    return url.removeprefix(SQLITE_PREFIX)


async def open_store(url: str) -> Store:
    """Open (and migrate) the database ``url`` names."""
    if url.startswith(SQLITE_PREFIX):
        from storage.sqlite import SqliteStore

        return await SqliteStore.open(sqlite_path(url))
    if url.startswith(POSTGRES_SCHEMES):
        from storage.postgres import PostgresStore

        return await PostgresStore.open(url)
    raise ValueError(f"unsupported storage URL {url!r}: sqlite:///path or postgresql://...")
