"""Answers off the document that the schemathesis run (tests/test_openapi.py) found, each
pinned here on both stores: ids too large for the database, and ids a URL cannot carry."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.conftest import Api, register


async def error_code(api: Api, method: str, path: str, status: int, **kwargs: object) -> str:
    answer, body = await api.request(method, path, **kwargs)
    assert answer == status, (method, path, answer, body)
    return str(body["error"]["code"])


@pytest.mark.parametrize("raw", ["9223372036854775808", "19028780204003751362560", "\u0661", "0"])
async def test_a_transaction_id_no_store_can_hold_is_not_found(api: Api, raw: str) -> None:
    # 2**63 and beyond reached SQLite, which refused to bind it: a 500.
    path = "/api/v1/transactions/" + quote(raw)
    assert await error_code(api, "GET", path, 404) == "not_found"


@pytest.mark.parametrize("raw", ["9223372036854775808", "0", "-1", "1.5", "abc"])
async def test_a_transactions_cursor_that_is_no_transaction_id_is_refused(
    api: Api, raw: str
) -> None:
    path = f"/api/v1/transactions?startingAfter={raw}"
    assert await error_code(api, "GET", path, 400) == "invalid_parameter"


async def test_the_largest_transaction_id_is_a_cursor(api: Api) -> None:
    page = await api.get(f"/api/v1/transactions?startingAfter={2**63 - 1}")
    assert page == {"items": [], "hasMore": False}


@pytest.mark.parametrize("raw", ["att_9721272208940001870012221199", "att_x", "42", "att_"])
async def test_a_deliveries_cursor_that_is_no_attempt_id_is_refused(api: Api, raw: str) -> None:
    # A 20-digit attempt number reached SQLite: a 500. The others were 400 invalid_field.
    webhook = await api.post(
        "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "enabledEvents": ["*"]}
    )
    path = f"/api/v1/webhooks/{webhook['id']}/deliveries?startingAfter={raw}"
    assert await error_code(api, "GET", path, 400) == "invalid_parameter"
    assert (await api.get(path.replace(raw, "att_12")))["items"] == []


async def test_a_charger_id_with_braces_is_addressable(api: Api) -> None:
    # aiohttp's default pattern for {id} refused '{' and '}': registered, then always 404.
    charger_id = "{bay}-1"
    await register(api, charger_id, password=None)
    path = "/api/v1/chargers/" + quote(charger_id, safe="")
    assert (await api.get(path))["id"] == charger_id
    _, patched = await api.request("PATCH", path, json_body={"description": "x"}, expect=200)
    assert patched["data"]["description"] == "x"
    code = await error_code(api, "POST", path + "/commands/Reset", 409, json_body={"type": "Soft"})
    assert code == "conflict"  # found, and not connected
    await api.request("DELETE", path, expect=200)


async def test_an_id_tag_with_braces_is_addressable(api: Api) -> None:
    await api.post("/api/v1/id-tags", {"idTag": "{T}"})
    path = "/api/v1/id-tags/" + quote("{t}", safe="")  # in any case
    assert (await api.get(path))["idTag"] == "{T}"
    await api.request("PATCH", path, json_body={"status": "Blocked"}, expect=200)
    await api.request("DELETE", path, expect=200)


@pytest.mark.parametrize("dots", [".", ".."])
async def test_dot_segments_are_no_ids(api: Api, dots: str) -> None:
    """HTTP clients remove ``.`` and ``..`` from a path: a thing of that id could be made but
    never read, changed or deleted."""
    code = await error_code(api, "POST", "/api/v1/chargers", 400, json_body={"id": dots})
    assert code == "invalid_field"
    code = await error_code(api, "POST", "/api/v1/id-tags", 400, json_body={"idTag": dots})
    assert code == "invalid_field"
    await register(api, dots + "x", password=None)  # only the bare segments are refused
    await api.post("/api/v1/id-tags", {"idTag": dots + "x"})
