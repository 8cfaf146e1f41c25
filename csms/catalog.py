"""The event types the central system emits (DESIGN 4), each with a description and example.

Listed by ``GET /api/v1/event-types`` and used to validate webhook subscriptions.
"""

from __future__ import annotations

from typing import Any

from csms.protocol.commands import event_type
from csms.protocol.schemas import CENTRAL_SYSTEM_ACTIONS
from webhooks.catalog import Catalog, EventType

_TX = {"transactionId": 12345, "connectorId": 1}

_CHARGER_EVENTS = [
    EventType(
        name="charger.connected",
        description="A charger opened its WebSocket connection.",
        example={"securityProfile": 1, "remoteAddress": "192.0.2.10:51234"},
    ),
    EventType(
        name="charger.disconnected",
        description="A charger's connection closed; reason is closed, lost, replaced,"
        " restart, shutdown or deleted.",
        example={"reason": "closed", "closeCode": 1000, "connectedAt": "2026-02-06T14:00:00.000Z"},
    ),
    EventType(
        name="charger.boot",
        description="BootNotification: the charger's identity and the registration status"
        " it was given.",
        example={
            "chargePointVendor": "VendorX",
            "chargePointModel": "ModelY",
            "firmwareVersion": "1.2.3",
            "registrationStatus": "Accepted",
            "interval": 300,
        },
    ),
    EventType(
        name="charger.authorization",
        description="Authorize: an id tag was presented, and the answer given.",
        example={"idTag": "USER001", "status": "Accepted"},
    ),
    EventType(
        name="charger.firmware_status",
        description="FirmwareStatusNotification.",
        example={"status": "Installed"},
    ),
    EventType(
        name="charger.diagnostics_status",
        description="DiagnosticsStatusNotification.",
        example={"status": "Uploaded"},
    ),
    EventType(
        name="charger.data_transfer",
        description="DataTransfer from the charger, with the status it was answered.",
        example={
            "vendorId": "com.example",
            "messageId": "Hello",
            "data": "{}",
            "responseStatus": "UnknownVendorId",
        },
    ),
    EventType(
        name="charger.security_event",
        description="SecurityEventNotification (security extension): type, timestamp, techInfo.",
        example={
            "type": "TamperDetectionActivated",
            "timestamp": "2026-02-06T14:30:00.000Z",
            "techInfo": "enclosure opened",
        },
    ),
    EventType(
        name="charger.certificate_signing_requested",
        description="SignCertificate (security extension): the CSR and the answer given;"
        " signedBy csms (the CSMS signs it and sends CertificateSigned) or external (an"
        " external CA answers through the commands API); a Rejected CSR carries the reason.",
        example={
            "status": "Accepted",
            "signedBy": "external",
            "csr": "-----BEGIN CERTIFICATE REQUEST-----\n...",
        },
    ),
    EventType(
        name="charger.log_status",
        description="LogStatusNotification (security extension): the upload's status and the"
        " GetLog requestId.",
        example={"status": "Uploaded", "requestId": 7},
    ),
    EventType(
        name="charger.signed_firmware_status",
        description="SignedFirmwareStatusNotification (security extension): the status and"
        " the SignedUpdateFirmware requestId.",
        example={"status": "SignatureVerified", "requestId": 3},
    ),
    EventType(
        name="connector.status_changed",
        description="StatusNotification; connectorId 0 is the charger itself.",
        example={
            "connectorId": 1,
            "status": "Charging",
            "previousStatus": "Preparing",
            "errorCode": "NoError",
            "timestamp": "2026-02-06T14:30:00.000Z",
        },
    ),
    EventType(
        name="connector.meter_values",
        description="MeterValues outside a transaction, normalised plus the raw meterValue.",
        example={"connectorId": 1, "meterWh": 1520.0, "powerW": 0.0, "meterValue": []},
    ),
    EventType(
        name="transaction.started",
        description="StartTransaction: a transaction began; transactionId is ours.",
        example={
            **_TX,
            "idTag": "USER001",
            "idTagInfo": {"status": "Accepted"},
            "meterStart": 0,
            "timestamp": "2026-02-06T14:30:00.000Z",
        },
    ),
    EventType(
        name="transaction.updated",
        description="MeterValues in a transaction: energyWh (this session), meterWh (the"
        " register), powerW, soc, ... and the raw meterValue.",
        example={
            **_TX,
            "meterWh": 2500.0,
            "energyWh": 2500.0,
            "powerW": 7200.0,
            "soc": 42.0,
            "timestamp": "2026-02-06T14:45:00.000Z",
            "meterValue": [],
        },
    ),
    EventType(
        name="transaction.stopped",
        description="StopTransaction: meterStop, energyWh, reason, durationS. A stop for a"
        " transaction we do not know carries unknownTransaction: true.",
        example={
            **_TX,
            "idTag": "USER001",
            "meterStart": 0,
            "meterStop": 7400,
            "energyWh": 7400,
            "reason": "Local",
            "durationS": 3600,
            "startTimestamp": "2026-02-06T14:30:00.000Z",
            "timestamp": "2026-02-06T15:30:00.000Z",
        },
    ),
    EventType(
        name="ocpp.message",
        description="Every raw OCPP frame in and out; delivered only to endpoints that name it"
        " explicitly, never through a wildcard. sequence is null.",
        example={"direction": "in", "message": [2, "19223201", "Heartbeat", {}]},
    ),
]

COMMAND_STATUSES = ("requested", "accepted", "rejected", "failed")


def _command_events() -> list[EventType]:
    meaning = {
        "requested": "the command was accepted by the API and queued for the charger",
        "accepted": "the charger answered and accepted it",
        "rejected": "the charger answered but did not accept it",
        "failed": "CALLERROR, time-out, or the charger was offline or lost",
    }
    out = []
    for action in sorted(CENTRAL_SYSTEM_ACTIONS):
        for status in COMMAND_STATUSES:
            example: dict[str, Any] = {"commandId": "cmd_2Yt0cJ6kqV1xWw0s", "request": {}}
            if status in ("accepted", "rejected"):
                example["response"] = {}
            if status == "failed":
                example["error"] = {"code": "Timeout", "message": "no answer within 30 s"}
            out.append(
                EventType(
                    name=event_type(action, status),
                    description=f"{action}: {meaning[status]}.",
                    example=example,
                )
            )
    return out


CSMS_EVENT_TYPES: list[EventType] = [*_CHARGER_EVENTS, *_command_events()]


def build_catalog() -> Catalog:
    """Every type an endpoint may subscribe to: ours plus the emitter's ``webhook.*``."""
    return Catalog(CSMS_EVENT_TYPES)
