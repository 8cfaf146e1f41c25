"""Retention: the pure decision, and the prune on a real database."""

from __future__ import annotations

import dataclasses
import time

from storage.records import Event, UnitOfWork
from tests.test_webhook_support import FAST, receiver, settled, webhook_service
from webhooks.retention import may_prune_event, plan_prune
from webhooks.timefmt import iso_utc

DAY = 86400.0
NOW = 1_770_000_000.0


def test_plan():
    assert plan_prune(now=NOW, retention=0, fanout_cursor=10) is None
    assert plan_prune(now=NOW, retention=DAY, fanout_cursor=0) is None
    plan = plan_prune(now=NOW, retention=DAY, fanout_cursor=10)
    assert plan.cutoff == iso_utc(NOW - DAY) and plan.max_event_pos == 10
    old, young = iso_utc(NOW - 2 * DAY), iso_utc(NOW - 10)
    assert may_prune_event(plan, timestamp=old, pos=3, has_pending_delivery=False)
    assert not may_prune_event(plan, timestamp=young, pos=3, has_pending_delivery=False)
    assert not may_prune_event(plan, timestamp=old, pos=3, has_pending_delivery=True)
    assert not may_prune_event(plan, timestamp=old, pos=11, has_pending_delivery=False)


async def test_prune_keeps_what_delivery_still_needs(store_url):
    async def refuse(envelope, nth):
        return 500, {}

    config = dataclasses.replace(FAST, retry_schedule=(3600.0,), retention=DAY)
    old = iso_utc(NOW - 30 * DAY)
    async with (
        receiver() as ok_rec,
        receiver(refuse) as bad_rec,
        webhook_service(store_url, config) as (store, service),
    ):
        await service.create_endpoint({"url": ok_rec.url, "enabledEvents": ["charger.*"]})
        await service.create_endpoint({"url": bad_rec.url, "enabledEvents": ["transaction.*"]})

        def event(n: int, kind: str) -> Event:
            return Event(
                id=f"evt_{n}", type=kind, charger_id="CP-1", sequence=n, timestamp=old, data={}
            )

        await store.commit(UnitOfWork().put(event(1, "charger.connected")))
        await store.commit(UnitOfWork().put(event(2, "transaction.started")))
        await ok_rec.wait_for(lambda: len(ok_rec.delivered()) == 1)
        await bad_rec.wait_for(lambda: len(bad_rec.requests) == 1)
        # A receiver has the request before the engine has its answer: wait for the engine.
        await settled(service, lambda: service.engine.scheduler.in_flight == 0)
        await service.engine.settled()  # the answers' bookkeeping is durable
        await service.engine.prune_once()
        left = await store.fetch_all("SELECT id FROM events ORDER BY pos")
        assert [r["id"] for r in left] == ["evt_2"]  # still pending for the failing endpoint
        attempts = await store.fetch_all("SELECT event_id FROM webhook_attempts ORDER BY id")
        assert [r["event_id"] for r in attempts] == ["evt_1", "evt_2"]  # young attempts stay
        service.engine.clock = lambda: time.time() + 2 * DAY  # two days later
        await service.engine.prune_once()
        attempts = await store.fetch_all("SELECT event_id FROM webhook_attempts ORDER BY id")
        assert [r["event_id"] for r in attempts] == ["evt_2"]  # its delivery is still pending
        deliveries = await store.fetch_all("SELECT event_id, status FROM webhook_deliveries")
        assert [tuple(r) for r in deliveries] == [("evt_2", "pending")]
