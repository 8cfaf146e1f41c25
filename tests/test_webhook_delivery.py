"""Delivery end to end: real SQLite file, real aiohttp receiver on loopback."""

from __future__ import annotations

import standardwebhooks
import svix.webhooks

from tests.test_webhook_support import EventSource, receiver, webhook_service


async def test_every_request_verifies_with_both_libraries(tmp_path):
    async with receiver() as rec, webhook_service(str(tmp_path / "csms.db")) as (store, service):
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
