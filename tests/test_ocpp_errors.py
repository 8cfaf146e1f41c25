"""Every CALLERROR case of OCPP-J 1.6 (4.2.3 table 7) against a live server over a real socket.

After each bad frame the connection stays up: a Heartbeat still gets its CALLRESULT, and it is
the very next frame received, so a frame that must not be answered provably was not.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import Api, RawCharger, open_socket, raw_charger, register

BOOT = {"chargePointVendor": "Test", "chargePointModel": "Raw"}
STAMP = "2026-02-06T14:30:00Z"


async def heartbeat_still_answered(charger: RawCharger) -> None:
    """The next frame received is the Heartbeat's CALLRESULT: nothing else came first."""
    answer = await charger.call("Heartbeat", {})
    assert answer[0] == 3 and set(answer[2]) == {"currentTime"}, answer


async def expect_call_error(charger: RawCharger, unique_id: str, code: str) -> list[Any]:
    answer = await charger.receive()
    assert answer[0] == 4, answer
    assert len(answer) == 5, answer
    assert answer[1] == unique_id, answer
    assert answer[2] == code, answer
    assert isinstance(answer[3], str), answer
    assert isinstance(answer[4], dict), answer
    return answer


# Frames answered with a CALLERROR: (raw text, the id it is answered to, the error code).
ANSWERED: list[tuple[str, str, str, str]] = [
    # Not JSON, but a CALL's id can be read from the text.
    ("not-json-with-id", '[2, "bad1", "Heartbeat", {', "bad1", "FormationViolation"),
    ("nan-literal", '[2, "bad2", "Heartbeat", {"x": NaN}]', "bad2", "FormationViolation"),
    # JSON, but a lone surrogate escape is not Unicode text (it cannot be sent back as UTF-8).
    (
        "lone-surrogate-in-payload",
        r'[2, "badu", "DataTransfer", {"vendorId": "\udc00"}]',
        "badu",
        "FormationViolation",
    ),
    # MessageTypeId not an integer.
    ("type-id-string", '["2", "bad3", "Heartbeat", {}]', "bad3", "FormationViolation"),
    ("type-id-float", '[2.0, "bad4", "Heartbeat", {}]', "bad4", "FormationViolation"),
    # MessageTypeId an integer outside 2, 3, 4.
    ("type-id-unknown", '[5, "bad5", "Heartbeat", {}]', "bad5", "ProtocolError"),
    ("type-id-zero", '[0, "bad6", "Heartbeat", {}]', "bad6", "ProtocolError"),
    # Wrong lengths of a CALL.
    ("call-3-elements", '[2, "bad7", "Heartbeat"]', "bad7", "ProtocolError"),
    ("call-2-elements", '[2, "bad8"]', "bad8", "ProtocolError"),
    ("call-5-elements", '[2, "bad9", "Heartbeat", {}, {}]', "bad9", "FormationViolation"),
    # Bad UniqueId (a string, so it can be answered to).
    ("id-empty", '[2, "", "Heartbeat", {}]', "", "PropertyConstraintViolation"),
    (
        "id-too-long",
        json.dumps([2, "x" * 37, "Heartbeat", {}]),
        "x" * 37,
        "PropertyConstraintViolation",
    ),
    # Bad Action / payload.
    ("action-not-string", '[2, "bad10", 17, {}]', "bad10", "FormationViolation"),
    ("action-empty", '[2, "bad11", "", {}]', "bad11", "FormationViolation"),
    ("payload-array", '[2, "bad12", "Heartbeat", []]', "bad12", "FormationViolation"),
    ("payload-string", '[2, "bad13", "Heartbeat", "{}"]', "bad13", "FormationViolation"),
    # Actions.
    ("unknown-action", '[2, "bad14", "MakeCoffee", {}]', "bad14", "NotImplemented"),
    ("wrong-case-action", '[2, "bad15", "heartbeat", {}]', "bad15", "NotImplemented"),
    (
        "security-extension-csms-action",
        json.dumps([2, "bad16", "GetInstalledCertificateIds", {"certificateType": "X"}]),
        "bad16",
        "NotSupported",
    ),
    (
        "csms-action-from-charger",
        '[2, "bad17", "Reset", {"type": "Soft"}]',
        "bad17",
        "NotSupported",
    ),
    # Schema violations (OCPP-J 1.6, 4.2.3 table 7).
    (
        "type-constraint",
        json.dumps(
            [
                2,
                "bad18",
                "StatusNotification",
                {"connectorId": "1", "errorCode": "NoError", "status": "Available"},
            ]
        ),
        "bad18",
        "TypeConstraintViolation",
    ),
    (
        "type-constraint-datetime",
        json.dumps(
            [
                2,
                "bad19",
                "StartTransaction",
                {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "soon"},
            ]
        ),
        "bad19",
        "TypeConstraintViolation",
    ),
    (
        "occurence-missing-required",
        '[2, "bad20", "Authorize", {}]',
        "bad20",
        "OccurenceConstraintViolation",
    ),
    (
        "occurence-min-items",
        json.dumps([2, "bad21", "MeterValues", {"connectorId": 1, "meterValue": []}]),
        "bad21",
        "OccurenceConstraintViolation",
    ),
    (
        "property-enum",
        json.dumps(
            [
                2,
                "bad22",
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Napping"},
            ]
        ),
        "bad22",
        "PropertyConstraintViolation",
    ),
    (
        "property-max-length",
        json.dumps([2, "bad23", "Authorize", {"idTag": "T" * 21}]),
        "bad23",
        "PropertyConstraintViolation",
    ),
    (
        "property-additional",
        json.dumps([2, "bad24", "Heartbeat", {"surprise": True}]),
        "bad24",
        "PropertyConstraintViolation",
    ),
    (
        "property-start-on-connector-0",
        json.dumps(
            [
                2,
                "bad25",
                "StartTransaction",
                {"connectorId": 0, "idTag": "T", "meterStart": 0, "timestamp": STAMP},
            ]
        ),
        "bad25",
        "PropertyConstraintViolation",
    ),
]

# Frames that must not be answered: no id can be read, or they are results/errors (4.1.1).
SILENT: list[tuple[str, str]] = [
    ("not-json", "hello there"),
    ("not-json-truncated-object", '{"a": '),
    ("json-object", '{"messageTypeId": 2}'),
    ("json-number", "42"),
    ("json-string", '"[2, \\"x\\", \\"Heartbeat\\", {}]"'),
    ("json-null", "null"),
    ("empty-array", "[]"),
    ("type-only", "[2]"),
    ("id-not-string", '[2, 17, "Heartbeat", {}]'),
    ("id-null", '[2, null, "Heartbeat", {}]'),
    ("id-lone-surrogate", r'[2, "\ud800", "Heartbeat", {}]'),
    ("unknown-type-result-shaped", '[9, "r1", {}]'),
    ("result-for-no-call", '[3, "nobody", {}]'),
    ("result-wrong-length", '[3, "r2", {}, {}]'),
    ("result-payload-not-object", '[3, "r3", 5]'),
    ("error-for-no-call", '[4, "nobody", "GenericError", "", {}]'),
    ("error-wrong-length", '[4, "r4", "GenericError"]'),
    ("error-bad-details", '[4, "r5", "GenericError", "", []]'),
]


@pytest.fixture
async def charger(csms, api: Api) -> AsyncIterator[RawCharger]:
    booted = await raw_charger(csms, api, "CP-ERR")
    yield booted
    await booted.close()


@pytest.mark.parametrize(
    ("text", "unique_id", "code"),
    [pytest.param(text, uid, code, id=name) for name, text, uid, code in ANSWERED],
)
async def test_bad_call_gets_the_1_6_error_and_the_socket_stays_up(
    charger: RawCharger, text: str, unique_id: str, code: str
) -> None:
    await charger.send_raw(text)
    await expect_call_error(charger, unique_id, code)
    await heartbeat_still_answered(charger)


@pytest.mark.parametrize("text", [pytest.param(text, id=name) for name, text in SILENT])
async def test_unanswerable_frame_is_ignored_and_the_socket_stays_up(
    charger: RawCharger, text: str
) -> None:
    await charger.send_raw(text)
    await heartbeat_still_answered(charger)


async def test_binary_frames(charger: RawCharger) -> None:
    # Not UTF-8, id readable: answered; not UTF-8 and no id: ignored.
    await charger.ws.send(b'[2, "bin1", "Heartbeat", {"x": "\xff"}]')
    await expect_call_error(charger, "bin1", "FormationViolation")
    await charger.ws.send(b"\xff\xfe\x00")
    await heartbeat_still_answered(charger)


async def test_every_bad_frame_in_a_row_on_one_socket_changes_nothing(
    charger: RawCharger, api: Api
) -> None:
    for _, text, unique_id, code in ANSWERED:
        await charger.send_raw(text)
        await expect_call_error(charger, unique_id, code)
    for _, text in SILENT:
        await charger.send_raw(text)
    await heartbeat_still_answered(charger)
    events = (await api.get("/api/v1/events?chargerId=CP-ERR&order=asc"))["items"]
    assert [e["type"] for e in events] == ["charger.connected", "charger.boot"]
    view = await api.get("/api/v1/chargers/CP-ERR")
    assert view["connected"] is True and view["connectors"] == []


async def test_error_details_name_the_offending_field(charger: RawCharger) -> None:
    payload = {
        "connectorId": 1,
        "meterValue": [{"timestamp": STAMP, "sampledValue": [{"value": "1", "unit": "parsecs"}]}],
    }
    await charger.send_raw(json.dumps([2, "f1", "MeterValues", payload]))
    answer = await expect_call_error(charger, "f1", "PropertyConstraintViolation")
    assert "unit" in answer[4].get("field", ""), answer
    await heartbeat_still_answered(charger)


@pytest.mark.parametrize("policy", [None, "Pending", "Rejected"])
async def test_security_error_before_accepted(csms, api: Api, policy: str | None) -> None:
    extra = {"registrationPolicy": policy} if policy else {}
    await register(api, "CP-SEC", **extra)
    charger = RawCharger(await open_socket(csms, "CP-SEC"))
    try:
        if policy is not None:
            boot = await charger.call("BootNotification", BOOT)
            assert boot[2]["status"] == policy
        calls: list[tuple[str, dict[str, Any]]] = [
            ("Heartbeat", {}),
            ("Authorize", {"idTag": "T"}),
            (
                "StatusNotification",
                {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
            ),
            (
                "StartTransaction",
                {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": STAMP},
            ),
        ]
        for action, payload in calls:
            answer = await charger.call(action, payload)
            assert answer[0] == 4 and answer[2] == "SecurityError", answer
            assert isinstance(answer[4], dict)
        # Still connected: a BootNotification is always heard.
        boot = await charger.call("BootNotification", BOOT)
        assert boot[0] == 3
    finally:
        await charger.close()
    events = (await api.get("/api/v1/events?chargerId=CP-SEC&order=asc"))["items"]
    assert "transaction.started" not in [e["type"] for e in events]
    assert "connector.status_changed" not in [e["type"] for e in events]


async def test_one_chargers_bad_frames_do_not_disturb_another(csms, api: Api) -> None:
    noisy = await raw_charger(csms, api, "CP-NOISY")
    calm = await raw_charger(csms, api, "CP-CALM")
    try:
        await noisy.send_raw("garbage")
        await noisy.send_raw('[2, "n1", "Nope", {}]')
        answer = await calm.call("Heartbeat", {})
        assert answer[0] == 3
        await expect_call_error(noisy, "n1", "NotImplemented")
        await heartbeat_still_answered(noisy)
    finally:
        await noisy.close()
        await calm.close()
