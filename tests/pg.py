"""PostgreSQL for the tests: one database per test session, one empty schema per test.

The server is ``CSMS_TEST_POSTGRES_URL`` (default: the local one, trust auth). The session
makes a database ``chargehook_test_<hex>`` and drops it at its end, also after failures; each
test gets a schema ``t_<hex>`` in it, made and dropped in milliseconds, and a URL whose
``search_path`` (and ``application_name``) name that schema: asyncpg sends query parameters
it does not know as server settings, so ``asyncpg.connect(url)`` and
``asyncpg.create_pool(url)`` both land in the schema, and unqualified table names are its own.

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
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from storage import display_url

POSTGRES_URL = os.environ.get(
    "CSMS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
CONNECT_TIMEOUT = 5.0
# A test that leaks a connection inside a transaction would block DROP SCHEMA forever.
DROP_LOCK_TIMEOUT = "10s"

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


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine in a thread with a loop of its own.

    For the session fixture, which is synchronous: the tests' event loops are per function
    (a session-scoped async fixture would need a session loop), and ``asyncio.run`` in this
    thread would replace the loop pytest-asyncio set as current.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="pg-test-setup") as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """URL of a database made for this test session; dropped at its end, also on failure.

    Made only when a test asks for it; a skip (no server) is remembered for the session, so
    the server is probed once.
    """
    url = _run(create_database())
    try:
        yield url
    finally:
        _run(drop_database(url))


# -- a schema per test ---------------------------------------------------------------------


async def create_schema(database_url: str) -> str:
    """A new empty schema in the database; the URL of it (``search_path`` and
    ``application_name`` set to the schema's name)."""
    schema = f"t_{secrets.token_hex(6)}"
    conn = await connect_admin(database_url)
    try:
        await conn.execute(f"CREATE SCHEMA {_quote(schema)}")
    finally:
        await conn.close()
    return with_params(database_url, **dict.fromkeys(_SCHEMA_PARAMS, schema))


async def drop_schema(schema_url: str) -> None:
    """Drop the schema and everything in it.

    Connections a test left open with the URL are ended first (found by their
    ``application_name``, unless the code under test set its own), so their locks cannot
    hold the DROP up; any other lock makes it fail after DROP_LOCK_TIMEOUT instead of hanging.
    """
    schema = schema_of(schema_url)
    parts = urlsplit(schema_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _SCHEMA_PARAMS]
    admin_url = urlunsplit(parts._replace(query=urlencode(query)))
    conn = await asyncpg.connect(admin_url, timeout=CONNECT_TIMEOUT)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1"
            " AND pid <> pg_backend_pid()",
            schema,
        )
        await conn.execute(f"SET lock_timeout = '{DROP_LOCK_TIMEOUT}'")
        await conn.execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
    finally:
        await conn.close()
    _forget_key_file(schema_url)


@pytest.fixture
async def fresh_schema_url(pg_database_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """``await fresh_schema_url()``: the URL of a new empty schema, as often as the test needs
    one (two independent stores, say); all of them are dropped after the test."""
    made: list[str] = []

    async def make() -> str:
        url = await create_schema(pg_database_url)
        made.append(url)
        return url

    try:
        yield make
    finally:
        for url in reversed(made):
            await drop_schema(url)


@pytest.fixture
async def pg_url(fresh_schema_url: Callable[[], Awaitable[str]]) -> str:
    """The URL of an empty schema of this test's own (a store URL: open it, migrate it)."""
    return await fresh_schema_url()
