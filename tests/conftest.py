"""Shared fixtures: a real CSMS in the test's event loop on free loopback ports, with a real
SQLite file, an authenticated admin API client, and chargers that speak OCPP over a socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from csms.app import Csms
from csms.config import Settings
from tests.pg import key_file_of

pytest_plugins = ["tests.pg"]  # the PostgreSQL fixtures

TEST_TOKEN = "test-token-0123456789abcdef"
PASSWORD = "correct-horse-battery"  # 21 bytes: a valid AuthorizationKey


def make_settings(
    tmp_path: Path, store_url: str | None = None, **sections: dict[str, Any]
) -> Settings:
    """Test settings on free ports; the store is a SQLite file in ``tmp_path`` unless
    ``store_url`` names another (a PostgreSQL schema of the test's own)."""
    url = store_url or f"sqlite:///{tmp_path / 'csms.db'}"
    data: dict[str, dict[str, Any]] = {
        "ocpp": {"host": "127.0.0.1", "port": 0, "call_timeout": 5},
        "api": {"host": "127.0.0.1", "port": 0, "tokens": [TEST_TOKEN]},
        "storage": {"url": url},
        "webhooks": {"allow_private_targets": True},
    }
    if not url.startswith("sqlite:"):
        data["webhooks"]["secret_key_file"] = key_file_of(url)
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Settings(**data)


class Api:
    """The admin API over real HTTP, with the test token."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        expect: int | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, self.base + path, json=json_body, **kwargs
        ) as response:
            text = await response.text()
            body = json.loads(text) if text else None
            if expect is not None:
                assert response.status == expect, (response.status, body)
            return response.status, body

    async def get(self, path: str, **kwargs: Any) -> Any:
        _, body = await self.request("GET", path, expect=200, **kwargs)
        return body["data"]

    async def post(self, path: str, body: Any, expect: int = 201) -> Any:
        _, answer = await self.request("POST", path, json_body=body, expect=expect)
        return answer["data"] if answer and "data" in answer else answer


# Tests that take seconds (servers started as processes, long waits by design, the fuzzers)
# run first, each followed by a quick one: `make test` hands the tests to its pytest-xdist
# workers two at a time (--maxschedchunk 2) in this order, so each worker starts on one of
# them at once, and a long one cannot start last and end the run alone. Order only: every
# test still runs. A prefix of a test id matches it; earlier prefixes go first.
SLOW_FIRST = (
    "tests/test_openapi.py::test_schemathesis",
    "tests/test_readme_commands.py::",
    "tests/test_pg_outage.py::",
    "tests/test_listen.py::test_a_receiver_that_does_not_answer",
    "tests/test_cli_admin.py::",
    "tests/test_fuzz_frames.py::",
    "tests/test_sim_csms.py::test_remote_scenario",
    "tests/test_sim_demo.py::",
    "tests/test_pg_migrations.py::test_fixtures_without_server",
    "tests/test_webhook_crash_server.py::",
    "tests/test_readme_storage.py::",
    "tests/test_listen.py::",
    "tests/test_dashboard.py::",
    "tests/test_cluster.py::",
    "tests/test_deploy_haproxy.py::",
)


def _slow_rank(item: pytest.Item) -> int:
    for index, prefix in enumerate(SLOW_FIRST):
        if item.nodeid.startswith(prefix):
            return index
    return len(SLOW_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow = sorted((i for i in items if _slow_rank(i) < len(SLOW_FIRST)), key=_slow_rank)
    rest = [i for i in items if _slow_rank(i) == len(SLOW_FIRST)]
    paired = [i for pair in zip(slow, rest, strict=False) for i in pair]
    items[:] = paired + slow[len(rest) :] + rest[len(slow) :]


BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that starts a CSMS runs on both stores."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The test's own store: a new SQLite file, or a PostgreSQL schema of its own at the
    shipped migrations (tests/pg.py: ``pg_migrated_url``; the server's own migrating of an
    empty schema is tested with ``pg_url``)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'csms.db'}"
    return str(request.getfixturevalue("pg_migrated_url"))


@pytest.fixture
async def csms_factory(
    tmp_path: Path, store_url: str
) -> AsyncIterator[Callable[..., Awaitable[Csms]]]:
    started: list[Csms] = []

    async def start(**sections: dict[str, Any]) -> Csms:
        csms = await Csms.start(make_settings(tmp_path, store_url, **sections))
        started.append(csms)
        return csms

    yield start
    for csms in reversed(started):
        await csms.close()


@pytest.fixture
async def csms(csms_factory: Callable[..., Awaitable[Csms]]) -> Csms:
    return await csms_factory()


@pytest.fixture
async def api(csms: Csms) -> AsyncIterator[Api]:
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield Api(session, csms.api_url)


def basic_auth(charger_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{charger_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def open_socket(
    csms: Csms,
    charger_id: str,
    *,
    password: str | None = PASSWORD,
    subprotocols: list[str] | None = None,
) -> ClientConnection:
    headers = basic_auth(charger_id, password) if password is not None else {}
    return await websockets.connect(
        f"{csms.ocpp_url}/{charger_id}",
        subprotocols=["ocpp1.6"] if subprotocols is None else subprotocols,  # type: ignore[list-item]
        additional_headers=headers,
        open_timeout=5,
    )


class RawCharger:
    """A charger speaking raw OCPP-J frames: for exact wire-level assertions."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._counter = 0

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    async def receive(self, timeout: float = 5) -> list[Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 5) -> list[Any]:
        self._counter += 1
        unique_id = f"m{self._counter}"
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        answer = await self.receive(timeout)
        assert answer[1] == unique_id, answer
        return answer

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


async def register(api: Api, charger_id: str, password: str | None = PASSWORD, **extra: Any) -> Any:
    body: dict[str, Any] = {"id": charger_id, **extra}
    if password is not None:
        body["password"] = password
    return await api.post("/api/v1/chargers", body)


async def raw_charger(
    csms: Csms, api: Api, charger_id: str, *, boot: bool = True, **extra: Any
) -> RawCharger:
    """A registered, connected (and by default booted) charger."""
    await register(api, charger_id, **extra)
    charger = RawCharger(await open_socket(csms, charger_id))
    if boot:
        answer = await charger.call(
            "BootNotification", {"chargePointVendor": "Test", "chargePointModel": "Raw"}
        )
        assert answer[0] == 3, answer
    return charger


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 5.0, interval: float = 0.02
) -> None:
    """Poll a condition until it holds or the time-out fails the test."""

    async def loop() -> None:
        # Polls the store through the API: there is no event to await from outside.
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(interval)

    await asyncio.wait_for(loop(), timeout)
