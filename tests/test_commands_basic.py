"""Commands through the API to a live `ocpp`-library charger: the basic life of a command."""

from __future__ import annotations

import asyncio
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, RemoteStartStopStatus

from tests.conftest import Api, open_socket, register, wait_for


class Charger(ChargePoint):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.start_requested = asyncio.Event()
        self.answer = True

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, **kwargs: Any) -> Any:
        self.received.append(("RemoteStartTransaction", {"idTag": id_tag, **kwargs}))
        self.start_requested.set()
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.reset)
    async def on_reset(self, type: str) -> Any:
        self.received.append(("Reset", {"type": type}))
        if not self.answer:
            await asyncio.Event().wait()  # never answers
        return call_result.Reset(status="Rejected")


async def _booted(csms, api: Api, charger_id: str) -> tuple[Charger, asyncio.Task[None]]:
    await register(api, charger_id)
    ws = await open_socket(csms, charger_id)
    cp = Charger(charger_id, ws)
    task = asyncio.create_task(cp.start())
    await cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
    return cp, task


async def test_remote_start_links_the_transaction(csms, api: Api) -> None:
    await api.post("/api/v1/id-tags", {"idTag": "TAG1"})
    cp, task = await _booted(csms, api, "CMD-1")
    try:
        answer = await api.post(
            "/api/v1/chargers/CMD-1/commands/RemoteStartTransaction?wait=5",
            {"idTag": "TAG1", "connectorId": 1},
            expect=200,
        )
        assert answer["status"] == "accepted"
        assert answer["response"] == {"status": "Accepted"}
        assert cp.received == [("RemoteStartTransaction", {"idTag": "TAG1", "connector_id": 1})]
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="TAG1", meter_start=0, timestamp="2026-01-01T00:00:00Z"
            )
        )
        tx = await api.get(f"/api/v1/transactions/{started.transaction_id}")
        assert tx["commandId"] == answer["id"]
        events = (await api.get("/api/v1/events?chargerId=CMD-1&order=asc"))["items"]
        types = [e["type"] for e in events]
        assert types[-3:] == [
            "remote_start_transaction.requested",
            "remote_start_transaction.accepted",
            "transaction.started",
        ]
        assert events[-1]["data"]["commandId"] == answer["id"]
        stored = await api.get(f"/api/v1/commands/{answer['id']}")
        assert stored["status"] == "accepted" and stored["completedAt"]
    finally:
        task.cancel()


async def test_rejected_timeout_and_offline(csms_factory, tmp_path) -> None:
    csms = await csms_factory(ocpp={"call_timeout": 0.5})
    import aiohttp

    from tests.conftest import TEST_TOKEN

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_TOKEN}"}) as s:
        api = Api(s, csms.api_url)
        cp, task = await _booted(csms, api, "CMD-2")
        rejected = await api.post(
            "/api/v1/chargers/CMD-2/commands/Reset?wait=5", {"type": "Soft"}, expect=200
        )
        assert rejected["status"] == "rejected"
        cp.answer = False
        first = await api.post("/api/v1/chargers/CMD-2/commands/Reset", {"type": "Hard"}, 202)
        second = await api.post(
            "/api/v1/chargers/CMD-2/commands/Reset?wait=5", {"type": "Soft"}, expect=200
        )
        timed_out = await api.get(f"/api/v1/commands/{first['id']}")
        assert timed_out["status"] == "failed" and timed_out["error"]["code"] == "Timeout"
        # The next queued command went out only after the first timed out (the library's
        # charger handles one call at a time, so it never reaches its handler).
        assert second["status"] == "failed" and second["error"]["code"] == "Timeout"
        assert second["sentAt"] >= timed_out["completedAt"]
        assert [r[1]["type"] for r in cp.received] == ["Soft", "Hard"]
        bad = await api.request(
            "POST", "/api/v1/chargers/CMD-2/commands/Reset", json_body={"type": "Sideways"}
        )
        assert bad[0] == 400 and bad[1]["error"]["code"] == "invalid_payload"
        assert len(cp.received) == 2  # nothing sent
        task.cancel()
        await cp._connection.close()

        async def offline() -> bool:
            return not (await api.get("/api/v1/chargers/CMD-2"))["connected"]

        await wait_for(offline)
        status, body = await api.request(
            "POST", "/api/v1/chargers/CMD-2/commands/Reset", json_body={"type": "Soft"}
        )
        assert status == 409 and body["error"]["code"] == "conflict"
        queued = await api.post(
            "/api/v1/chargers/CMD-2/commands/Reset?queue=true", {"type": "Soft"}, 202
        )
        assert queued["status"] == "requested"


async def test_a_queued_remote_start_is_not_sent_once_the_charger_is_pending(
    csms, api: Api
) -> None:
    """Allowed when asked for, refused when its turn comes: the charger booted into Pending
    while the command waited behind another (OCPP 1.6 4.2: no RemoteStart in Pending)."""
    import json

    from tests.conftest import raw_charger

    charger = await raw_charger(csms, api, "CMD-PEND")
    try:
        first = await api.post("/api/v1/chargers/CMD-PEND/commands/Reset", {"type": "Soft"}, 202)
        held = await charger.receive()  # the Reset CALL, left unanswered for now
        assert held[:3] == [2, first["id"], "Reset"]
        queued = await api.post(
            "/api/v1/chargers/CMD-PEND/commands/RemoteStartTransaction", {"idTag": "T"}, 202
        )
        await api.request(
            "PATCH",
            "/api/v1/chargers/CMD-PEND",
            json_body={"registrationPolicy": "Pending"},
            expect=200,
        )
        boot = await charger.call(
            "BootNotification", {"chargePointVendor": "Test", "chargePointModel": "Raw"}
        )
        assert boot[2]["status"] == "Pending"
        await charger.send_raw(json.dumps([3, first["id"], {"status": "Accepted"}]))
        # The next frame the charger gets is the answer to its own Heartbeat (SecurityError
        # in Pending), not a RemoteStartTransaction CALL.
        answer = await charger.call("Heartbeat", {})
        assert answer[0] == 4 and answer[2] == "SecurityError"

        async def refused() -> bool:
            return (await api.get(f"/api/v1/commands/{queued['id']}"))["status"] == "failed"

        await wait_for(refused)
        command = await api.get(f"/api/v1/commands/{queued['id']}")
        assert command["error"]["code"] == "NotAllowed" and command["sentAt"] is None
    finally:
        await charger.close()
