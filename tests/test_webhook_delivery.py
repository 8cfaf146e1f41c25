"""Delivery end to end: real SQLite file, real aiohttp receiver on loopback."""

from __future__ import annotations

from dataclasses import replace

import standardwebhooks
import svix.webhooks

from tests.test_webhook_support import FAST, EventSource, receiver, settled, webhook_service


async def test_every_request_verifies_with_both_libraries(store_url):
    async with receiver() as rec, webhook_service(store_url) as (store, service):
        endpoint = await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store)
        for charger in ("CP-1", "CP-2", "CP-3"):
            await source.emit(charger, 5)
        await rec.wait_for(lambda: len(rec.delivered()) == 15)
        for request in rec.requests:
            for verifier in (
                standardwebhooks.Webhook(endpoint.secret),
                svix.webhooks.Webhook(endpoint.secret),
            ):
                verifier.verify(request.body, request.headers)  # raises when it does not verify
            assert request.headers["Content-Type"] == "application/json"
            assert "chargehook" in request.headers["User-Agent"]
            assert request.headers["webhook-id"] == request.json["id"]
        envelope = rec.requests[0].json
        assert set(envelope) == {"id", "type", "timestamp", "chargerId", "sequence", "data"}
        for charger in ("CP-1", "CP-2", "CP-3"):
            seqs = [e["sequence"] for e in rec.delivered() if e["chargerId"] == charger]
            assert seqs == [1, 2, 3, 4, 5]


async def test_order_kept_under_failure_and_retries_keep_the_id(store_url):
    failures = 3

    async def respond(envelope, nth):
        if envelope["chargerId"] == "CP-A" and nth <= failures:
            return 500, {}
        return 200, {}

    async with receiver(respond) as rec, webhook_service(store_url) as (store, service):
        await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store)
        await source.emit("CP-A", 4)
        await source.emit("CP-B", 4)
        await rec.wait_for(lambda: len(rec.delivered()) == 8)
        a_requests = [r for r in rec.requests if r.json["chargerId"] == "CP-A"]
        # each of A's events: 3 failures then a success, always under the same webhook-id,
        # and never a request for event N+1 before event N succeeded
        seen = [(r.json["sequence"], r.status) for r in a_requests]
        assert seen == [(n, s) for n in (1, 2, 3, 4) for s in (500, 500, 500, 200)]
        for r in a_requests:
            assert r.headers["webhook-id"] == r.json["id"]
        b_seqs = [e["sequence"] for e in rec.delivered() if e["chargerId"] == "CP-B"]
        assert b_seqs == [1, 2, 3, 4]


async def test_a_slow_charger_does_not_hold_up_another(store_url):
    import asyncio

    release = asyncio.Event()

    async def respond(envelope, nth):
        if envelope["chargerId"] == "SLOW":
            await release.wait()  # answers only when the test lets it
        return 200, {}

    async with receiver(respond) as rec, webhook_service(store_url) as (store, service):
        await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store)
        await source.emit("SLOW", 3)
        await source.emit("FAST", 10)
        # all of FAST's events arrive while SLOW's first is still unanswered
        await rec.wait_for(lambda: len(rec.delivered()) == 10)
        assert {e["chargerId"] for e in rec.delivered()} == {"FAST"}
        release.set()
        await rec.wait_for(lambda: len(rec.delivered()) == 13)
        slow = [e["sequence"] for e in rec.delivered() if e["chargerId"] == "SLOW"]
        assert slow == [1, 2, 3]


async def test_410_disables_the_endpoint_and_tells_the_subscribers(store_url):
    async def gone(envelope, nth):
        return 410, {}

    async with (
        receiver(gone) as dead,
        receiver() as watcher,
        webhook_service(store_url) as (store, service),
    ):
        doomed = await service.create_endpoint({"url": dead.url, "enabledEvents": ["*"]})
        await service.create_endpoint({"url": watcher.url, "enabledEvents": ["webhook.*"]})
        await EventSource(store).emit("CP-1", 3)
        await watcher.wait_for(lambda: len(watcher.delivered()) == 1)
        notice = watcher.delivered()[0]
        assert notice["type"] == "webhook.disabled"
        assert notice["chargerId"] is None and notice["sequence"] == 1
        assert notice["data"]["webhookId"] == doomed.id
        assert "410" in notice["data"]["reason"]
        endpoint = service.get_endpoint(doomed.id)
        assert endpoint.status == "disabled" and "410" in endpoint.disabled_reason
        assert len(dead.requests) == 1  # nothing more is posted to a disabled endpoint


async def test_disable_after_then_replay_delivers_what_was_missed(store_url):
    import dataclasses

    config = dataclasses.replace(FAST, retry_schedule=(0.05,) * 50, disable_after=0.3)
    healthy = False

    async def flaky(envelope, nth):
        return (200, {}) if healthy else (503, {})

    async with (
        receiver(flaky) as rec,
        receiver() as watcher,
        webhook_service(store_url, config) as (store, service),
    ):
        endpoint = await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        await service.create_endpoint({"url": watcher.url, "enabledEvents": ["webhook.disabled"]})
        source = EventSource(store)
        await source.emit("CP-1", 2)
        await watcher.wait_for(lambda: len(watcher.delivered()) == 1)
        disabled = service.get_endpoint(endpoint.id)
        assert disabled.status == "disabled"
        assert disabled.disabled_reason.startswith("failing continuously")
        assert watcher.delivered()[0]["data"]["reason"] == disabled.disabled_reason
        await source.emit("CP-1", 2)  # while disabled: not queued for it
        await source.emit("CP-2", 1)
        healthy = True
        await service.update_endpoint(endpoint.id, {"status": "active"})
        # the head that was pending resumes at once; replay brings the events it never got
        queued = await service.replay(
            endpoint.id, since="2026-01-01T00:00:00.000Z", until=None, only_failed=True
        )
        # CP-1 #3, #4, CP-2 #1 and the webhook.disabled notice it could not get (re-enabling
        # starts its fan-out at the log's end); CP-1 #1, #2 were still pending and are not
        # queued twice
        assert queued == 4
        await rec.wait_for(lambda: len(rec.delivered()) == 6)
        assert len({e["id"] for e in rec.delivered()}) == 6
        cp1 = [e["sequence"] for e in rec.delivered() if e["chargerId"] == "CP-1"]
        assert cp1 == [1, 2, 3, 4]
        assert service.get_endpoint(endpoint.id).status == "active"


async def test_rotation_signs_with_both_secrets(store_url):
    async with receiver() as rec, webhook_service(store_url) as (store, service):
        endpoint = await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        rotated = await service.rotate_secret(endpoint.id)
        assert rotated.secret != endpoint.secret
        await EventSource(store).emit("CP-1")
        await rec.wait_for(lambda: len(rec.delivered()) == 1)
        request = rec.requests[0]
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (endpoint.secret, rotated.secret):
            standardwebhooks.Webhook(secret).verify(request.body, request.headers)
            svix.webhooks.Webhook(secret).verify(request.body, request.headers)


async def test_ocpp_message_only_when_named_and_charger_filter(store_url):
    async with (
        receiver() as everything,
        receiver() as frames,
        webhook_service(store_url) as (store, service),
    ):
        assert not service.wants("ocpp.message")
        await service.create_endpoint({"url": everything.url, "enabledEvents": ["*"]})
        assert not service.wants("ocpp.message") and service.wants("transaction.started")
        await service.create_endpoint(
            {"url": frames.url, "enabledEvents": ["ocpp.message"], "chargerIds": ["CP-2"]}
        )
        assert service.wants("ocpp.message")
        source = EventSource(store)
        await source.emit("CP-1", 1, "ocpp.message")
        await source.emit("CP-2", 2, "ocpp.message")
        await source.emit("CP-2", 1, "transaction.started")
        await frames.wait_for(lambda: len(frames.delivered()) == 2)
        await everything.wait_for(lambda: len(everything.delivered()) == 1)
        assert [e["type"] for e in everything.delivered()] == ["transaction.started"]
        assert {e["chargerId"] for e in frames.delivered()} == {"CP-2"}
        assert all(e["sequence"] is None for e in frames.delivered())


async def test_test_send_reaches_only_its_endpoint(store_url):
    async with (
        receiver() as target,
        receiver() as other,
        webhook_service(store_url) as (store, service),
    ):
        endpoint = await service.create_endpoint({"url": target.url, "enabledEvents": ["*"]})
        await service.create_endpoint({"url": other.url, "enabledEvents": ["*"]})
        sent = await service.send_test(endpoint.id)
        assert sent.result.succeeded and sent.result.status_code == 200
        assert target.requests[0].json["data"]["isTest"] is True
        standardwebhooks.Webhook(endpoint.secret).verify(
            target.requests[0].body, target.requests[0].headers
        )
        await EventSource(store).emit("CP-1")  # flows behind it; the test was not fanned out
        await other.wait_for(lambda: len(other.delivered()) == 1)
        assert other.delivered()[0]["type"] == "transaction.updated"
        rows, _ = await service.attempts(endpoint.id, limit=10, starting_after=None, event_id=None)
        assert rows[-1].event_id == sent.event_id and rows[-1].outcome == "succeeded"


async def test_secret_sealed_at_rest_and_reopened_after_restart(store_url, tmp_path):
    async with receiver() as rec:
        async with webhook_service(store_url) as (store, service):
            endpoint = await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
            rotated = await service.rotate_secret(endpoint.id)
            rows = await store.fetch_all("SELECT * FROM webhook_endpoints")
            # What the database holds: its files (SQLite) or the endpoint rows as read back.
        stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if "webhook-key" not in p.name)
        stored += repr([tuple(row) for row in rows]).encode()
        for secret in (endpoint.secret, rotated.secret):
            assert secret.encode() not in stored
            assert secret.removeprefix("whsec_").encode() not in stored
        async with webhook_service(store_url) as (store, service):
            again = service.get_endpoint(endpoint.id)
            assert again.secret == rotated.secret and again.previous_secret == endpoint.secret
            await EventSource(store).emit("CP-1")
            await rec.wait_for(lambda: len(rec.delivered()) == 1)
            standardwebhooks.Webhook(rotated.secret).verify(
                rec.requests[0].body, rec.requests[0].headers
            )


async def test_a_paused_endpoint_gets_what_came_meanwhile_only_by_replay(store_url):
    async with (
        receiver() as rec,
        webhook_service(store_url) as (store, service),
    ):
        endpoint = await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store)
        await source.emit("CP-1")
        await rec.wait_for(lambda: len(rec.delivered()) == 1)
        await service.update_endpoint(endpoint.id, {"status": "inactive"})
        await source.emit("CP-1", 2)  # while paused, and no other endpoint is active
        await service.update_endpoint(endpoint.id, {"status": "active"})
        await source.emit("CP-1")
        await rec.wait_for(lambda: len(rec.delivered()) == 2)
        assert [e["sequence"] for e in rec.delivered()] == [1, 4]  # the gap shows
        queued = await service.replay(
            endpoint.id, since="2026-01-01T00:00:00.000Z", until=None, only_failed=True
        )
        assert queued == 2  # #2 and #3; #1 and #4 were delivered already
        await rec.wait_for(lambda: len(rec.delivered()) == 4)
        assert [e["sequence"] for e in rec.delivered()] == [1, 4, 2, 3]


async def test_a_backlog_larger_than_the_body_cache_loses_nothing(store_url, monkeypatch):
    """Bodies read back from the store for a batch must not be evicted by the batch itself
    (that once marked such events failed, unsent)."""
    import dataclasses

    from webhooks import engine as engine_module

    monkeypatch.setattr(engine_module, "BODY_CACHE", 3)
    config = dataclasses.replace(FAST, retry_schedule=(0.05,) * 100)
    healthy = False

    async def outage(envelope, nth):
        return (200, {}) if healthy else (503, {})

    async with (
        receiver(outage) as rec,
        webhook_service(store_url, config) as (store, service),
    ):
        await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store)
        chargers = [f"CP-{n}" for n in range(6)]
        for _ in range(8):
            for charger in chargers:
                await source.emit(charger)
        await rec.wait_for(lambda: len(rec.requests) >= 6)  # every stream has failed once
        healthy = True
        await rec.wait_for(lambda: len(rec.delivered()) == 48, timeout=20)
        for charger in chargers:
            got = [e["sequence"] for e in rec.delivered() if e["chargerId"] == charger]
            assert got == list(range(1, 9))


async def test_replay_does_not_queue_again_what_waits_in_memory(store_url):
    """Deliveries behind a failing head live in memory only (their rows come with their
    first answer); a replay meanwhile must see them as pending, not queue them twice."""
    healthy = False

    async def respond(envelope, nth):
        return (200, {}) if healthy else (500, {})

    # The head keeps being retried until the receiver is healthy: with FAST's three retries
    # (0.25 s) it could fail for good while the replay below runs on a loaded machine.
    retrying = replace(FAST, retry_schedule=(0.05,) * 200)
    async with (
        receiver(respond) as rec,
        webhook_service(store_url, retrying) as (store, service),
    ):
        endpoint = await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store)
        await source.emit("CP-1", 5)
        await rec.wait_for(lambda: len(rec.requests) >= 1)  # the head failed; 2-5 wait
        queued = await service.replay(
            endpoint.id, since="2026-01-01T00:00:00.000Z", until=None, only_failed=False
        )
        assert queued == 0
        healthy = True
        await rec.wait_for(lambda: len(rec.delivered()) == 5, timeout=20)
        assert [e["sequence"] for e in rec.delivered()] == [1, 2, 3, 4, 5]


async def test_cookies_set_by_a_receiver_are_not_sent_back(store_url):
    async def respond(envelope, nth):
        return 200, {"Set-Cookie": "session=abc; Path=/"}

    async with (
        receiver(respond) as rec,
        webhook_service(store_url) as (store, service),
    ):
        # a host name: aiohttp's cookie jar ignores cookies of IP-address hosts anyway
        url = rec.url.replace("127.0.0.1", "localhost")
        await service.create_endpoint({"url": url, "enabledEvents": ["*"]})
        source = EventSource(store)
        await source.emit("CP-1", 3)
        await rec.wait_for(lambda: len(rec.delivered()) == 3)
        assert all("Cookie" not in r.headers for r in rec.requests)


async def test_a_failing_stream_has_its_waiting_deliveries_written(store_url):
    """Deliveries flow through memory; once a stream's head fails, the ones behind it (which
    may now wait for hours) are written as pending, so the fan-out cursor, and with it
    retention and a restart's catch-up, are not held back by them."""
    import dataclasses

    config = dataclasses.replace(FAST, retry_schedule=(3600.0,))

    async def respond(envelope, nth):
        return (500, {}) if envelope["chargerId"] == "CP-1" else (200, {})

    async with (
        receiver(respond) as rec,
        webhook_service(store_url, config) as (store, service),
    ):
        await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
        source = EventSource(store)
        await source.emit("CP-1", 5)
        await source.emit("CP-2", 1)
        await rec.wait_for(lambda: len(rec.requests) == 2)  # CP-1's head failed, CP-2 done
        await settled(service, lambda: service.engine.scheduler.in_flight == 0)
        await service.engine.settled()  # what was recorded so far is durable
        rows = await store.fetch_all(
            "SELECT charger_id, status, attempts FROM webhook_deliveries ORDER BY id"
        )
        assert [tuple(r) for r in rows] == [
            ("CP-1", "pending", 1),
            *[("CP-1", "pending", 0)] * 4,
            ("CP-2", "succeeded", 1),
        ]
        cursor = await store.fetch_one("SELECT MIN(fanout_pos) FROM delivery_leases")
        last = await store.fetch_one("SELECT MAX(pos) FROM events")
        assert cursor is not None and last is not None and cursor[0] == last[0]


async def test_after_a_restart_a_failed_head_still_gets_what_comes_behind_it_written(store_url):
    import dataclasses

    config = dataclasses.replace(FAST, retry_schedule=(3600.0,))
    path = store_url

    async def respond(envelope, nth):
        return (500, {}) if envelope["chargerId"] == "CP-1" else (200, {})

    async with receiver(respond) as rec:
        async with webhook_service(path, config) as (store, service):
            await service.create_endpoint({"url": rec.url, "enabledEvents": ["*"]})
            source = EventSource(store)
            await source.emit("CP-1")
            await rec.wait_for(lambda: len(rec.requests) == 1)  # failed; next try in an hour
            await settled(service, lambda: service.engine.scheduler.in_flight == 0)
        async with webhook_service(path, config) as (store, service):
            source = EventSource(store, first_id=100, sequences={"CP-1": 1})
            await source.emit("CP-1", 2)
            await source.emit("CP-2")  # fanned out after CP-1's two: its answer comes after
            await rec.wait_for(lambda: len(rec.delivered()) == 1)
            await settled(service, lambda: service.engine.scheduler.in_flight == 0)
            await service.engine.settled()
            rows = await store.fetch_all(
                "SELECT status, attempts FROM webhook_deliveries WHERE charger_id = 'CP-1'"
                " ORDER BY id"
            )
            assert [tuple(r) for r in rows] == [("pending", 1), ("pending", 0), ("pending", 0)]
