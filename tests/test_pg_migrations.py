"""PostgreSQL migrations (storage/pg_migrations.py) on a real server: the schema they make
matches SQLite's table for table and column for column, each runs once (also when several
processes start together), a newer database is refused, and tests/pg.py skips or fails as
it should when no server answers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from storage import migrations as sqlite_migrations
from storage import pg_migrations
from storage.migrations import Migration, NewerSchemaError
from tests.pg import connect_admin, schema_of

pytest_plugins = ["tests.pg"]  # the fixtures pg_url, fresh_schema_url

REPO = Path(__file__).resolve().parent.parent
VERSIONS = [m.version for m in sqlite_migrations.available(pg_migrations.FOLDER)]

# SQLite-only machinery (0006's position table, AUTOINCREMENT's counters), PostgreSQL-only
# (the events.pos counter the writer bumps).
SQLITE_ONLY = {"command_positions", "sqlite_sequence"}
# The cluster (DESIGN 8) exists on PostgreSQL only: a SQLite file has one node.
POSTGRES_ONLY = {"store_counters", "cluster_nodes", "charger_owners", "cluster_backends"}
POSTGRES_ONLY_INDEXES = {"id_tags_lower", "charger_owners_by_node"}
FLAGS = {("charger_state", "connected"), ("commands", "deferred")}  # 0/1: INTEGER, not BIGINT


async def _migrated(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await pg_migrations.apply(conn)
    return conn


# -- the schema ----------------------------------------------------------------------------


async def _sqlite_schema(path: Path) -> dict[str, Any]:
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await sqlite_migrations.apply(conn)
        names = [
            row[0]
            for row in await conn.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        tables, indexes = {}, {}
        for table in names:
            if table in SQLITE_ONLY:
                continue
            tables[table] = [
                # cid, name, type, notnull, dflt_value, pk
                (r[1], r[2], bool(r[3]), r[4], r[5] > 0)
                for r in await conn.execute_fetchall(f"PRAGMA table_info({table})")
            ]
            for _, name, unique, origin, partial in await conn.execute_fetchall(
                f"PRAGMA index_list({table})"
            ):
                info = await conn.execute_fetchall(f"PRAGMA index_info({name})")
                columns = tuple(r[2] for r in sorted(info))
                key = name if origin == "c" else (origin, table, columns)  # "u", "pk": unnamed
                indexes[key] = (table, columns, bool(unique), bool(partial))
    return {"tables": tables, "indexes": indexes}


async def _postgres_schema(conn: asyncpg.Connection) -> dict[str, Any]:
    tables: dict[str, list[tuple[Any, ...]]] = {}
    for r in await conn.fetch(
        "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, c.column_default,"
        " c.is_identity, c.collation_name,"
        " EXISTS (SELECT 1 FROM information_schema.table_constraints t"
        "  JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name)"
        "  WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = c.table_schema"
        "  AND t.table_name = c.table_name AND k.column_name = c.column_name) AS pk"
        " FROM information_schema.columns c WHERE c.table_schema = current_schema()"
        " ORDER BY c.table_name, c.ordinal_position"
    ):
        tables.setdefault(r["table_name"], []).append(tuple(r)[1:])
    indexes = {}
    for r in await conn.fetch(
        "SELECT i.relname AS name, t.relname AS table, ix.indisunique, ix.indisprimary,"
        " ix.indpred IS NOT NULL AS partial,"
        " EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid) AS constraint,"
        " array(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY k(attnum, n)"
        "  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
        "  ORDER BY k.n) AS columns"
        " FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid"
        " JOIN pg_class t ON t.oid = ix.indrelid"
        " WHERE t.relnamespace = current_schema()::regnamespace"
    ):
        columns = tuple(r["columns"])
        if r["constraint"]:
            key: Any = ("pk" if r["indisprimary"] else "u", r["table"], columns)
        else:
            key = r["name"]
        indexes[key] = (r["table"], columns, r["indisunique"], r["partial"])
    return {"tables": tables, "indexes": indexes}


def _pk(index_key: Any) -> bool:
    return isinstance(index_key, tuple) and index_key[0] == "pk"


def _default(value: str | None) -> str | None:
    """A column default as either backend spells it: literals compared, expressions not."""
    if value is None:
        return None
    if "(" in value:
        return "<expression>"
    return value.removesuffix("::text")


async def test_schema_matches_sqlite(pg_url: str, tmp_path: Path) -> None:
    lite = await _sqlite_schema(tmp_path / "schema.db")
    conn = await _migrated(pg_url)
    try:
        pg = await _postgres_schema(conn)
    finally:
        await conn.close()

    assert set(pg["tables"]) == set(lite["tables"]) | POSTGRES_ONLY
    for table, lite_columns in lite["tables"].items():
        pg_columns = pg["tables"][table]
        assert [c[0] for c in pg_columns] == [c[0] for c in lite_columns], table
        for (name, lite_type, notnull, default, pk), pg_column in zip(
            lite_columns, pg_columns, strict=True
        ):
            _, pg_type, nullable, pg_default, identity, collation, pg_pk = pg_column
            where = f"{table}.{name}"
            expected_type = {
                "TEXT": "text",
                "REAL": "double precision",
                "INTEGER": "integer" if (table, name) in FLAGS else "bigint",
            }[lite_type]
            assert pg_type == expected_type, where
            if pg_type == "text":
                assert collation == "C", f"{where}: byte order, as SQLite's BINARY"
            assert pg_pk == pk, where
            # SQLite lets a non-INTEGER primary key be NULL, PostgreSQL does not; identity
            # columns (commands.pos) are NOT NULL too.
            if not pk and identity == "NO":
                assert (nullable == "NO") == notnull, where
            assert _default(pg_default) == _default(default), where

    # Primary keys were compared with the columns (SQLite lists no index for an INTEGER
    # PRIMARY KEY: it is the rowid); the other indexes and unique constraints, here.
    skip = SQLITE_ONLY | POSTGRES_ONLY
    lite_indexes = {k: v for k, v in lite["indexes"].items() if v[0] not in skip and not _pk(k)}
    pg_indexes = {
        k: v
        for k, v in pg["indexes"].items()
        if v[0] not in skip and not _pk(k) and k not in POSTGRES_ONLY_INDEXES
    }
    assert pg_indexes == lite_indexes


async def test_apply_creates_everything_once(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        assert await pg_migrations.apply(conn) == VERSIONS == sorted(set(VERSIONS))
        assert [m.version for m in sqlite_migrations.available()] == VERSIONS
        assert await pg_migrations.apply(conn) == []
        rows = await conn.fetch("SELECT version, name, applied_at FROM schema_migrations")
        assert [(r["version"], r["name"]) for r in rows] == [
            (m.version, m.name) for m in sqlite_migrations.available()
        ]
        assert all(r["applied_at"].endswith("Z") and "T" in r["applied_at"] for r in rows)
        assert await conn.fetchval("SELECT current_schema()") == schema_of(pg_url)
    finally:
        await conn.close()
    # A new connection (a restart) finds everything applied.
    conn = await asyncpg.connect(pg_url)
    try:
        assert await pg_migrations.apply(conn) == []
    finally:
        await conn.close()


async def _advisory_waiters(conn: asyncpg.Connection) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )


async def test_concurrent_apply_migrates_once(pg_url: str) -> None:
    """Five processes starting at once: the lock lets one migrate, the others find it done."""
    holder = await asyncpg.connect(pg_url)
    conns = [await asyncpg.connect(pg_url) for _ in range(5)]
    try:
        # Hold the lock until all five wait for it, so they really start together.
        await holder.execute("SELECT pg_advisory_lock($1)", pg_migrations.LOCK_KEY)
        tasks = [asyncio.create_task(pg_migrations.apply(c)) for c in conns]
        async with asyncio.timeout(10):
            while await _advisory_waiters(holder) < len(conns):  # one round trip a turn
                pass
        await holder.execute("SELECT pg_advisory_unlock($1)", pg_migrations.LOCK_KEY)
        results = await asyncio.gather(*tasks)
        assert sorted(results) == [[], [], [], [], VERSIONS]
        rows = await holder.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == VERSIONS
    finally:
        for conn in [holder, *conns]:
            await conn.close()


async def test_newer_schema_is_refused(pg_url: str) -> None:
    conn = await _migrated(pg_url)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')"
        )
        with pytest.raises(NewerSchemaError, match=rf"schema version 9999.*up to {VERSIONS[-1]}"):
            await pg_migrations.apply(conn)
        # The lock was released: another process can take it.
        other = await asyncpg.connect(pg_url)
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock($1)", pg_migrations.LOCK_KEY)
            await other.execute("SELECT pg_advisory_unlock($1)", pg_migrations.LOCK_KEY)
        finally:
            await other.close()
    finally:
        await conn.close()


async def test_failed_migration_leaves_no_trace(pg_url: str) -> None:
    broken = Migration(
        VERSIONS[-1] + 1, "broken", "CREATE TABLE half_done (a BIGINT);\nSELECT 1 / 0;"
    )
    conn = await asyncpg.connect(pg_url)
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await pg_migrations.apply(
                conn, [*sqlite_migrations.available("migrations/postgres"), broken]
            )
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == VERSIONS  # those before it stay applied
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", pg_migrations.LOCK_KEY)
        await conn.execute("SELECT pg_advisory_unlock($1)", pg_migrations.LOCK_KEY)
    finally:
        await conn.close()


async def test_apply_refuses_a_connection_in_a_transaction(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        async with conn.transaction():
            with pytest.raises(RuntimeError, match="outside a transaction"):
                await pg_migrations.apply(conn)
    finally:
        await conn.close()


# -- what the store relies on --------------------------------------------------------------


async def test_commands_pos_is_kept_by_upserts(pg_url: str) -> None:
    """0006: a command's pos comes from its first insert; the upserts that follow keep it."""
    upsert = (
        "INSERT INTO commands (id, charger_id, action, request, status, deferred, created_at)"
        " VALUES ($1, 'CP1', 'Reset', '{}', $2, 0, '2024-01-01T00:00:00.000Z')"
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status"
    )
    conn = await _migrated(pg_url)
    try:
        await conn.execute(upsert, "cmd_a", "requested")
        await conn.execute(upsert, "cmd_b", "requested")
        await conn.execute(upsert, "cmd_a", "accepted")
        await conn.execute(upsert, "cmd_c", "requested")
        rows = await conn.fetch("SELECT id, status FROM commands ORDER BY pos")
        assert [tuple(r) for r in rows] == [
            ("cmd_a", "accepted"),
            ("cmd_b", "requested"),
            ("cmd_c", "requested"),
        ]
    finally:
        await conn.close()


async def test_events_pos_counter(pg_url: str) -> None:
    """The writer's counter starts at 0; a commit of n events bumps it by n."""
    conn = await _migrated(pg_url)
    try:
        bump = (
            "UPDATE store_counters SET value = value + $1 WHERE name = 'events_pos' RETURNING value"
        )
        assert (
            await conn.fetchval("SELECT value FROM store_counters WHERE name = 'events_pos'") == 0
        )
        async with conn.transaction():
            last = await conn.fetchval(bump, 3)
        assert last == 3  # this commit's events take 1, 2, 3
        assert await conn.fetchval(bump, 2) == 5
    finally:
        await conn.close()


async def test_id_tags_compare_like_sqlite(pg_url: str) -> None:
    """Byte order and ASCII-only case folding (SQLite's BINARY and NOCASE), whatever the
    database's locale; the case-insensitive lookup uses id_tags_lower."""
    conn = await _migrated(pg_url)
    try:
        for tag in ["b", "B", "a", "ÉCLAIR", "Abc"]:
            await conn.execute(
                "INSERT INTO id_tags (id_tag, status, created_at, updated_at)"
                " VALUES ($1, 'Accepted', 'x', 'x')",
                tag,
            )
        rows = await conn.fetch("SELECT id_tag FROM id_tags ORDER BY id_tag")
        assert [r[0] for r in rows] == sorted(["b", "B", "a", "ÉCLAIR", "Abc"])  # code points
        lookup = "SELECT id_tag FROM id_tags WHERE lower(id_tag) = $1 ORDER BY id_tag"
        assert [r[0] for r in await conn.fetch(lookup, "abc")] == ["Abc"]
        assert [r[0] for r in await conn.fetch(lookup, "b")] == ["B", "b"]
        assert [r[0] for r in await conn.fetch(lookup, "Éclair")] == ["ÉCLAIR"]  # É not folded
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + lookup, "abc"))
        assert "id_tags_lower" in plan, plan
    finally:
        await conn.close()


# -- tests/pg.py -----------------------------------------------------------------------------


async def test_schema_urls_are_isolated(fresh_schema_url: Any) -> None:
    """search_path in the URL reaches the server through asyncpg.connect and create_pool."""
    first, second = await fresh_schema_url(), await fresh_schema_url()
    conn = await asyncpg.connect(first)
    try:
        await conn.execute("CREATE TABLE mine (a BIGINT)")
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(second, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_schema()") == schema_of(second)
            assert await conn.fetchval("SELECT to_regclass('mine')") is None
    finally:
        await pool.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nobody listens on (bound, so no one else takes it meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("ci", [None, "", "false", "1"])
async def test_no_server_skips(
    closed_port: int, monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL server answers"):
        await connect_admin(f"postgresql://postgres@127.0.0.1:{closed_port}/postgres")


@pytest.mark.parametrize("ci", ["true", "TRUE"])
async def test_no_server_fails_under_ci(
    closed_port: int, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        await connect_admin(f"postgresql://postgres@127.0.0.1:{closed_port}/postgres")


@pytest.mark.parametrize(("ci", "outcome"), [(None, "1 skipped"), ("true", "1 error")])
def test_fixtures_without_server(
    closed_port: int, tmp_path: Path, ci: str | None, outcome: str
) -> None:
    """The whole path, in a pytest of its own: the session fixture's probe (run in a thread)
    skips, or fails under CI, every test that asks for a schema."""
    test_file = tmp_path / "test_needs_pg.py"
    test_file.write_text(
        textwrap.dedent(
            """
            pytest_plugins = ["tests.pg"]

            async def test_needs_pg(pg_url):
                raise AssertionError("must not run")
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["CSMS_TEST_POSTGRES_URL"] = f"postgresql://postgres@127.0.0.1:{closed_port}/postgres"
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-c",
            str(REPO / "pyproject.toml"),
            "--rootdir",
            str(REPO),
            str(test_file),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert outcome in output, output
    assert "no PostgreSQL server answers" in output, output
    assert result.returncode == (0 if ci is None else 1), output
