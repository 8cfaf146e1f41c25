"""PostgreSQL for the tests: one database per test session, one schema per test.

The server is ``CSMS_TEST_POSTGRES_URL`` (default: the local one, trust auth). The session
makes a database ``chargehook_test_<hex>`` and drops it at its end, also after failures (under
pytest-xdist each worker is a session: a database of its own, so the migrations' advisory lock,
which is per database, never makes one worker wait for another). Each test gets a schema
``t_<hex>`` in it and a URL whose ``search_path`` (and ``application_name``) name that schema:
asyncpg sends query parameters it does not know as server settings, so ``asyncpg.connect(url)``
and ``asyncpg.create_pool(url)`` both land in the schema, and unqualified table names are its
own. The schema is dropped after the test, by a thread of the session while the next test runs
(a DROP that fails, say on a lock a leaked connection holds, fails the session naming the test).

Two kinds of schema:

- ``pg_url`` / ``fresh_schema_url``: an empty schema, for the tests of migrating itself.
- ``pg_migrated_url`` (what the ``backend`` tests' store is): a schema at the shipped migrations,
  as ``csms serve`` would leave it. Running the migrations takes PostgreSQL ~0.1 s of DDL per
  schema; the session's thread prepares the next few while the tests run (``SchemaPool``), so
  a test rarely waits for one. The session migrates one template schema with the product's
  own ``storage.pg_migrations.apply``; each prepared schema replays the same files in the same
  order, each in its own transaction as ``apply`` runs them, and its ``schema_migrations`` rows
  are the template's; the first one of the session is compared with the template (columns,
  defaults, constraints, indexes, triggers, functions, sequences and every row), so a replay
  that differs fails the tests instead of testing a schema the product would not make. The CSMS
  a test starts still runs ``apply`` (it finds nothing to do); what the migrations do to an
  empty schema is tested on ``pg_url`` (tests/test_pg_migrations.py, tests/test_cli_admin.py).

No server answering skips the tests that need one, except under ``CI=true``, where it fails
them: CI must never pass by skipping.

Use from a test module (or once, from the root conftest.py)::

    pytest_plugins = ["tests.pg"]

    async def test_something(pg_url: str) -> None: ...

PYTEST_DONT_REWRITE: this module has no asserts to rewrite, and a test module that imports its
helpers imports it before pytest loads it as a plugin (which would warn that it cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from storage import display_url, pg_migrations
from storage.migrations import Migration, available

POSTGRES_URL = os.environ.get(
    "CSMS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CONNECT_TIMEOUT = 5.0
# A test that leaks a connection inside a transaction would block DROP SCHEMA forever.
DROP_LOCK_TIMEOUT = "10s"
# Migrated schemas kept ready: a test takes one and the thread makes the next meanwhile.
READY_SCHEMAS = 2

T = TypeVar("T")


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it under ``CI=true`` (CI must never pass by skipping)."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run, not skip)", pytrace=False)
    pytest.skip(f"{reason}; set CSMS_TEST_POSTGRES_URL to run the PostgreSQL tests")


async def connect_admin(url: str = POSTGRES_URL) -> asyncpg.Connection:
    """A connection to the server at ``url``; skips or fails the test when none answers.

    A server that answers but refuses us (password, missing database) fails the test in any
    case: that is a wrong CSMS_TEST_POSTGRES_URL, not a machine without PostgreSQL.
    """
    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except (OSError, asyncpg.CannotConnectNowError) as exc:  # TimeoutError is an OSError
        unavailable(f"no PostgreSQL server answers at {display_url(url)}: {exc}")
    except asyncpg.PostgresError as exc:
        pytest.fail(
            f"PostgreSQL at {display_url(url)} refused the test connection: {exc}"
            " (set CSMS_TEST_POSTGRES_URL)",
            pytrace=False,
        )


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (its other parts kept)."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def with_params(url: str, **params: str) -> str:
    """``url`` with these query parameters set (others kept)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def key_file_of(url: str) -> str:
    """The webhook secret key file of a test store (PostgreSQL needs one configured); it
    goes with the schema in ``drop_schema``."""
    return str(Path(tempfile.gettempdir()) / "chargehook-test-keys" / f"{schema_of(url)}.key")


def _forget_key_file(url: str) -> None:
    Path(key_file_of(url)).unlink(missing_ok=True)


def schema_of(url: str) -> str:
    """The schema a URL from ``create_schema`` works in."""
    return dict(parse_qsl(urlsplit(url).query))["search_path"]


_SCHEMA_PARAMS = ("search_path", "application_name")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _schema_url(database_url: str, schema: str) -> str:
    return with_params(database_url, **dict.fromkeys(_SCHEMA_PARAMS, schema))


def _new_schema_name() -> str:
    return f"t_{secrets.token_hex(6)}"


# -- the session database ----------------------------------------------------------------


async def create_database(server_url: str = POSTGRES_URL) -> str:
    """A new empty database on the server; its URL."""
    name = f"chargehook_test_{secrets.token_hex(6)}"
    conn = await connect_admin(server_url)
    try:
        await conn.execute(f"CREATE DATABASE {_quote(name)}")
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(database_url: str, server_url: str = POSTGRES_URL) -> None:
    """Drop the database, ending whatever connections tests left open to it first."""
    name = urlsplit(database_url).path.lstrip("/")
    conn = await asyncpg.connect(server_url, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        # WITH (FORCE) (PostgreSQL 13+) also ends a connection made since the line above.
        force = " WITH (FORCE)" if conn.get_server_version().major >= 13 else ""
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote(name)}{force}")
    finally:
        await conn.close()


# -- schemas, made and dropped on a connection the caller holds ------------------------------


async def _create_schema_on(conn: asyncpg.Connection, database_url: str) -> str:
    schema = _new_schema_name()
    await conn.execute(f"CREATE SCHEMA {_quote(schema)}")
    return _schema_url(database_url, schema)


async def _drop_schema_on(conn: asyncpg.Connection, schema_url: str) -> None:
    """Connections a test left open with the URL are ended first (found by their
    ``application_name``, unless the code under test set its own), so their locks cannot
    hold the DROP up; any other lock makes it fail after DROP_LOCK_TIMEOUT instead of hanging.
    """
    schema = schema_of(schema_url)
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = $1"
        " AND pid <> pg_backend_pid()",
        schema,
    )
    await conn.execute(f"SET lock_timeout = '{DROP_LOCK_TIMEOUT}'")
    await conn.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
    _forget_key_file(schema_url)


def _admin_url(schema_url: str) -> str:
    """The database URL of a schema URL (its ``search_path``/``application_name`` left out)."""
    parts = urlsplit(schema_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _SCHEMA_PARAMS]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def create_schema(database_url: str) -> str:
    """A new empty schema in the database; the URL of it (``search_path`` and
    ``application_name`` set to the schema's name)."""
    conn = await connect_admin(database_url)
    try:
        return await _create_schema_on(conn, database_url)
    finally:
        await conn.close()


async def drop_schema(schema_url: str) -> None:
    """Drop the schema and everything in it (see ``_drop_schema_on``)."""
    conn = await asyncpg.connect(_admin_url(schema_url), timeout=CONNECT_TIMEOUT)
    try:
        await _drop_schema_on(conn, schema_url)
    finally:
        await conn.close()


# -- migrated schemas, prepared ahead ----------------------------------------------------------


class SchemaMismatchError(AssertionError):
    """A prepared schema is not what the migrations make: the replay in SchemaPool is wrong."""


# What makes a schema, each row with the schema's name in its text replaced (see _describe).
_DESCRIBE = {
    "columns": """
        SELECT c.relname, c.relkind, a.attnum, a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
               a.attgenerated, co.collname, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE n.nspname = $1 ORDER BY 1, 3""",
    "constraints": """
        SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 ORDER BY 1, 2""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY 1",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND NOT t.tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), p.prokind, p.prosrc
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = $1 ORDER BY 1, 2""",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('v', 'm') ORDER BY 1""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, last_value
        FROM pg_sequences WHERE schemaname = $1 ORDER BY 1""",
}


async def _describe(conn: asyncpg.Connection, schema: str) -> dict[str, list[str]]:
    """The schema's definition and data, comparable between two schemas."""
    found: dict[str, list[str]] = {}
    for what, query in _DESCRIBE.items():
        found[what] = [
            repr(tuple(row)).replace(schema, "<schema>") for row in await conn.fetch(query, schema)
        ]
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", schema
    )
    for (table,) in tables:
        rows = await conn.fetch(f"SELECT * FROM {_quote(schema)}.{_quote(table)}")
        found[f"rows of {table}"] = sorted(repr(tuple(row)) for row in rows)
    return found


def _differences(expected: dict[str, list[str]], got: dict[str, list[str]]) -> list[str]:
    lines = []
    for what in sorted(expected.keys() | got.keys()):
        want, have = expected.get(what, []), got.get(what, [])
        lines += [f"{what}: missing {row}" for row in want if row not in have]
        lines += [f"{what}: extra {row}" for row in have if row not in want]
    return lines


class _Held:
    """A connection of the pool's thread, used by one coroutine at a time; made anew if the
    server ended it."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.conn: asyncpg.Connection | None = None
        self.lock = asyncio.Lock()

    async def run(self, action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self.lock:
            if self.conn is None or self.conn.is_closed():
                self.conn = await asyncpg.connect(self.database_url, timeout=CONNECT_TIMEOUT)
                # For this connection only (the server's setting is untouched): a test schema
                # need not survive a crash of the server, and DDL is visible at commit anyway.
                await self.conn.execute("SET synchronous_commit = off")
            return await action(self.conn)

    async def close(self) -> None:
        async with self.lock:
            if self.conn is not None:
                await self.conn.close()


class SchemaPool:
    """The session's database, and a thread with an event loop of its own that serves it.

    The thread keeps READY_SCHEMAS migrated schemas ready (``migrated()``), makes empty ones
    (``empty()``) and drops the tests' schemas after them (``drop_later()``), each on a
    connection it keeps open, so a test pays neither a connection, nor the migrations' DDL,
    nor the DROP's. A DROP that fails (a lock held by a connection the test leaked) fails the
    session at its end, naming the test. The tests' event loops are per function, so they
    reach the thread's loop through ``run_coroutine_threadsafe``.
    """

    def __init__(self, server_url: str = POSTGRES_URL, depth: int = READY_SCHEMAS) -> None:
        self.server_url = server_url
        self.depth = depth
        self.database_url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pg-test-schemas", daemon=True
        )
        self._admin: _Held | None = None  # empty schemas
        self._maker: _Held | None = None  # migrated schemas
        self._dropper: _Held | None = None  # drops after the tests
        self._ready: asyncio.Queue[str | Exception] | None = None
        self._filler: asyncio.Task[None] | None = None
        self._drops: set[asyncio.Task[None]] = set()
        self._drop_failures: list[str] = []
        self._template = ""
        self._migrations: list[Migration] = []
        self._template_shape: dict[str, list[str]] = {}
        self._checked = False

    # Called from the test session's thread.

    def open(self) -> None:
        """Start the thread and make the database; skips or fails (CI) without a server."""
        self._thread.start()
        try:
            self._call(self._open())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Finish the drops, drop the database (also after failures) and end the thread;
        raises if a drop failed."""
        try:
            if self._thread.is_alive():
                self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            if not self._thread.is_alive():
                self._loop.close()
        if self._drop_failures:
            raise AssertionError(
                "tests/pg.py could not drop the schemas of these tests (a connection left"
                " open holding a lock?):\n" + "\n".join(self._drop_failures)
            )

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # Called from a test's event loop.

    async def migrated(self) -> str:
        """The URL of a schema at the shipped migrations, of the caller's own."""
        return await self._submit(self._take())

    async def empty(self) -> str:
        """The URL of a new empty schema."""
        assert self._admin is not None
        return await self._submit(
            self._admin.run(lambda conn: _create_schema_on(conn, self.database_url))
        )

    def drop_later(self, schema_url: str, test: str) -> None:
        """Drop the schema (ending the connections left open to it) in the thread."""
        self._loop.call_soon_threadsafe(self._drop, schema_url, test)

    def _submit(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    # On the thread's loop.

    async def _open(self) -> None:
        self.database_url = await create_database(self.server_url)
        self._ready = asyncio.Queue(maxsize=self.depth)
        self._admin, self._maker, self._dropper = (_Held(self.database_url) for _ in range(3))
        template_url = await self._admin.run(
            lambda conn: _create_schema_on(conn, self.database_url)
        )
        self._template = schema_of(template_url)
        conn = await asyncpg.connect(template_url, timeout=CONNECT_TIMEOUT)
        try:
            await pg_migrations.apply(conn)  # the product's own migrating, once
            done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        finally:
            await conn.close()
        self._migrations = [m for m in available(pg_migrations.FOLDER) if m.version in done]
        self._template_shape = await self._admin.run(lambda conn: _describe(conn, self._template))

    async def _close(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
            await asyncio.gather(self._filler, return_exceptions=True)
        await asyncio.gather(*self._drops, return_exceptions=True)
        for held in (self._maker, self._admin, self._dropper):
            if held is not None:
                await held.close()
        if self.database_url:
            await drop_database(self.database_url, self.server_url)

    def _drop(self, schema_url: str, test: str) -> None:
        assert self._dropper is not None
        task = self._loop.create_task(
            self._dropper.run(lambda conn: _drop_schema_on(conn, schema_url))
        )
        self._drops.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._drops.discard(task)
            if not task.cancelled() and task.exception() is not None:
                self._drop_failures.append(
                    f"{test}: schema {schema_of(schema_url)}: {task.exception()!r}"
                )

        task.add_done_callback(done)

    async def _take(self) -> str:
        assert self._ready is not None
        if self._filler is None or self._filler.done():
            self._filler = asyncio.create_task(self._fill())
        item = await self._ready.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def _fill(self) -> None:
        """Keep the queue full; an error goes to the test that takes it, and ends the filler
        (the next ``migrated()`` starts another)."""
        assert self._ready is not None and self._maker is not None
        while True:
            try:
                url = await self._maker.run(self._make_migrated)
            except Exception as exc:
                await self._ready.put(exc)
                return
            await self._ready.put(url)

    async def _make_migrated(self, conn: asyncpg.Connection) -> str:
        """A new schema made by the shipped migration files, replayed as ``apply`` runs them:
        in order, each in a transaction of its own with its ``schema_migrations`` row."""
        url = await _create_schema_on(conn, self.database_url)
        schema, template = _quote(schema_of(url)), _quote(self._template)
        try:
            await conn.execute(f"SET search_path = {schema}")
            await conn.execute(
                f"CREATE TABLE schema_migrations (LIKE {template}.schema_migrations INCLUDING ALL)"
            )
            for migration in self._migrations:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        f"INSERT INTO schema_migrations SELECT * FROM {template}.schema_migrations"
                        " WHERE version = $1",
                        migration.version,
                    )
            await conn.execute("RESET search_path")
            if not self._checked:
                self._check(await _describe(conn, schema_of(url)))
                self._checked = True
        except BaseException:
            with contextlib.suppress(Exception):  # else it goes with the database
                await conn.execute("RESET search_path")
                await _drop_schema_on(conn, url)
            raise
        return url

    def _check(self, shape: dict[str, list[str]]) -> None:
        differences = _differences(self._template_shape, shape)
        if differences:
            raise SchemaMismatchError(
                "a schema prepared by tests/pg.py differs from one storage.pg_migrations.apply"
                " makes:\n" + "\n".join(differences[:40])
            )


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[SchemaPool]:
    """The session's database and its schemas (SchemaPool); the database is dropped at the
    session's end, also on failure.

    Made only when a test asks for it; a skip (no server) is remembered for the session, so
    the server is probed once.
    """
    pool = SchemaPool()
    pool.open()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def pg_database_url(pg_schemas: SchemaPool) -> str:
    """URL of the database made for this test session."""
    return pg_schemas.database_url


# -- a schema per test ---------------------------------------------------------------------


@pytest.fixture
def fresh_schema_url(
    pg_schemas: SchemaPool, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Awaitable[str]]]:
    """``await fresh_schema_url()``: the URL of a new empty schema, as often as the test needs
    one (two independent stores, say); all of them are dropped after the test."""
    made: list[str] = []

    async def make() -> str:
        url = await pg_schemas.empty()
        made.append(url)
        return url

    try:
        yield make
    finally:
        for url in reversed(made):
            pg_schemas.drop_later(url, request.node.nodeid)


@pytest.fixture
async def pg_url(fresh_schema_url: Callable[[], Awaitable[str]]) -> str:
    """The URL of an empty schema of this test's own (a store URL: open it, migrate it)."""
    return await fresh_schema_url()


@pytest.fixture
async def pg_migrated_url(
    pg_schemas: SchemaPool, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """The URL of a schema of this test's own at the shipped migrations (see SchemaPool)."""
    url = await pg_schemas.migrated()
    try:
        yield url
    finally:
        pg_schemas.drop_later(url, request.node.nodeid)
