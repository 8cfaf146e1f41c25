"""Issue 3, crash: the real ``csms serve`` process is killed with SIGKILL while deliveries are
pending and the receiver is down; after a restart every event reaches the receiver, in order
per charger, each with a valid signature."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import websockets
from standardwebhooks import Webhook
from websockets.asyncio.client import ClientConnection

from tests.conftest import PASSWORD, basic_auth, wait_for
from tests.helpers import api_client, events_of, start_server_process
from tests.test_webhook_crash import free_port
from tests.test_webhook_support import receiver

CHARGERS = ("CRASH-A", "CRASH-B")
METER_VALUES = 8
FAST_RETRIES = {"allow_private_targets": True, "retry_schedule": ["50ms"] * 40, "timeout": 2}


async def _drive(ocpp_url: str, charger_id: str) -> ClientConnection:
    """Boot, start, meter values over raw frames; the socket stays open (it dies with the
    server)."""
    ws = await websockets.connect(
        f"{ocpp_url}/{charger_id}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic_auth(charger_id, PASSWORD),
    )

    async def call(n: int, action: str, payload: dict) -> dict:
        await ws.send(json.dumps([2, f"{charger_id}-{n}", action, payload]))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert answer[0] == 3, answer
        return answer[2]

    await call(0, "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    started = await call(
        1,
        "StartTransaction",
        {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"},
    )
    tx = started["transactionId"]
    for i in range(METER_VALUES):
        sample = {"value": str(100 * (i + 1)), "measurand": "Energy.Active.Import.Register"}
        await call(
            2 + i,
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [
                    {"timestamp": f"2026-01-01T00:{i + 1:02d}:00Z", "sampledValue": [sample]}
                ],
            },
        )
    return ws


async def test_sigkill_with_pending_deliveries_loses_nothing(
    tmp_path: Path, store_url: str
) -> None:
    db = store_url
    port = free_port()  # nothing listens there yet: the receiver is down
    url = f"http://127.0.0.1:{port}/hook"
    server = await start_server_process(tmp_path, db, webhooks=FAST_RETRIES)
    try:
        async with api_client(server.api_url) as api:
            created = await api.post("/api/v1/webhooks", {"url": url, "enabledEvents": ["*"]})
            secret = created["secret"]
            for charger_id in CHARGERS:
                await api.post("/api/v1/chargers", {"id": charger_id, "password": PASSWORD})
            sockets = await asyncio.gather(*(_drive(server.ocpp_url, c) for c in CHARGERS))
            expected = {c: len(await events_of(api, c)) for c in CHARGERS}

            async def attempted() -> bool:
                page = await api.get(f"/api/v1/webhooks/{created['id']}/deliveries?limit=100")
                return len(page["items"]) >= 5

            await wait_for(attempted, timeout=10)  # deliveries are failing, i.e. pending
    finally:
        server.kill()
        await server.wait()
    for ws in sockets:
        await ws.close()

    async with receiver(port=port) as rec:
        restarted = await start_server_process(tmp_path, db, webhooks=FAST_RETRIES)
        try:

            def complete() -> bool:
                # Beyond the events of the first run, the restart adds one
                # charger.disconnected (reason "restart") per charger.
                return all(
                    len({r.json["sequence"] for r in rec.requests if r.json["chargerId"] == c})
                    >= expected[c] + 1
                    for c in CHARGERS
                )

            try:
                await rec.wait_for(complete, timeout=30)
            except TimeoutError:
                got = [(r.json["chargerId"], r.json["sequence"], r.status) for r in rec.requests]
                raise AssertionError(f"{expected} {got}\n{restarted.log()[-3000:]}") from None
        finally:
            restarted.kill()
            await restarted.wait()

    verifier = Webhook(secret)
    for charger_id in CHARGERS:
        requests = [r for r in rec.requests if r.json["chargerId"] == charger_id]
        first_delivery: dict[int, dict] = {}
        for request in requests:
            verifier.verify(request.body, request.headers)
            first_delivery.setdefault(request.json["sequence"], request.json)
        sequences = [r.json["sequence"] for r in requests]
        # In order per charger: the first arrival of each sequence number comes in order,
        # and every number from 1 to the last is there (a retry may repeat one: at least once).
        firsts = list(dict.fromkeys(sequences))
        assert firsts == sorted(firsts) == list(range(1, len(firsts) + 1)), sequences
        assert len(firsts) == expected[charger_id] + 1
        assert first_delivery[len(firsts)]["type"] == "charger.disconnected"
        assert first_delivery[len(firsts)]["data"]["reason"] == "restart"
