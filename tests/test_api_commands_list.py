"""Listing commands (``GET /api/v1/commands``) and cancelling a queued one
(``DELETE /api/v1/commands/{id}``), against a real CSMS, a real SQLite file and, where a
charger is needed, the ``ocpp`` library's ChargePoint on a loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result

from csms.app import Csms
from tests.conftest import TEST_TOKEN, Api, open_socket, register, wait_for


class Charger(ChargePoint):
    """A live charger that records the CALLs it receives; Reset hangs while ``hold_reset``
    is clear, so a test can keep a command in flight."""

    def __init__(self, charger_id: str, ws: Any) -> None:
        super().__init__(charger_id, ws, response_timeout=5)
        self.calls: list[tuple[str, str]] = []  # (uniqueId, action), in arrival order
        self.hold_reset = asyncio.Event()
        self.hold_reset.set()
        self._changed = asyncio.Condition()
        self._handlers: set[asyncio.Task[Any]] = set()
        self.listener: asyncio.Task[None] | None = None

    async def route_message(self, raw_msg: str) -> None:
        frame = json.loads(raw_msg)
        if frame[0] == 2:
            self.calls.append((frame[1], frame[2]))
            async with self._changed:
                self._changed.notify_all()
            # Handled aside, so the socket is read while a handler hangs.
            task = asyncio.create_task(super().route_message(raw_msg))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        else:
            await super().route_message(raw_msg)

    async def until(self, predicate: Callable[[], bool], timeout: float = 5) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    @on("Reset")
    async def on_reset(self, **_: Any) -> Any:
        await self.hold_reset.wait()
        return call_result.Reset(status="Accepted")

    @on("ClearCache")
    async def on_clear_cache(self, **_: Any) -> Any:
        return call_result.ClearCache(status="Accepted")

    @on("GetLocalListVersion")
    async def on_get_local_list_version(self, **_: Any) -> Any:
        return call_result.GetLocalListVersion(list_version=3)

    async def close(self) -> None:
        self.hold_reset.set()
        for task in [*self._handlers, self.listener]:
            if task is not None:
                task.cancel()
        await self._connection.close()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[Charger]]]:
    """Connect and boot a registered charger; every one is closed at the end."""
    opened: list[Charger] = []

    async def start(csms: Csms, charger_id: str) -> Charger:
        charger = Charger(charger_id, await open_socket(csms, charger_id))
        charger.listener = asyncio.create_task(charger.start())
        opened.append(charger)
        await charger.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        return charger

    yield start
    for charger in opened:
        await charger.close()


@contextlib.asynccontextmanager
async def api_for(csms: Csms) -> AsyncIterator[Api]:
    """An API client for a CSMS the test started itself."""
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield Api(session, csms.api_url)


async def send(
    api: Api, charger_id: str, action: str, body: dict[str, Any], query: str = "?queue=true"
) -> dict[str, Any]:
    """Send a command; its view (202 when it is still open, 200 with ``?wait`` once done)."""
    status, answer = await api.request(
        "POST", f"/api/v1/chargers/{charger_id}/commands/{action}{query}", json_body=body
    )
    assert status in (200, 202), answer
    return answer["data"]


async def listed(api: Api, query: str = "") -> dict[str, Any]:
    return await api.get("/api/v1/commands" + query)


async def command_events(api: Api, charger_id: str, pattern: str) -> list[dict[str, Any]]:
    path = f"/api/v1/events?chargerId={charger_id}&order=asc&limit=100&type={pattern}"
    return (await api.get(path))["items"]


async def wait_status(api: Api, command_id: str, status: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal found
        found = await api.get(f"/api/v1/commands/{command_id}")
        return found["status"] == status

    await wait_for(reached)
    return found


# -- listing --------------------------------------------------------------------------------


async def test_commands_are_listed_newest_first_with_the_single_command_view(
    csms: Csms, api: Api
) -> None:
    await register(api, "LIST-1")
    sent = [await send(api, "LIST-1", "ClearCache", {}) for _ in range(25)]
    page = await listed(api)
    assert page["hasMore"] is True
    assert [c["id"] for c in page["items"]] == [c["id"] for c in reversed(sent)][:20]
    for item in page["items"]:
        assert item == await api.get(f"/api/v1/commands/{item['id']}")
    everything = await listed(api, "?limit=100")
    assert [c["id"] for c in everything["items"]] == [c["id"] for c in reversed(sent)]
    assert everything["hasMore"] is False


async def test_commands_page_with_limit_and_starting_after(csms: Csms, api: Api) -> None:
    await register(api, "PAGE-1")
    ids = [(await send(api, "PAGE-1", "ClearCache", {}))["id"] for _ in range(5)]
    newest_first = list(reversed(ids))
    seen: list[str] = []
    after = ""
    while True:
        page = await listed(api, f"?limit=2{after}")
        seen += [c["id"] for c in page["items"]]
        if not page["hasMore"]:
            break
        after = f"&startingAfter={seen[-1]}"
    assert seen == newest_first
    assert [c["id"] for c in (await listed(api, f"?startingAfter={ids[0]}"))["items"]] == []
    for query, wrong in (
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=many", "limit"),
        ("?startingAfter=cmd_nope", "startingAfter"),
    ):
        status, body = await api.request("GET", "/api/v1/commands" + query)
        assert status == 400 and body["error"]["code"] == "invalid_parameter", (query, body)
        assert wrong in body["error"]["message"]


async def test_commands_filtered_by_charger_status_and_queued(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "FIL-ON")
    await register(api, "FIL-OFF")
    await connect(csms, "FIL-ON")
    done = await send(api, "FIL-ON", "ClearCache", {}, "?wait=5")
    assert done["status"] == "accepted" and done["queued"] is False
    waiting = await send(api, "FIL-OFF", "ClearCache", {})
    cancelled = await send(api, "FIL-OFF", "Reset", {"type": "Soft"})
    await api.request("DELETE", f"/api/v1/commands/{cancelled['id']}", expect=200)

    async def ids(query: str) -> list[str]:
        return [c["id"] for c in (await listed(api, query))["items"]]

    assert await ids("?chargerId=FIL-ON") == [done["id"]]
    assert await ids("?chargerId=FIL-OFF") == [cancelled["id"], waiting["id"]]
    assert await ids("?chargerId=NOBODY") == []
    assert await ids("?status=accepted") == [done["id"]]
    assert await ids("?status=requested") == [waiting["id"]]
    assert await ids("?status=failed&chargerId=FIL-OFF") == [cancelled["id"]]
    assert await ids("?status=failed,accepted") == [cancelled["id"], done["id"]]
    assert await ids("?status=rejected") == []
    assert await ids("?queued=true") == [cancelled["id"], waiting["id"]]
    assert await ids("?queued=false") == [done["id"]]
    assert await ids("?queued=true&status=requested&chargerId=FIL-OFF") == [waiting["id"]]
    for query in ("?status=sent", "?status=Accepted", "?queued=maybe"):
        status, body = await api.request("GET", "/api/v1/commands" + query)
        assert status == 400 and body["error"]["code"] == "invalid_parameter", (query, body)


# -- cancelling -----------------------------------------------------------------------------


async def test_a_cancelled_queued_command_fails_and_is_never_sent(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "CANCEL-1")
    first = await send(api, "CANCEL-1", "Reset", {"type": "Hard"})
    status, answer = await api.request("DELETE", f"/api/v1/commands/{first['id']}")
    assert status == 200, answer
    view = answer["data"]
    assert view == await api.get(f"/api/v1/commands/{first['id']}")
    assert view["status"] == "failed" and view["queued"] is True
    assert view["error"] == {
        "code": "cancelled",
        "message": "cancelled through the API before it was sent",
    }
    assert view["sentAt"] is None and view["completedAt"] is not None
    seen = await command_events(api, "CANCEL-1", "reset.*")
    assert [e["type"] for e in seen] == ["reset.requested", "reset.failed"]
    assert seen[1]["data"] == {
        "commandId": first["id"],
        "request": {"type": "Hard"},
        "error": view["error"],
    }
    # A second cancel, and a cancel of an unknown id.
    status, answer = await api.request("DELETE", f"/api/v1/commands/{first['id']}")
    assert status == 409 and answer["error"]["code"] == "conflict", answer
    assert "already finished (failed)" in answer["error"]["message"]
    status, answer = await api.request("DELETE", "/api/v1/commands/cmd_nope")
    assert status == 404 and answer["error"]["code"] == "not_found", answer

    # The charger connects: what was queued after the cancelled command arrives, and only it.
    second = await send(api, "CANCEL-1", "ClearCache", {})
    charger = await connect(csms, "CANCEL-1")
    await charger.until(lambda: len(charger.calls) >= 1)
    await wait_status(api, second["id"], "accepted")
    assert charger.calls == [(second["id"], "ClearCache")]
    assert [e["type"] for e in await command_events(api, "CANCEL-1", "reset.*")] == [
        "reset.requested",
        "reset.failed",
    ]


async def test_a_sent_or_finished_command_cannot_be_cancelled(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    await register(api, "SENT-1")
    charger = await connect(csms, "SENT-1")
    finished = await send(api, "SENT-1", "ClearCache", {}, "?wait=5")
    assert finished["status"] == "accepted"
    status, answer = await api.request("DELETE", f"/api/v1/commands/{finished['id']}")
    assert status == 409 and answer["error"]["code"] == "conflict", answer
    assert "already finished (accepted)" in answer["error"]["message"]

    charger.hold_reset.clear()  # Reset stays unanswered: in flight
    in_flight = await send(api, "SENT-1", "Reset", {"type": "Soft"}, "")
    await charger.until(lambda: any(action == "Reset" for _, action in charger.calls))
    status, answer = await api.request("DELETE", f"/api/v1/commands/{in_flight['id']}")
    assert status == 409 and answer["error"]["code"] == "conflict", answer
    assert "already sent" in answer["error"]["message"]
    charger.hold_reset.set()
    await wait_status(api, in_flight["id"], "accepted")


async def test_a_command_waiting_behind_one_in_flight_can_be_cancelled(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    """Not only ``?queue=true``: any command not yet sent, here one queued behind a CALL that
    the charger has not answered yet (one CALL in flight per charger)."""
    await register(api, "BEHIND-1")
    charger = await connect(csms, "BEHIND-1")
    charger.hold_reset.clear()
    in_flight = await send(api, "BEHIND-1", "Reset", {"type": "Soft"}, "")
    behind = await send(api, "BEHIND-1", "ClearCache", {}, "")
    await charger.until(lambda: len(charger.calls) == 1)
    status, answer = await api.request("DELETE", f"/api/v1/commands/{behind['id']}")
    assert status == 200 and answer["data"]["error"]["code"] == "cancelled", answer
    assert answer["data"]["queued"] is False
    charger.hold_reset.set()
    await wait_status(api, in_flight["id"], "accepted")
    after = await send(api, "BEHIND-1", "GetLocalListVersion", {}, "?wait=5")
    assert after["status"] == "accepted"
    assert charger.calls == [(in_flight["id"], "Reset"), (after["id"], "GetLocalListVersion")]
    assert [e["type"] for e in await command_events(api, "BEHIND-1", "clear_cache.*")] == [
        "clear_cache.requested",
        "clear_cache.failed",
    ]


async def test_a_caller_waiting_for_the_command_gets_its_cancellation(csms: Csms, api: Api) -> None:
    await register(api, "WAITER-1")
    waiting = asyncio.create_task(
        api.request(
            "POST",
            "/api/v1/chargers/WAITER-1/commands/ClearCache?queue=true&wait=10",
            json_body={},
        )
    )
    found: list[dict[str, Any]] = []

    async def queued() -> bool:
        found[:] = (await listed(api, "?chargerId=WAITER-1"))["items"]
        return bool(found)

    await wait_for(queued)
    await api.request("DELETE", f"/api/v1/commands/{found[0]['id']}", expect=200)
    status, answer = await asyncio.wait_for(waiting, 5)
    assert status == 200, answer
    assert answer["data"]["status"] == "failed"
    assert answer["data"]["error"]["code"] == "cancelled"


async def test_a_cancellation_survives_a_restart(
    csms_factory: Callable[..., Awaitable[Csms]], connect: Callable[..., Awaitable[Charger]]
) -> None:
    first = await csms_factory()
    async with api_for(first) as api:
        await register(api, "RESTART-1")
        cancelled = await send(api, "RESTART-1", "Reset", {"type": "Hard"})
        kept = await send(api, "RESTART-1", "ClearCache", {})
        await api.request("DELETE", f"/api/v1/commands/{cancelled['id']}", expect=200)
    await first.close()

    second = await csms_factory()  # the same settings: the same database file
    async with api_for(second) as api:
        charger = await connect(second, "RESTART-1")
        await wait_status(api, kept["id"], "accepted")
        assert charger.calls == [(kept["id"], "ClearCache")]
        stored = await api.get(f"/api/v1/commands/{cancelled['id']}")
        assert stored["status"] == "failed" and stored["error"]["code"] == "cancelled"
        status, answer = await api.request("DELETE", f"/api/v1/commands/{cancelled['id']}")
        assert status == 409, answer


async def test_cancels_racing_the_dispatcher_either_win_or_get_409_never_both(
    csms: Csms, api: Api, connect: Callable[..., Awaitable[Charger]]
) -> None:
    """Commands sent at once to a live charger, each cancelled as soon as it is accepted by
    the API: some are still queued (cancelled, never sent), some already went (409)."""
    await register(api, "RACE-1")
    charger = await connect(csms, "RACE-1")

    async def send_then_cancel(count: int) -> list[tuple[str, int, Any]]:
        done = []
        for _ in range(count):
            command_id = (await send(api, "RACE-1", "ClearCache", {}, ""))["id"]
            status, answer = await api.request("DELETE", f"/api/v1/commands/{command_id}")
            done.append((command_id, status, answer))
        return done

    chains = await asyncio.gather(*(send_then_cancel(10) for _ in range(4)))
    results = [result for chain in chains for result in chain]

    async def all_done() -> bool:
        page = await listed(api, "?chargerId=RACE-1&status=requested")
        return page["items"] == []

    await wait_for(all_done)
    sent = {unique_id for unique_id, _ in charger.calls}
    for command_id, status, answer in results:
        stored = await api.get(f"/api/v1/commands/{command_id}")
        if status == 200:
            assert command_id not in sent
            assert stored["status"] == "failed" and stored["error"]["code"] == "cancelled"
            assert stored["sentAt"] is None
        else:
            assert status == 409, answer
            assert command_id in sent and stored["status"] == "accepted"
    outcomes = [
        e["data"]["commandId"]
        for e in await command_events(api, "RACE-1", "clear_cache.*")
        if e["type"] != "clear_cache.requested"
    ]
    assert sorted(outcomes) == sorted(r[0] for r in results)  # one outcome each
