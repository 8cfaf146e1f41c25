"""``Store.recent_meter_digests`` on both backends (what a charger's snapshot remembers so that
meter values re-sent after a restart are recognised), and migration 0011, which replaced the
index it read by a partial one and the transactions' (storage/store.py says why and how).

Each case is checked against the query it replaced: the charger's ``limit`` newest samples
by id, oldest first, after its unknown stops."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from storage import migrations as sqlite_migrations
from storage import open_store, pg_migrations
from storage.records import MeterSample, Transaction, UnitOfWork, UnknownStop
from storage.store import Store

pytest_plugins = ["tests.pg"]  # pg_url: an empty schema, for the migration

LIMIT = 4
BEFORE = 11  # the version that replaced meter_values_charger
_digests = itertools.count(1)


def transaction(tx_id: int, charger_id: str, minute: int, *, active: bool = False) -> Transaction:
    """Stopped unless ``active`` (the store does not mind samples written after the stop)."""
    stamp = f"2026-02-06T14:{minute:02d}:00.000Z"
    return Transaction(
        id=tx_id,
        charger_id=charger_id,
        connector_id=1,
        id_tag="TAG",
        id_tag_status="Accepted",
        meter_start=0,
        started_at=stamp,
        reservation_id=None,
        command_id=None,
        meter_stop=None if active else 0,
        stopped_at=None if active else stamp,
        stop_reason=None,
        stop_id_tag=None,
        last_meter=None,
        energy_wh=None,
        created_at=stamp,
        updated_at=stamp,
    )


class Samples:
    """Writes samples one unit each (in id order) and remembers them, to compute the old
    query's answer."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.written: list[tuple[str, str]] = []  # (charger, digest) in id order

    async def add(self, charger_id: str, tx_id: int | None, count: int = 1) -> None:
        for _ in range(count):
            digest = f"d{next(_digests):06d}"
            sample = MeterSample(
                charger_id=charger_id,
                connector_id=1,
                transaction_id=tx_id,
                timestamp="2026-02-06T14:00:00.000Z",
                digest=digest,
                sampled_value=[{"value": "1"}],
            )
            await self.store.commit(UnitOfWork().put(sample))
            self.written.append((charger_id, digest))

    def newest(self, charger_id: str, limit: int = LIMIT) -> list[str]:
        return [d for c, d in self.written if c == charger_id][-limit:]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = await open_store(store_url)
    yield store
    await store.close()


async def test_samples_of_no_transaction(store: Store) -> None:
    samples = Samples(store)
    assert await store.recent_meter_digests("CP-A", limit=LIMIT) == []
    await samples.add("CP-A", None, 2)
    assert await store.recent_meter_digests("CP-A", limit=LIMIT) == samples.newest("CP-A")
    await samples.add("CP-B", None, 3)  # another charger's
    await samples.add("CP-A", None, 5)
    assert await store.recent_meter_digests("CP-A", limit=LIMIT) == samples.newest("CP-A")
    assert await store.recent_meter_digests("CP-B", limit=LIMIT) == samples.newest("CP-B")


async def test_samples_of_transactions_and_mixed(store: Store) -> None:
    samples = Samples(store)
    first, other = transaction(1, "CP-A", 0, active=True), transaction(2, "CP-B", 1)
    await store.commit(UnitOfWork().put(first, other))
    await samples.add("CP-A", 1, 2)
    assert await store.recent_meter_digests("CP-A", limit=LIMIT) == samples.newest("CP-A")
    # Two transactions of one charger at once (two connectors), samples of none between,
    # another charger's interleaved. With limit 2 both are among the newest; with 1 the
    # older is not, and not among the newest active either: see the more-than-limit case.
    await store.commit(UnitOfWork().put(transaction(3, "CP-A", 2, active=True)))
    for tx_id in (1, 3, None, 1, 2, None, 3, 3, 2, None, 1):
        await samples.add("CP-B" if tx_id == 2 else "CP-A", tx_id)
    for limit in (2, 3, LIMIT, 7, 64):
        for charger in ("CP-A", "CP-B"):
            found = await store.recent_meter_digests(charger, limit=limit)
            assert found == samples.newest(charger, limit), (charger, limit)


async def test_more_samples_and_transactions_than_the_limit(store: Store) -> None:
    """More than ``limit`` samples per transaction and more than ``limit`` transactions:
    each is read only ``limit`` deep, and the newest are still found."""
    samples = Samples(store)
    for n in range(1, 8):
        await store.commit(UnitOfWork().put(transaction(n, "CP-A", n)))
        await samples.add("CP-A", n, 2 * LIMIT if n % 2 else 1)
        await samples.add("CP-A", None, n % 3)
        expected = samples.newest("CP-A")
        assert await store.recent_meter_digests("CP-A", limit=LIMIT) == expected
    # The charger's untransacted samples fill the window; then its transaction's do.
    await samples.add("CP-A", None, LIMIT + 1)
    assert await store.recent_meter_digests("CP-A", limit=LIMIT) == samples.newest("CP-A")
    await samples.add("CP-A", 7, LIMIT - 1)
    assert await store.recent_meter_digests("CP-A", limit=LIMIT) == samples.newest("CP-A")
    # A transaction active all along on another connector, behind more than ``limit``
    # newer ones: its samples are found.
    await store.commit(UnitOfWork().put(transaction(100, "CP-A", 0, active=True)))
    for n in range(8, 8 + LIMIT + 2):
        await store.commit(UnitOfWork().put(transaction(n, "CP-A", n)))
        await samples.add("CP-A", n, 1)
        await samples.add("CP-A", 100, 1)
        assert await store.recent_meter_digests("CP-A", limit=LIMIT) == samples.newest("CP-A")


async def test_newest_transactions_are_those_started_last_not_the_largest_ids(
    store: Store,
) -> None:
    """On a cluster a charger that moved to a node with an older block of ids gets smaller
    ids for its newer transactions: their samples are still found behind more than
    ``limit`` older transactions with larger ids."""
    samples = Samples(store)
    for n in range(LIMIT + 2):
        await store.commit(UnitOfWork().put(transaction(1001 + n, "CP-A", n)))
        await samples.add("CP-A", 1001 + n, 1)
    await store.commit(UnitOfWork().put(transaction(5, "CP-A", 30)))  # the other node's
    await samples.add("CP-A", 5, 2)
    assert await store.recent_meter_digests("CP-A", limit=LIMIT) == samples.newest("CP-A")


async def test_what_the_window_may_miss(store: Store) -> None:
    """The one difference from the old query (see the docstring): a sample of a stopped
    transaction older than the charger's ``limit`` newest is not among the recent ones."""
    samples = Samples(store)
    for n in range(1, LIMIT + 2):
        await store.commit(UnitOfWork().put(transaction(n, "CP-A", n)))
        await samples.add("CP-A", n, 1)
    await samples.add("CP-A", 1, 1)  # a late MeterValues for the oldest transaction
    late = samples.newest("CP-A", 1)
    found = await store.recent_meter_digests("CP-A", limit=LIMIT)
    assert found == [d for d in samples.newest("CP-A", LIMIT + 1) if d not in late][-LIMIT:]


async def test_unknown_stops_come_first(store: Store) -> None:
    samples = Samples(store)
    await samples.add("CP-A", None, 2)
    stops = [
        UnknownStop(
            charger_id="CP-A",
            transaction_id=-1,
            digest=f"stop{n}",
            payload={"n": n},
            recorded_at="2026-02-06T14:00:00.000Z",
        )
        for n in range(3)
    ]
    await store.commit(UnitOfWork().put(*stops))
    found = await store.recent_meter_digests("CP-A", limit=2)
    assert found == ["stop1", "stop2", *samples.newest("CP-A", 2)]


# -- migration 0011 on a database with data ------------------------------------------------

TRANSACTIONS = [(1, "CP-A", 1), (2, "CP-B", 2), (1001, "CP-A", 3), (3, "CP-A", 4)]
METER_ROWS = [  # (charger, transaction) in id order
    ("CP-A", None),
    ("CP-A", 1),
    ("CP-B", 2),
    ("CP-A", 1),
    ("CP-A", None),
    ("CP-A", 1001),
    ("CP-B", None),
    ("CP-A", 3),
    ("CP-A", 3),
    ("CP-A", None),
]
OLD_QUERY = "SELECT digest FROM meter_values WHERE charger_id = {} ORDER BY id DESC LIMIT {}"


async def test_sqlite_migration_keeps_the_recent_samples(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = await aiosqlite.connect(path)
    try:
        shipped = sqlite_migrations.available()
        await sqlite_migrations.apply(conn, [m for m in shipped if m.version < BEFORE])
        for tx_id, charger_id, minute in TRANSACTIONS:
            stamp = f"2026-02-06T14:{minute:02d}:00.000Z"
            await conn.execute(
                "INSERT INTO transactions (id, charger_id, connector_id, id_tag, id_tag_status,"
                " meter_start, started_at, created_at, updated_at)"
                " VALUES (?, ?, 1, 'TAG', 'Accepted', 0, ?, ?, ?)",
                (tx_id, charger_id, stamp, stamp, stamp),
            )
        for n, (charger_id, tx_id) in enumerate(METER_ROWS):
            await conn.execute(
                "INSERT INTO meter_values (charger_id, connector_id, transaction_id, timestamp,"
                " digest, sampled_value) VALUES (?, 1, ?, '2026-02-06T14:00:00.000Z', ?, '[]')",
                (charger_id, tx_id, f"m{n}"),
            )
        await conn.commit()
        before = {}
        for charger_id in ("CP-A", "CP-B"):
            rows = await conn.execute_fetchall(OLD_QUERY.format("?", "?"), (charger_id, LIMIT))
            before[charger_id] = [row[0] for row in reversed(list(rows))]
        assert before["CP-A"] == ["m5", "m7", "m8", "m9"]
    finally:
        await conn.close()

    store = await open_store(f"sqlite:///{path}")  # migrates
    try:
        for charger_id, expected in before.items():
            assert await store.recent_meter_digests(charger_id, limit=LIMIT) == expected
        indexes = {r[0] for r in await store.fetch_all("SELECT name FROM sqlite_master")}
        assert "meter_values_charger" not in indexes
        assert {"meter_values_untransacted", "transactions_charger_created"} <= indexes
        versions = await store.fetch_all("SELECT max(version) FROM schema_migrations")
        assert versions[0][0] >= BEFORE
    finally:
        await store.close()


async def test_postgres_migration_keeps_the_recent_samples(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        shipped = sqlite_migrations.available(pg_migrations.FOLDER)
        await pg_migrations.apply(conn, [m for m in shipped if m.version < BEFORE])
        for tx_id, charger_id, minute in TRANSACTIONS:
            stamp = f"2026-02-06T14:{minute:02d}:00.000Z"
            await conn.execute(
                "INSERT INTO transactions (id, charger_id, connector_id, id_tag, id_tag_status,"
                " meter_start, started_at, created_at, updated_at)"
                " VALUES ($1, $2, 1, 'TAG', 'Accepted', 0, $3, $3, $3)",
                tx_id,
                charger_id,
                stamp,
            )
        for n, (charger_id, tx_id) in enumerate(METER_ROWS):
            await conn.execute(
                "INSERT INTO meter_values (charger_id, connector_id, transaction_id, timestamp,"
                " digest, sampled_value) VALUES ($1, 1, $2, '2026-02-06T14:00:00.000Z', $3, '[]')",
                charger_id,
                tx_id,
                f"m{n}",
            )
        before = {}
        for charger_id in ("CP-A", "CP-B"):
            rows = await conn.fetch(OLD_QUERY.format("$1", "$2"), charger_id, LIMIT)
            before[charger_id] = [row[0] for row in reversed(rows)]
        assert before["CP-A"] == ["m5", "m7", "m8", "m9"]
    finally:
        await conn.close()

    store = await open_store(pg_url)  # migrates
    try:
        for charger_id, expected in before.items():
            assert await store.recent_meter_digests(charger_id, limit=LIMIT) == expected
        rows = await store.fetch_all(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        )
        indexes = {r[0] for r in rows}
        assert "meter_values_charger" not in indexes
        assert {"meter_values_untransacted", "transactions_charger_created"} <= indexes
    finally:
        await store.close()
