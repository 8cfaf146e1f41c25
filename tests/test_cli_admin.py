"""``csms`` as a user meets it: a first start that fails never locks them out, tokens are made
and revoked from the CLI (a running server follows), a lost webhook key file and a database of
a newer version stop the start with one line and a remedy that works."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from standardwebhooks import Webhook

from tests.conftest import wait_for
from tests.test_webhook_support import receiver

TOKEN_LINE = re.compile(r"^\s*(chk_[A-Za-z0-9_-]{20,})\s*$")
URL_LINE = re.compile(r"chargehook: admin API (\S+)/api/v1")


def write_config(tmp_path: Path, *, api_port: int = 0, extra: str = "") -> Path:
    config = tmp_path / "csms.toml"
    config.write_text(
        f'[ocpp]\nhost = "127.0.0.1"\nport = 0\n[api]\nhost = "127.0.0.1"\nport = {api_port}\n'
        f'[storage]\nurl = "sqlite:///{tmp_path / "csms.db"}"\n'
        f"[webhooks]\nallow_private_targets = true\n{extra}"
    )
    return config


def error_line(stderr: str) -> str:
    """The one ``csms:`` line a failure prints (log lines of the start may come before it)."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("csms:")]
    assert len(lines) == 1, stderr
    return lines[0]


def csms(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    return subprocess.run(
        [sys.executable, "-m", "csms", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@dataclass
class Running:
    api_url: str
    token: str | None  # printed at this start, if one was generated
    stdout: list[str]


@contextlib.asynccontextmanager
async def serve(config: Path, timeout: float = 20.0) -> AsyncIterator[Running]:
    """``csms serve`` in a child process; its first lines read until the token or storage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "csms",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    lines: list[str] = []

    async def read_banner() -> Running:
        api_url, token = "", None
        while True:
            line = (await process.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"csms serve exited: {lines}")
            lines.append(line)
            if match := URL_LINE.search(line):
                api_url = match.group(1)
            if match := TOKEN_LINE.match(line):
                token = match.group(1)
            if token or "admin API tokens:" in line:
                return Running(api_url, token, lines)

    try:
        yield await asyncio.wait_for(read_banner(), timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def status_with(api_url: str, token: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{api_url}/api/v1/chargers", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        return response.status


@pytest.fixture
def taken_port() -> AsyncIterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_a_failed_first_start_stores_no_token_and_the_next_start_prints_one(
    tmp_path: Path, taken_port: int
) -> None:
    config = write_config(tmp_path, api_port=taken_port)
    failed = csms("serve", "--config", str(config))
    assert failed.returncode == 1
    line = error_line(failed.stderr)
    assert line.startswith(f"csms: cannot start: api.port: cannot listen on 127.0.0.1:{taken_port}")
    assert "already in use" in line and "CSMS_API__PORT" in line
    assert "chk_" not in failed.stdout
    listed = csms("token", "list", "--config", str(config))
    assert listed.returncode == 0 and listed.stdout == ""

    async with serve(write_config(tmp_path)) as running:
        assert running.token is not None
        assert await status_with(running.api_url, running.token) == 200
    async with serve(write_config(tmp_path)) as again:
        assert again.token is None  # shown once only
        assert any("csms token create" in line for line in again.stdout)


async def test_tokens_made_and_revoked_by_the_cli_reach_a_running_server(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with serve(config) as running:
        assert running.token is not None
        made = csms("token", "create", "--config", str(config), "--label", "ci")
        assert made.returncode == 0, made.stderr
        new_token = made.stdout.strip()
        assert TOKEN_LINE.match(new_token)
        assert await status_with(running.api_url, new_token) == 200  # at once: a miss re-reads

        listed = csms("token", "list", "--config", str(config)).stdout.splitlines()
        assert len(listed) == 2
        assert any(line.endswith("generated at first start") for line in listed)
        token_id = next(line.split()[0] for line in listed if line.endswith("ci"))
        assert new_token[:8] in next(line for line in listed if line.endswith("ci"))

        revoked = csms("token", "revoke", "--config", str(config), token_id)
        assert revoked.returncode == 0, revoked.stderr

        async def refused() -> bool:
            return await status_with(running.api_url, new_token) == 401

        await wait_for(refused, timeout=5.0)
        assert await status_with(running.api_url, running.token) == 200
    unknown = csms("token", "revoke", "--config", str(config), token_id)
    assert unknown.returncode == 1
    assert unknown.stderr == f"csms: no stored token has the id {token_id} (see csms token list)\n"


def test_token_create_names_api_tokens_when_the_config_sets_them(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text().replace("[api]\n", '[api]\ntokens = ["a' + "x" * 20 + '"]\n')
    )
    made = csms("token", "create", "--config", str(config))
    assert made.returncode == 1 and made.stdout == ""
    assert made.stderr.startswith("csms: api.tokens is set in the configuration")


def test_the_token_of_an_earlier_version_carries_over(tmp_path: Path) -> None:
    """Before tokens had a table, the generated token's digest lived in ``meta``."""
    config = write_config(tmp_path)
    assert csms("token", "list", "--config", str(config)).returncode == 0  # creates the file
    db = sqlite3.connect(tmp_path / "csms.db")
    with db:
        db.execute("DROP TABLE api_tokens")
        db.execute("DELETE FROM schema_migrations WHERE version = 5")
        db.execute("INSERT INTO meta (key, value) VALUES ('api_token_sha256', 'ab12')")
    db.close()
    listed = csms("token", "list", "--config", str(config))
    assert listed.stdout.startswith("tok_generated  chk_...  ")
    db = sqlite3.connect(tmp_path / "csms.db")
    assert db.execute("SELECT digest FROM api_tokens").fetchall() == [("ab12",)]
    assert db.execute("SELECT * FROM meta WHERE key = 'api_token_sha256'").fetchall() == []
    db.close()


def test_a_database_of_a_newer_version_is_refused_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert csms("token", "list", "--config", str(config)).returncode == 0
    db = sqlite3.connect(tmp_path / "csms.db")
    with db:
        db.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
    db.close()
    started = csms("serve", "--config", str(config))
    assert started.returncode == 1
    line = error_line(started.stderr)
    assert line.startswith("csms: cannot start: storage.url sqlite:///")
    assert "schema version 999, written by a newer chargehook" in line


async def test_a_lost_webhook_key_file_stops_the_start_and_reset_secrets_recovers(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    async with receiver() as rec:
        async with serve(config) as running:
            assert running.token is not None
            async with (
                aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {running.token}"}
                ) as session,
                session.post(
                    f"{running.api_url}/api/v1/webhooks",
                    json={"url": rec.url, "enabledEvents": ["*"]},
                ) as created,
            ):
                assert created.status == 201
                endpoint = (await created.json())["data"]
        key_file = tmp_path / "csms.db.webhook-key"
        key_file.unlink()

        refused = csms("serve", "--config", str(config))
        assert refused.returncode == 1
        line = error_line(refused.stderr)
        assert line.startswith(f"csms: cannot start: the webhook secret key file {key_file}")
        assert "is missing" in line and "`csms webhooks reset-secrets`" in line

        reset = csms("webhooks", "reset-secrets", "--config", str(config))
        assert reset.returncode == 0, reset.stderr
        endpoint_id, url, secret = reset.stdout.split()
        assert (endpoint_id, url) == (endpoint["id"], rec.url)
        assert secret.startswith("whsec_") and secret != endpoint["secret"]
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        again = csms("webhooks", "reset-secrets", "--config", str(config))
        assert again.returncode == 1 and "opens every endpoint's secret" in again.stderr

        async with serve(config) as running:
            async with (
                aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {csms_token(config)}"}
                ) as session,
                session.post(f"{running.api_url}/api/v1/webhooks/{endpoint_id}/test") as tested,
            ):
                assert tested.status == 200, await tested.text()
            sent = rec.requests[-1]
            Webhook(secret).verify(sent.body, sent.headers)  # signed with the new secret


def csms_token(config: Path) -> str:
    made = csms("token", "create", "--config", str(config))
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def test_version_and_help_say_what_a_user_needs() -> None:
    version = csms("--version")
    assert version.returncode == 0 and re.fullmatch(r"chargehook \d+\.\d+\.\S+\n", version.stdout)
    help_text = csms("serve", "--help").stdout
    assert "OCPP endpoint" in help_text and "CSMS_<SECTION>__<KEY>" in help_text
    assert "token" in csms("--help").stdout


def test_migrate_applies_what_the_store_lacks_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    first = csms("migrate", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("csms: migrated sqlite:///") and "applied 0001, " in first.stdout
    again = csms("migrate", "--config", str(config))
    assert again.stdout.rstrip().endswith("applied none, it was up to date")


async def test_migrate_on_postgresql_hides_the_password_and_applies_once(
    tmp_path: Path, pg_url: str
) -> None:
    url = pg_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    config = tmp_path / "pg.toml"
    config.write_text(
        f'[storage]\nurl = "{url}"\n[webhooks]\nsecret_key_file = "{tmp_path / "key"}"\n'
    )
    runs = await asyncio.gather(
        *(asyncio.to_thread(csms, "migrate", "--config", str(config)) for _ in range(3))
    )
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    applied = [run.stdout for run in runs if "applied 0001" in run.stdout]
    assert len(applied) == 1, [run.stdout for run in runs]  # one of them migrated, under the lock
    assert all("s3cret" not in run.stdout + run.stderr for run in runs)
    assert "postgres:***@" in applied[0]
