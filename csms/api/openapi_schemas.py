"""JSON Schemas (2020-12, as OpenAPI 3.1 takes them) of what the admin API reads and answers.

Each response schema mirrors one view function (``charger_view``, ``command_view``,
``endpoint_json``, ...): ``additionalProperties: false`` on our own objects, so a field added to
a view without its schema fails the schemathesis test (tests/test_openapi.py) instead of going
undocumented; payloads that come from chargers or OCPP (``boot``, ``request``, event ``data``)
stay open. Request schemas state what the handlers check; rules JSON Schema cannot say (a
password's length in UTF-8 bytes, an event-type glob matching the catalog) are in the
descriptions, and the handlers answer ``400`` for them.
"""

from __future__ import annotations

from typing import Any

from csms.api.commands import MAX_WAIT_S, STATUSES
from csms.api.common import DEFAULT_LIMIT, MAX_LIMIT
from csms.api.id_tags import MAX_TAG_LENGTH
from csms.api.id_tags import STATUSES as ID_TAG_STATUSES
from csms.passwords import MAX_KEY_BYTES, MIN_KEY_BYTES
from csms.protocol.schemas import CENTRAL_SYSTEM_ACTIONS, request_schema
from csms.protocol.state import RegistrationStatus
from csms.server import MAX_ID_LENGTH

Schema = dict[str, Any]

REF = "#/components/schemas/"


def ref(name: str) -> Schema:
    return {"$ref": REF + name}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null: ``type: [..., "null"]`` (and null added to an ``enum``)."""
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def obj(properties: dict[str, Schema], *, required: tuple[str, ...] | None = None) -> Schema:
    """A closed object; every property required unless ``required`` names fewer."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        "additionalProperties": False,
    }


STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
INTEGER: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
TIMESTAMP: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 in UTC with milliseconds: 2026-02-06T14:30:00.000Z",
}
ANY_OBJECT: Schema = {"type": "object"}
POLICIES = list(RegistrationStatus.ALL)
ACTIONS = sorted(CENTRAL_SYSTEM_ACTIONS)

# A charger id: what a URL path segment can carry (csms.server.valid_charger_id).
CHARGER_ID: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": "^[^/\\u0000-\\u001f\\u007f]+$",
    "not": {"enum": [".", ".."]},
}
ID_TAG: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_TAG_LENGTH}
NEW_ID_TAG: Schema = {**ID_TAG, "not": {"enum": [".", ".."]}}
PASSWORD: Schema = {
    "type": "string",
    "minLength": MIN_KEY_BYTES,
    "maxLength": MAX_KEY_BYTES,
    "pattern": "^[^\\u0000-\\u001f\\u007f]*$",
    "description": f"the charger's OCPP AuthorizationKey: {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
    " in UTF-8, no control characters",
}
SECURITY_PROFILE: Schema = {
    "type": "integer",
    "enum": [0, 1, 2, 3],
    "description": "OCPP security profile: 0 no authentication, 1 HTTP Basic, 2 TLS + Basic,"
    " 3 TLS + client certificate (subject CN = the charger id); a connection below it is"
    " refused",
}
GENERATED_KEY: Schema = {
    "type": "string",
    "minLength": 24,
    "maxLength": 24,
    "description": "the AuthorizationKey generated for it (profiles 1 and 2 registered"
    " without a password): shown in this answer only",
}
WEBHOOK_SECRET: Schema = {
    "type": "string",
    "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$",
    "description": "whsec_ followed by the base64 of 24 to 64 bytes",
}
WEBHOOK_STATUS = ["active", "inactive", "disabled"]
DELIVERY_ID: Schema = {"type": "string", "pattern": "^att_[0-9]{1,19}$"}
TRANSACTION_ID: Schema = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}


def _connector() -> Schema:
    return obj(
        {
            "connectorId": {**COUNT, "description": "0 is the charger itself"},
            "status": STRING,
            "errorCode": STRING,
            "info": nullable(STRING),
            "vendorId": nullable(STRING),
            "vendorErrorCode": nullable(STRING),
            "timestamp": nullable(TIMESTAMP),
            "updatedAt": TIMESTAMP,
        }
    )


def _settings() -> Schema:
    availability = obj(
        {"type": {"type": "string", "enum": ["Inoperative", "Operative"]}, "scheduled": BOOLEAN}
    )
    profile = obj({"connectorId": INTEGER, "csChargingProfiles": ANY_OBJECT})
    return {
        **obj(
            {
                "availability": {
                    "type": "object",
                    "description": "per connector id",
                    "additionalProperties": availability,
                },
                "chargingProfiles": {"type": "array", "items": profile},
                "localListVersion": INTEGER,
                "configuration": {"type": "object", "additionalProperties": STRING},
            },
            required=(),
        ),
        "description": "what the charger accepted through commands; a key appears once a"
        " command set it",
    }


def _charger() -> Schema:
    return obj(
        {
            "id": CHARGER_ID,
            "description": STRING,
            "registrationPolicy": {"type": "string", "enum": POLICIES},
            "hasPassword": BOOLEAN,
            "securityProfile": SECURITY_PROFILE,
            "registrationStatus": nullable({"type": "string", "enum": POLICIES}),
            "connected": BOOLEAN,
            "node": {
                **nullable(STRING),
                "description": "the node that holds its socket (cluster.node_id); null when"
                " none does",
            },
            "connectedAt": nullable(TIMESTAMP),
            "disconnectedAt": nullable(TIMESTAMP),
            "lastSeenAt": nullable(TIMESTAMP),
            "remoteAddress": nullable(STRING),
            "boot": {**nullable(ANY_OBJECT), "description": "its last BootNotification, as sent"},
            "bootedAt": nullable(TIMESTAMP),
            "firmwareStatus": nullable(STRING),
            "diagnosticsStatus": nullable(STRING),
            "lastSequence": COUNT,
            "connectors": {"type": "array", "items": ref("Connector")},
            "settings": ref("ChargerSettings"),
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        }
    )


def _with_key(charger: Schema) -> Schema:
    """A charger as registered or changed: with ``password`` when one was generated."""
    return {
        **charger,
        "properties": {**charger["properties"], "password": GENERATED_KEY},
    }


def _id_tag() -> Schema:
    return obj(
        {
            "idTag": ID_TAG,
            "status": {"type": "string", "enum": list(ID_TAG_STATUSES)},
            "expiryDate": nullable(TIMESTAMP),
            "parentIdTag": nullable(ID_TAG),
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        }
    )


def _transaction(*, meter_values: bool) -> Schema:
    properties: dict[str, Schema] = {
        "id": TRANSACTION_ID,
        "chargerId": STRING,
        "connectorId": INTEGER,
        "idTag": STRING,
        "idTagStatus": STRING,
        "active": BOOLEAN,
        "meterStart": {**INTEGER, "description": "Wh"},
        "meterStop": nullable(INTEGER),
        "energyWh": nullable({"type": "number"}),
        "startedAt": TIMESTAMP,
        "stoppedAt": nullable(TIMESTAMP),
        "stopReason": nullable(STRING),
        "stopIdTag": nullable(STRING),
        "reservationId": nullable(INTEGER),
        "commandId": nullable(STRING),
        "lastMeter": nullable(ANY_OBJECT),
        "createdAt": TIMESTAMP,
        "updatedAt": TIMESTAMP,
    }
    if meter_values:
        sample = obj({"timestamp": STRING, "sampledValue": {"type": "array", "items": ANY_OBJECT}})
        properties["meterValues"] = {"type": "array", "items": sample}
    return obj(properties)


def _event() -> Schema:
    return obj(
        {
            "id": STRING,
            "type": STRING,
            "timestamp": TIMESTAMP,
            "chargerId": nullable(STRING),
            "sequence": nullable(INTEGER),
            "data": {**ANY_OBJECT, "description": "per event type: docs/events.md"},
        }
    )


def _command() -> Schema:
    error = {
        "type": ["object", "null"],
        "properties": {"code": STRING, "message": STRING},
        "required": ["code", "message"],
        "description": "why it failed; some failures carry more fields",
    }
    return obj(
        {
            "id": STRING,
            "chargerId": STRING,
            "action": {"type": "string", "enum": ACTIONS},
            "status": {"type": "string", "enum": list(STATUSES)},
            "request": ANY_OBJECT,
            "response": nullable(ANY_OBJECT),
            "error": error,
            "queued": BOOLEAN,
            "createdAt": TIMESTAMP,
            "sentAt": nullable(TIMESTAMP),
            "completedAt": nullable(TIMESTAMP),
        }
    )


def _webhook(*, secret: bool) -> Schema:
    properties: dict[str, Schema] = {
        "id": STRING,
        "url": STRING,
        "enabledEvents": {"type": "array", "items": STRING},
        "chargerIds": nullable({"type": "array", "items": STRING}),
        "description": STRING,
        "headers": {"type": "object", "additionalProperties": STRING},
        "status": {"type": "string", "enum": WEBHOOK_STATUS},
        "disabledReason": nullable(STRING),
        "previousSecretExpiresAt": nullable(TIMESTAMP),
        "createdAt": TIMESTAMP,
        "updatedAt": TIMESTAMP,
    }
    if secret:
        properties["secret"] = WEBHOOK_SECRET
    return obj(properties)


def _delivery() -> Schema:
    return obj(
        {
            "id": DELIVERY_ID,
            "eventId": STRING,
            "eventType": STRING,
            "attempt": {"type": "integer", "minimum": 1},
            "timestamp": TIMESTAMP,
            "finishedAt": nullable(TIMESTAMP),
            "statusCode": nullable(INTEGER),
            "latencyMs": nullable({"type": "number"}),
            "error": nullable(STRING),
            "outcome": nullable({"type": "string", "enum": ["succeeded", "failed"]}),
        }
    )


def _webhook_fields(*, create: bool) -> Schema:
    fields: dict[str, Schema] = {
        "url": {
            "type": "string",
            "maxLength": 2048,
            "pattern": "^https?://",
            "description": "http:// or https://, without credentials; its host must resolve to"
            " public addresses unless webhooks.allow_private_targets",
        },
        "enabledEvents": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {"type": "string", "minLength": 1},
            "description": "event types or globs, each matching a type of GET /api/v1/event-types",
            "examples": [["transaction.*", "charger.boot"]],
        },
        "chargerIds": nullable(
            {"type": "array", "maxItems": 1000, "items": {"type": "string", "minLength": 1}}
        ),
        "description": nullable({"type": "string", "maxLength": 1000}),
        "headers": nullable(
            {
                "type": "object",
                "maxProperties": 20,
                "additionalProperties": {"type": "string", "maxLength": 4096},
                "description": "header names to one-line values; the signature, framing and"
                " content headers are the server's and refused",
            }
        ),
    }
    if create:
        fields["secret"] = nullable(WEBHOOK_SECRET)
    fields["status"] = {"type": "string", "enum": ["active", "inactive"]}
    return obj(fields, required=("url", "enabledEvents") if create else ())


def _command_request(action: str) -> Schema:
    """The OCPP 1.6 request schema of ``action`` (draft-04 in the ocpp package, draft-06 for
    the security extension; what they use reads the same in 2020-12 once ``$schema`` and
    ``$id`` go and the extension's ``#/definitions/...`` references are inlined)."""
    schema = request_schema(action)
    schema.pop("$schema", None)
    schema.pop("$id", None)
    definitions = schema.pop("definitions", {})
    return _inline(schema, definitions)


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """``node`` with every ``{"$ref": "#/definitions/X"}`` replaced by X (they do not nest
    recursively in the OCPP schemas)."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    target = node.get("$ref")
    if isinstance(target, str) and target.startswith("#/definitions/"):
        return _inline(definitions[target.removeprefix("#/definitions/")], definitions)
    return {key: _inline(value, definitions) for key, value in node.items()}


def components() -> dict[str, Schema]:
    """Every named schema of the document, fresh (callers may change what they get)."""
    schemas: dict[str, Schema] = {
        "Error": obj({"error": obj({"code": STRING, "message": STRING})}),
        "Health": obj(
            {
                "status": {"type": "string", "enum": ["ok"]},
                "storage": {"type": "string", "enum": ["ok"]},
                "connectedChargers": COUNT,
                "node": {**STRING, "description": "the node that answered (cluster.node_id)"},
                "nodes": {
                    "type": "array",
                    "description": "the live nodes of the cluster (one on SQLite)",
                    "items": obj(
                        {
                            "id": STRING,
                            "startedAt": TIMESTAMP,
                            "heartbeatAt": TIMESTAMP,
                            "apiUrl": nullable(STRING),
                            "ocppUrl": nullable(STRING),
                            "version": nullable(STRING),
                        }
                    ),
                },
            }
        ),
        "Charger": _charger(),
        "Connector": _connector(),
        "ChargerSettings": _settings(),
        "ChargerCreate": obj(
            {
                "id": CHARGER_ID,
                "password": nullable(PASSWORD),
                "securityProfile": {
                    **SECURITY_PROFILE,
                    "description": SECURITY_PROFILE["description"] + "; default 1. Without a"
                    " password, profiles 1 and 2 get a generated one, shown once",
                },
                "description": STRING,
                "registrationPolicy": {"type": "string", "enum": POLICIES},
            },
            required=("id",),
        ),
        "ChargerWithKey": _with_key(_charger()),
        "ChargerUpdate": obj(
            {
                "password": nullable(PASSWORD),
                "securityProfile": SECURITY_PROFILE,
                "description": STRING,
                "registrationPolicy": {"type": "string", "enum": POLICIES},
            },
            required=(),
        ),
        "ChargerDeleted": obj({"id": STRING, "deleted": {"const": True}}),
        "IdTag": _id_tag(),
        "IdTagCreate": obj(
            {
                "idTag": NEW_ID_TAG,
                "status": {"type": "string", "enum": list(ID_TAG_STATUSES)},
                "expiryDate": nullable({"type": "string", "format": "date-time"}),
                "parentIdTag": nullable(ID_TAG),
            },
            required=("idTag",),
        ),
        "IdTagUpdate": obj(
            {
                "status": {"type": "string", "enum": list(ID_TAG_STATUSES)},
                "expiryDate": nullable({"type": "string", "format": "date-time"}),
                "parentIdTag": nullable(ID_TAG),
            },
            required=(),
        ),
        "IdTagDeleted": obj({"idTag": STRING, "deleted": {"const": True}}),
        "Transaction": _transaction(meter_values=False),
        "TransactionWithMeterValues": _transaction(meter_values=True),
        "Event": _event(),
        "EventType": obj({"name": STRING, "description": STRING, "example": ANY_OBJECT}),
        "Redeliver": obj({"webhookId": nullable(STRING)}, required=()),
        "Redelivered": obj({"eventId": STRING, "webhookIds": {"type": "array", "items": STRING}}),
        "Command": _command(),
        "Webhook": _webhook(secret=False),
        "WebhookWithSecret": _webhook(secret=True),
        "WebhookCreate": _webhook_fields(create=True),
        "WebhookUpdate": _webhook_fields(create=False),
        "WebhookDeleted": obj({"id": STRING, "deleted": {"const": True}}),
        "WebhookTestResult": obj(
            {
                "eventId": STRING,
                "success": BOOLEAN,
                "statusCode": nullable(INTEGER),
                "latencyMs": {"type": "number"},
                "error": nullable(STRING),
            }
        ),
        "RotateSecret": obj({"secret": nullable(WEBHOOK_SECRET)}, required=()),
        "Delivery": _delivery(),
        "Replay": obj(
            {
                "since": {"type": "string", "format": "date-time"},
                "until": nullable({"type": "string", "format": "date-time"}),
                "onlyFailed": nullable(BOOLEAN),
            },
            required=("since",),
        ),
        "Replayed": obj({"queued": COUNT}),
    }
    for action in ACTIONS:
        schemas[f"{action}Request"] = _command_request(action)
    return schemas


def or_empty(schema: Schema) -> Schema:
    """A query parameter the handler reads as absent when it is empty (``?since=``)."""
    return {"anyOf": [schema, {"const": ""}]}


def _list_of(values: tuple[str, ...]) -> str:
    """A pattern for a comma-separated list of ``values``, blanks allowed around and between."""
    one = "\\s*(" + "|".join(values) + ")?\\s*"
    return f"^{one}(,{one})*$"


# Query parameters by name; an operation may narrow one (``Op.query``). Every name a handler
# declares with ``@accepts`` needs an entry here or in its operation.
QUERY: dict[str, tuple[Schema, str]] = {
    "limit": (
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        f"how many items, 1 to {MAX_LIMIT}",
    ),
    "startingAfter": (
        STRING,
        "the id of the last item seen: the page starts after it; empty: the first page",
    ),
    "chargerId": (STRING, "one charger's items"),
    "active": (BOOLEAN, "true: running transactions only; false: finished ones only"),
    "queued": (BOOLEAN, "true: commands sent with ?queue=true only; false: the others"),
    "status": (
        {"type": "array", "items": {"type": "string", "pattern": _list_of(STATUSES)}},
        f"command statuses ({', '.join(STATUSES)}); repeat the parameter or separate them"
        " with commas; empty ones are skipped",
    ),
    "type": (
        {"type": "array", "items": STRING},
        "event types or globs (*, ?, [...]), each naming or matching a type of the catalog;"
        " repeat the parameter or separate them with commas; empty ones are skipped",
    ),
    "since": (
        or_empty({"type": "string", "format": "date-time"}),
        "events stored at or after it; empty: no bound",
    ),
    "until": (
        or_empty({"type": "string", "format": "date-time"}),
        "events stored before it; empty: no bound",
    ),
    "order": (
        {"type": "string", "enum": ["desc", "asc"], "default": "desc"},
        "desc: newest first; asc: oldest first",
    ),
    "eventId": (STRING, "one event's attempts"),
    "wait": (
        {"type": "number", "minimum": 0, "maximum": int(MAX_WAIT_S)},
        "seconds to wait for the outcome before answering (200 with the outcome, else 202)",
    ),
    "queue": (
        BOOLEAN,
        "true: if the charger is not connected, keep the command and send it when it connects",
    ),
}
