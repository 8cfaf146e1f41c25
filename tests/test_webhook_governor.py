"""Charger answers first: the governor's rule on plain numbers (fake CPU clocks, a fake host
loop that runs the probe when told)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from storage.cpus import usable_cpus
from tests.test_webhook_poster import endpoint, post, poster, site
from webhooks.governor import (
    CLIENT_THREAD_NAMES,
    LAG_BUSY,
    MAX_OVER,
    SHARE,
    TICK,
    DeliveryCpu,
    Governor,
    _threads_named,
    pressing,
)


def test_the_host_presses_only_when_its_loop_is_behind_and_the_server_saturated():
    assert pressing(0.05, 1.0, 1.0, 1)  # behind, the core full
    assert pressing(0.05, 0.7, 0.95, 1)  # the writer thread fills the core
    assert not pressing(0.003, 1.0, 1.0, 1)  # the host keeps up: delivery catches up
    assert not pressing(0.05, 0.6, 0.7, 1)  # behind but room on the core (waiting on I/O)
    assert not pressing(0.05, 0.8, 1.2, 2)  # two cores, room on the second
    assert pressing(0.05, 0.8, 1.2, 1.25)  # two cores, a quota of 1.25 of them: all used


def test_the_cores_it_may_use_are_its_affinity_capped_by_the_cgroup_quota(tmp_path: Path) -> None:
    """A container limited with ``--cpus`` sees every host CPU in its affinity: the quota in
    ``cpu.max`` is what the process may use, and what the governor (and the SQLite writer's
    choice of threads) go by."""
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    assert usable_cpus(tmp_path / "absent") == affinity  # no cgroup v2: the affinity
    cpu_max.write_text("max 100000\n")
    assert usable_cpus(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")
    assert usable_cpus(cpu_max) == 0.5
    cpu_max.write_text(f"{(affinity + 3) * 100000} 100000\n")  # a quota above the affinity
    assert usable_cpus(cpu_max) == affinity
    cpu_max.write_text("garbage\n")
    assert usable_cpus(cpu_max) == affinity
    assert Governor()._cpus == usable_cpus()


class Host:
    def __init__(self) -> None:
        self.now = 0.0
        self.host = 0.0
        self.own = 0.0
        self.probes: list[Callable[[], None]] = []

    def governor(self) -> Governor:
        g = Governor(
            own_cpu=lambda: self.own,
            process_cpu=lambda: self.host + self.own,
            clock=lambda: self.now,
        )
        g.defer_to(lambda: self.host, self.probes.append)
        return g

    def run(self, seconds: float, host: float, own: float, lag: float | None = None) -> None:
        """``seconds`` pass with these CPU shares; the host's loop runs the probe ``lag``
        seconds in (None: not in this span)."""
        if lag is not None and self.probes:
            self.now += lag
            self.probes.pop(0)()
            self.now -= lag
        self.now += seconds
        self.host += seconds * host
        self.own += seconds * own


def test_without_a_host_it_never_holds_back():
    g = Governor()
    assert not g.deferring and g.pause() == 0.0


def test_under_pressure_delivery_keeps_its_share_then_waits_for_the_next_tick():
    h = Host()
    g = h.governor()
    h.run(TICK, host=0.5, own=0.5, lag=0.05)  # even turns, the host's loop behind
    assert g.pause() == 0.0 and g.pressed  # a new tick: its budget is fresh
    h.run(TICK * 0.2, host=0.5, own=0.5)  # 10% of a tick used by delivery: below its share
    assert g.pause() == 0.0
    h.run(TICK * 0.4, host=0.5, own=0.5)  # 30% of a tick now: over
    assert g.pause() == pytest.approx(TICK * 0.4)
    assert g.held == pytest.approx(TICK * 0.4)


SPAN = TICK * 1.001  # a tick and a hair: clear of float rounding at the tick's end


def test_what_delivery_used_past_its_share_is_taken_off_the_next_ticks():
    """POSTs released at a tick's start are answered (and recorded) after the hold: their
    cost past the share comes off the next ticks, so that over time delivery takes its share
    of the core, not the share plus its requests in flight."""
    h = Host()
    g = h.governor()
    h.run(SPAN, host=0.5, own=0.5, lag=0.05)
    assert g.pause() == 0.0 and g.pressed
    h.run(SPAN, host=0.4, own=0.6, lag=0.05)  # a pressed tick at 0.6 of the core: 0.35 over
    assert g.pause() == pytest.approx(TICK)  # more than a tick's share owed: held at once
    h.run(SPAN, host=0.9, own=0.1, lag=0.05)  # held, answers still coming: 0.15 paid back
    assert g.pause() == 0.0  # 0.2 of a tick owed: 0.05 of its share left
    h.run(TICK * 0.03, host=0.0, own=1.0)
    assert g.pause() == 0.0
    h.run(TICK * 0.03, host=0.0, own=1.0)  # past it
    assert g.pause() == pytest.approx(TICK * 0.94)


def test_the_carry_is_bounded_and_forgotten_once_the_host_keeps_up():
    h = Host()
    g = h.governor()
    h.run(SPAN, host=0.5, own=0.5, lag=0.05)
    g.pause()
    for _ in range(5):  # far over its share, tick after tick
        h.run(SPAN, host=0.1, own=0.9, lag=0.05)
        g.pause()
    assert g._over == pytest.approx(MAX_OVER)
    h.run(SPAN, host=0.3, own=0.7, lag=LAG_BUSY / 4)  # the host keeps up again
    assert g.pause() == 0.0 and not g.pressed
    h.run(SPAN, host=0.5, own=0.5, lag=0.05)  # pressed again: nothing owed from before
    assert g.pause() == 0.0 and g.pressed
    h.run(TICK * SHARE * 0.8, host=0.0, own=1.0)
    assert g.pause() == 0.0


def test_a_probe_not_run_by_the_end_of_the_tick_counts_as_behind():
    h = Host()
    g = h.governor()
    h.run(TICK, host=0.75, own=0.25)  # the host's loop never got to it
    g.pause()
    assert g.pressed


def test_it_lets_go_when_the_host_keeps_up():
    h = Host()
    g = h.governor()
    h.run(TICK, host=0.75, own=0.25, lag=0.05)
    g.pause()
    assert g.pressed
    h.run(TICK, host=0.3, own=0.7, lag=LAG_BUSY / 4)  # chargers quiet: it catches up
    assert g.pause() == 0.0 and not g.pressed
    h.run(TICK * 0.9, host=0.3, own=0.7)
    assert g.pause() == 0.0


def test_delivery_cpu_counts_the_http_clients_threads() -> None:
    """A thread named as the HTTP client names its runtime thread counts as delivery's CPU
    (measured on the calling thread, which did not run it)."""
    spun, release = threading.Event(), threading.Event()

    def client_thread() -> None:
        tid = threading.get_native_id()
        with open(f"/proc/self/task/{tid}/comm", "w") as comm:
            comm.write("pyreqwest")
        while time.thread_time() < 0.1:
            pass
        spun.set()
        release.wait(10)

    thread = threading.Thread(target=client_thread)
    thread.start()
    try:
        assert spun.wait(10)
        measured = DeliveryCpu()() - time.thread_time()
        assert measured >= 0.1
    finally:
        release.set()
        thread.join(10)


async def test_the_http_client_runs_in_a_thread_the_governor_finds() -> None:
    """If pyreqwest ever names its thread otherwise, the governor would miss its CPU."""
    async with site() as receiver, poster() as p:
        result = await post(p, endpoint(f"http://127.0.0.1:{receiver.port}/hook"))
        assert result.status_code == 204
        assert _threads_named(CLIENT_THREAD_NAMES)
