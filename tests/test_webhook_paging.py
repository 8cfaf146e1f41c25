"""Paging in the pure scheduler: a bounded window of each stream in memory, the rest counted as
stored and read back in windows by id; order per stream holds across the windows. The
"store" here is a plain dict of rows, standing in for what the engine reads."""

from __future__ import annotations

from webhooks.scheduler import Outcome, Pending, Policy, Refill, Scheduler

SCHEDULE = (10.0, 20.0)


def make(window: int = 4, cap: int = 1000, floor: int = 2) -> Scheduler:
    policy = Policy(
        retry_schedule=SCHEDULE,
        disable_after=1000.0,
        max_in_flight=100,
        window=window,
        memory_cap=cap,
        floor=floor,
    )
    s = Scheduler(policy, lambda: 0.5)
    s.set_endpoint("wh_a", active=True)
    return s


def pending(i: int, charger: str = "CP-1", attempts: int = 0) -> Pending:
    return Pending(
        delivery_id=i, endpoint_id="wh_a", charger_id=charger, event_pos=i, attempts=attempts
    )


class Store:
    """The rows the engine would read: pending ids per stream."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str | None], list[int]] = {}

    def add(self, s: Scheduler, i: int, charger: str = "CP-1") -> None:
        """Fan-out's rule: written first when the stream does not keep it in memory."""
        if not s.keeps(("wh_a", charger)):
            self.rows.setdefault(("wh_a", charger), []).append(i)
        s.add_one(pending(i, charger))

    def serve(self, s: Scheduler) -> list[Refill]:
        asks = s.refills()
        for ask in asks:
            ids = sorted(i for i in self.rows.get(ask.key, []) if i > ask.after)[: ask.limit]
            s.refilled(ask, [pending(i, ask.key[1] or "") for i in ids])
        return asks

    def settle(self, i: int) -> None:
        for ids in self.rows.values():
            if i in ids:
                ids.remove(i)


def drain(s: Scheduler, store: Store, now: float = 0.0) -> list[int]:
    """Post and succeed everything, reading windows as asked; the ids in posting order."""
    posted: list[int] = []
    for _ in range(10_000):
        store.serve(s)
        batch = s.due(now)
        if not batch and not s.hungry:
            break
        for d in batch:
            posted.append(d.delivery_id)
            s.record(Outcome(delivery_id=d.delivery_id, status_code=200), now)
            store.settle(d.delivery_id)
    return posted


def test_a_stream_keeps_its_window_and_the_rest_waits_in_the_store():
    s, store = make(window=4), Store()
    for i in range(1, 21):
        store.add(s, i)
    assert s.in_memory == 4 and s.stored == 16 and s.pending == 20
    assert store.rows[("wh_a", "CP-1")] == list(range(5, 21))
    assert s.snapshot() == {"wh_a": (20, 1)}
    assert drain(s, store) == list(range(1, 21))  # in order across every window boundary
    assert s.pending == 0 and s.in_memory == 0 and not s.hungry


def test_a_spilled_stream_takes_nothing_new_into_memory_until_it_is_read_back():
    s, store = make(window=4), Store()
    for i in range(1, 6):
        store.add(s, i)
    assert s.stored == 1
    for d in s.due(0.0):
        s.record(Outcome(delivery_id=d.delivery_id, status_code=200), 0.0)  # 1 done: room
    store.add(s, 6)  # room in memory, but 5 is in the store: 6 must wait behind it there
    assert not s.keeps(("wh_a", "CP-1")) and s.in_memory == 3 and s.stored == 2
    assert drain(s, store) == [2, 3, 4, 5, 6]


def test_a_window_asks_when_half_is_left_and_only_one_read_at_a_time():
    s, store = make(window=8), Store()
    for i in range(1, 21):
        store.add(s, i)
    assert not s.hungry
    for i in range(1, 5):
        assert [d.delivery_id for d in s.due(0.0)] == [i]
        s.record(Outcome(delivery_id=i, status_code=200), 0.0)
    assert s.hungry  # 4 of 8 left
    asks = s.refills()
    assert asks == [Refill(key=("wh_a", "CP-1"), after=8, limit=4, epoch=asks[0].epoch)]
    assert s.refills() == [] and not s.hungry  # one read on its way at a time


def test_memory_cap_leaves_each_stream_its_floor():
    s, store = make(window=10, cap=12, floor=2), Store()
    for i in range(1, 31):
        store.add(s, i, "CP-1")  # 10 in memory, 20 stored
    for i in range(31, 41):
        store.add(s, i, "CP-2")  # memory over the cap after 2: the floor, the rest stored
    assert s.in_memory == 12 and s.stored == 28
    for i in range(41, 45):
        store.add(s, i, "CP-3")
    assert s.in_memory == 14  # a new stream still keeps its floor: nobody starves
    posted = drain(s, store)
    for low, high in ((1, 30), (31, 40), (41, 44)):
        assert [i for i in posted if low <= i <= high] == list(range(low, high + 1))
    assert sorted(posted) == list(range(1, 45))


def test_spilled_streams_are_read_back_up_to_an_even_share_of_the_cap():
    s, store = make(window=10, cap=12, floor=2), Store()
    for charger in ("CP-1", "CP-2"):
        for i in range(1, 21):
            store.add(s, i + (100 if charger == "CP-2" else 0), charger)
    # CP-1 filled its window (10) before the cap, CP-2 kept its floor (2); each may hold an
    # even share (6) once read back: CP-2 is read now, CP-1 when 3 are left.
    assert s.in_memory == 12
    [ask] = s.refills()
    assert ask.key == ("wh_a", "CP-2") and ask.limit == 4
    for _ in range(7):
        [d] = [x for x in s.due(0.0) if x.charger_id == "CP-1"]
        s.record(Outcome(delivery_id=d.delivery_id, status_code=200), 0.0)
    [ask] = s.refills()
    assert ask.key == ("wh_a", "CP-1") and ask.limit == 3


def test_start_queues_stored_streams_by_count_and_reads_them_by_id():
    s, store = make(window=4), Store()
    store.rows[("wh_a", "CP-1")] = [3, 7, 9, 12, 15, 40]
    s.add_stored(("wh_a", "CP-1"), 6)
    assert s.pending == 6 and s.in_memory == 0 and s.hungry
    assert s.snapshot() == {"wh_a": (6, None)}  # no head known until its window is read
    store.add(s, 41)  # fanned out after the start: behind the stored ones
    assert store.rows[("wh_a", "CP-1")][-1] == 41
    assert drain(s, store) == [3, 7, 9, 12, 15, 40, 41]


def test_retries_keep_the_head_and_order_across_a_refill():
    s, store = make(window=2, floor=1), Store()
    for i in range(1, 6):
        store.add(s, i)
    [d] = s.due(0.0)
    s.record(Outcome(delivery_id=d.delivery_id, status_code=500), 0.0)  # retry at 10
    assert s.due(5.0) == []
    [d] = s.due(10.0)
    assert d.delivery_id == 1 and d.attempt == 2
    s.record(Outcome(delivery_id=1, status_code=200), 10.0)
    store.settle(1)
    assert drain(s, store, now=10.0) == [2, 3, 4, 5]


def test_a_row_read_back_keeps_its_attempts_and_due_time():
    s = make(window=2)
    s.add_stored(("wh_a", "CP-1"), 1)
    [ask] = s.refills()
    s.refilled(
        ask,
        [
            Pending(
                delivery_id=5,
                endpoint_id="wh_a",
                charger_id="CP-1",
                event_pos=5,
                attempts=3,
                next_at=50.0,
            )
        ],
    )
    assert s.due(49.0) == [] and s.next_wakeup() == 50.0
    [d] = s.due(50.0)
    assert d.attempt == 4


def test_a_short_window_means_the_stream_has_no_more():
    s = make(window=4)
    s.add_stored(("wh_a", "CP-1"), 10)  # counted too many (the store is the truth)
    [ask] = s.refills()
    s.refilled(ask, [pending(1), pending(2)])
    assert s.stored == 0 and s.pending == 2 and not s.hungry


def test_a_stream_dropped_while_its_window_is_read_ignores_the_answer():
    s = make(window=4)
    s.add_stored(("wh_a", "CP-1"), 3)
    [ask] = s.refills()
    s.drop_streams(lambda key: True)  # its partition is another node's now
    s.add_stored(("wh_a", "CP-1"), 3)  # ... and taken back
    s.refilled(ask, [pending(1), pending(2), pending(3)])
    assert s.in_memory == 0 and s.stored == 3 and s.hungry


def test_an_older_id_joins_a_spilled_stream_in_its_place():
    """A delivery handed over by another node can carry an id below what memory holds."""
    s, store = make(window=3), Store()
    for i in (10, 20, 30, 40):
        store.add(s, i)
    s.add_one(pending(15))  # below loaded_to (30): into memory, in its place
    assert s.in_memory == 4 and s.stored == 1
    assert drain(s, store) == [10, 15, 20, 30, 40]


def test_a_failed_read_asks_again():
    s = make(window=4)
    s.add_stored(("wh_a", "CP-1"), 2)
    [ask] = s.refills()
    assert not s.hungry
    s.refill_failed(ask)
    assert s.hungry and s.refills()[0].after == 0
