"""Helpers shared by the integration tests: an API client for any base URL, the event log of a
charger, and the real ``csms serve`` process (for the tests that kill it with SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import TEST_TOKEN, Api, wait_for
from tests.pg import key_file_of


@contextlib.asynccontextmanager
async def api_client(base: str, token: str = TEST_TOKEN) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        yield Api(session, base)


async def events_of(api: Api, charger_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """Every event of a charger, oldest first (follows ``startingAfter`` over pages)."""
    items: list[dict[str, Any]] = []
    after = ""
    while True:
        query = f"/api/v1/events?chargerId={charger_id}&order=asc&limit={limit}{after}"
        page = await api.get(query)
        items += page["items"]
        if not page["hasMore"]:
            return items
        after = f"&startingAfter={items[-1]['id']}"


async def wait_disconnected(api: Api, charger_id: str, timeout: float = 5.0) -> None:
    async def disconnected() -> bool:
        return not (await api.get(f"/api/v1/chargers/{charger_id}"))["connected"]

    await wait_for(disconnected, timeout=timeout)


async def wait_events(
    api: Api, charger_id: str, count: int, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """The charger's events once there are at least ``count`` of them."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal found
        found = await events_of(api, charger_id)
        return len(found) >= count

    await wait_for(enough, timeout=timeout)
    return found


REPO_ROOT = Path(__file__).resolve().parent.parent

_OCPP_LINE = re.compile(r"chargehook: OCPP endpoint (\S+)/\{chargerId\}")
_API_LINE = re.compile(r"chargehook: admin API (\S+)/api/v1")


@dataclass
class ServerProcess:
    """``python -m csms serve`` in a child process, on free ports."""

    process: asyncio.subprocess.Process
    ocpp_url: str  # ws://127.0.0.1:PORT/ocpp
    api_url: str  # http://127.0.0.1:PORT
    log_path: Path

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed but what the OS holds."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)

    async def wait(self, timeout: float = 10.0) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def start_server_process(
    workdir: Path,
    store: Path | str,
    *,
    timeout: float = 20.0,
    webhooks: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
    cpus: set[int] | None = None,
    **ocpp: Any,
) -> ServerProcess:
    """Start ``csms serve`` with ``port = 0`` and read its URLs from stdout. ``store``: a
    SQLite file, or a store URL (a PostgreSQL one with the key file the tests' in-process
    CSMS uses too). ``cpus``: the only CPUs it may run on (None: this process's)."""
    url = store if isinstance(store, str) else f"sqlite:///{store}"
    webhooks = dict(webhooks or {})
    if not url.startswith("sqlite:"):
        webhooks.setdefault("secret_key_file", key_file_of(url))
    ocpp_lines = "".join(f"{key} = {_toml(value)}\n" for key, value in ocpp.items())
    webhook_lines = "".join(f"{key} = {_toml(value)}\n" for key, value in (webhooks or {}).items())
    cluster_lines = "".join(f"{key} = {_toml(value)}\n" for key, value in (cluster or {}).items())
    config = workdir / "csms-serve.toml"
    config.write_text(
        "[ocpp]\n"
        'host = "127.0.0.1"\n'
        "port = 0\n"
        f"{ocpp_lines}"
        "[api]\n"
        'host = "127.0.0.1"\n'
        "port = 0\n"
        f'tokens = ["{TEST_TOKEN}"]\n'
        "[storage]\n"
        f"url = {_toml(url)}\n"
        "[webhooks]\n"
        f"{webhook_lines}"
        "[cluster]\n"
        f"{cluster_lines}"
    )
    log_path = workdir / "csms-serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "csms",
            "serve",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=str(REPO_ROOT),
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
        )
    try:
        ocpp_url, api_url = await asyncio.wait_for(_read_urls(process), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise AssertionError(
            "csms serve did not start:\n" + log_path.read_text(errors="replace")
        ) from None
    return ServerProcess(process, ocpp_url, api_url, log_path)


async def _read_urls(process: asyncio.subprocess.Process) -> tuple[str, str]:
    assert process.stdout is not None
    ocpp_url = api_url = None
    while ocpp_url is None or api_url is None:
        line = (await process.stdout.readline()).decode()
        if not line:
            raise EOFError("csms serve exited")
        if match := _OCPP_LINE.search(line):
            ocpp_url = match.group(1)
        if match := _API_LINE.search(line):
            api_url = match.group(1)
    return ocpp_url, api_url


def _toml(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)
