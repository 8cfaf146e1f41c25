"""Migration 0008 makes a charger's sequence unique (DESIGN 4, 8). Databases written before
it may hold a charger whose events were numbered from 1 twice (commands queued before its
first connect): those are renumbered in commit order, the others are left as they were."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import asyncpg

from storage import migrations as sqlite_migrations
from storage import pg_migrations

BEFORE = 8  # the version that adds the unique index
ROWS = [  # (id, charger, sequence) in commit order
    ("evt_1", "CP-Q", 1),  # reset.requested, queued before the first connect
    ("evt_2", "CP-Q", 2),  # clear_cache.requested
    ("evt_3", "CP-OK", 1),
    ("evt_4", "CP-Q", 1),  # charger.connected: numbered from 1 again (the old bug)
    ("evt_5", "CP-Q", 2),
    ("evt_6", "CP-OK", 2),
    ("evt_7", "CP-Q", 3),
]
EXPECTED = {"evt_1": 1, "evt_2": 2, "evt_3": 1, "evt_4": 3, "evt_5": 4, "evt_6": 2, "evt_7": 5}


async def test_sqlite_renumbers_only_the_charger_with_duplicates(tmp_path: Path) -> None:
    conn = await aiosqlite.connect(tmp_path / "old.db")
    try:
        shipped = sqlite_migrations.available()
        await sqlite_migrations.apply(conn, [m for m in shipped if m.version < BEFORE])
        for event_id, charger_id, sequence in ROWS:
            await conn.execute(
                "INSERT INTO events (id, type, charger_id, sequence, timestamp, data)"
                " VALUES (?, 't', ?, ?, '2026-01-01T00:00:00.000Z', '{}')",
                (event_id, charger_id, sequence),
            )
        await conn.execute(
            "INSERT INTO charger_state (charger_id, last_sequence) VALUES ('CP-Q', 3)"
        )
        await conn.commit()
        assert BEFORE in await sqlite_migrations.apply(conn)
        async with conn.execute("SELECT id, sequence FROM events") as cursor:
            assert {row[0]: row[1] async for row in cursor} == EXPECTED
        async with conn.execute("SELECT last_sequence FROM charger_state") as cursor:
            assert [row[0] async for row in cursor] == [5]
    finally:
        await conn.close()


async def test_postgres_renumbers_only_the_charger_with_duplicates(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        shipped = sqlite_migrations.available("migrations/postgres")
        await pg_migrations.apply(conn, [m for m in shipped if m.version < BEFORE])
        for pos, (event_id, charger_id, sequence) in enumerate(ROWS, start=1):
            await conn.execute(
                "INSERT INTO events (pos, id, type, charger_id, sequence, timestamp, data)"
                " VALUES ($1, $2, 't', $3, $4, '2026-01-01T00:00:00.000Z', '{}')",
                pos,
                event_id,
                charger_id,
                sequence,
            )
        await conn.execute(
            "INSERT INTO charger_state (charger_id, last_sequence) VALUES ('CP-Q', 3)"
        )
        assert BEFORE in await pg_migrations.apply(conn)
        rows = await conn.fetch("SELECT id, sequence FROM events")
        assert {row[0]: row[1] for row in rows} == EXPECTED
        assert await conn.fetchval("SELECT last_sequence FROM charger_state") == 5
    finally:
        await conn.close()
