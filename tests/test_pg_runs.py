"""The webhook bookkeeping's runs on PostgreSQL (one ``unnest`` statement for all the rows of a
fenced insert, upsert or settle in a transaction) leave what running the rows one by one
leaves: the same unit committed to PostgreSQL and, row by row, to SQLite reads back the same,
with repeated keys (the last row wins), and rows whose lease check fails left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storage import postgres
from storage import webhook_tables as tables
from storage.postgres import RUN_MIN_ROWS, PostgresStore
from storage.records import Statement, UnitOfWork
from storage.sqlite import SqliteStore
from storage.store import Store

NODE = "node-a"
TOKEN = 7
STALE = 5  # a partition held with another token: its fenced rows must not be written
CREATED = "2026-12-07T10:00:00.000Z"


def fence(delivery_id: int) -> tables.Fence:
    return (delivery_id % 8, NODE, TOKEN)


def delivery(delivery_id: int, *, status: str = tables.PENDING, attempts: int = 0) -> Any:
    return tables.DeliveryRow(
        id=delivery_id,
        endpoint_id="ep_1",
        event_pos=100 + delivery_id,
        event_id=f"evt_{delivery_id}",
        charger_id=f"CP-{delivery_id % 3}",
        status=status,
        attempts=attempts,
        next_attempt_at=1_765_000_000.5 + delivery_id,
        created_at=CREATED,
    )


def attempt(delivery_id: int, number: int, status_code: int | None) -> Statement:
    return tables.record_attempt(
        delivery_id=delivery_id,
        attempt=number,
        endpoint_id="ep_1",
        event_id=f"evt_{delivery_id}",
        event_type="transaction.updated",
        started_at="2026-12-07T10:00:01.000Z",
        finished_at=f"2026-12-07T10:00:01.{status_code or 0:03d}Z",
        status_code=status_code,
        latency_ms=1.25 if status_code else 0,
        error=None if status_code else "refused",
        outcome=tables.SUCCEEDED if status_code == 204 else tables.FAILED,
        fence=fence(delivery_id),
    )


def settle(delivery_id: int, status: str, attempts: int) -> Statement:
    return tables.settle_delivery(
        delivery_id,
        status=status,
        attempts=attempts,
        next_attempt_at=1_765_000_100.0 + attempts,
        fence=fence(delivery_id),
    )


PADDING = range(100, 100 + RUN_MIN_ROWS)  # more rows, so that each statement is a run


def bookkeeping() -> list[Statement]:
    """A journal flush's shape: runs of each statement, in the journal's batch order. The
    cases are below 100; the padding rows (some on the stale partition too) make the runs
    long enough to be written as runs."""
    inserted = [1, 2, 3, 4, STALE, 13, *PADDING]  # 13 is on the stale partition too
    writes = [tables.insert_delivery(delivery(i), fence(i)) for i in inserted]
    writes += [tables.upsert_delivery(delivery(i + 100), fence(i + 100)) for i in PADDING]
    writes += [attempt(i, 1, 204) for i in PADDING]
    writes += [settle(i, tables.SUCCEEDED, 1) for i in PADDING]
    writes += [
        tables.upsert_delivery(delivery(20, attempts=1), fence(20)),
        tables.upsert_delivery(delivery(22, attempts=1), fence(22)),
        tables.upsert_delivery(delivery(20, status=tables.SUCCEEDED, attempts=2), fence(20)),
        tables.upsert_delivery(delivery(2, status=tables.FAILED, attempts=9), fence(2)),
    ]
    writes += [
        attempt(1, 1, 500),
        attempt(2, 1, 204),
        attempt(1, 1, None),  # the same attempt again: its last answer stays
        attempt(STALE, 1, 204),
        attempt(1, 2, 204),
        attempt(22, 1, 503),
    ]
    writes += [
        settle(1, tables.PENDING, 1),
        settle(3, tables.FAILED, 4),
        settle(1, tables.SUCCEEDED, 2),  # the same delivery again: the last one stays
        settle(13, tables.SUCCEEDED, 1),
        settle(4, tables.SUCCEEDED, 1),
    ]
    return tables.in_batch_order(writes)  # type: ignore[return-value]


async def written(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    deliveries = await store.fetch_all(
        "SELECT id, endpoint_id, event_pos, event_id, charger_id, status, attempts,"
        " next_attempt_at, created_at FROM webhook_deliveries ORDER BY id"
    )
    attempts = await store.fetch_all(
        "SELECT delivery_id, attempt, endpoint_id, event_id, event_type, started_at,"
        " finished_at, status_code, latency_ms, error, outcome FROM webhook_attempts"
        " ORDER BY delivery_id, attempt"
    )
    return [tuple(r) for r in deliveries], [tuple(r) for r in attempts]


async def hold_leases(store: Store) -> None:
    await store.commit(
        UnitOfWork(
            writes=[
                Statement("UPDATE delivery_leases SET node_id = ?, token = ?", (NODE, TOKEN)),
                Statement("UPDATE delivery_leases SET token = ? WHERE partition = ?", (99, STALE)),
            ]
        )
    )


async def test_runs_write_what_rows_one_by_one_write(pg_migrated_url: str, tmp_path: Path) -> None:
    writes = bookkeeping()
    # Every statement here is one the store writes as a run (a test of the runs, not of
    # executemany), with enough rows for it.
    runs = {w.sql for w in writes}
    assert runs <= postgres._RUNS.keys() and len(runs) == 4
    assert all(sum(w.sql == sql for w in writes) >= RUN_MIN_ROWS for sql in runs)

    pg = await PostgresStore.open(pg_migrated_url)
    reference = await SqliteStore.open(str(tmp_path / "reference.db"))
    try:
        for store in (pg, reference):
            await hold_leases(store)
            await store.commit(UnitOfWork(writes=list(writes)))
        assert pg.runs_written == len(runs)
        deliveries, attempts = await written(pg)
        assert (deliveries, attempts) == await written(reference)
    finally:
        await pg.close()
        await reference.close()

    by_id = {row[0]: row for row in deliveries}
    held = [i for i in PADDING if fence(i)[0] != STALE]
    upserted = [i + 100 for i in PADDING if fence(i + 100)[0] != STALE]
    # nothing of the stale partition
    assert sorted(by_id) == [1, 2, 3, 4, 20, 22, *held, *upserted]
    assert all(by_id[i][5:7] == (tables.SUCCEEDED, 1) for i in held)
    assert by_id[1][5:7] == (tables.SUCCEEDED, 2)
    assert by_id[2][5:7] == (tables.FAILED, 9)
    assert by_id[20][5:7] == (tables.SUCCEEDED, 2)
    assert [(r[0], r[1], r[7]) for r in attempts] == [
        (1, 1, None),
        (1, 2, 204),
        (2, 1, 204),
        (22, 1, 503),
        *((i, 1, 204) for i in held),
    ]


@pytest.mark.parametrize("count", [1, RUN_MIN_ROWS])
async def test_a_run_refused_by_the_server_rolls_back_as_one(
    pg_migrated_url: str, count: int
) -> None:
    """A run the database turns down (here: a delivery id that exists) fails its unit as the
    row-by-row write did, writing nothing of it, and the store goes on."""
    pg = await PostgresStore.open(pg_migrated_url)
    try:
        await hold_leases(pg)
        await pg.commit(UnitOfWork(writes=[tables.insert_delivery(delivery(1), fence(1))]))
        again = [tables.insert_delivery(delivery(i), fence(i)) for i in range(count, 0, -1)]
        with pytest.raises(RuntimeError, match="could not commit"):
            await pg.commit(UnitOfWork(writes=again))
        await pg.commit(UnitOfWork(writes=[tables.insert_delivery(delivery(2), fence(2))]))
        deliveries, _ = await written(pg)
        assert [row[0] for row in deliveries] == [1, 2]
    finally:
        await pg.close()
