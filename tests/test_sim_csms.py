"""The simulator against the real CSMS (issue 4, must show): every scenario, the offline
replay, and command round trips with the simulator as the charger.

Both ends are real: `csms` runs in this event loop on loopback ports with a SQLite file,
the simulator connects over a WebSocket with a registered password (security profile 1).
What the CSMS made of it is read back through the admin API (`/events`, `/transactions`)
and compared with what the simulator recorded it sent (`Charger.events`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from simulators.charger import Charger, EventKind
from simulators.scenarios import SCENARIOS, ScenarioOptions
from simulators.status import ErrorCode
from tests.conftest import PASSWORD, TEST_TOKEN, Api, register, wait_for
from tests.test_ocpp_connection import _self_signed

TAG = "SIM-TAG-1"
WAIT = 5.0  # bound on every wait for the other side


@asynccontextmanager
async def simulator(csms: Any, api: Api, charger_id: str, **kwargs: Any) -> AsyncIterator[Charger]:
    """A registered charger, connected with its password and booted; stopped on exit,
    after which its `charger.disconnected` event is in the store."""
    await register(api, charger_id)
    settings: dict[str, Any] = {
        "password": PASSWORD,
        "call_timeout": WAIT,
        "sample_interval": 0.1,
        "reconnect_delay": 0.05,
        "reboot_delay": 0.1,
        "retry_interval": 0.1,
        "step_delay": 0.05,
        **kwargs,
    }
    charger = Charger(csms.ocpp_url, charger_id, **settings)
    await charger.start(timeout=WAIT)
    try:
        await charger.drain(timeout=WAIT)  # the statuses after the boot are in
        yield charger
    finally:
        await charger.stop()
    await wait_until_disconnected(api, charger_id)


@asynccontextmanager
async def admin(csms: Any) -> AsyncIterator[Api]:
    """An API client for a CSMS started with `csms_factory` (the `api` fixture is for `csms`)."""
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield Api(session, csms.api_url)


async def wait_until_disconnected(api: Api, charger_id: str) -> None:
    async def gone() -> bool:
        return not (await api.get(f"/api/v1/chargers/{charger_id}"))["connected"]

    await wait_for(gone, timeout=WAIT)


async def events(api: Api, charger_id: str) -> list[dict[str, Any]]:
    """Every event of one charger, oldest first (all pages)."""
    items: list[dict[str, Any]] = []
    after = ""
    while True:
        query = f"chargerId={charger_id}&order=asc&limit=100{after}"
        page = await api.get(f"/api/v1/events?{query}")
        items += page["items"]
        if not page["hasMore"]:
            return items
        after = f"&startingAfter={items[-1]['id']}"


async def wait_for_event(
    api: Api, charger_id: str, event_type: str, *, after: int = 0, **data: Any
) -> dict[str, Any]:
    """The first event of `event_type` with sequence > `after` whose data has `data`."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        for event in await events(api, charger_id):
            if (
                event["type"] == event_type
                and event["sequence"] > after
                and all(event["data"].get(k) == v for k, v in data.items())
            ):
                found.append(event)
                return True
        return False

    await wait_for(arrived, timeout=WAIT, interval=0.05)
    return found[0]


def assert_gapless(items: list[dict[str, Any]]) -> None:
    assert [e["sequence"] for e in items] == list(range(1, len(items) + 1))
    assert len({e["id"] for e in items}) == len(items)


def statuses(items: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [
        (e["data"]["connectorId"], e["data"]["status"])
        for e in items
        if e["type"] == "connector.status_changed"
    ]


def answered(charger: Charger, action: str) -> list[dict[str, Any]]:
    """The payloads of our `action` CALLs that the CSMS answered, each once, in order."""
    return [
        e.payload or {}
        for e in charger.events
        if e.kind == EventKind.ANSWERED and e.action == action
    ]


def sent(charger: Charger, action: str) -> list[dict[str, Any]]:
    """Every `action` frame that went out, re-sends included."""
    return [
        e.payload or {} for e in charger.events if e.kind == EventKind.SENT and e.action == action
    ]


def energy_register(payload: dict[str, Any]) -> float:
    (sample,) = payload["meterValue"]
    for value in sample["sampledValue"]:
        if value.get("measurand") == "Energy.Active.Import.Register":
            return float(value["value"])
    raise AssertionError(f"no energy register in {payload}")


BOOTED = [
    "charger.connected",
    "charger.boot",
    "connector.status_changed",
    "connector.status_changed",
]


async def test_session_scenario(csms, api: Api) -> None:
    await api.post("/api/v1/id-tags", {"idTag": TAG})
    async with simulator(csms, api, "SIM-SESSION") as ch:
        await SCENARIOS["session"](ch, ScenarioOptions(id_tag=TAG, duration=0.6, wait=WAIT))
        started = ch.find(EventKind.TRANSACTION_STARTED)
        stopped = ch.find(EventKind.TRANSACTION_STOPPED)
    assert started is not None and stopped is not None
    meters = answered(ch, "MeterValues")
    assert len(meters) >= 3  # 0.6 s at one sample per 0.1 s

    items = await events(api, "SIM-SESSION")
    assert_gapless(items)
    assert [e["type"] for e in items] == [
        *BOOTED,
        "connector.status_changed",  # Preparing
        "charger.authorization",
        "transaction.started",
        "connector.status_changed",  # Charging
        *["transaction.updated"] * len(meters),
        "transaction.stopped",
        "connector.status_changed",  # Finishing
        "connector.status_changed",  # Available
        "charger.disconnected",
    ]
    assert statuses(items) == [
        (0, "Available"),
        (1, "Available"),
        (1, "Preparing"),
        (1, "Charging"),
        (1, "Finishing"),
        (1, "Available"),
    ]
    by_type = {e["type"]: e["data"] for e in items}
    assert by_type["charger.boot"]["registrationStatus"] == "Accepted"
    assert by_type["charger.boot"]["chargePointVendor"] == ch.model.identity.vendor
    assert by_type["charger.authorization"] == {"idTag": TAG, "status": "Accepted"}

    tx_id = started.transaction_id
    assert started.payload is not None and stopped.payload is not None
    meter_start = started.payload["meterStart"]
    meter_stop = stopped.payload["meterStop"]
    start = by_type["transaction.started"]
    assert start["transactionId"] == tx_id
    assert start["idTag"] == TAG and start["connectorId"] == 1
    assert start["meterStart"] == meter_start
    updates = [e["data"] for e in items if e["type"] == "transaction.updated"]
    assert all(u["transactionId"] == tx_id for u in updates)
    assert [u["energyWh"] for u in updates] == [
        round(energy_register(m) - meter_start, 3) for m in meters
    ]
    assert [u["energyWh"] for u in updates] == sorted(u["energyWh"] for u in updates)
    assert updates[-1]["energyWh"] > 0
    assert all(u["powerW"] == ch.model.vehicle.max_power_w for u in updates)
    stop = by_type["transaction.stopped"]
    assert stop["transactionId"] == tx_id
    assert stop["reason"] == "Local" and stop["idTag"] == TAG
    assert stop["meterStop"] == meter_stop
    assert stop["energyWh"] == meter_stop - meter_start
    assert meter_stop >= int(updates[-1]["energyWh"]) + meter_start
    assert by_type["charger.disconnected"]["reason"] == "closed"

    tx = await api.get(f"/api/v1/transactions/{tx_id}")
    assert tx["active"] is False
    assert tx["energyWh"] == meter_stop - meter_start
    assert len(tx["meterValues"]) == len(meters)


async def test_remote_scenario_with_commands_through_the_api(csms, api: Api) -> None:
    await api.post("/api/v1/id-tags", {"idTag": TAG})
    async with simulator(csms, api, "SIM-REMOTE") as ch:
        play = asyncio.create_task(
            SCENARIOS["remote"](ch, ScenarioOptions(id_tag=TAG, duration=3.0, wait=WAIT))
        )
        path = "/api/v1/chargers/SIM-REMOTE/commands"
        start_cmd = await api.post(
            f"{path}/RemoteStartTransaction?wait=5", {"connectorId": 1, "idTag": TAG}, expect=200
        )
        assert start_cmd["status"] == "accepted", start_cmd
        assert start_cmd["response"] == {"status": "Accepted"}
        started = await ch.wait_for(EventKind.TRANSACTION_STARTED, timeout=WAIT)
        await ch.wait_until(lambda: len(answered(ch, "MeterValues")) >= 3, timeout=WAIT)
        stop_cmd = await api.post(
            f"{path}/RemoteStopTransaction?wait=5",
            {"transactionId": started.transaction_id},
            expect=200,
        )
        assert stop_cmd["status"] == "accepted", stop_cmd
        stopped = await ch.wait_for(EventKind.TRANSACTION_STOPPED, timeout=WAIT)
        await asyncio.wait_for(play, timeout=WAIT)  # unplugs, then the duration runs out
    meters = answered(ch, "MeterValues")

    items = await events(api, "SIM-REMOTE")
    assert_gapless(items)
    # MeterValues race the API's RemoteStop: compare the order without them.
    assert [e["type"] for e in items if e["type"] != "transaction.updated"] == [
        *BOOTED,
        "remote_start_transaction.requested",
        "remote_start_transaction.accepted",
        "connector.status_changed",  # Preparing
        "transaction.started",
        "connector.status_changed",  # Charging
        "remote_stop_transaction.requested",
        "remote_stop_transaction.accepted",
        "transaction.stopped",
        "connector.status_changed",  # Finishing
        "connector.status_changed",  # Available
        "charger.disconnected",
    ]
    types = [e["type"] for e in items]
    first, last = types.index("transaction.started"), types.index("transaction.stopped")
    assert types.count("transaction.updated") == len(meters)
    assert all(first < i < last for i, t in enumerate(types) if t == "transaction.updated")
    by_type = {e["type"]: e["data"] for e in items}
    for action, command in (
        ("remote_start_transaction", start_cmd),
        ("remote_stop_transaction", stop_cmd),
    ):
        assert by_type[f"{action}.requested"]["commandId"] == command["id"]
        assert by_type[f"{action}.accepted"]["commandId"] == command["id"]
        assert by_type[f"{action}.accepted"]["response"] == {"status": "Accepted"}
    assert by_type["remote_start_transaction.requested"]["request"] == {
        "connectorId": 1,
        "idTag": TAG,
    }
    start = by_type["transaction.started"]
    assert start["commandId"] == start_cmd["id"]
    assert start["transactionId"] == started.transaction_id
    assert start["idTag"] == TAG
    stop = by_type["transaction.stopped"]
    assert stopped.payload is not None and started.payload is not None
    assert stop["reason"] == "Remote"
    assert stop["energyWh"] == stopped.payload["meterStop"] - started.payload["meterStart"]
    command = await api.get(f"/api/v1/commands/{start_cmd['id']}")
    assert command["status"] == "accepted"


async def test_faulted_scenario(csms, api: Api) -> None:
    async with simulator(csms, api, "SIM-FAULT") as ch:
        options = ScenarioOptions(duration=0.4, wait=WAIT, error_code=ErrorCode.OVER_VOLTAGE)
        await SCENARIOS["faulted"](ch, options)
    items = await events(api, "SIM-FAULT")
    assert_gapless(items)
    assert [e["type"] for e in items] == [
        *BOOTED,
        "connector.status_changed",
        "connector.status_changed",
        "charger.disconnected",
    ]
    fault, recovery = (e["data"] for e in items[4:6])
    assert fault["connectorId"] == 1
    assert fault["status"] == "Faulted" and fault["previousStatus"] == "Available"
    assert fault["errorCode"] == "OverVoltage"
    assert fault["info"] == "simulated fault"
    assert recovery["status"] == "Available" and recovery["previousStatus"] == "Faulted"
    assert recovery["errorCode"] == "NoError"
    charger = await api.get("/api/v1/chargers/SIM-FAULT")
    assert {c["connectorId"]: c["status"] for c in charger["connectors"]} == {
        0: "Available",
        1: "Available",
    }


async def test_idle_scenario_heartbeats_at_the_csms_interval(csms_factory) -> None:
    csms = await csms_factory(ocpp={"heartbeat_interval": 1})
    async with admin(csms) as api:
        async with simulator(csms, api, "SIM-IDLE") as ch:
            seen = (await api.get("/api/v1/chargers/SIM-IDLE"))["lastSeenAt"]
            await SCENARIOS["idle"](ch, ScenarioOptions(duration=1.5, wait=WAIT))
            assert ch.model.config.get_int("HeartbeatInterval") == 1  # adopted from the boot
            beats = answered(ch, "Heartbeat")
            assert 1 <= len(beats) <= 2  # one a second: not the default 300 s, not flooding
            later = (await api.get("/api/v1/chargers/SIM-IDLE"))["lastSeenAt"]
            assert later > seen
        items = await events(api, "SIM-IDLE")
    assert_gapless(items)
    assert [e["type"] for e in items] == [*BOOTED, "charger.disconnected"]
    assert items[1]["data"]["interval"] == 1


async def test_offline_scenario_replays_in_order_and_nothing_counts_twice(csms, api: Api) -> None:
    """The offline scenario, with answers lost on the way back: every replayed kind of
    transaction message (MeterValues, StopTransaction, an offline StartTransaction) loses
    its answer once, so the charger sends it again after yet another reconnect."""
    await api.post("/api/v1/id-tags", {"idTag": TAG})
    async with simulator(csms, api, "SIM-OFFLINE") as ch:
        play = asyncio.create_task(
            SCENARIOS["offline"](ch, ScenarioOptions(id_tag=TAG, duration=1.6, wait=WAIT))
        )
        went = await ch.wait_for(EventKind.DISCONNECTED, timeout=WAIT)
        assert not ch.connected
        for action in ("MeterValues", "StopTransaction", "StartTransaction"):
            ch.lose_answer(action)
        await asyncio.wait_for(play, timeout=3 * WAIT)
    lost = [e.action for e in ch.events if e.kind == EventKind.ANSWER_LOST]
    assert lost == ["MeterValues", "StopTransaction", "StartTransaction"]
    queued_at = went.index  # what was sent from here on had been queued offline (or after)
    starts = [e for e in ch.events if e.kind == EventKind.TRANSACTION_STARTED]
    stops = [e for e in ch.events if e.kind == EventKind.TRANSACTION_STOPPED]
    assert len(starts) == 2 and len(stops) == 2
    first, second = (e.transaction_id for e in starts)
    assert first != second
    assert starts[1].index > queued_at  # the second one got its id only when replayed
    # Re-sent frames went out more than once; the CSMS answered each message once. (A
    # frame in flight when the link went down offline may have been re-sent as well.)
    for action in ("MeterValues", "StopTransaction", "StartTransaction"):
        out = [json.dumps(p, sort_keys=True) for p in sent(ch, action)]
        ok = [json.dumps(p, sort_keys=True) for p in answered(ch, action)]
        assert len(out) > len(ok), action
        assert len(set(ok)) == len(ok) and set(out) == set(ok), action

    items = await events(api, "SIM-OFFLINE")
    assert_gapless(items)
    tx_events = [e for e in items if e["type"].startswith("transaction.")]
    for tx_id in (first, second):
        mine = [e["type"] for e in tx_events if e["data"]["transactionId"] == tx_id]
        meters = [m for m in answered(ch, "MeterValues") if m.get("transactionId") == tx_id]
        assert meters
        assert mine == [
            "transaction.started",
            *["transaction.updated"] * len(meters),
            "transaction.stopped",
        ], tx_id
        tx = await api.get(f"/api/v1/transactions/{tx_id}")
        assert len(tx["meterValues"]) == len(meters)
        stop = next(s for s in stops if s.transaction_id == tx_id)
        start = next(s for s in starts if s.transaction_id == tx_id)
        assert stop.payload is not None and start.payload is not None
        assert tx["energyWh"] == stop.payload["meterStop"] - start.payload["meterStart"]
        assert tx["active"] is False
    # In order: the server saw the transaction messages as they happened, oldest first.
    replayed = [e for e in ch.events if e.kind == EventKind.ANSWERED and e.action in TX_ACTIONS]
    assert [EVENT_OF[e.action] for e in replayed] == [e["type"] for e in tx_events]
    stamps = [_stamp_of(e.payload or {}) for e in replayed]
    assert stamps == sorted(stamps)
    assert [e["data"]["timestamp"] for e in tx_events] == stamps
    # The link went down four times: once offline, once per lost answer.
    types = [e["type"] for e in items]
    assert types.count("charger.connected") == 5
    assert types.count("charger.boot") == 1  # registration survives reconnects
    transactions = await api.get("/api/v1/transactions?chargerId=SIM-OFFLINE")
    assert sorted(t["id"] for t in transactions["items"]) == sorted([first, second])


TX_ACTIONS = ("StartTransaction", "MeterValues", "StopTransaction")
EVENT_OF = {
    "StartTransaction": "transaction.started",
    "MeterValues": "transaction.updated",
    "StopTransaction": "transaction.stopped",
}


def _stamp_of(payload: dict[str, Any]) -> str:
    if "meterValue" in payload:
        return payload["meterValue"][0]["timestamp"]
    return payload["timestamp"]


# ----- commands with the simulator as the charger ------------------------------------


async def command(api: Api, charger_id: str, action: str, payload: dict[str, Any]) -> Any:
    """Send one command through the API and wait (bounded) for its outcome."""
    path = f"/api/v1/chargers/{charger_id}/commands/{action}?wait=5"
    return await api.post(path, payload, expect=200)


async def test_reset_reboots_the_charger(csms, api: Api) -> None:
    async with simulator(csms, api, "SIM-RESET") as ch:
        mark = ch.mark()
        before = len(await events(api, "SIM-RESET"))
        done = await command(api, "SIM-RESET", "Reset", {"type": "Soft"})
        assert done["status"] == "accepted" and done["response"] == {"status": "Accepted"}
        await ch.wait_for(EventKind.REBOOTING, since=mark, detail="soft", timeout=WAIT)
        await ch.wait_for(EventKind.BOOTED, since=mark, timeout=WAIT)
        await ch.drain(timeout=WAIT)
        await wait_for_event(api, "SIM-RESET", "connector.status_changed", after=before + 5)
    items = await events(api, "SIM-RESET")
    assert_gapless(items)
    assert [e["type"] for e in items[before:]] == [
        "reset.requested",
        "reset.accepted",
        "charger.disconnected",
        *BOOTED,  # BootNotification again after the reboot
        "charger.disconnected",
    ]
    assert items[before + 2]["data"]["reason"] == "closed"
    assert items[before + 4]["data"]["registrationStatus"] == "Accepted"
    assert [e["type"] for e in items].count("charger.boot") == 2


async def test_reset_during_a_transaction_stops_it_first(csms, api: Api) -> None:
    await api.post("/api/v1/id-tags", {"idTag": TAG})
    async with simulator(csms, api, "SIM-RESET-TX") as ch:
        ch.plug_in(1)
        ch.present_tag(1, TAG)
        started = await ch.wait_for(EventKind.TRANSACTION_STARTED, timeout=WAIT)
        mark = ch.mark()
        done = await command(api, "SIM-RESET-TX", "Reset", {"type": "Soft"})
        assert done["status"] == "accepted"
        await ch.wait_for(EventKind.BOOTED, since=mark, timeout=WAIT)
        await ch.drain(timeout=WAIT)
    items = await events(api, "SIM-RESET-TX")
    assert_gapless(items)
    types = [e["type"] for e in items]
    stop = items[types.index("transaction.stopped")]
    assert stop["data"]["transactionId"] == started.transaction_id
    assert stop["data"]["reason"] == "SoftReset"
    # 5.14 soft reset: the transaction ends before the charger goes away.
    assert types.index("reset.accepted") < types.index("transaction.stopped")
    assert types.index("transaction.stopped") < types.index("charger.disconnected")
    assert types.count("charger.boot") == 2
    tx = await api.get(f"/api/v1/transactions/{started.transaction_id}")
    assert tx["active"] is False


async def test_set_charging_profile_caps_the_reported_power(csms, api: Api) -> None:
    await api.post("/api/v1/id-tags", {"idTag": TAG})
    async with simulator(csms, api, "SIM-PROFILE") as ch:
        ch.plug_in(1)
        ch.present_tag(1, TAG)
        started = await ch.wait_for(EventKind.TRANSACTION_STARTED, timeout=WAIT)
        first = await wait_for_event(api, "SIM-PROFILE", "transaction.updated")
        assert first["data"]["powerW"] == ch.model.vehicle.max_power_w  # 11 kW, uncapped
        profile = {
            "chargingProfileId": 7,
            "transactionId": started.transaction_id,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 3700.0}],
            },
        }
        done = await command(
            api,
            "SIM-PROFILE",
            "SetChargingProfile",
            {"connectorId": 1, "csChargingProfiles": profile},
        )
        assert done["status"] == "accepted", done
        accepted = await wait_for_event(api, "SIM-PROFILE", "set_charging_profile.accepted")
        await wait_for_event(
            api, "SIM-PROFILE", "transaction.updated", after=accepted["sequence"], powerW=3700.0
        )
        ch.stop_transaction(1, "Local")
        await ch.wait_for(EventKind.TRANSACTION_STOPPED, timeout=WAIT)
        await ch.drain(timeout=WAIT)
    updated = [e for e in await events(api, "SIM-PROFILE") if e["type"] == "transaction.updated"]
    # From the first capped sample on, every one the CSMS stored after the profile's
    # acceptance reports the capped power; one sample taken just before may still arrive
    # with the old one. (In the CSMS's order: a sample's own timestamp, the charger's clock,
    # may be older than the acceptance event, which is stored when the answer is handled.)
    later = [e["data"]["powerW"] for e in updated if e["sequence"] > accepted["sequence"]]
    capped = later[later.index(3700.0) :]
    assert set(capped) == {3700.0} and len(later) - len(capped) <= 1, later
    assert updated[0]["data"]["powerW"] == 11_000.0


async def test_get_configuration_returns_the_charger_keys(csms, api: Api) -> None:
    async with simulator(csms, api, "SIM-CONFIG") as ch:
        everything = await command(api, "SIM-CONFIG", "GetConfiguration", {})
        assert everything["status"] == "accepted", everything
        keys = {k["key"]: k for k in everything["response"]["configurationKey"]}
        known, _ = ch.model.config.get(None)
        assert set(keys) == {k["key"] for k in known}
        assert keys["HeartbeatInterval"]["value"] == "300"  # the CSMS's interval, adopted
        assert keys["NumberOfConnectors"] == {
            "key": "NumberOfConnectors",
            "readonly": True,
            "value": "1",
        }
        assert "AuthorizationKey" not in keys or "value" not in keys["AuthorizationKey"]
        some = await command(
            api, "SIM-CONFIG", "GetConfiguration", {"key": ["MeterValueSampleInterval", "Nope"]}
        )
        assert [k["key"] for k in some["response"]["configurationKey"]] == [
            "MeterValueSampleInterval"
        ]
        assert some["response"]["unknownKey"] == ["Nope"]
        changed = await command(
            api, "SIM-CONFIG", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"}
        )
        assert changed["status"] == "accepted" and changed["response"] == {"status": "Accepted"}
        again = await command(api, "SIM-CONFIG", "GetConfiguration", {"key": ["HeartbeatInterval"]})
        assert again["response"]["configurationKey"][0]["value"] == "120"
    types = [e["type"] for e in await events(api, "SIM-CONFIG")]
    assert types.count("get_configuration.accepted") == 3


async def test_trigger_message_status_notification(csms, api: Api) -> None:
    async with simulator(csms, api, "SIM-TRIGGER") as ch:
        mark = ch.mark()
        done = await command(
            api,
            "SIM-TRIGGER",
            "TriggerMessage",
            {"requestedMessage": "StatusNotification", "connectorId": 1},
        )
        assert done["status"] == "accepted" and done["response"] == {"status": "Accepted"}
        await ch.wait_for(EventKind.ANSWERED, since=mark, action="StatusNotification", timeout=WAIT)
        accepted = await wait_for_event(api, "SIM-TRIGGER", "trigger_message.accepted")
        status = await wait_for_event(
            api, "SIM-TRIGGER", "connector.status_changed", after=accepted["sequence"]
        )
        assert status["sequence"] == accepted["sequence"] + 1
        assert status["data"]["connectorId"] == 1
        assert status["data"]["status"] == "Available"
        assert status["data"]["previousStatus"] == "Available"


# ----- security profiles -------------------------------------------------------------


async def test_security_profile_2_over_tls_with_the_ca(csms_factory, tmp_path) -> None:
    cert, key = _self_signed(tmp_path)
    csms = await csms_factory(ocpp={"tls_cert": str(cert), "tls_key": str(key)})
    assert csms.ocpp_url.startswith("wss://")
    async with admin(csms) as api:
        await api.post("/api/v1/id-tags", {"idTag": TAG})
        async with simulator(csms, api, "SIM-TLS", ca=str(cert)) as ch:
            options = ScenarioOptions(id_tag=TAG, duration=0.3, wait=WAIT)
            await SCENARIOS["session"](ch, options)
        items = await events(api, "SIM-TLS")
    assert_gapless(items)
    assert items[0]["data"]["securityProfile"] == 2
    types = [e["type"] for e in items]
    assert types.count("transaction.started") == types.count("transaction.stopped") == 1


async def test_wrong_password_never_gets_in(csms, api: Api) -> None:
    await register(api, "SIM-BADPW")
    ch = Charger(csms.ocpp_url, "SIM-BADPW", password="not-the-password-123", reconnect_delay=0.05)
    await ch.start(wait_boot=False)
    try:
        failed = await ch.wait_for(EventKind.CONNECT_FAILED, timeout=WAIT)
    finally:
        await ch.stop()
    assert "401" in (failed.detail or "")
    assert ch.find(EventKind.CONNECTED) is None and ch.model.registration is None
    assert await events(api, "SIM-BADPW") == []
