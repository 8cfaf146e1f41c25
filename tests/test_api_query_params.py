"""Unknown query parameters and unknown event type filters get 400 naming them (DESIGN 6),
on a real CSMS over real HTTP: a typo must fail loudly, never filter silently."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from csms.app import Csms
from tests.conftest import Api, register

EVENTS_EXPECTED = "chargerId, limit, order, since, startingAfter, type, until"


async def refused(api: Api, method: str, path: str, **kwargs: Any) -> str:
    """The message of a 400 ``unknown_parameter`` answer."""
    status, body = await api.request(method, path, **kwargs)
    assert status == 400, (method, path, status, body)
    assert body["error"]["code"] == "unknown_parameter", body
    return body["error"]["message"]


async def test_a_misspelt_filter_names_the_parameter_and_what_the_route_takes(
    csms: Csms, api: Api
) -> None:
    message = await refused(api, "GET", "/api/v1/events?charger=CP-1")
    assert message == f"unknown query parameter: charger (expected one of: {EVENTS_EXPECTED})"
    # The right spelling works.
    assert (await api.get("/api/v1/events?chargerId=CP-1"))["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/api/v1/events?type=charger.boot&chargerID=CP-1", "chargerID"),
        ("GET", "/api/v1/transactions?chargerId=CP-1&activ=true", "activ"),
        ("GET", "/api/v1/chargers?limit=5&offset=5", "offset"),
        ("GET", "/api/v1/webhooks?status=enabled", "status"),
        ("GET", "/api/v1/commands?charger=CP-1", "charger"),
        ("GET", "/api/v1/commands?chargerId=CP-1&state=failed", "state"),
        ("GET", "/api/v1/id-tags?idTag=X", "idTag"),
        ("GET", "/api/v1/event-types?type=charger.*", "type"),
    ],
)
async def test_unknown_parameters_on_lists(
    csms: Csms, api: Api, method: str, path: str, name: str
) -> None:
    message = await refused(api, method, path)
    assert message.startswith(f"unknown query parameter: {name} (expected one of: ")


async def test_routes_that_take_no_parameters_take_none(csms: Csms, api: Api) -> None:
    await register(api, "QP-1")
    for method, path in (
        ("GET", "/api/v1/chargers/QP-1?verbose=1"),
        ("GET", "/api/v1/commands/cmd_x?wait=5"),
        ("DELETE", "/api/v1/commands/cmd_x?force=true"),
        ("GET", "/api/v1/events/evt_x?expand=data"),
        ("GET", "/api/v1/health?deep=true"),
    ):
        message = await refused(api, method, path)
        assert message.endswith("(this route takes none)"), message
    # Checked before the body and before anything is done: nothing was registered here.
    message = await refused(api, "POST", "/api/v1/chargers?dryRun=true", json_body={"id": "QP-2"})
    assert "dryRun" in message
    status, _ = await api.request("GET", "/api/v1/chargers/QP-2")
    assert status == 404


async def test_a_misspelt_queue_flag_sends_nothing(csms: Csms, api: Api) -> None:
    await register(api, "QP-OFF")
    message = await refused(
        api, "POST", "/api/v1/chargers/QP-OFF/commands/ClearCache?queu=true", json_body={}
    )
    assert message == "unknown query parameter: queu (expected one of: queue, wait)"
    assert (await api.get("/api/v1/commands?chargerId=QP-OFF"))["items"] == []


async def test_every_route_refuses_an_unknown_parameter(csms: Csms, api: Api) -> None:
    """Whatever routes exist now or later: none takes ``bogus``, so every one answers 400
    before its handler runs (path parameters filled with placeholders)."""
    app: web.Application = csms._runner.app  # the running admin API's own routes
    checked = 0
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        canonical = route.resource.canonical if route.resource is not None else ""
        path = re.sub(r"\{[^}]+\}", "x", canonical)
        await refused(api, route.method, path + "?bogus=1")
        checked += 1
    assert checked >= 25


async def test_the_check_comes_after_auth_and_after_routing(csms: Csms, api: Api) -> None:
    async with api.session.get(
        api.base + "/api/v1/events?charger=CP-1", headers={"Authorization": "Bearer wrong"}
    ) as response:
        assert response.status == 401
    status, body = await api.request("GET", "/api/v1/nothing-here?charger=CP-1")
    assert status == 404, body
    status, body = await api.request("PUT", "/api/v1/events?charger=CP-1")
    assert status == 405, body


# -- event type filters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["transactions.*", "charger.boots", "transaction", "reset.done", "*.canceled", "ocpp.msg"],
)
async def test_an_event_type_filter_that_can_match_nothing_is_refused(
    csms: Csms, api: Api, pattern: str
) -> None:
    status, body = await api.request("GET", f"/api/v1/events?type={pattern}")
    assert status == 400, body
    assert body["error"]["code"] == "invalid_parameter"
    assert pattern in body["error"]["message"] and "type" in body["error"]["message"]


async def test_one_unknown_type_among_known_ones_is_named(csms: Csms, api: Api) -> None:
    status, body = await api.request(
        "GET", "/api/v1/events?type=charger.boot,transaction.strated&type=charger.connected"
    )
    assert status == 400 and "transaction.strated" in body["error"]["message"], body
    assert "charger.boot," not in body["error"]["message"]


@pytest.mark.parametrize(
    "pattern",
    [
        "charger.boot",
        "transaction.*",
        "*.stopped",
        "ocpp.message",  # raw frames: a known type, filtered only when named
        "ocpp.*",
        "remote_start_transaction.accepted",  # a command type, {action}.{status}
        "reset.*",
        "*.failed",
        "webhook.test",
        "*",
        "charger.connected,connector.status_changed",
    ],
)
async def test_known_types_and_globs_that_match_one_are_accepted(
    csms: Csms, api: Api, pattern: str
) -> None:
    page = await api.get(f"/api/v1/events?type={pattern}")
    assert page == {"items": [], "hasMore": False}


async def test_the_filter_knows_every_type_of_the_catalog(csms: Csms, api: Api) -> None:
    catalog = (await api.get("/api/v1/event-types"))["items"]
    names = [t["name"] for t in catalog]
    assert "ocpp.message" in names and "reset.failed" in names
    for name in names:
        await api.get(f"/api/v1/events?type={name}")


async def test_the_catalog_is_whole_unless_a_limit_is_given(csms: Csms, api: Api) -> None:
    whole = await api.get("/api/v1/event-types")
    assert whole["hasMore"] is False and len(whole["items"]) > 20
    names = [t["name"] for t in whole["items"]]
    first = await api.get("/api/v1/event-types?limit=5")
    assert [t["name"] for t in first["items"]] == names[:5] and first["hasMore"] is True
    rest = await api.get(f"/api/v1/event-types?limit=100&startingAfter={names[4]}")
    assert [t["name"] for t in rest["items"]] == names[5:105]
    assert rest["hasMore"] is (len(names) > 105)  # 123 types with the security extension
    status, body = await api.request("GET", "/api/v1/event-types?limit=0")
    assert status == 400 and body["error"]["code"] == "invalid_parameter", body
    status, body = await api.request("GET", "/api/v1/event-types?startingAfter=nope")
    assert status == 400 and body["error"]["code"] == "invalid_parameter", body
