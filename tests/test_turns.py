"""The charger's turn (csms/turns.py) and the hub's task-free answer path (answer_now)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from csms.hub import ChargerHub
from csms.ids import IdSource
from csms.protocol.frames import Call
from csms.protocol.state import CoreSettings
from csms.turns import Turns
from storage.records import ChargerRegistration
from storage.sqlite import SqliteStore

STAMP = "2026-12-07T10:00:00.000Z"


async def test_try_take_fails_while_held_or_awaited() -> None:
    turns = Turns()
    assert turns.try_take()
    assert not turns.try_take()
    waiter = asyncio.ensure_future(turns.take())
    await asyncio.sleep(0)  # let it queue (no condition to wait for: it must not finish)
    assert not waiter.done()
    turns.give_back()  # handed straight to the waiter: still held
    await waiter
    assert turns.locked() and not turns.try_take()
    turns.give_back()
    assert not turns.locked() and turns.try_take()


async def test_waiters_are_served_in_arrival_order() -> None:
    turns = Turns()
    assert turns.try_take()
    order: list[int] = []

    async def worker(n: int) -> None:
        async with turns:
            order.append(n)

    workers = [asyncio.ensure_future(worker(n)) for n in range(5)]
    await asyncio.sleep(0)
    turns.give_back()
    await asyncio.wait_for(asyncio.gather(*workers), 5)
    assert order == [0, 1, 2, 3, 4]
    assert not turns.locked()


async def test_a_cancelled_waiter_never_keeps_the_turn() -> None:
    turns = Turns()
    assert turns.try_take()
    first = asyncio.ensure_future(turns.take())
    second = asyncio.ensure_future(turns.take())
    await asyncio.sleep(0)
    first.cancel()  # cancelled while waiting: it leaves the queue
    await asyncio.gather(first, return_exceptions=True)
    turns.give_back()
    await asyncio.wait_for(second, 5)  # the turn went to the next one
    third = asyncio.ensure_future(turns.take())
    await asyncio.sleep(0)
    turns.give_back()  # handed to ``third``...
    third.cancel()  # ...which is cancelled before it runs: it passes the turn on
    await asyncio.gather(third, return_exceptions=True)
    assert not turns.locked()


class _Socket:
    async def send(self, text: str) -> None:
        pass

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


async def _booted_hub(tmp_path: Path) -> tuple[SqliteStore, ChargerHub]:
    store = await SqliteStore.open(str(tmp_path / "csms.db"))
    hub = ChargerHub(store, IdSource(0), CoreSettings(authorization="accept_all"))
    registration = ChargerRegistration(
        id="CP-1",
        password_hash=None,
        description="",
        registration_policy="Accepted",
        created_at=STAMP,
        updated_at=STAMP,
        security_profile=0,
    )
    await hub.attach(
        "CP-1", _Socket(), remote_address=None, security_profile=0, registration=registration
    )
    boot = _call("b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    await hub.handle_call("CP-1", boot)
    return store, hub


def _call(unique_id: str, action: str, payload: dict[str, Any]) -> Call:
    return Call(unique_id=unique_id, action=action, payload=payload)


def _heartbeat(n: int) -> Call:
    return _call(f"h{n}", "Heartbeat", {})


async def test_answer_now_answers_after_the_commit_and_keeps_order(tmp_path: Path) -> None:
    store, hub = await _booted_hub(tmp_path)
    try:
        replies: list[Any] = []
        authorize = _call("a1", "Authorize", {"idTag": "T1"})
        assert not hub.answer_now("CP-1", authorize, replies.append)  # needs an id-tag read
        assert not hub.answer_now("CP-2", _heartbeat(0), replies.append)  # not loaded
        done = asyncio.get_running_loop().create_future()
        status = _call(
            "s1",
            "StatusNotification",
            {"connectorId": 1, "status": "Available", "errorCode": "NoError"},
        )
        assert hub.answer_now("CP-1", status, done.set_result)
        # Its turn is taken until the commit: the next CALL waits for it, in order.
        assert not hub.answer_now("CP-1", _heartbeat(1), replies.append)
        later = asyncio.ensure_future(hub.handle_call("CP-1", _heartbeat(2)))
        assert await asyncio.wait_for(done, 5) == {}
        await asyncio.wait_for(later, 5)
        events = await store.fetch_all(
            "SELECT type, sequence FROM events WHERE charger_id = 'CP-1' ORDER BY pos"
        )
        types = [row[0] for row in events]
        assert types[-1] == "connector.status_changed"
        assert [row[1] for row in events] == list(range(1, len(events) + 1))
        snapshot = hub.live_snapshot("CP-1")
        assert snapshot is not None and snapshot.connectors[1].status == "Available"
    finally:
        await store.close()


@pytest.mark.parametrize("action", ["StartTransaction"])
async def test_answer_now_leaves_a_call_needing_a_read_to_handle_call(
    tmp_path: Path, action: str
) -> None:
    store, hub = await _booted_hub(tmp_path)
    try:
        start = _call(
            "t1",
            action,
            {"connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": STAMP},
        )
        assert not hub.answer_now("CP-1", start, lambda reply: None)  # its start key is read
        reply = await hub.handle_call("CP-1", start)
        assert reply["transactionId"] == 1
    finally:
        await store.close()


async def test_a_disconnect_failing_after_close_all_is_not_retried(tmp_path: Path) -> None:
    """Once the hub is closing, a disconnect the store cannot take is left to the next
    start (``recover_after_restart``): a retry would outlive the store it writes to."""
    store, hub = await _booted_hub(tmp_path)
    socket = hub.connection_of("CP-1")
    assert socket is not None
    await hub.close_all()  # CP-1 detached: recorded
    await hub.attach("CP-1", socket, remote_address=None, security_profile=0, registration=None)
    await store.close()  # the store goes before this socket's end is recorded
    await hub.detach("CP-1", socket, reason="closed", close_code=1000)
    assert not hub._retries
