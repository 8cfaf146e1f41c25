"""The body posted for an event read back from the log is the same bytes as for the event
in memory (the engine builds it around the stored data text, without decoding it)."""

from __future__ import annotations

from storage import open_store
from storage import webhook_tables as tables
from storage.records import Event, UnitOfWork
from webhooks.envelope import envelope_body, envelope_body_of_stored

EVENTS = [
    Event(
        id="evt_0000001abcdefghijkl",
        type="transaction.updated",
        charger_id="CP-ü/1",
        sequence=7,
        timestamp="2026-02-06T14:30:00.000Z",
        data={"meterValue": [{"sampledValue": [{"value": "1.5"}]}], "note": 'quo"te\n€', "n": None},
    ),
    Event(
        id="evt_0000002abcdefghijkl",
        type="webhook.disabled",
        charger_id=None,
        sequence=None,
        timestamp="2026-02-06T14:30:00.001Z",
        data={"big": 2**70, "float": 0.1, "list": [], "empty": {}},  # beyond 64 bits: json
    ),
]


async def test_bodies_of_stored_events_are_byte_identical(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        await store.commit(UnitOfWork(writes=list(EVENTS)))
        stored = await tables.stored_events_at(store, [1, 2])
        assert [s.id for s in sorted(stored, key=lambda s: s.pos)] == [e.id for e in EVENTS]
        for s in stored:
            event = next(e for e in EVENTS if e.id == s.id)
            assert envelope_body_of_stored(
                event_id=s.id,
                event_type=s.type,
                timestamp=s.timestamp,
                charger_id=s.charger_id,
                sequence=s.sequence,
                data_json=s.data_json,
            ) == envelope_body(event)
    finally:
        await store.close()
