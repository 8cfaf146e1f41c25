"""The webhook API and delivery as the running server wires them: the service on its own
event loop in a thread, reached from the admin API's loop (``webhooks/threaded.py``)."""

from __future__ import annotations

import json

from standardwebhooks import Webhook

from tests.conftest import Api, raw_charger
from tests.test_webhook_support import receiver


async def test_every_webhook_route_works_across_the_thread(csms, api: Api) -> None:
    async with receiver() as rec:
        created = await api.post(
            "/api/v1/webhooks",
            {"url": rec.url, "enabledEvents": ["charger.*", "transaction.*"]},
        )
        webhook_id, secret = created["id"], created["secret"]
        assert secret.startswith("whsec_")
        listed = (await api.get("/api/v1/webhooks"))["items"]
        assert [w["id"] for w in listed] == [webhook_id]
        assert "secret" not in listed[0]
        assert (await api.get(f"/api/v1/webhooks/{webhook_id}"))["url"] == rec.url

        # Events made on the chargers' loop reach the receiver from the service's loop.
        charger = await raw_charger(csms, api, "CP-THREAD")
        try:
            await rec.wait_for(lambda: len(rec.delivered()) >= 2)  # connected, boot
        finally:
            await charger.close()
        first = rec.delivered()[:2]
        assert [e["type"] for e in first] == ["charger.connected", "charger.boot"]
        assert [e["sequence"] for e in first] == [1, 2]
        for request in rec.requests[:2]:
            Webhook(secret).verify(request.body, request.headers)

        tested = await api.post(f"/api/v1/webhooks/{webhook_id}/test", {}, expect=200)
        assert tested["success"] is True and tested["statusCode"] == 200
        await rec.wait_for(lambda: any(e["type"] == "webhook.test" for e in rec.delivered()))
        rotated = await api.post(f"/api/v1/webhooks/{webhook_id}/rotate-secret", {}, expect=200)
        assert rotated["secret"] != secret
        patched = await api.request(
            "PATCH", f"/api/v1/webhooks/{webhook_id}", json_body={"status": "inactive"}
        )
        assert patched[0] == 200 and patched[1]["data"]["status"] == "inactive"
        deliveries = await api.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
        assert deliveries["items"]

        # Errors raised on the service's loop come back as API errors.
        status, body = await api.request("GET", "/api/v1/webhooks/wh_missing")
        assert status == 404 and body["error"]["code"] == "not_found"
        status, body = await api.request(
            "POST", "/api/v1/webhooks", json_body={"url": rec.url, "enabledEvents": ["nope.*"]}
        )
        assert status == 400
        status, _ = await api.request("DELETE", f"/api/v1/webhooks/{webhook_id}")
        assert status in (200, 204)
        assert (await api.get("/api/v1/webhooks"))["items"] == []


async def test_delivery_gives_way_to_the_chargers_loop(csms) -> None:
    """The governor reads the CPU clock of the loop that serves chargers, from the
    delivery thread (webhooks/governor.py)."""
    governor = csms.webhooks.service.engine.dispatcher.governor
    assert governor.deferring


async def test_ocpp_message_events_are_stored_only_when_subscribed(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-TRACE")
    try:
        await charger.call("Heartbeat", {})
        async with receiver() as rec:
            await api.post("/api/v1/webhooks", {"url": rec.url, "enabledEvents": ["ocpp.message"]})
            await charger.call("Heartbeat", {})
            await rec.wait_for(lambda: len(rec.delivered()) >= 2)
            frames = [e["data"] for e in rec.delivered()]
            assert [f["direction"] for f in frames[:2]] == ["in", "out"]
            assert frames[0]["message"][2] == "Heartbeat"
            assert all(e["sequence"] is None for e in rec.delivered())
    finally:
        await charger.close()
    stored = (await api.get("/api/v1/events?type=ocpp.message&limit=100"))["items"]
    # Only the Heartbeat after the subscription was traced: one frame in, one out.
    assert len(stored) == 2


async def test_ocpp_message_traces_every_frame_in_and_out(csms, api: Api) -> None:
    """Bad frames and their CALLERRORs, our commands and the charger's answers: every raw
    frame in and out, in frame order, once someone subscribed."""
    charger = await raw_charger(csms, api, "CP-FRAMES")
    try:
        async with receiver() as rec:
            await api.post("/api/v1/webhooks", {"url": rec.url, "enabledEvents": ["ocpp.message"]})
            await charger.send_raw('[2, "bad-1", "Heartbeat", {')  # not JSON
            error = await charger.receive()
            assert error[:3] == [4, "bad-1", "FormationViolation"]
            sent = await api.post("/api/v1/chargers/CP-FRAMES/commands/ClearCache", {}, expect=202)
            call = await charger.receive()
            assert call[:3] == [2, sent["id"], "ClearCache"]
            await charger.send_raw(json.dumps([3, sent["id"], {"status": "Accepted"}]))
            await rec.wait_for(lambda: len(rec.delivered()) >= 4)
            frames = [(e["data"]["direction"], e["data"]["message"]) for e in rec.delivered()]
            assert frames[:4] == [
                ("in", '[2, "bad-1", "Heartbeat", {'),
                ("out", error),
                ("out", call),
                ("in", [3, sent["id"], {"status": "Accepted"}]),
            ]
    finally:
        await charger.close()
