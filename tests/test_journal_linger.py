"""The webhook engine's journal lets answers (``add``) linger so that a moderate rate of them
is written as a few commits, and writes what someone waits for at once (webhooks/journal.py).
On a real SQLite file, written inline (so a commit is over within the loop turn that made it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import webhook_tables as tables
from storage.sqlite import SqliteStore
from tests.conftest import wait_for
from webhooks import journal
from webhooks.journal import Journal


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(str(tmp_path / "csms.db"), inline=True)
    yield store
    await store.close()


async def counters(store: SqliteStore) -> dict[str, int]:
    return {k: v for k, v in (await tables.load_counters(store)).items() if k.startswith("n")}


async def turns(n: int = 20) -> None:
    """Let the loop run ``n`` times: enough for a flush that is not held back to be over."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_answers_within_the_linger_go_out_as_one_commit(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "LINGER", 0.3)
    j = Journal(store)
    try:
        j.add([tables.set_counter("n1", 1)])  # the first flush: at once

        async def first() -> bool:
            return (await counters(store)).get("n1") == 1

        await wait_for(first, timeout=5)
        commits = store.writer.commits
        j.add([tables.set_counter("n2", 2)])
        await turns()
        assert store.writer.commits == commits  # held back: within the linger
        j.add([tables.set_counter("n3", 3)])

        async def both() -> bool:
            return (await counters(store)) == {"n1": 1, "n2": 2, "n3": 3}

        await wait_for(both, timeout=5)
        assert store.writer.commits == commits + 1  # the two answers, one commit
    finally:
        await j.close()


async def lingering(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> Journal:
    """A journal whose first flush is over and whose next answer would wait a minute."""
    monkeypatch.setattr(journal, "LINGER", 60.0)
    j = Journal(store)
    await asyncio.wait_for(j.append([tables.set_counter("n1", 1)]), 5)
    j.add([tables.set_counter("n2", 2)])
    return j


async def test_a_write_someone_waits_for_goes_out_at_once_with_what_lingers(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = await lingering(store, monkeypatch)
    try:
        await asyncio.wait_for(j.write([tables.set_counter("n3", 3)]), 5)
        assert await counters(store) == {"n1": 1, "n2": 2, "n3": 3}
    finally:
        await j.close()


async def test_closing_writes_what_lingers(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    j = await lingering(store, monkeypatch)
    await asyncio.wait_for(j.close(), 5)
    assert await counters(store) == {"n1": 1, "n2": 2}
