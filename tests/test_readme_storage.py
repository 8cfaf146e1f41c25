"""The README's "Storage" commands run as written: a PostgreSQL database made and migrated
with `csms migrate`, an online SQLite backup and a `pg_dump`.

What the test changes, and only that: the database name `csms_demo` becomes one of its own
(dropped at the end), `.venv/bin/` becomes this interpreter's bin directory, and the commands
run in a temporary folder holding a copy of `config.example.toml` (and a `csms.db` made by
`csms migrate` before the backup command, as a running server would have left it).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
import sys
from pathlib import Path

import asyncpg

from tests.helpers import REPO_ROOT
from tests.pg import POSTGRES_URL, connect_admin, drop_database, with_database
from tests.test_readme_commands import commands, run, sh_blocks

BIN = Path(sys.executable).parent


async def test_readme_storage_commands_run_as_written(tmp_path: Path) -> None:
    blocks = sh_blocks((REPO_ROOT / "README.md").read_text(), "## Storage: SQLite or PostgreSQL")
    assert len(blocks) == 2, "expected the PostgreSQL block and the backup block"
    name = f"csms_readme_{secrets.token_hex(4)}"
    shutil.copy(REPO_ROOT / "config.example.toml", tmp_path / "config.example.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    await (await connect_admin()).close()  # a server answers (else skip, or fail under CI)
    try:
        for block in blocks:
            if "sqlite3 csms.db" in block:  # what a server left: a migrated csms.db
                code, _, err = await run(f"{BIN}/csms migrate", env, tmp_path)
                assert code == 0, err
            for command in commands(block):
                command = command.replace("csms_demo", name).replace(".venv/bin/", f"{BIN}/")
                code, out, err = await run(command, env, tmp_path)
                assert code == 0, f"{command}\nexit {code}\nstdout: {out}\nstderr: {err}"
        conn = await asyncpg.connect(with_database(POSTGRES_URL, name))
        try:
            assert await conn.fetchval("SELECT MAX(version) FROM schema_migrations") >= 6
        finally:
            await conn.close()
        assert (tmp_path / f"{name}.dump").stat().st_size > 0
        backup = sqlite3.connect(tmp_path / "csms-backup.db")
        try:
            assert backup.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] >= 6
        finally:
            backup.close()
    finally:
        await asyncio.shield(drop_database(with_database(POSTGRES_URL, name)))
