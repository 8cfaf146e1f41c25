"""The webhook routes of the admin API, on a real aiohttp app (bearer auth is the app
factory's; here only the error middleware and these routes)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from csms.api.common import error_middleware
from csms.api.webhooks import WEBHOOK_SERVICE, routes
from tests.test_webhook_support import FAST, EventSource, receiver, webhook_service
from webhooks import DeliveryConfig


@asynccontextmanager
async def api(
    store_url: str, config: DeliveryConfig = FAST
) -> AsyncIterator[tuple[TestClient, object]]:
    async with webhook_service(store_url, config) as (store, service):
        app = web.Application(middlewares=[error_middleware])
        app.add_routes(routes)
        app[WEBHOOK_SERVICE] = service
        async with TestClient(TestServer(app)) as client:
            yield client, store


async def test_create_read_list_update_delete(store_url):
    async with receiver() as rec, api(store_url) as (client, _):
        resp = await client.post(
            "/api/v1/webhooks",
            json={
                "url": rec.url,
                "enabledEvents": ["transaction.*"],
                "description": "billing",
                "headers": {"X-Api-Key": "k"},
            },
        )
        assert resp.status == 201
        created = (await resp.json())["data"]
        assert created["id"].startswith("wh_") and created["secret"].startswith("whsec_")
        assert created["status"] == "active" and created["chargerIds"] is None
        read = (await (await client.get(f"/api/v1/webhooks/{created['id']}")).json())["data"]
        assert "secret" not in read and read["description"] == "billing"

        for n in range(2):
            await client.post(
                "/api/v1/webhooks", json={"url": f"{rec.url}?n={n}", "enabledEvents": ["*"]}
            )
        page1 = (await (await client.get("/api/v1/webhooks?limit=2")).json())["data"]
        assert len(page1["items"]) == 2 and page1["hasMore"] is True
        last = page1["items"][-1]["id"]
        page2 = (await (await client.get(f"/api/v1/webhooks?startingAfter={last}")).json())["data"]
        assert len(page2["items"]) == 1 and page2["hasMore"] is False

        resp = await client.patch(
            f"/api/v1/webhooks/{created['id']}",
            json={"status": "inactive", "enabledEvents": ["*"]},
        )
        patched = (await resp.json())["data"]
        assert patched["status"] == "inactive" and patched["enabledEvents"] == ["*"]

        assert (await client.delete(f"/api/v1/webhooks/{created['id']}")).status == 200
        resp = await client.get(f"/api/v1/webhooks/{created['id']}")
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_validation_errors(store_url):
    async with api(store_url) as (client, _):
        cases = [
            ({"enabledEvents": ["*"]}, "missing_field"),
            ({"url": "ftp://x.example", "enabledEvents": ["*"]}, "invalid_url"),
            ({"url": "https://example.com", "enabledEvents": ["nope"]}, "invalid_field"),
            (
                {"url": "https://example.com", "enabledEvents": ["*"], "secret": "x"},
                "invalid_field",
            ),
            (
                {"url": "https://example.com", "enabledEvents": ["*"], "headers": {"Host": "h"}},
                "invalid_field",
            ),
            ({"url": "https://example.com", "enabledEvents": ["*"], "extra": 1}, "unknown_field"),
        ]
        for body, code in cases:
            resp = await client.post("/api/v1/webhooks", json=body)
            assert resp.status == 400, body
            assert (await resp.json())["error"]["code"] == code, body
        assert (await client.get("/api/v1/webhooks?limit=0")).status == 400
        assert (await client.get("/api/v1/webhooks?limit=101")).status == 400


async def test_private_target_refused_with_400(store_url):
    strict = dataclasses.replace(FAST, allow_private_targets=False)
    async with receiver() as rec, api(store_url, strict) as (client, _):
        for url in (rec.url, "http://localhost/x", "http://10.0.0.1/x", "http://[fd00::1]/x"):
            resp = await client.post("/api/v1/webhooks", json={"url": url, "enabledEvents": ["*"]})
            assert resp.status == 400, url
            error = (await resp.json())["error"]
            assert error["code"] == "invalid_url" and "non-public" in error["message"]
        assert rec.requests == []


async def test_own_secret_test_send_rotate_and_deliveries(store_url):
    own = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    async with receiver() as rec, api(store_url) as (client, store):
        resp = await client.post(
            "/api/v1/webhooks", json={"url": rec.url, "enabledEvents": ["*"], "secret": own}
        )
        endpoint = (await resp.json())["data"]
        assert endpoint["secret"] == own
        resp = await client.post(f"/api/v1/webhooks/{endpoint['id']}/test")
        result = (await resp.json())["data"]
        assert resp.status == 200 and result["success"] is True and result["statusCode"] == 200
        assert result["latencyMs"] >= 0 and result["error"] is None
        assert rec.requests[0].json["type"] == "webhook.test"

        resp = await client.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret")
        rotated = (await resp.json())["data"]
        assert rotated["secret"] != own and rotated["previousSecretExpiresAt"]

        await EventSource(store).emit("CP-1", 3)
        await rec.wait_for(lambda: len(rec.delivered()) == 4)
        await client.app[WEBHOOK_SERVICE].engine.settled()  # type: ignore[attr-defined]
        url = f"/api/v1/webhooks/{endpoint['id']}/deliveries?limit=2"
        page1 = (await (await client.get(url)).json())["data"]
        assert page1["hasMore"] is True
        first = page1["items"][0]
        assert first["id"].startswith("att_") and first["statusCode"] == 200
        assert set(first) >= {"eventId", "timestamp", "statusCode", "latencyMs", "error"}
        after = page1["items"][-1]["id"]
        page2 = (await (await client.get(f"{url}&startingAfter={after}")).json())["data"]
        assert page2["hasMore"] is False
        ids = [a["eventId"] for a in page1["items"] + page2["items"]]
        assert ids[-1] == result["eventId"]  # newest first: the test send is the oldest
        assert (await client.get(f"/api/v1/webhooks/{endpoint['id']}/test")).status == 405
        assert (await client.post("/api/v1/webhooks/wh_nope/test")).status == 404


async def test_replay_and_redeliver(store_url):
    async with receiver() as rec, api(store_url) as (client, store):
        resp = await client.post(
            "/api/v1/webhooks", json={"url": rec.url, "enabledEvents": ["transaction.*"]}
        )
        endpoint = (await resp.json())["data"]
        events = await EventSource(store).emit("CP-1", 3)
        await rec.wait_for(lambda: len(rec.delivered()) == 3)
        base = f"/api/v1/webhooks/{endpoint['id']}"

        resp = await client.post(f"{base}/replay", json={"since": "2026-01-01T00:00:00Z"})
        assert resp.status == 202 and (await resp.json())["data"]["queued"] == 3
        await rec.wait_for(lambda: len(rec.delivered()) == 6)
        assert [e["sequence"] for e in rec.delivered()] == [1, 2, 3, 1, 2, 3]

        resp = await client.post(
            f"{base}/replay", json={"since": "2026-01-01T00:00:00Z", "onlyFailed": True}
        )
        assert (await resp.json())["data"]["queued"] == 0  # every one was delivered
        resp = await client.post(f"{base}/replay", json={"since": "yesterday"})
        assert resp.status == 400

        resp = await client.post(f"/api/v1/events/{events[1].id}/redeliver", json={})
        assert resp.status == 202
        assert (await resp.json())["data"]["webhookIds"] == [endpoint["id"]]
        resp = await client.post(
            f"/api/v1/events/{events[0].id}/redeliver", json={"webhookId": endpoint["id"]}
        )
        assert resp.status == 202
        await rec.wait_for(lambda: len(rec.delivered()) == 8)
        assert [e["sequence"] for e in rec.delivered()[6:]] == [2, 1]
        assert (await client.post("/api/v1/events/evt_nope/redeliver")).status == 404
        resp = await client.post(
            f"/api/v1/events/{events[0].id}/redeliver", json={"webhookId": "wh_nope"}
        )
        assert resp.status == 404
