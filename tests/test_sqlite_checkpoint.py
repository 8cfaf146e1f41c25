"""SQLite's WAL is copied back by a thread of its own (``storage.sqlite.Checkpointer``), so a
checkpoint never stalls the group commit; what is committed is readable all along."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from storage.records import Meta, UnitOfWork
from storage.sqlite import SqliteStore
from tests.conftest import wait_for


async def test_the_wal_is_copied_back_while_commits_go_on(tmp_path: Path) -> None:
    path = tmp_path / "csms.db"
    store = await SqliteStore.open(str(path))
    try:
        checkpointer = store.writer.checkpointer
        before = checkpointer.passes
        for n in range(200):
            await store.commit(UnitOfWork().put(Meta(key=f"k{n}", value=str(n))))

        # A pass after these commits: the whole WAL was copied into the database file.
        async def copied() -> bool:
            return checkpointer.passes > before

        await wait_for(copied, timeout=10)
        await store.commit(UnitOfWork().put(Meta(key="after", value="yes")))
        assert await store.get_meta("k199") == "199"
        assert await store.get_meta("after") == "yes"
    finally:
        await store.close()
    # Read without the WAL's help: the rows are in the database file itself.
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT count(*) FROM meta WHERE key LIKE 'k%'").fetchone()
    assert rows == (200,)


async def test_closing_stops_the_checkpointer(tmp_path: Path) -> None:
    store = await SqliteStore.open(str(tmp_path / "csms.db"))
    thread = store.writer.checkpointer._thread
    assert thread.is_alive()
    await store.close()
    await asyncio.wait_for(asyncio.to_thread(thread.join, 5), 10)
    assert not thread.is_alive()
