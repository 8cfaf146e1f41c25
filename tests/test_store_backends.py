"""The Store contract on both backends: what csms/ and webhooks/ rely on, checked on the store
itself (a real SQLite file, a real PostgreSQL schema)."""

from __future__ import annotations

import asyncio
import itertools

from storage import open_store
from storage import webhook_tables as tables
from storage.records import Event, EventFilter, IdTag, UnitOfWork
from storage.store import SequenceTaken, Store

STAMP = "2026-02-06T14:30:00.000Z"
_ids = itertools.count(1)


def event(charger_id: str, sequence: int, event_type: str = "transaction.updated") -> Event:
    return Event(
        id=f"evt_{next(_ids):08d}",
        type=event_type,
        charger_id=charger_id,
        sequence=sequence,
        timestamp=STAMP,
        data={"n": sequence},
    )


async def follow(store: Store, seen: list[int], stop: asyncio.Event) -> None:
    """What fan-out does: read the events after the last pos seen, again and again."""
    last = 0
    while True:
        done = stop.is_set()  # read once more after the writers stopped
        batch = await tables.events_after(store, last, 500)
        if batch:
            rows = await store.fetch_all(
                "SELECT pos FROM events WHERE id IN (" + ",".join("?" * len(batch)) + ")",
                [e.id for e in batch],
            )
            positions = sorted(r[0] for r in rows)
            seen.extend(positions)
            last = positions[-1]
        elif done:
            return
        await asyncio.sleep(0)  # let the writers run; the loop is bounded by ``stop``


async def test_a_reader_following_pos_skips_no_event_of_concurrent_committers(
    store_url: str,
) -> None:
    """Two stores on one database commit at once while a reader follows "events after pos":
    the positions are handed out in commit order, so no event becomes visible behind the
    reader's cursor. On PostgreSQL the second store has connections of its own, as another
    process would (on SQLite it shares the one writer of the file, as the design has it)."""
    first = await open_store(store_url)
    writers = [first, await first.open_sibling()]
    reader = await first.open_sibling()
    seen: list[int] = []
    stop = asyncio.Event()
    try:
        following = asyncio.create_task(follow(reader, seen, stop))

        async def write(store: Store, charger_id: str) -> None:
            for sequence in range(1, 201):
                await store.commit(UnitOfWork().put(event(charger_id, sequence)))

        await asyncio.wait_for(
            asyncio.gather(
                *(
                    write(store, f"CP-{w}-{c}")
                    for w, store in enumerate(writers)
                    for c in range(4)  # several units per group commit
                )
            ),
            60,
        )
        stop.set()
        await asyncio.wait_for(following, 30)
    finally:
        for store in (reader, writers[1], first):
            await store.close()
    assert len(seen) == 2 * 4 * 200
    assert seen == list(range(1, len(seen) + 1))  # in order, none skipped, none twice


async def test_type_globs_and_case_insensitive_id_tags_read_alike(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        await store.commit(
            UnitOfWork().put(
                event("CP-1", 1, "transaction.started"),
                event("CP-1", 2, "remote_start_transaction.accepted"),
                event("CP-1", 3, "charger.boot"),
                IdTag(
                    id_tag="Tag-Ä1",
                    status="Accepted",
                    expiry_date=None,
                    parent_id_tag=None,
                    created_at=STAMP,
                    updated_at=STAMP,
                ),
            )
        )

        async def types(*patterns: str) -> list[str]:
            page = await store.list_events(EventFilter(types=patterns, ascending=True, limit=10))
            return [e.type for e in page.items]

        assert await types("transaction.*") == ["transaction.started"]
        assert await types("*.accepted", "charger.?oot") == [
            "remote_start_transaction.accepted",
            "charger.boot",
        ]
        assert await types("remote_start_transaction.[ab]ccepted") == [
            "remote_start_transaction.accepted"
        ]
        assert await types("remote.start*") == []  # "." is no wildcard
        assert await types("transaction") == []
        found = await store.get_id_tag("tag-Ä1")  # ASCII letters fold, as OCPP's CiString
        assert found is not None and found.id_tag == "Tag-Ä1"
        assert await store.get_id_tag("tag-ä1") is None  # non-ASCII letters do not
    finally:
        await store.close()


async def test_submit_then_tells_each_unit_how_its_commit_went(store_url: str) -> None:
    """The hot path's group commit (``Store.submit_then``): each callback hears None once its
    unit is durable, or the error ``commit()`` would raise; never before ``submit_then``
    returns; a refused unit fails only itself."""
    store = await open_store(store_url)
    loop = asyncio.get_running_loop()
    heard: dict[str, asyncio.Future[BaseException | None]] = {}

    def submit(name: str, unit: UnitOfWork) -> None:
        heard[name] = loop.create_future()
        store.submit_then(unit, heard[name].set_result)
        assert not heard[name].done()  # not from inside submit_then

    try:
        await store.commit(UnitOfWork().put(event("CP-1", 1)))
        submit("fresh", UnitOfWork().put(event("CP-1", 2)))
        submit("taken", UnitOfWork().put(event("CP-1", 1)))  # that sequence is written
        submit("other", UnitOfWork().put(event("CP-2", 1)))
        submit("empty", UnitOfWork())
        outcomes = dict(
            zip(heard, await asyncio.wait_for(asyncio.gather(*heard.values()), 30), strict=True)
        )
        assert outcomes["fresh"] is None and outcomes["other"] is None
        assert outcomes["empty"] is None
        assert isinstance(outcomes["taken"], SequenceTaken)
        rows = await store.fetch_all("SELECT charger_id, sequence FROM events ORDER BY pos")
        assert sorted(tuple(r) for r in rows) == [("CP-1", 1), ("CP-1", 2), ("CP-2", 1)]
    finally:
        await store.close()
    closed: asyncio.Future[BaseException | None] = loop.create_future()
    store.submit_then(UnitOfWork().put(event("CP-3", 1)), closed.set_result)
    assert isinstance(await asyncio.wait_for(closed, 5), RuntimeError)
