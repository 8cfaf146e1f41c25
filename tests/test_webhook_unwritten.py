"""The in-memory deliveries' bookkeeping (pure): how far the fan-out cursor may be
persisted, and what is taken out to be written."""

from __future__ import annotations

from webhooks.unwritten import Unwritten, UnwrittenDeliveries


def delivery(pos: int, charger: str = "CP-1", endpoint: str = "wh_a") -> Unwritten:
    return Unwritten(
        endpoint_id=endpoint,
        event_pos=pos,
        event_id=f"evt_{pos}",
        charger_id=charger,
        created_at="2026-11-22T10:00:00.000Z",
    )


def test_the_cursor_stays_below_the_oldest_unwritten_delivery() -> None:
    book = UnwrittenDeliveries()
    assert book.cursor(fanned_out_to=10) == 10  # nothing in memory: all fanned out counts
    book.add(1, delivery(11, "CP-1"))
    book.add(2, delivery(12, "CP-2"))
    book.add(3, delivery(13, "CP-1"))
    assert book.cursor(fanned_out_to=13) == 10
    assert book.settle(2, ("wh_a", "CP-2")) is not None  # not the oldest: no move
    assert book.cursor(fanned_out_to=13) == 10
    book.settle(1, ("wh_a", "CP-1"))
    assert book.cursor(fanned_out_to=13) == 12
    book.settle(3, ("wh_a", "CP-1"))
    assert book.cursor(fanned_out_to=13) == 13 and len(book) == 0


def test_a_failed_head_takes_its_stream_out_and_only_its_stream() -> None:
    book = UnwrittenDeliveries()
    for delivery_id, (pos, charger) in enumerate([(1, "A"), (2, "B"), (3, "A"), (4, "A")], 1):
        book.add(delivery_id, delivery(pos, charger))
    assert book.settle(1, ("wh_a", "A")) is not None  # the head answered (and failed)
    taken = book.take_stream(("wh_a", "A"))
    assert [(i, d.event_pos) for i, d in taken] == [(3, 3), (4, 4)]
    assert book.take_stream(("wh_a", "A")) == []  # nothing twice
    assert book.settle(3, ("wh_a", "A")) is None  # written already: an update, not a row
    assert book.cursor(fanned_out_to=4) == 1  # B's delivery at 2 still holds it


def test_an_endpoint_is_taken_out_or_dropped_whole() -> None:
    book = UnwrittenDeliveries()
    book.add(1, delivery(1, "A", "wh_a"))
    book.add(2, delivery(2, "A", "wh_b"))
    book.add(3, delivery(3, "B", "wh_a"))
    assert sorted(i for i, _ in book.take_endpoint("wh_a")) == [1, 3]
    assert 2 in book and 1 not in book
    book.drop_endpoint("wh_b")
    assert len(book) == 0 and book.cursor(fanned_out_to=3) == 3
