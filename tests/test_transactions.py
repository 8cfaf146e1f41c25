"""Transactions through a live socket (DESIGN 3): ids, re-sent messages after a reconnect or a
restart, stops for unknown ids and -1, and ``GET /api/v1/transactions``."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api, RawCharger, open_socket, raw_charger
from tests.helpers import api_client, events_of, wait_disconnected

START = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-02-06T14:00:00Z"}


def meter(wh: int, minute: int, tx_id: int | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "connectorId": 1,
        "meterValue": [
            {
                "timestamp": f"2026-02-06T14:{minute:02d}:00Z",
                "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register"}],
            }
        ],
    }
    if tx_id is not None:
        payload["transactionId"] = tx_id
    return payload


def stop(tx_id: int, meter_stop: int = 3000, **extra: Any) -> dict[str, Any]:
    return {
        "transactionId": tx_id,
        "meterStop": meter_stop,
        "timestamp": "2026-02-06T14:30:00Z",
        **extra,
    }


async def result(charger: RawCharger, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    answer = await charger.call(action, payload)
    assert answer[0] == 3, answer
    return answer[2]


async def reconnect(csms: Any, api: Api, charger: RawCharger, charger_id: str) -> RawCharger:
    await charger.close()
    await wait_disconnected(api, charger_id)
    return RawCharger(await open_socket(csms, charger_id))


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_resent_start_after_reconnect_gets_the_same_id(csms, api: Api) -> None:
    await api.post("/api/v1/id-tags", {"idTag": "TAG1"})
    charger = await raw_charger(csms, api, "CP-TX")
    first = await result(charger, "StartTransaction", START)
    assert first["idTagInfo"] == {"status": "Accepted"}
    tx_id = first["transactionId"]
    assert isinstance(tx_id, int) and tx_id > 0
    charger = await reconnect(csms, api, charger, "CP-TX")
    try:
        again = await result(charger, "StartTransaction", START)
        assert again == first
        # The same instant in another notation is the same message.
        same = await result(
            charger, "StartTransaction", {**START, "timestamp": "2026-02-06T15:00:00.000+01:00"}
        )
        assert same["transactionId"] == tx_id
    finally:
        await charger.close()
    await wait_disconnected(api, "CP-TX")
    events = await events_of(api, "CP-TX")
    assert types(events).count("transaction.started") == 1
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    listed = (await api.get("/api/v1/transactions?chargerId=CP-TX"))["items"]
    assert [t["id"] for t in listed] == [tx_id]


async def test_resent_messages_after_a_restart(csms_factory) -> None:
    """Across a restart the snapshot is rebuilt from the store: the twin of a start, a running
    transaction, and the recent meter values (of the transaction and of none) are all found
    there."""
    csms = await csms_factory()
    async with api_client(csms.api_url) as api:
        charger = await raw_charger(csms, api, "CP-RS")
        await result(charger, "MeterValues", meter(1000, 9))  # of no transaction
        tx_id = (await result(charger, "StartTransaction", START))["transactionId"]
        await result(charger, "MeterValues", meter(1500, 10, tx_id))
        await result(charger, "StopTransaction", stop(-1))  # unknown: recorded once
        await charger.close()
        await wait_disconnected(api, "CP-RS")
    await csms.close()

    csms = await csms_factory()
    async with api_client(csms.api_url) as api:
        charger = RawCharger(await open_socket(csms, "CP-RS"))
        try:
            assert (await result(charger, "StartTransaction", START))["transactionId"] == tx_id
            await result(charger, "MeterValues", meter(1500, 10, tx_id))  # re-sent
            await result(charger, "MeterValues", meter(1000, 9))  # re-sent
            assert await result(charger, "StopTransaction", stop(-1)) == {}  # re-sent
            await result(charger, "MeterValues", meter(1800, 11, tx_id))  # new
            await result(charger, "StopTransaction", stop(tx_id))
            await result(charger, "StopTransaction", stop(tx_id))  # re-sent
            # A new transaction after the restart gets a new, larger id.
            start2 = {**START, "timestamp": "2026-02-06T14:40:00Z"}
            assert (await result(charger, "StartTransaction", start2))["transactionId"] > tx_id
        finally:
            await charger.close()
        await wait_disconnected(api, "CP-RS")
        events = await events_of(api, "CP-RS")
        assert types(events).count("transaction.started") == 2
        assert types(events).count("connector.meter_values") == 1
        updates = [e["data"]["energyWh"] for e in events if e["type"] == "transaction.updated"]
        assert updates == [500.0, 800.0]
        stops = [e["data"] for e in events if e["type"] == "transaction.stopped"]
        assert [(s["transactionId"], s.get("unknownTransaction", False)) for s in stops] == [
            (-1, True),
            (tx_id, False),
        ]
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        tx = await api.get(f"/api/v1/transactions/{tx_id}")
        assert len(tx["meterValues"]) == 2
        assert tx["energyWh"] == 2000 and tx["active"] is False


async def test_resent_meter_values_and_stop_are_answered_and_counted_once(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-RE")
    tx_id = (await result(charger, "StartTransaction", START))["transactionId"]
    assert await result(charger, "MeterValues", meter(1400, 5, tx_id)) == {}
    charger = await reconnect(csms, api, charger, "CP-RE")
    try:
        assert await result(charger, "MeterValues", meter(1400, 5, tx_id)) == {}
        assert await result(charger, "MeterValues", meter(1900, 6, tx_id)) == {}
        data = [{"timestamp": "2026-02-06T14:29:00Z", "sampledValue": [{"value": "2900"}]}]
        assert await result(charger, "StopTransaction", stop(tx_id, transactionData=data)) == {}
        again = await result(charger, "StopTransaction", stop(tx_id, idTag="TAG1"))
        assert again == {"idTagInfo": {"status": "Invalid"}}
        assert await result(charger, "MeterValues", meter(1900, 6, tx_id)) == {}
    finally:
        await charger.close()
    await wait_disconnected(api, "CP-RE")
    events = await events_of(api, "CP-RE")
    assert types(events) == [
        "charger.connected",
        "charger.boot",
        "transaction.started",
        "transaction.updated",
        "charger.disconnected",
        "charger.connected",
        "transaction.updated",
        "transaction.stopped",
        "charger.disconnected",
    ]
    assert [e["data"]["energyWh"] for e in events if e["type"] == "transaction.updated"] == [
        400.0,
        900.0,
    ]
    tx = await api.get(f"/api/v1/transactions/{tx_id}")
    assert [m["timestamp"] for m in tx["meterValues"]] == [
        "2026-02-06T14:05:00.000Z",
        "2026-02-06T14:06:00.000Z",
        "2026-02-06T14:29:00.000Z",
    ]
    assert (tx["meterStop"], tx["energyWh"], tx["active"]) == (3000, 2000, False)


async def test_stop_for_unknown_id_and_minus_one_is_answered_and_recorded(csms, api: Api) -> None:
    await api.post("/api/v1/id-tags", {"idTag": "TAG1"})
    charger = await raw_charger(csms, api, "CP-UNK")
    try:
        tx_id = (await result(charger, "StartTransaction", START))["transactionId"]
        await result(charger, "MeterValues", meter(1200, 1, tx_id))
        before = await api.get(f"/api/v1/transactions/{tx_id}")
        unknown = tx_id + 1000
        assert await result(charger, "StopTransaction", stop(unknown, idTag="TAG1")) == {
            "idTagInfo": {"status": "Accepted"}
        }
        assert await result(charger, "StopTransaction", stop(-1)) == {}
        assert await result(charger, "StopTransaction", stop(-1)) == {}  # re-sent copy
        # Meter values naming the unknown id are answered too, and stay off every transaction.
        assert await result(charger, "MeterValues", meter(5000, 2, unknown)) == {}
        after = await api.get(f"/api/v1/transactions/{tx_id}")
        assert after == before  # never guessed onto the running transaction
        await api.request("GET", f"/api/v1/transactions/{unknown}", expect=404)
        await api.request("GET", "/api/v1/transactions/-1", expect=404)
        assert (await result(charger, "Heartbeat", {}))["currentTime"]
    finally:
        await charger.close()
    events = await events_of(api, "CP-UNK")
    stops = [e["data"] for e in events if e["type"] == "transaction.stopped"]
    assert [(s["transactionId"], s["unknownTransaction"]) for s in stops] == [
        (unknown, True),
        (-1, True),
    ]
    assert all("connectorId" not in s for s in stops)
    orphan = [e["data"] for e in events if e["type"] == "connector.meter_values"]
    assert [o["transactionId"] for o in orphan] == [unknown]
    listed = (await api.get("/api/v1/transactions?chargerId=CP-UNK"))["items"]
    assert [(t["id"], t["active"]) for t in listed] == [(tx_id, True)]


async def test_transaction_ids_are_unique_across_chargers(csms, api: Api) -> None:
    one = await raw_charger(csms, api, "CP-A")
    two = await raw_charger(csms, api, "CP-B")
    try:
        ids: list[int] = []
        for minute in range(3):
            start = {**START, "timestamp": f"2026-02-06T14:0{minute}:00Z"}
            # The same start from two chargers is two transactions.
            ids.append((await result(one, "StartTransaction", start))["transactionId"])
            ids.append((await result(two, "StartTransaction", start))["transactionId"])
        assert len(set(ids)) == 6 and all(i > 0 for i in ids)
        # A charger cannot stop or meter another's transaction: it is unknown to it.
        theirs = ids[0]
        await result(two, "MeterValues", meter(9999, 9, theirs))
        await result(two, "StopTransaction", stop(theirs))
        tx = await api.get(f"/api/v1/transactions/{theirs}")
        assert tx["chargerId"] == "CP-A" and tx["active"] is True
        assert tx["meterValues"] == [] and tx["energyWh"] == 0
    finally:
        await one.close()
        await two.close()
    stops = [e for e in await events_of(api, "CP-B") if e["type"] == "transaction.stopped"]
    assert [s["data"].get("unknownTransaction") for s in stops] == [True]


async def test_list_transactions_filters_and_pages(csms, api: Api) -> None:
    one = await raw_charger(csms, api, "CP-L1")
    two = await raw_charger(csms, api, "CP-L2")
    try:
        mine: dict[str, list[int]] = {"CP-L1": [], "CP-L2": []}
        for minute in range(5):
            start = {**START, "timestamp": f"2026-02-06T14:0{minute}:00Z"}
            for charger_id, charger in (("CP-L1", one), ("CP-L2", two)):
                tx_id = (await result(charger, "StartTransaction", start))["transactionId"]
                mine[charger_id].append(tx_id)
        for tx_id in mine["CP-L1"][:2]:
            await result(one, "StopTransaction", stop(tx_id))
    finally:
        await one.close()
        await two.close()

    async def ids(query: str) -> tuple[list[int], bool]:
        page = await api.get("/api/v1/transactions" + query)
        return [t["id"] for t in page["items"]], page["hasMore"]

    every = sorted(mine["CP-L1"] + mine["CP-L2"], reverse=True)
    assert await ids("") == (every, False)  # newest first, default limit 20
    assert await ids("?chargerId=CP-L1") == (sorted(mine["CP-L1"], reverse=True), False)
    assert await ids("?chargerId=CP-L1&active=false") == (
        sorted(mine["CP-L1"][:2], reverse=True),
        False,
    )
    assert await ids("?chargerId=CP-L1&active=true") == (
        sorted(mine["CP-L1"][2:], reverse=True),
        False,
    )
    assert await ids("?active=true&chargerId=CP-NONE") == ([], False)

    seen: list[int] = []
    query = "?limit=3"
    while True:
        page, more = await ids(query)
        assert len(page) <= 3
        seen += page
        if not more:
            break
        query = f"?limit=3&startingAfter={page[-1]}"
    assert seen == every

    page, more = await ids("?chargerId=CP-L2&limit=5")
    assert (len(page), more) == (5, False)
    page, more = await ids("?chargerId=CP-L2&limit=4")
    assert (len(page), more) == (4, True)

    for bad in ("?limit=0", "?limit=101", "?active=maybe", "?startingAfter=abc"):
        status, body = await api.request("GET", "/api/v1/transactions" + bad)
        assert status == 400 and set(body["error"]) == {"code", "message"}, (bad, body)
    status, body = await api.request("GET", "/api/v1/transactions/abc")
    assert status == 404 and body["error"]["code"] == "not_found"
