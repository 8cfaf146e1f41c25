"""The README's walk-through runs as written: its `sh` blocks under "Running it" and
"Simulator" are extracted and run one command at a time against a real `csms serve`.

What the test changes, and only that: the ports (127.0.0.1:8080 and :9000 become the free
ports the server picked), `TOKEN=chk_...` becomes the token the server printed at its first
start, `config.example.toml` becomes the test server's config, and `.venv/bin/` becomes this
interpreter's bin directory. An assignment (`NAME=...`) is run by bash and its value kept
for the commands after it. The numbers (`--duration`,
`--chargers`) are run as the README has them: keep them small enough for this test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers import REPO_ROOT, api_client

BIN = Path(sys.executable).parent
README = REPO_ROOT / "README.md"
SECTIONS = ("## Running it", "## Simulator")
START_BOUND = 20.0  # seconds for csms serve to print its URLs and token
COMMAND_BOUND = 30.0  # seconds for any one README command
CONFIG_NAME = "readme.toml"  # the test server's config, in the commands' working directory

_OCPP_LINE = re.compile(r"OCPP endpoint (ws://\S+?)/ocpp")
_API_LINE = re.compile(r"admin API (http://\S+?)/api/v1")
_TOKEN = re.compile(r"\bchk_[A-Za-z0-9_-]{16,}")  # a whole token, not a short hint of one
_ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=")


def sh_blocks(markdown: str, heading: str) -> list[str]:
    """The ```sh blocks of the section under `heading` (up to the next `## `)."""
    start = markdown.index(f"\n{heading}\n")
    end = markdown.find("\n## ", start + 1)
    section = markdown[start : end if end >= 0 else len(markdown)]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[str]:
    """Shell commands of a block: comment lines dropped, `\\` continuations joined."""
    found: list[str] = []
    current = ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line + "\n"
        if not line.endswith("\\"):
            found.append(current.rstrip("\n"))
            current = ""
    assert not current, f"a command ends in a continuation: {current!r}"
    return found


@dataclass
class Server:
    """`csms serve` as a child process, with what it printed so far on either stream."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def text(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, pattern: re.Pattern[str]) -> str:
        """The first match of `pattern` in what the server printed (bounded wait)."""

        async def seen() -> str:
            while True:
                if match := pattern.search(self.text()):
                    return match.group(1) if pattern.groups else match.group(0)
                if self.process.returncode is not None:
                    raise AssertionError(f"csms serve exited:\n{self.text()}")
                self.changed.clear()
                await self.changed.wait()

        try:
            return await asyncio.wait_for(seen(), START_BOUND)
        except TimeoutError:
            raise AssertionError(
                f"csms serve never printed {pattern.pattern}:\n{self.text()}"
            ) from None


async def _pump(server: Server, stream: asyncio.StreamReader | None) -> None:
    """Read a stream to its end (so the server never blocks on a full pipe)."""
    assert stream is not None
    while line := await stream.readline():
        server.lines.append(line.decode(errors="replace").rstrip("\n"))
        server.changed.set()
    server.changed.set()


@contextlib.asynccontextmanager
async def csms_serve(tmp_path: Path) -> AsyncIterator[Server]:
    """`csms serve` on free ports with a fresh database and no tokens configured, so it
    generates one and prints it, as on a first start."""
    config = tmp_path / CONFIG_NAME
    config.write_text(
        '[ocpp]\nhost = "127.0.0.1"\nport = 0\n'
        '[api]\nhost = "127.0.0.1"\nport = 0\n'
        f'[storage]\nurl = "sqlite:///{tmp_path / "readme.db"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    process = await asyncio.create_subprocess_exec(
        str(BIN / "csms"),
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(tmp_path),
    )
    server = Server(process)
    pumps = [
        asyncio.create_task(_pump(server, process.stdout)),
        asyncio.create_task(_pump(server, process.stderr)),
    ]
    try:
        yield server
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        await asyncio.wait_for(asyncio.gather(*pumps, return_exceptions=True), 10)


async def run(command: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(cwd),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), COMMAND_BOUND)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"still running after {COMMAND_BOUND} s: {command}") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's commands use curl")
async def test_readme_walk_through_runs_as_written(tmp_path: Path) -> None:
    markdown = README.read_text()
    script: list[str] = []
    for heading in SECTIONS:
        blocks = sh_blocks(markdown, heading)
        assert blocks, f"{heading}: no ```sh block"
        script += [command for block in blocks for command in commands(block)]
    assert any("csms-sim run" in c for c in script) and any("csms-sim load" in c for c in script)

    async with csms_serve(tmp_path) as server:
        ocpp = urlsplit(await server.wait_for(_OCPP_LINE)).netloc
        api_url = await server.wait_for(_API_LINE)
        token = await server.wait_for(_TOKEN)

        def rewrite(command: str) -> str:
            return (
                command.replace("127.0.0.1:8080", urlsplit(api_url).netloc)
                .replace("127.0.0.1:9000", ocpp)
                .replace(".venv/bin/", f"{BIN}/")
                .replace("chk_...", token)
                .replace("config.example.toml", CONFIG_NAME)
            )

        env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
        for command in map(rewrite, script):
            if assignment := _ASSIGNMENT.match(command):
                name = assignment.group(1)
                code, out, err = await run(f'{command}\nprintf %s "${name}"', env, tmp_path)
                assert code == 0, f"{command}\nexit {code}\nstderr: {err}"
                env[name] = out
                continue
            code, out, err = await run(command, env, tmp_path)
            assert code == 0, f"{command}\nexit {code}\nstdout: {out}\nstderr: {err}"
            if command.startswith("curl"):
                answer = json.loads(out)
                assert "error" not in answer, (command, answer)
            elif "csms-sim run" in command:
                assert "csms-sim: session done: CP-1, transaction " in out, (out, err)
            elif "csms-sim load" in command:
                summary = json.loads(out)
                assert summary["connected"] == summary["chargers"], summary
                assert summary["failure"] is None and summary["calls"] > 0, summary
        assert _TOKEN.fullmatch(env["TOKEN"]) and env["TOKEN"] != token  # made by the CLI

        async with api_client(api_url, token) as retired:
            status, _ = await retired.request("GET", "/api/v1/chargers")
        assert status == 401  # the first-start token, which the README revokes
        async with api_client(api_url, env["TOKEN"]) as api:
            page = await api.get("/api/v1/events?chargerId=CP-1&type=transaction.*&order=asc")
        types = [e["type"] for e in page["items"]]
        runs = sum("csms-sim run" in c for c in script)
        assert types.count("transaction.started") == runs, types
        assert types.count("transaction.stopped") == runs, types
        refusals = [line for line in server.lines if re.search(r"refused (charger|upgrade)", line)]
        assert refusals == []  # every charger of the walk-through got in
