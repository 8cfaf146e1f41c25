"""The one SQLite writer of a file, shared by the stores of two event loops (the CSMS's and
the webhook engine's), on its own thread or, on one CPU, written to by the loops themselves."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from storage.cpus import usable_cpus
from storage.records import Event, UnitOfWork
from storage.sqlite import SqliteStore

T = TypeVar("T")
_ids = itertools.count(1)
ROOT = Path(__file__).resolve().parent.parent


def event(charger_id: str, sequence: int) -> Event:
    return Event(
        id=f"evt_{next(_ids):08d}",
        type="transaction.updated",
        charger_id=charger_id,
        sequence=sequence,
        timestamp="2026-02-06T14:30:00.000Z",
        data={"n": sequence},
    )


async def write(store: SqliteStore, prefix: str) -> None:
    """Four chargers' 150 events each, one unit per event (several per group commit)."""

    async def one(charger_id: str) -> None:
        for sequence in range(1, 151):
            await store.commit(UnitOfWork().put(event(charger_id, sequence)))

    await asyncio.gather(*(one(f"{prefix}-{c}") for c in range(4)))


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "thread"])
async def test_stores_on_two_loops_write_through_one_writer(tmp_path: Path, inline: bool) -> None:
    """Both loops commit at once; every event is written once, positions are handed out
    without a gap or a repeat, and each charger's events keep their order."""
    main = await SqliteStore.open(str(tmp_path / "csms.db"), inline=inline)
    assert main.writer.inline is inline
    other_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=other_loop.run_forever, daemon=True)
    thread.start()

    async def there(coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, other_loop))

    try:
        sibling = await there(main.open_sibling())
        try:
            await asyncio.wait_for(
                asyncio.gather(write(main, "CP-main"), there(write(sibling, "CP-other"))), 60
            )
        finally:
            await there(sibling.close())
        rows = await main.fetch_all("SELECT pos, charger_id, sequence FROM events ORDER BY pos")
    finally:
        await main.close()
        other_loop.call_soon_threadsafe(other_loop.stop)
        await asyncio.to_thread(thread.join, 10)
        other_loop.close()
    assert [row[0] for row in rows] == list(range(1, 8 * 150 + 1))
    by_charger: dict[str, list[int]] = {}
    for _, charger_id, sequence in rows:
        by_charger.setdefault(charger_id, []).append(sequence)
    assert len(by_charger) == 8
    assert all(seqs == list(range(1, 151)) for seqs in by_charger.values())


def _inline_when(affinity: str, db: Path) -> bool:
    """Whether a fresh process, limited to ``affinity`` CPUs, writes inline."""
    code = (
        "import asyncio, os, sys\n"
        f"os.sched_setaffinity(0, {affinity})\n"
        "from storage.sqlite import SqliteStore\n"
        "async def main():\n"
        "    store = await SqliteStore.open(sys.argv[1])\n"
        "    print(store.writer.inline)\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip() == "True"


def test_one_usable_cpu_writes_inline_and_more_use_the_thread(tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    assert _inline_when(f"{{{cpus[0]}}}", tmp_path / "one.db") is True
    assert _inline_when(repr(set(cpus)), tmp_path / "all.db") is (usable_cpus() < 2)
