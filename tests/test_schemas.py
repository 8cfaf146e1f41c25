"""Tests for csms.protocol.schemas: OCPP-J 1.6 schema validation and its error codes."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import fastjsonschema
import pytest

from csms.protocol import schemas
from csms.protocol.frames import ErrorCode
from csms.protocol.schemas import (
    CENTRAL_SYSTEM_ACTIONS,
    CHARGE_POINT_ACTIONS,
    KNOWN_ACTIONS,
    Violation,
    is_known,
    validate_request,
    validate_response,
)

TYPE = ErrorCode.TYPE_CONSTRAINT_VIOLATION
OCCURENCE = ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION
PROPERTY = ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
FORMATION = ErrorCode.FORMATION_VIOLATION

NOW = "2026-02-06T14:30:00.000Z"
ID_TAG_INFO = {"status": "Accepted", "expiryDate": "2026-03-01T00:00:00Z", "parentIdTag": "P1"}
METER_VALUES = {
    "connectorId": 1,
    "transactionId": 12345,
    "meterValue": [
        {
            "timestamp": NOW,
            "sampledValue": [
                {
                    "value": "1234.5",
                    "context": "Sample.Periodic",
                    "format": "Raw",
                    "measurand": "Energy.Active.Import.Register",
                    "location": "Outlet",
                    "unit": "kWh",
                },
                {"value": "7.2", "measurand": "Power.Active.Import", "unit": "kW"},
                {"value": "10.1", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                {"value": "55", "measurand": "SoC", "location": "EV", "unit": "Percent"},
            ],
        }
    ],
}
START = {"connectorId": 1, "idTag": "USER001", "meterStart": 0, "timestamp": NOW}
CHARGING_PROFILE = {
    "chargingProfileId": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": {
        "chargingRateUnit": "A",
        "startSchedule": NOW,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0, "numberPhases": 3}],
        "minChargingRate": 6.0,
    },
}

CERT_HASH = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "a1",
    "issuerKeyHash": "b2",
    "serialNumber": "01",
}

# Requests a charger sends (OCPP 1.6, section 4), with their optional fields.
CHARGE_POINT_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("Authorize", {"idTag": "USER001"}),
    (
        "BootNotification",
        {
            "chargePointVendor": "VendorX",
            "chargePointModel": "SingleSocketCharger",
            "chargePointSerialNumber": "CP-1",
            "firmwareVersion": "1.0.0",
            "meterType": "DC",
        },
    ),
    ("DataTransfer", {"vendorId": "com.example", "messageId": "m", "data": '{"k":1}'}),
    ("DiagnosticsStatusNotification", {"status": "Uploaded"}),
    ("FirmwareStatusNotification", {"status": "Installed"}),
    ("Heartbeat", {}),
    ("MeterValues", METER_VALUES),
    ("StartTransaction", START),
    (
        "StatusNotification",
        {"connectorId": 0, "errorCode": "NoError", "status": "Available", "timestamp": NOW},
    ),
    (
        "StopTransaction",
        {
            "transactionId": 12345,
            "idTag": "USER001",
            "meterStop": 20000,
            "timestamp": NOW,
            "reason": "Local",
            "transactionData": METER_VALUES["meterValue"],
        },
    ),
    # the security extension (Security Whitepaper 5)
    ("LogStatusNotification", {"status": "Uploading", "requestId": 1}),
    (
        "SecurityEventNotification",
        {"type": "StartupOfTheDevice", "timestamp": NOW, "techInfo": "cold boot"},
    ),
    ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}),
    ("SignedFirmwareStatusNotification", {"status": "SignatureVerified", "requestId": 3}),
]

# Answers the CSMS gives them.
CHARGE_POINT_RESPONSES: list[tuple[str, dict[str, Any]]] = [
    ("Authorize", {"idTagInfo": ID_TAG_INFO}),
    ("BootNotification", {"status": "Accepted", "currentTime": NOW, "interval": 300}),
    ("DataTransfer", {"status": "UnknownVendorId"}),
    ("DiagnosticsStatusNotification", {}),
    ("FirmwareStatusNotification", {}),
    ("Heartbeat", {"currentTime": NOW}),
    ("MeterValues", {}),
    ("StartTransaction", {"idTagInfo": {"status": "Accepted"}, "transactionId": 12345}),
    ("StatusNotification", {}),
    ("StopTransaction", {"idTagInfo": {"status": "Accepted"}}),
    ("LogStatusNotification", {}),
    ("SecurityEventNotification", {}),
    ("SignCertificate", {"status": "Rejected"}),
    ("SignedFirmwareStatusNotification", {}),
]

# Requests the CSMS sends (OCPP 1.6, section 5).
CENTRAL_SYSTEM_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("CancelReservation", {"reservationId": 1}),
    ("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}),
    ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}),
    ("ClearCache", {}),
    ("ClearChargingProfile", {"id": 1, "connectorId": 1, "stackLevel": 0}),
    ("DataTransfer", {"vendorId": "com.example"}),
    ("GetCompositeSchedule", {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"}),
    ("GetConfiguration", {"key": ["HeartbeatInterval"]}),
    ("GetDiagnostics", {"location": "ftp://user:pass@example.com/diag/", "retries": 3}),
    ("GetLocalListVersion", {}),
    ("RemoteStartTransaction", {"connectorId": 1, "idTag": "USER001"}),
    ("RemoteStopTransaction", {"transactionId": 12345}),
    (
        "ReserveNow",
        {"connectorId": 1, "expiryDate": NOW, "idTag": "USER001", "reservationId": 7},
    ),
    ("Reset", {"type": "Soft"}),
    (
        "SendLocalList",
        {
            "listVersion": 2,
            "updateType": "Full",
            "localAuthorizationList": [{"idTag": "USER001", "idTagInfo": ID_TAG_INFO}],
        },
    ),
    ("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": CHARGING_PROFILE}),
    ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1}),
    ("UnlockConnector", {"connectorId": 1}),
    ("UpdateFirmware", {"location": "https://example.com/fw.bin", "retrieveDate": NOW}),
    # the security extension (Security Whitepaper 5)
    ("CertificateSigned", {"certificateChain": "-----BEGIN CERTIFICATE-----"}),
    ("DeleteCertificate", {"certificateHashData": CERT_HASH}),
    ("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}),
    ("GetInstalledCertificateIds", {"certificateType": "CentralSystemRootCertificate"}),
    (
        "GetLog",
        {
            "logType": "SecurityLog",
            "requestId": 1,
            "retries": 2,
            "log": {"remoteLocation": "ftp://example.com/logs/", "oldestTimestamp": NOW},
        },
    ),
    ("InstallCertificate", {"certificateType": "ManufacturerRootCertificate", "certificate": "x"}),
    (
        "SignedUpdateFirmware",
        {
            "requestId": 3,
            "firmware": {
                "location": "https://example.com/fw.bin",
                "retrieveDateTime": NOW,
                "signingCertificate": "-----BEGIN CERTIFICATE-----",
                "signature": "c2lnbmF0dXJl",
            },
        },
    ),
]

# Answers a charger gives them.
CENTRAL_SYSTEM_RESPONSES: list[tuple[str, dict[str, Any]]] = [
    ("CancelReservation", {"status": "Accepted"}),
    ("ChangeAvailability", {"status": "Scheduled"}),
    ("ChangeConfiguration", {"status": "RebootRequired"}),
    ("ClearCache", {"status": "Accepted"}),
    ("ClearChargingProfile", {"status": "Unknown"}),
    ("DataTransfer", {"status": "Accepted", "data": "x"}),
    (
        "GetCompositeSchedule",
        {
            "status": "Accepted",
            "connectorId": 1,
            "scheduleStart": NOW,
            "chargingSchedule": CHARGING_PROFILE["chargingSchedule"],
        },
    ),
    (
        "GetConfiguration",
        {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "60"}],
            "unknownKey": ["Foo"],
        },
    ),
    ("GetDiagnostics", {"fileName": "diag.zip"}),
    ("GetLocalListVersion", {"listVersion": -1}),
    ("RemoteStartTransaction", {"status": "Accepted"}),
    ("RemoteStopTransaction", {"status": "Rejected"}),
    ("ReserveNow", {"status": "Occupied"}),
    ("Reset", {"status": "Accepted"}),
    ("SendLocalList", {"status": "VersionMismatch"}),
    ("SetChargingProfile", {"status": "NotSupported"}),
    ("TriggerMessage", {"status": "NotImplemented"}),
    ("UnlockConnector", {"status": "Unlocked"}),
    ("UpdateFirmware", {}),
    ("CertificateSigned", {"status": "Rejected"}),
    ("DeleteCertificate", {"status": "NotFound"}),
    ("ExtendedTriggerMessage", {"status": "NotImplemented"}),
    ("GetInstalledCertificateIds", {"status": "Accepted", "certificateHashData": [CERT_HASH]}),
    ("GetLog", {"status": "AcceptedCanceled", "filename": "security.log"}),
    ("InstallCertificate", {"status": "Failed"}),
    ("SignedUpdateFirmware", {"status": "InvalidCertificate"}),
]


def test_action_sets() -> None:
    assert len(CHARGE_POINT_ACTIONS) == 10 + 4  # 1.6 and its security extension
    assert len(CENTRAL_SYSTEM_ACTIONS) == 19 + 7
    shared = CHARGE_POINT_ACTIONS & CENTRAL_SYSTEM_ACTIONS
    assert shared == {"DataTransfer"}
    assert CHARGE_POINT_ACTIONS | CENTRAL_SYSTEM_ACTIONS == KNOWN_ACTIONS
    assert {a for a, _ in CHARGE_POINT_REQUESTS} == CHARGE_POINT_ACTIONS
    assert {a for a, _ in CENTRAL_SYSTEM_REQUESTS} == CENTRAL_SYSTEM_ACTIONS
    assert {"SecurityEventNotification", "SignCertificate", "GetLog"} < KNOWN_ACTIONS
    assert not any(action.endswith("Response") for action in KNOWN_ACTIONS)


@pytest.mark.parametrize(
    ("action", "known"),
    [("Heartbeat", True), ("SignCertificate", True), ("FooBar", False), ("heartbeat", False)],
)
def test_is_known(action: str, known: bool) -> None:
    assert is_known(action) is known


@pytest.mark.parametrize(("action", "payload"), CHARGE_POINT_REQUESTS + CENTRAL_SYSTEM_REQUESTS)
def test_valid_requests(action: str, payload: dict[str, Any]) -> None:
    assert validate_request(action, payload) is None


@pytest.mark.parametrize(("action", "payload"), CHARGE_POINT_RESPONSES + CENTRAL_SYSTEM_RESPONSES)
def test_valid_responses(action: str, payload: dict[str, Any]) -> None:
    assert validate_response(action, payload) is None


def test_every_schema_compiles() -> None:
    for action in KNOWN_ACTIONS:
        assert isinstance(validate_request(action, {}), Violation | None)
        assert isinstance(validate_response(action, {}), Violation | None)


def test_unknown_action_is_not_implemented() -> None:
    expected = Violation(
        error_code=ErrorCode.NOT_IMPLEMENTED, field="", description="unknown action 'FooBar'"
    )
    assert validate_request("FooBar", {}) == expected
    assert validate_response("FooBar", {}) == expected


def with_sample(**fields: Any) -> dict[str, Any]:
    """MeterValues with the 2nd sampled value of its 1st element changed."""
    payload = copy.deepcopy(METER_VALUES)
    sample = payload["meterValue"][0]["sampledValue"][1]
    for key, value in fields.items():
        if value is None:
            del sample[key]
        else:
            sample[key] = value
    return payload


@pytest.mark.parametrize(
    ("action", "payload", "code", "field"),
    [
        # type -> TypeConstraintViolation (the example of table 7: "somestring": 12)
        ("Authorize", {"idTag": 12}, TYPE, "idTag"),
        ("StartTransaction", {**START, "connectorId": "1"}, TYPE, "connectorId"),
        ("StartTransaction", {**START, "connectorId": True}, TYPE, "connectorId"),
        ("StartTransaction", {**START, "connectorId": 1.5}, TYPE, "connectorId"),
        ("MeterValues", with_sample(value=7.2), TYPE, "meterValue[0].sampledValue[1].value"),
        ("MeterValues", [], TYPE, ""),
        # format date-time -> TypeConstraintViolation (dateTime is an OCPP data type)
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": "x"},
            TYPE,
            "timestamp",
        ),
        (
            "SecurityEventNotification",
            {"type": "StartupOfTheDevice", "timestamp": "2026-13-01T00:00:00Z"},
            TYPE,
            "timestamp",
        ),
        # format uri -> TypeConstraintViolation (anyURI is an OCPP data type)
        ("GetDiagnostics", {"location": "not a uri"}, TYPE, "location"),
        # required -> OccurenceConstraintViolation, naming the first missing field
        ("BootNotification", {"chargePointVendor": "VendorX"}, OCCURENCE, "chargePointModel"),
        ("MeterValues", {"connectorId": 1}, OCCURENCE, "meterValue"),
        (
            "MeterValues",
            with_sample(value=None),
            OCCURENCE,
            "meterValue[0].sampledValue[1].value",
        ),
        # minItems -> OccurenceConstraintViolation
        ("MeterValues", {"connectorId": 1, "meterValue": []}, OCCURENCE, "meterValue"),
        (
            "MeterValues",
            {"connectorId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": []}]},
            OCCURENCE,
            "meterValue[0].sampledValue",
        ),
        # enum -> PropertyConstraintViolation
        ("MeterValues", with_sample(unit="Joule"), PROPERTY, "meterValue[0].sampledValue[1].unit"),
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Busy"},
            PROPERTY,
            "status",
        ),
        ("Reset", {"type": "soft"}, PROPERTY, "type"),
        # maxLength -> PropertyConstraintViolation (IdToken is CiString20Type)
        ("Authorize", {"idTag": "X" * 21}, PROPERTY, "idTag"),
        # additionalProperties -> PropertyConstraintViolation, naming the first extra field
        ("Heartbeat", {"foo": 1}, PROPERTY, "foo"),
        (
            "MeterValues",
            with_sample(zeta=1, alpha=2),
            PROPERTY,
            "meterValue[0].sampledValue[1].alpha",
        ),
        # draft-06 security schemas with $ref definitions
        (
            "GetLog",
            {"logType": "AuditLog", "requestId": 1, "log": {"remoteLocation": "ftp://x/"}},
            PROPERTY,
            "logType",
        ),
        (
            "GetLog",
            {"logType": "SecurityLog", "requestId": 1, "log": {}},
            OCCURENCE,
            "log.remoteLocation",
        ),
    ],
)
def test_request_violations(action: str, payload: Any, code: ErrorCode, field: str) -> None:
    violation = validate_request(action, payload)
    assert violation is not None
    assert (violation.error_code, violation.field) == (code, field)
    assert violation.description.startswith(field or "payload")


@pytest.mark.parametrize(
    ("action", "payload", "code", "field"),
    [
        ("BootNotification", {"status": "Accepted", "currentTime": NOW}, OCCURENCE, "interval"),
        ("Heartbeat", {"currentTime": "soon"}, TYPE, "currentTime"),
        ("RemoteStartTransaction", {"status": "OK"}, PROPERTY, "status"),
        ("GetLocalListVersion", {"listVersion": "1"}, TYPE, "listVersion"),
    ],
)
def test_response_violations(action: str, payload: Any, code: ErrorCode, field: str) -> None:
    violation = validate_response(action, payload)
    assert violation is not None
    assert (violation.error_code, violation.field) == (code, field)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-02-06T14:30:00Z",
        "2026-02-06T14:30:00.1234567Z",
        "2026-02-06T15:30:00+01:00",
        "2026-02-06T14:30:00",  # no offset: some chargers do this; read as UTC
    ],
)
def test_date_time_is_lenient(timestamp: str) -> None:
    assert validate_response("Heartbeat", {"currentTime": timestamp}) is None


@pytest.mark.parametrize("timestamp", ["", "now", "14:30", "2026-02-30T00:00:00Z"])
def test_date_time_refuses_what_is_not_a_date(timestamp: str) -> None:
    violation = validate_response("Heartbeat", {"currentTime": timestamp})
    assert violation is not None
    assert violation.error_code is TYPE


def set_charging_profile(limit: float, min_rate: float = 6.0) -> dict[str, Any]:
    profile = copy.deepcopy(CHARGING_PROFILE)
    profile["chargingSchedule"]["chargingSchedulePeriod"].append(
        {"startPeriod": 600, "limit": limit}
    )
    profile["chargingSchedule"]["minChargingRate"] = min_rate
    return {"connectorId": 1, "csChargingProfiles": profile}


@pytest.mark.parametrize("limit", [12.3, 0.1, 0.3, 16, 0, 7400.7, 1e20, 12.30000])
def test_multiple_of_tenth_is_checked_in_decimal(limit: float) -> None:
    assert validate_request("SetChargingProfile", set_charging_profile(limit)) is None
    assert (
        validate_request(
            "RemoteStartTransaction",
            {"idTag": "U", "chargingProfile": set_charging_profile(limit)["csChargingProfiles"]},
        )
        is None
    )


@pytest.mark.parametrize("limit", [12.34, 0.05, 1e-7, float("inf"), float("nan")])
def test_multiple_of_tenth_refuses_finer_values(limit: float) -> None:
    violation = validate_request("SetChargingProfile", set_charging_profile(limit))
    assert violation == Violation(
        error_code=PROPERTY,
        field="csChargingProfiles.chargingSchedule.chargingSchedulePeriod[1].limit",
        description=(
            "csChargingProfiles.chargingSchedule.chargingSchedulePeriod[1].limit"
            " must be a multiple of 0.1"
        ),
    )


def test_multiple_of_tenth_in_min_charging_rate_and_responses() -> None:
    violation = validate_request("SetChargingProfile", set_charging_profile(12.3, 6.05))
    assert violation is not None
    assert violation.field == "csChargingProfiles.chargingSchedule.minChargingRate"
    schedule = copy.deepcopy(CHARGING_PROFILE["chargingSchedule"])
    schedule["chargingSchedulePeriod"][0]["limit"] = 12.34
    violation = validate_response(
        "GetCompositeSchedule", {"status": "Accepted", "chargingSchedule": schedule}
    )
    assert violation is not None
    assert (violation.error_code, violation.field) == (
        PROPERTY,
        "chargingSchedule.chargingSchedulePeriod[0].limit",
    )


def test_multiple_of_is_not_checked_where_the_schema_rules_type() -> None:
    # a string limit fails on ``type`` first; the decimal check never sees it
    violation = validate_request("SetChargingProfile", set_charging_profile("12.3"))  # type: ignore[arg-type]
    assert violation is not None
    assert violation.error_code is TYPE
    assert schemas._is_multiple("12.3", Decimal("0.1"))
    assert schemas._is_multiple(True, Decimal("0.1"))


def _exception(schema: dict[str, Any], value: Any) -> fastjsonschema.JsonSchemaValueException:
    try:
        fastjsonschema.compile(schema)(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        return exc
    raise AssertionError("value was valid")


@pytest.mark.parametrize(
    ("schema", "value", "code", "field"),
    [
        # rules the 1.6 schemas do not use today, mapped all the same
        ({"properties": {"a": {"maxItems": 1}}}, {"a": [1, 2]}, OCCURENCE, "a"),
        ({"properties": {"a": {"minLength": 2}}}, {"a": "x"}, PROPERTY, "a"),
        ({"properties": {"a": {"maximum": 2}}}, {"a": 3}, PROPERTY, "a"),
        ({"properties": {"a": {"minimum": 2}}}, {"a": 1}, PROPERTY, "a"),
        ({"properties": {"a": {"multipleOf": 2}}}, {"a": 3}, PROPERTY, "a"),
        ({"properties": {"a": {"pattern": "^x$"}}}, {"a": "y"}, PROPERTY, "a"),
        ({"items": {"not": {}}}, [1], FORMATION, "[0]"),
        (
            {"properties": {"a": {"items": {"anyOf": [{"type": "string"}]}}}},
            {"a": [1]},
            FORMATION,
            "a[0]",
        ),
    ],
)
def test_rule_to_error_code(
    schema: dict[str, Any], value: Any, code: ErrorCode, field: str
) -> None:
    violation = schemas._violation(_exception(schema, value))
    assert (violation.error_code, violation.field) == (code, field)
    assert violation.description.startswith(field)


def test_compiled_once() -> None:
    assert schemas._compiled("MeterValues") is schemas._compiled("MeterValues")


def _instance(node: Any, rng: Any, depth: int = 0) -> Any:
    """A value shaped by the schema ``node``, sometimes a little wrong (a key missing or
    added, a wrong type, an enum value misspelt, a bad date): for the predicate below."""
    if rng.random() < 0.03:
        return rng.choice([None, True, 1, 1.5, "x", [], {}, "2026-13-01T00:00:00Z"])
    kind = node.get("type") if isinstance(node, dict) else None
    if kind == "object":
        out = {}
        for key, child in (node.get("properties") or {}).items():
            wanted = key in (node.get("required") or ()) or rng.random() < 0.5
            if wanted and rng.random() > 0.02:
                out[key] = _instance(child, rng, depth + 1)
        if rng.random() < 0.03:
            out["unexpected"] = 1
        return out
    if kind == "array":
        low = node.get("minItems", 0)
        count = rng.randint(max(0, low - (rng.random() < 0.05)), low + 2)
        return [_instance(node.get("items") or {}, rng, depth + 1) for _ in range(count)]
    if kind == "string":
        if "enum" in node:
            value = rng.choice(node["enum"])
            return value + "x" if rng.random() < 0.03 else value
        if node.get("format") == "date-time":
            return rng.choice([NOW, "2026-02-06T14:30:00+02:00", "2026-02-06", "yesterday"])
        limit = node.get("maxLength", 30)
        return "a" * rng.randint(0, limit + (rng.random() < 0.05))
    if kind == "integer":
        return rng.choice([0, 1, -3, 2**40, True, 1.0])
    if kind == "number":
        return rng.choice([0, 1.5, -2, True, "1"])
    if kind == "boolean":
        return rng.choice([True, False, 0])
    return rng.choice([None, 1, "x"])


@pytest.mark.parametrize("name", sorted(KNOWN_ACTIONS | {f"{a}Response" for a in KNOWN_ACTIONS}))
def test_conformance_predicate_never_admits_a_violation(name: str) -> None:
    """The fast predicate may refuse a valid payload (fastjsonschema then decides), but
    what it admits must pass fastjsonschema; and the usual payloads take the fast way."""
    import random

    schema = schemas._compiled(name)
    if schema.conforms is None:
        return
    rng = random.Random(name)
    definition = schemas._definition(name)
    admitted = 0
    for _ in range(400):
        value = _instance(definition, rng)
        if schema.conforms(value):
            admitted += 1
            schema.check(value)  # raises if the predicate was wrong
    assert admitted > 0


def test_meter_values_take_the_fast_way() -> None:
    conforms = schemas._compiled("MeterValues").conforms
    assert conforms is not None and conforms(METER_VALUES)
    wrong = copy.deepcopy(METER_VALUES)
    wrong["meterValue"][0]["sampledValue"][0]["unit"] = "kwh"
    assert not conforms(wrong)
    violation = validate_request("MeterValues", wrong)
    assert violation is not None
    assert violation.error_code == PROPERTY
    assert violation.field == "meterValue[0].sampledValue[0].unit"
