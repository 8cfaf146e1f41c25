"""Identifiers: event ids sort by their millisecond, stay unique and never contain a dot."""

from __future__ import annotations

import re

from csms.ids import IdSource
from storage.ids import time_ordered_id


def test_event_ids_sort_by_time_then_stay_unique() -> None:
    times = [0, 61, 62, 3843, 1_763_800_000_000, 1_763_800_000_001, 62**7 - 1]
    ids = [time_ordered_id("evt_", t) for t in times]
    assert ids == sorted(ids)  # byte order (SQLite's BINARY) = time order
    assert all(re.fullmatch(r"evt_[0-9A-Za-z]{19}", i) for i in ids)


def test_fresh_event_ids_are_unique_and_dotless() -> None:
    source = IdSource(0)
    ids = [source.event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert not any("." in i for i in ids)
    assert ids[0][:11] <= ids[-1][:11]  # the time prefix does not go back


def test_ids_made_on_two_threads_at_once_stay_unique() -> None:
    """The CSMS loop and the webhook engine's loop (a thread) both make event ids."""
    import threading

    made: list[list[str]] = [[], []]

    def make(into: list[str]) -> None:
        into.extend(time_ordered_id("evt_") for _ in range(20_000))

    threads = [threading.Thread(target=make, args=(m,)) for m in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ids = made[0] + made[1]
    assert len(ids) == 40_000 and len(set(ids)) == 40_000
