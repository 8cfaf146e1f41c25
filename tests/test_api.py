"""The admin API over real HTTP (DESIGN 6): auth, the error shape, chargers, id tags, events,
event types, pagination."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.conftest import PASSWORD, Api, RawCharger, open_socket, raw_charger, register
from tests.helpers import events_of, wait_disconnected

BOOT = {"chargePointVendor": "Test", "chargePointModel": "Raw"}


def assert_error(status: int, body: Any, expected_status: int, code: str | None = None) -> None:
    assert status == expected_status, (status, body)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body


# -- auth and the error shape ------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
        {"Authorization": "test-token-0123456789abcdef"},
    ],
    ids=["missing", "wrong", "empty", "basic", "no-scheme"],
)
async def test_bearer_token_required(csms, headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession(headers=headers) as session:
        for method, path in [
            ("GET", "/api/v1/chargers"),
            ("POST", "/api/v1/chargers"),
            ("GET", "/api/v1/events"),
            ("GET", "/api/v1/no-such-route"),
        ]:
            async with session.request(method, csms.api_url + path, json={"id": "X"}) as answer:
                assert_error(answer.status, await answer.json(), 401, "unauthorized")
        async with session.get(csms.api_url + "/api/v1/health") as answer:
            assert answer.status == 200
            data = (await answer.json())["data"]
            assert data["status"] == "ok" and data["storage"] == "ok"
    # Nothing was created by the refused POSTs.
    assert (await csms.store.list_registrations(limit=10)).items == []


async def test_error_shape_for_routes_and_bodies(api: Api) -> None:
    status, body = await api.request("GET", "/api/v1/no-such-route")
    assert_error(status, body, 404, "not_found")
    status, body = await api.request("PUT", "/api/v1/chargers")
    assert_error(status, body, 405)
    status, body = await api.request(
        "POST",
        "/api/v1/chargers",
        data=b'{"id": "CP-1",',
        headers={"Content-Type": "application/json"},
    )
    assert_error(status, body, 400, "invalid_request")
    status, body = await api.request("POST", "/api/v1/chargers", json_body=["CP-1"])
    assert_error(status, body, 400, "invalid_request")
    status, body = await api.request("POST", "/api/v1/chargers", json_body={"id": "C", "x": 1})
    assert_error(status, body, 400, "unknown_field")
    assert "x" in body["error"]["message"]
    status, body = await api.request("POST", "/api/v1/chargers", json_body={"id": 17})
    assert_error(status, body, 400, "invalid_field")
    assert "id" in body["error"]["message"]
    status, body = await api.request("POST", "/api/v1/chargers", json_body={})
    assert_error(status, body, 400, "missing_field")
    status, body = await api.request(
        "POST", "/api/v1/chargers", json_body={"id": "CP-1", "description": True}
    )
    assert_error(status, body, 400, "invalid_field")
    status, body = await api.request(
        "POST", "/api/v1/id-tags", json_body={"idTag": "T", "status": 1}
    )
    assert_error(status, body, 400, "invalid_field")
    status, body = await api.request("GET", "/api/v1/chargers/NOPE")
    assert_error(status, body, 404, "not_found")
    assert (await api.get("/api/v1/chargers"))["items"] == []


# -- chargers ----------------------------------------------------------------------------------


async def test_create_charger_never_shows_the_password(api: Api) -> None:
    status, body = await api.request(
        "POST",
        "/api/v1/chargers",
        json_body={"id": "CP-NEW", "password": PASSWORD, "description": "bay 1"},
    )
    assert status == 201, body
    view = body["data"]
    assert view["id"] == "CP-NEW" and view["description"] == "bay 1"
    assert view["hasPassword"] is True and view["registrationPolicy"] == "Accepted"
    assert view["connected"] is False and view["connectors"] == []
    for text in (str(body), str(await api.get("/api/v1/chargers/CP-NEW"))):
        assert PASSWORD not in text and "scrypt" not in text
    assert not any("password" in key.lower() and key != "hasPassword" for key in view)
    status, body = await api.request(
        "POST", "/api/v1/chargers", json_body={"id": "CP-NEW", "password": PASSWORD}
    )
    assert_error(status, body, 409, "conflict")


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("x" * 15, False),
        ("x" * 16, True),
        ("x" * 40, True),
        ("x" * 41, False),
        ("é" * 8, True),  # 16 bytes in UTF-8
        ("é" * 21, False),  # 21 characters, 42 bytes
        ("", False),
        ("sixteen-bytes\n-x", False),  # a control character
    ],
)
async def test_password_is_16_to_40_bytes(api: Api, password: str, ok: bool) -> None:
    status, body = await api.request(
        "POST", "/api/v1/chargers", json_body={"id": "CP-PW", "password": password}
    )
    if ok:
        assert status == 201, body
    else:
        assert_error(status, body, 400, "invalid_field")
        await api.request("GET", "/api/v1/chargers/CP-PW", expect=404)
    status, body = await api.request(
        "PATCH", "/api/v1/chargers/CP-PW", json_body={"password": password}
    )
    if ok:
        assert status == 200, body
    else:
        assert status in (400, 404), body


@pytest.mark.parametrize("charger_id", ["", "x" * 49, "a/b", "bad\x01id"])
async def test_bad_charger_ids_are_refused(api: Api, charger_id: str) -> None:
    status, body = await api.request("POST", "/api/v1/chargers", json_body={"id": charger_id})
    assert_error(status, body, 400, "invalid_field")


async def test_patch_and_list_chargers(api: Api) -> None:
    for n in range(5):
        await register(api, f"CP-{n}", password=None)
    status, body = await api.request(
        "PATCH",
        "/api/v1/chargers/CP-3",
        json_body={"description": "moved", "registrationPolicy": "Pending"},
    )
    assert status == 200, body
    assert body["data"]["description"] == "moved"
    assert body["data"]["registrationPolicy"] == "Pending"
    view = await api.get("/api/v1/chargers/CP-3")
    assert (view["description"], view["registrationPolicy"]) == ("moved", "Pending")
    status, body = await api.request(
        "PATCH", "/api/v1/chargers/CP-3", json_body={"registrationPolicy": "Maybe"}
    )
    assert_error(status, body, 400, "invalid_field")
    status, body = await api.request("PATCH", "/api/v1/chargers/CP-3", json_body={"id": "CP-9"})
    assert_error(status, body, 400, "unknown_field")
    status, body = await api.request("PATCH", "/api/v1/chargers/CP-9", json_body={})
    assert_error(status, body, 404, "not_found")

    first = await api.get("/api/v1/chargers?limit=2")
    assert [c["id"] for c in first["items"]] == ["CP-0", "CP-1"] and first["hasMore"] is True
    rest = await api.get("/api/v1/chargers?limit=3&startingAfter=CP-1")
    assert [c["id"] for c in rest["items"]] == ["CP-2", "CP-3", "CP-4"]
    assert rest["hasMore"] is False


async def test_delete_disconnects_a_connected_charger(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-DEL")
    status, body = await api.request("DELETE", "/api/v1/chargers/CP-DEL")
    assert status == 200, body
    await asyncio.wait_for(charger.ws.wait_closed(), 5)
    assert charger.ws.close_code == 1008
    await api.request("GET", "/api/v1/chargers/CP-DEL", expect=404)
    # Its events stay in the log, ending with the deletion.
    events = await events_of(api, "CP-DEL")
    assert [(e["type"], e["data"].get("reason")) for e in events] == [
        ("charger.connected", None),
        ("charger.boot", None),
        ("charger.disconnected", "deleted"),
    ]
    assert (await api.get("/api/v1/health"))["connectedChargers"] == 0
    status, body = await api.request("DELETE", "/api/v1/chargers/CP-DEL")
    assert_error(status, body, 404, "not_found")
    # Unknown now: refused at the upgrade.
    with pytest.raises(Exception) as caught:
        await open_socket(csms, "CP-DEL")
    assert caught.value.response.status_code == 404  # type: ignore[attr-defined]
    # Registered again: a fresh start, not Accepted until it boots.
    await register(api, "CP-DEL")
    assert (await api.get("/api/v1/chargers/CP-DEL"))["registrationStatus"] is None
    again = RawCharger(await open_socket(csms, "CP-DEL"))
    try:
        answer = await again.call("Heartbeat", {})
        assert answer[0] == 4 and answer[2] == "SecurityError", answer
        assert (await again.call("BootNotification", BOOT))[0] == 3
    finally:
        await again.close()
    await wait_disconnected(api, "CP-DEL")
    # The same chargerId goes on counting: a receiver never sees a sequence number twice.
    events = await events_of(api, "CP-DEL")
    assert [e["type"] for e in events[3:]] == [
        "charger.connected",
        "charger.boot",
        "charger.disconnected",
    ]
    assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5, 6]


# -- id tags -------------------------------------------------------------------------------------


async def test_id_tags_crud_and_authorize(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-AUTHZ")

    async def authorize(tag: str = "TAG-1") -> dict[str, Any]:
        answer = await charger.call("Authorize", {"idTag": tag})
        assert answer[0] == 3, answer
        return answer[2]["idTagInfo"]

    try:
        assert await authorize() == {"status": "Invalid"}
        created = await api.post("/api/v1/id-tags", {"idTag": "TAG-1"})
        assert created["idTag"] == "TAG-1" and created["status"] == "Accepted"
        assert created["expiryDate"] is None and created["parentIdTag"] is None
        assert await authorize() == {"status": "Accepted"}
        status, body = await api.request("POST", "/api/v1/id-tags", json_body={"idTag": "TAG-1"})
        assert_error(status, body, 409, "conflict")

        patched = await api.request(
            "PATCH", "/api/v1/id-tags/TAG-1", json_body={"status": "Blocked"}, expect=200
        )
        assert patched[1]["data"]["status"] == "Blocked"
        assert await authorize() == {"status": "Blocked"}

        await api.request(
            "PATCH",
            "/api/v1/id-tags/TAG-1",
            json_body={
                "status": "Accepted",
                "expiryDate": "2020-01-01T01:00:00+01:00",
                "parentIdTag": "FLEET",
            },
            expect=200,
        )
        tag = await api.get("/api/v1/id-tags/TAG-1")
        assert tag["expiryDate"] == "2020-01-01T00:00:00.000Z"
        assert await authorize() == {
            "status": "Expired",
            "expiryDate": "2020-01-01T00:00:00.000Z",
            "parentIdTag": "FLEET",
        }
        await api.request(
            "PATCH",
            "/api/v1/id-tags/TAG-1",
            json_body={"expiryDate": "2999-01-01T00:00:00Z", "parentIdTag": None},
            expect=200,
        )
        assert await authorize() == {
            "status": "Accepted",
            "expiryDate": "2999-01-01T00:00:00.000Z",
        }

        await api.request("DELETE", "/api/v1/id-tags/TAG-1", expect=200)
        await api.request("GET", "/api/v1/id-tags/TAG-1", expect=404)
        assert await authorize() == {"status": "Invalid"}
    finally:
        await charger.close()
    statuses = [
        e["data"]["status"]
        for e in await events_of(api, "CP-AUTHZ")
        if e["type"] == "charger.authorization"
    ]
    assert statuses == ["Invalid", "Accepted", "Blocked", "Expired", "Accepted", "Invalid"]


async def test_id_tags_are_case_insensitive(csms, api: Api) -> None:
    # IdToken is a CiString20Type: "String is case insensitive" (OCPP 1.6, 7.15 and 7.28).
    await api.post("/api/v1/id-tags", {"idTag": "04A1B2C3D4E5F6", "status": "Accepted"})
    status, body = await api.request(
        "POST", "/api/v1/id-tags", json_body={"idTag": "04a1b2c3d4e5f6"}
    )
    assert_error(status, body, 409, "conflict")
    charger = await raw_charger(csms, api, "CP-CASE")
    try:
        answer = await charger.call("Authorize", {"idTag": "04a1b2c3d4e5f6"})
        assert answer[2] == {"idTagInfo": {"status": "Accepted"}}, answer
        start = {
            "connectorId": 1,
            "idTag": "04a1B2c3D4e5F6",
            "meterStart": 0,
            "timestamp": "2026-02-06T14:00:00Z",
        }
        answer = await charger.call("StartTransaction", start)
        assert answer[2]["idTagInfo"] == {"status": "Accepted"}, answer
    finally:
        await charger.close()


@pytest.mark.parametrize(
    "body",
    [
        {"idTag": "T" * 21},
        {"idTag": ""},
        {"idTag": "T", "status": "Maybe"},
        {"idTag": "T", "expiryDate": "next week"},
        {"idTag": "T", "parentIdTag": "P" * 21},
        {"idTag": "T", "colour": "red"},
        {},
    ],
)
async def test_bad_id_tags_are_refused(api: Api, body: dict[str, Any]) -> None:
    status, answer = await api.request("POST", "/api/v1/id-tags", json_body=body)
    assert_error(status, answer, 400)
    assert (await api.get("/api/v1/id-tags"))["items"] == []


async def test_id_tags_list_pages(api: Api) -> None:
    for n in range(4):
        await api.post("/api/v1/id-tags", {"idTag": f"T{n}"})
    first = await api.get("/api/v1/id-tags?limit=3")
    assert [t["idTag"] for t in first["items"]] == ["T0", "T1", "T2"] and first["hasMore"]
    rest = await api.get("/api/v1/id-tags?limit=3&startingAfter=T2")
    assert [t["idTag"] for t in rest["items"]] == ["T3"] and not rest["hasMore"]


# -- events ----------------------------------------------------------------------------------------


@pytest.fixture
async def two_sessions(csms, api: Api) -> list[dict[str, Any]]:
    """Two chargers with a short session each; every event, oldest first."""
    start = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-02-06T14:00:00Z"}
    for charger_id in ("CP-E1", "CP-E2"):
        charger = await raw_charger(csms, api, charger_id)
        try:
            tx_id = (await charger.call("StartTransaction", start))[2]["transactionId"]
            mv = {
                "connectorId": 1,
                "transactionId": tx_id,
                "meterValue": [
                    {"timestamp": "2026-02-06T14:01:00Z", "sampledValue": [{"value": "10"}]}
                ],
            }
            await charger.call("MeterValues", mv)
            stop = {"transactionId": tx_id, "meterStop": 20, "timestamp": "2026-02-06T14:02:00Z"}
            await charger.call("StopTransaction", stop)
        finally:
            await charger.close()
        await wait_disconnected(api, charger_id)
    every = (await api.get("/api/v1/events?order=asc&limit=100"))["items"]
    assert len(every) == 12
    return every


async def test_events_newest_first_and_ascending(api: Api, two_sessions: list[Any]) -> None:
    newest = (await api.get("/api/v1/events?limit=100"))["items"]
    assert newest == list(reversed(two_sessions))
    one = await api.get(f"/api/v1/events/{two_sessions[0]['id']}")
    assert one == two_sessions[0]
    assert set(one) == {"id", "type", "timestamp", "chargerId", "sequence", "data"}
    assert "." not in one["id"]
    status, body = await api.request("GET", "/api/v1/events/evt_nope")
    assert_error(status, body, 404, "not_found")
    status, body = await api.request("GET", "/api/v1/events?order=sideways")
    assert_error(status, body, 400)


async def test_events_filtered_by_type_and_charger(api: Api, two_sessions: list[Any]) -> None:
    async def types(query: str) -> list[tuple[str, str]]:
        items = (await api.get("/api/v1/events?order=asc&limit=100&" + query))["items"]
        return [(e["chargerId"], e["type"]) for e in items]

    assert await types("type=charger.boot") == [
        ("CP-E1", "charger.boot"),
        ("CP-E2", "charger.boot"),
    ]
    assert await types("type=transaction.*&chargerId=CP-E2") == [
        ("CP-E2", "transaction.started"),
        ("CP-E2", "transaction.updated"),
        ("CP-E2", "transaction.stopped"),
    ]
    assert await types("type=charger.connected,transaction.stopped&chargerId=CP-E1") == [
        ("CP-E1", "charger.connected"),
        ("CP-E1", "transaction.stopped"),
    ]
    assert await types("type=charger.connected&type=charger.disconnected&chargerId=CP-E1") == [
        ("CP-E1", "charger.connected"),
        ("CP-E1", "charger.disconnected"),
    ]
    # Exact, not a prefix: "transaction" names no type, and a filter that can match nothing
    # is refused rather than answered with an empty list.
    status, body = await api.request("GET", "/api/v1/events?type=transaction")
    assert status == 400 and body["error"]["code"] == "invalid_parameter", body
    assert await types("type=*.stopped") == [
        ("CP-E1", "transaction.stopped"),
        ("CP-E2", "transaction.stopped"),
    ]
    by_charger = await types("chargerId=CP-E1")
    assert len(by_charger) == 6 and {c for c, _ in by_charger} == {"CP-E1"}
    assert await types("chargerId=CP-NONE") == []


async def test_events_since_and_until(api: Api, two_sessions: list[Any]) -> None:
    pivot = two_sessions[6]["timestamp"]  # CP-E2's first event
    since = (await api.get(f"/api/v1/events?order=asc&limit=100&since={pivot}"))["items"]
    assert since == [e for e in two_sessions if e["timestamp"] >= pivot]
    until = (await api.get(f"/api/v1/events?order=asc&limit=100&until={pivot}"))["items"]
    assert until == [e for e in two_sessions if e["timestamp"] < pivot]
    assert len(since) + len(until) == len(two_sessions)
    assert any(e["chargerId"] == "CP-E1" for e in until)
    window = (await api.get(f"/api/v1/events?limit=100&since={pivot}&until=2999-01-01T00:00:00Z"))[
        "items"
    ]
    assert window == list(reversed(since))
    # An offset is read as what it means.
    empty = (await api.get("/api/v1/events?since=2999-01-01T00:00:00%2B01:00"))["items"]
    assert empty == []
    status, body = await api.request("GET", "/api/v1/events?since=yesterday")
    assert_error(status, body, 400, "invalid_parameter")


async def test_events_pagination(api: Api, two_sessions: list[Any]) -> None:
    for order, expected in (("asc", two_sessions), ("desc", list(reversed(two_sessions)))):
        seen: list[Any] = []
        after = ""
        while True:
            page = await api.get(f"/api/v1/events?order={order}&limit=5{after}")
            assert len(page["items"]) <= 5
            seen += page["items"]
            if not page["hasMore"]:
                break
            after = f"&startingAfter={page['items'][-1]['id']}"
        assert seen == expected
    exact = await api.get("/api/v1/events?limit=12")
    assert len(exact["items"]) == 12 and exact["hasMore"] is False
    assert (await api.get("/api/v1/events?limit=11"))["hasMore"] is True
    assert len((await api.get("/api/v1/events"))["items"]) == 12  # default 20
    assert len((await api.get("/api/v1/events?limit=1"))["items"]) == 1
    assert len((await api.get("/api/v1/events?limit=100"))["items"]) == 12
    for bad in ("limit=0", "limit=101", "limit=-1", "limit=ten", "startingAfter=evt_nope"):
        status, body = await api.request("GET", "/api/v1/events?" + bad)
        assert_error(status, body, 400, "invalid_parameter")
    for path in ("/api/v1/chargers", "/api/v1/id-tags", "/api/v1/transactions"):
        status, body = await api.request("GET", path + "?limit=101")
        assert_error(status, body, 400, "invalid_parameter")


async def test_event_types_catalog(api: Api) -> None:
    listed = await api.get("/api/v1/event-types")
    by_name = {t["name"]: t for t in listed["items"]}
    for name in (
        "charger.connected",
        "charger.disconnected",
        "charger.boot",
        "charger.authorization",
        "charger.firmware_status",
        "charger.diagnostics_status",
        "charger.data_transfer",
        "connector.status_changed",
        "connector.meter_values",
        "transaction.started",
        "transaction.updated",
        "transaction.stopped",
        "ocpp.message",
        "webhook.test",
        "webhook.disabled",
        "remote_start_transaction.requested",
        "remote_start_transaction.accepted",
        "reset.failed",
    ):
        assert name in by_name, name
        entry = by_name[name]
        assert isinstance(entry["description"], str) and entry["description"]
        assert isinstance(entry["example"], dict)
    assert len(by_name) == len(listed["items"])
