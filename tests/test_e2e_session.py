"""End to end with the `ocpp` library's own ChargePoint as the charger (issue 2, must show)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from ocpp.v16 import ChargePoint, call
from ocpp.v16.enums import (
    ChargePointErrorCode,
    ChargePointStatus,
    Measurand,
    RegistrationStatus,
    UnitOfMeasure,
)

from tests.conftest import Api, open_socket, register, wait_for


class LibraryCharger(ChargePoint):
    pass


def _stamp(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def test_full_session_events_in_order(csms, api: Api) -> None:
    await register(api, "CP-E2E")
    await api.post("/api/v1/id-tags", {"idTag": "USER001"})
    ws = await open_socket(csms, "CP-E2E")
    cp = LibraryCharger("CP-E2E", ws)
    listener = asyncio.create_task(cp.start())
    try:
        boot = await cp.call(
            call.BootNotification(charge_point_model="Model-E", charge_point_vendor="Vendor-E")
        )
        assert boot.status == RegistrationStatus.accepted
        assert boot.interval == 300
        await cp.call(
            call.StatusNotification(
                connector_id=1,
                error_code=ChargePointErrorCode.no_error,
                status=ChargePointStatus.preparing,
            )
        )
        auth = await cp.call(call.Authorize(id_tag="USER001"))
        assert auth.id_tag_info["status"] == "Accepted"
        start_at = datetime(2026, 2, 6, 14, 30, tzinfo=UTC)
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="USER001", meter_start=1000, timestamp=_stamp(start_at)
            )
        )
        assert started.transaction_id > 0
        assert started.id_tag_info["status"] == "Accepted"
        tx_id = started.transaction_id
        for i in range(1, 4):
            await cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx_id,
                    meter_value=[
                        {
                            "timestamp": _stamp(start_at + timedelta(minutes=i)),
                            "sampledValue": [
                                {
                                    "value": str(1000 + 500 * i),
                                    "measurand": Measurand.energy_active_import_register,
                                    "unit": UnitOfMeasure.wh,
                                },
                                {
                                    "value": "7.2",
                                    "measurand": Measurand.power_active_import,
                                    "unit": UnitOfMeasure.kw,
                                },
                            ],
                        }
                    ],
                )
            )
        stopped = await cp.call(
            call.StopTransaction(
                meter_stop=3100,
                timestamp=_stamp(start_at + timedelta(minutes=4)),
                transaction_id=tx_id,
                id_tag="USER001",
            )
        )
        assert stopped.id_tag_info["status"] == "Accepted"
    finally:
        listener.cancel()
        await ws.close()

    async def disconnected() -> bool:
        return not (await api.get("/api/v1/chargers/CP-E2E"))["connected"]

    await wait_for(disconnected)
    events = (await api.get("/api/v1/events?chargerId=CP-E2E&order=asc&limit=100"))["items"]
    types = [e["type"] for e in events]
    assert types == [
        "charger.connected",
        "charger.boot",
        "connector.status_changed",
        "charger.authorization",
        "transaction.started",
        "transaction.updated",
        "transaction.updated",
        "transaction.updated",
        "transaction.stopped",
        "charger.disconnected",
    ]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert len({e["id"] for e in events}) == len(events)
    updates = [e["data"] for e in events if e["type"] == "transaction.updated"]
    assert [u["energyWh"] for u in updates] == [500.0, 1000.0, 1500.0]
    assert all(u["powerW"] == 7200.0 for u in updates)
    stop = events[8]["data"]
    assert stop["transactionId"] == tx_id
    assert stop["energyWh"] == 3100 - 1000
    assert stop["durationS"] == 240
    assert stop["reason"] == "Local"
    assert events[-1]["data"]["reason"] == "closed"

    tx = await api.get(f"/api/v1/transactions/{tx_id}")
    assert tx["energyWh"] == 3100 - 1000
    assert tx["active"] is False
    assert len(tx["meterValues"]) == 3
    charger = await api.get("/api/v1/chargers/CP-E2E")
    assert charger["registrationStatus"] == "Accepted"
    assert charger["boot"]["chargePointModel"] == "Model-E"
    assert charger["connectors"][0]["status"] == "Preparing"
    assert charger["connected"] is False
