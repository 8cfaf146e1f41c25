"""Group commits that wait for company while the process is busy (storage/pacing.py): the
rule on plain numbers, and a real store on both backends."""

from __future__ import annotations

import asyncio
import time

import pytest

from storage import open_store
from storage.pacing import BUSY, CALM, ENOUGH, MAX_GAP, WINDOW, CommitPacer, gap_for
from storage.records import Event, UnitOfWork
from tests.test_store_backends import event


def test_the_gap_grows_from_nothing_when_calm_to_its_most_when_busy():
    assert gap_for(0.0) == 0.0
    assert gap_for(CALM) == 0.0  # a moderately loaded server adds no latency
    assert gap_for((CALM + BUSY) / 2) == pytest.approx(MAX_GAP / 2)
    assert gap_for(BUSY) == pytest.approx(MAX_GAP)
    assert gap_for(1.0) == pytest.approx(MAX_GAP)  # never more than MAX_GAP


SPAN = WINDOW * 1.001  # a window and a hair: clear of float rounding at its end


class Clocks:
    """A wall clock and a process CPU clock that tests move by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.cpu = 10.0

    def pass_(self, seconds: float, busy: float) -> None:
        self.now += seconds
        self.cpu += seconds * busy

    def pacer(self, cpus: float = 1.0) -> CommitPacer:
        return CommitPacer(cpus=cpus, process_cpu=lambda: self.cpu, clock=lambda: self.now)


def test_a_busy_process_spaces_its_commits_and_a_calm_one_does_not():
    c = Clocks()
    p = c.pacer()
    assert p.wait() == 0.0
    p.began()
    c.pass_(SPAN, busy=1.0)
    assert p.wait() == 0.0  # the last commit began a window ago: long enough
    p.began()
    c.pass_(0.001, busy=1.0)
    assert p.wait() == pytest.approx(MAX_GAP - 0.001)  # the gap is read once per window
    c.pass_(SPAN, busy=0.2)
    p.began()
    assert p.wait() == 0.0  # calm again: commits begin at once, even back to back
    assert p.gap == 0.0


def test_busy_is_a_share_of_the_cpus_the_process_may_use():
    c = Clocks()
    p = c.pacer(cpus=2.0)
    c.pass_(SPAN, busy=0.9)  # most of one core of two
    p.wait()
    assert p.gap == 0.0
    c.pass_(SPAN, busy=2.0)
    p.wait()
    assert p.gap == pytest.approx(MAX_GAP)


def busy_pacer() -> CommitPacer:
    """A pacer that has read a whole window of one core fully used: its gap is MAX_GAP. Its
    clocks are the wall clock (the committer waits in real time), shifted by that window."""
    offset = 0.0

    def clock() -> float:  # the process's CPU clock too
        return time.monotonic() + offset

    pacer = CommitPacer(cpus=1.0, process_cpu=clock, clock=clock)
    offset = WINDOW
    return pacer


@pytest.mark.parametrize("paced", [True, False], ids=["paced", "unpaced"])
async def test_a_busy_store_gathers_units_that_came_apart_into_one_commit(
    store_url: str, monkeypatch: pytest.MonkeyPatch, paced: bool
):
    """Three units submitted on three turns of the loop: a paced store, busy, commits them
    together, at least the gap after its previous commit began; unpaced, the first goes
    alone (the control: the units did come apart). The gap is widened to 0.3 s so that the
    previous commit (a PostgreSQL round trip or a few) surely took less."""
    gap = 0.3
    monkeypatch.setattr("storage.pacing.MAX_GAP", gap)
    store = await open_store(store_url)
    commits: list[tuple[float, list[Event]]] = []
    store.add_commit_listener(lambda events, _: commits.append((time.monotonic(), events)))
    if paced:
        store.pacer = busy_pacer()
    try:
        await store.commit(UnitOfWork().put(event("CP-1", 1)))
        started = time.monotonic()
        futures = []
        for sequence in (2, 3, 4):
            futures.append(store.submit(UnitOfWork().put(event("CP-1", sequence))))
            await asyncio.sleep(0)  # a turn of the loop: the committer may take them
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        later = [[e.sequence for e in events] for _, events in commits[1:]]
        if paced:
            assert later == [[2, 3, 4]]
            assert commits[1][0] - started >= gap * 0.5
        else:
            assert later[0] == [2]
    finally:
        await store.close()


async def test_enough_units_pending_begin_a_commit_at_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch
):
    """A closed loop of a few chargers (each waits for its answer before it sends again)
    must not wait out the gap: once ENOUGH units are pending the commit begins. The gap is
    widened to 5 s: waiting it out would fail the test."""
    monkeypatch.setattr("storage.pacing.MAX_GAP", 5.0)
    store = await open_store(store_url)
    store.pacer = busy_pacer()
    try:
        await store.commit(UnitOfWork().put(event("CP-1", 1)))
        few = store.submit(UnitOfWork().put(event("CP-1", 2)))
        await asyncio.sleep(0)  # a turn of the loop: the committer starts waiting
        assert not few.done()
        rest = [store.submit(UnitOfWork().put(event(f"CP-{n}", 1))) for n in range(2, ENOUGH + 1)]
        await asyncio.wait_for(asyncio.gather(few, *rest), 2.5)
    finally:
        await store.close()


async def test_closing_a_store_whose_commit_waits_for_company_writes_it_at_once(
    store_url: str, monkeypatch: pytest.MonkeyPatch
):
    """Close does not wait out the gap (5 s here), and the unit waiting is written."""
    monkeypatch.setattr("storage.pacing.MAX_GAP", 5.0)
    store = await open_store(store_url)
    store.pacer = busy_pacer()
    try:
        await store.commit(UnitOfWork().put(event("CP-1", 1)))
        waiting = store.submit(UnitOfWork().put(event("CP-1", 2)))
        await asyncio.sleep(0)  # a turn of the loop: the committer starts waiting
        assert not waiting.done()
    finally:
        await asyncio.wait_for(store.close(), 2.5)
    assert waiting.done() and waiting.exception() is None
    reopened = await open_store(store_url)
    try:
        rows = await reopened.fetch_all("SELECT sequence FROM events ORDER BY pos")
        assert [r[0] for r in rows] == [1, 2]
    finally:
        await reopened.close()
