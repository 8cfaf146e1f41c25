"""The pure scheduler, with plain numbers for time and a fixed random source."""

from __future__ import annotations

import pytest

from webhooks.scheduler import (
    Outcome,
    Pending,
    Policy,
    Scheduler,
    Verdict,
    next_delay,
    parse_retry_after,
    retry_delay,
)

SCHEDULE = (10.0, 20.0, 40.0)


def make(max_in_flight: int = 100, disable_after: float = 1000.0, rand: float = 0.5) -> Scheduler:
    policy = Policy(
        retry_schedule=SCHEDULE, disable_after=disable_after, max_in_flight=max_in_flight
    )
    scheduler = Scheduler(policy, lambda: rand)
    scheduler.set_endpoint("wh_a", active=True)
    return scheduler


def queue(scheduler: Scheduler, charger: str | None, *ids: int, endpoint: str = "wh_a") -> None:
    scheduler.add(
        Pending(delivery_id=i, endpoint_id=endpoint, charger_id=charger, event_pos=i) for i in ids
    )


def ids(dispatches) -> list[int]:
    return [d.delivery_id for d in dispatches]


def test_one_head_in_flight_per_stream_fifo():
    s = make()
    queue(s, "CP-1", 1, 2, 3)
    queue(s, "CP-2", 4, 5)
    assert ids(s.due(0.0)) == [1, 4]
    assert s.due(0.0) == []  # heads in flight: nothing more from these streams
    assert s.record(Outcome(delivery_id=1, status_code=200), 1.0).verdict is Verdict.SUCCEEDED
    assert ids(s.due(1.0)) == [2]
    assert s.pending == 4


def test_retry_schedule_with_jitter_then_given_up_and_the_stream_goes_on():
    s = make(rand=0.75)  # +10%
    queue(s, "CP-1", 1, 2)
    assert ids(s.due(0.0)) == [1]
    d = s.record(Outcome(delivery_id=1, status_code=500), 0.0)
    assert d.verdict is Verdict.RETRY and d.next_at == pytest.approx(11.0)
    assert s.due(10.9) == [] and s.next_wakeup() == pytest.approx(11.0)
    assert [x.attempt for x in s.due(11.0)] == [2]
    d = s.record(Outcome(delivery_id=1, status_code=None), 11.0)
    assert d.next_at == pytest.approx(11.0 + 22.0)
    s.due(33.0)
    d = s.record(Outcome(delivery_id=1, status_code=302), 33.0)  # 3xx is a failure
    assert d.verdict is Verdict.RETRY and d.next_at == pytest.approx(33.0 + 44.0)
    s.due(77.0)
    d = s.record(Outcome(delivery_id=1, status_code=500), 77.0)
    assert d.verdict is Verdict.FAILED and d.attempts == 4
    assert ids(s.due(77.0)) == [2]  # its successor goes on


def test_next_delay_bounds():
    assert next_delay(1, SCHEDULE, lambda: 0.0) == pytest.approx(8.0)
    assert next_delay(1, SCHEDULE, lambda: 0.999999) == pytest.approx(12.0, rel=1e-5)
    assert next_delay(3, SCHEDULE, lambda: 0.5) == pytest.approx(40.0)
    assert next_delay(4, SCHEDULE, lambda: 0.5) is None
    assert next_delay(0, SCHEDULE, lambda: 0.5) is None


def test_retry_after_is_honoured_within_bounds():
    assert retry_delay(10.0, None, 3600.0) == 10.0
    assert retry_delay(10.0, 1.0, 3600.0) == 10.0  # never sooner than the schedule
    assert retry_delay(10.0, 120.0, 3600.0) == 120.0
    assert retry_delay(10.0, 86400.0, 3600.0) == 3600.0  # capped
    assert retry_delay(7200.0, 86400.0, 3600.0) == 7200.0  # a longer step stands
    s = make()
    queue(s, "CP-1", 1)
    s.due(0.0)
    d = s.record(Outcome(delivery_id=1, status_code=429, retry_after=300.0), 0.0)
    assert d.next_at == pytest.approx(300.0)
    s.due(300.0)
    d = s.record(Outcome(delivery_id=1, status_code=500, retry_after=3000.0), 300.0)
    assert d.next_at == pytest.approx(320.0)  # only 429 and 503 carry a Retry-After we honour


def test_parse_retry_after():
    now = 1_770_000_000.0  # 2026-02-02T02:40:00Z
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("Mon, 02 Feb 2026 02:41:00 GMT", now) == pytest.approx(60.0)
    assert parse_retry_after("Mon, 02 Feb 2026 02:00:00 GMT", now) == 0.0


def test_410_disables_and_the_delivery_waits_for_reactivation():
    s = make()
    queue(s, "CP-1", 1, 2)
    queue(s, "CP-2", 3)
    s.due(0.0)
    d = s.record(Outcome(delivery_id=1, status_code=410), 5.0)
    assert d.verdict is Verdict.PAUSED and d.disabled_reason
    assert not s.is_active("wh_a")
    # the other stream's in-flight head finishes, nothing new starts
    assert s.record(Outcome(delivery_id=3, status_code=200), 6.0).disabled_reason is None
    assert s.due(100.0) == [] and s.next_wakeup() is None
    s.set_endpoint("wh_a", active=True, now=200.0)
    assert [(x.delivery_id, x.attempt) for x in s.due(200.0)] == [(1, 2)]


def test_disable_after_continuous_failure_reported_once():
    s = make(disable_after=100.0)
    queue(s, "CP-1", 1)
    queue(s, "CP-2", 2)
    s.due(0.0)
    d = s.record(Outcome(delivery_id=1, status_code=500), 0.0)
    assert d.failing_since == 0.0 and d.disabled_reason is None
    d = s.record(Outcome(delivery_id=2, status_code=200), 50.0)  # a success resets the clock
    assert d.failing_since is None
    s.due(60.0)
    d = s.record(Outcome(delivery_id=1, status_code=500), 60.0)
    assert d.failing_since == 60.0
    queue(s, "CP-3", 3)
    s.due(200.0)  # 1 (attempt 3) and 3
    d = s.record(Outcome(delivery_id=1, status_code=500), 200.0)
    assert d.disabled_reason == "failing continuously for 2 min"
    assert d.verdict is Verdict.RETRY
    d = s.record(Outcome(delivery_id=3, status_code=500), 201.0)
    assert d.disabled_reason is None  # already disabled: said once
    assert s.due(10_000.0) == []


def test_max_in_flight_is_global():
    s = make(max_in_flight=2)
    s.set_endpoint("wh_b", active=True)
    queue(s, "CP-1", 1)
    queue(s, "CP-2", 2)
    queue(s, "CP-1", 3, endpoint="wh_b")
    assert ids(s.due(0.0)) == [1, 2]
    assert s.next_wakeup() is None  # full: woken by the next record
    s.record(Outcome(delivery_id=2, status_code=200), 1.0)
    assert ids(s.due(1.0)) == [3]
    assert s.in_flight == 2


def test_inactive_endpoint_keeps_its_queue_and_removed_endpoint_drops_it():
    s = make()
    s.set_endpoint("wh_a", active=False)
    queue(s, "CP-1", 1, 2)
    assert s.due(0.0) == [] and s.next_wakeup() is None
    s.set_endpoint("wh_a", active=True, now=5.0)
    assert ids(s.due(5.0)) == [1]
    s.remove_endpoint("wh_a")
    d = s.record(Outcome(delivery_id=1, status_code=200), 6.0)
    assert d.verdict is Verdict.SUCCEEDED
    assert s.pending == 0 and s.due(10.0) == []
    queue(s, "CP-1", 9)  # unknown endpoint: ignored
    assert s.pending == 0


def test_out_of_order_add_keeps_fifo_by_delivery_id_behind_the_head():
    s = make()
    queue(s, "CP-1", 5)
    assert ids(s.due(0.0)) == [5]
    queue(s, "CP-1", 8, 6)
    s.record(Outcome(delivery_id=5, status_code=200), 0.0)
    assert ids(s.due(0.0)) == [6]
    s.record(Outcome(delivery_id=6, status_code=200), 0.0)
    assert ids(s.due(0.0)) == [8]


def test_future_deliveries_wait_and_discard_moves_on():
    s = make()
    s.add([Pending(delivery_id=1, endpoint_id="wh_a", charger_id=None, event_pos=1, next_at=50)])
    queue(s, None, 2)
    assert s.due(10.0) == [] and s.next_wakeup() == 50
    assert ids(s.due(50.0)) == [1]
    s.discard(1)
    assert ids(s.due(50.0)) == [2]
