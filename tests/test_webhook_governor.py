"""Charger answers first: the governor's rule on plain numbers (fake CPU clocks)."""

from __future__ import annotations

import pytest

from webhooks.governor import SHARE, TICK, Governor, pressing


def test_the_host_presses_only_when_it_is_busy_and_the_server_saturated():
    assert pressing(0.75, 0.25, 1.0, 1)  # saturated, mostly charger work
    assert pressing(0.6, 0.1, 0.95, 1)  # the writer thread fills the core
    assert not pressing(0.3, 0.7, 1.0, 1)  # catching up while chargers are quiet
    assert not pressing(0.6, 0.1, 0.7, 1)  # room left on the core
    assert not pressing(0.6, 0.2, 1.2, 2)  # two cores, room on the second


class Clocks:
    def __init__(self) -> None:
        self.now = 0.0
        self.host = 0.0
        self.own = 0.0

    def governor(self) -> Governor:
        g = Governor(
            own_cpu=lambda: self.own,
            process_cpu=lambda: self.host + self.own,
            clock=lambda: self.now,
        )
        g.defer_to(lambda: self.host)
        return g

    def run(self, seconds: float, host: float, own: float) -> None:
        self.now += seconds
        self.host += seconds * host
        self.own += seconds * own


def test_without_a_host_it_never_holds_back():
    assert Governor().pause() == 0.0


def test_under_pressure_delivery_keeps_its_share_then_waits_for_the_next_tick():
    c = Clocks()
    g = c.governor()
    c.run(TICK, host=0.5, own=0.5)  # even turns: the host presses
    assert g.pause() == 0.0 and g.pressed  # a new tick: its budget is fresh
    c.run(TICK * 0.2, host=0.5, own=0.5)  # 10% of a tick used by delivery: below its share
    assert g.pause() == 0.0
    c.run(TICK * 0.4, host=0.5, own=0.5)  # 30% of a tick now: over
    assert g.pause() == pytest.approx(TICK * 0.4)
    assert c.own - g._marks[1] >= SHARE * TICK


def test_it_lets_go_when_the_load_drops():
    c = Clocks()
    g = c.governor()
    c.run(TICK, host=0.75, own=0.25)
    g.pause()
    assert g.pressed
    c.run(TICK, host=0.2, own=0.8)  # chargers quiet: delivery catches up at full speed
    assert g.pause() == 0.0 and not g.pressed
    c.run(TICK * 0.9, host=0.2, own=0.8)
    assert g.pause() == 0.0
