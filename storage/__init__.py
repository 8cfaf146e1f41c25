"""Persistence behind one async interface (``storage.store.Store``): SQLite (aiosqlite), the
embedded default, or PostgreSQL (asyncpg). ``open_store(url)`` picks by the URL's scheme."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from storage.store import Store

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def display_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def sqlite_path(url: str) -> str:
    """``sqlite:///rel`` -> ``rel``; ``sqlite:////abs`` -> ``/abs`` (as in SQLAlchemy)."""
    return url.removeprefix(SQLITE_PREFIX)


async def migrate(url: str) -> list[int]:
    """Apply the schema migrations ``url``'s database lacks (once, even when several processes
    start together); the versions applied. ``open_store`` does the same on its way."""
    if url.startswith(SQLITE_PREFIX):
        from storage.sqlite import migrate_file

        return await migrate_file(sqlite_path(url))
    if url.startswith(POSTGRES_SCHEMES):
        import asyncpg

        from storage import pg_migrations

        conn = await asyncpg.connect(url)
        try:
            return await pg_migrations.apply(conn)
        finally:
            await conn.close()
    raise ValueError(f"unsupported storage URL {url!r}: sqlite:///path or postgresql://...")


async def open_store(url: str) -> Store:
    """Open (and migrate) the database ``url`` names."""
    if url.startswith(SQLITE_PREFIX):
        from storage.sqlite import SqliteStore

        return await SqliteStore.open(sqlite_path(url))
    if url.startswith(POSTGRES_SCHEMES):
        from storage.postgres import PostgresStore

        return await PostgresStore.open(url)
    raise ValueError(f"unsupported storage URL {url!r}: sqlite:///path or postgresql://...")
