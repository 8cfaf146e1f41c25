"""Validate OCPP 1.6 payloads against the JSON schemas of OCPP-J 1.6 (errata 3.6, "4.2.4 Schemas").

The schema files are those shipped in the ``ocpp`` package (``ocpp/v16/schemas/``:
``<Action>.json`` for a request, ``<Action>Response.json`` for its response). Each is compiled
with ``fastjsonschema`` once, on first use. ``fastjsonschema`` stops at the first failing rule;
that rule becomes the CALLERROR code of OCPP-J 1.6, 4.2.3 table 7:

=====================================================  ==============================
failing JSON-schema rule                               ErrorCode
=====================================================  ==============================
``type``                                               TypeConstraintViolation
``format`` (``date-time`` is OCPP's dateTime,          TypeConstraintViolation
``uri`` its anyURI: both OCPP data types)
``required``, ``minItems``, ``maxItems``               OccurenceConstraintViolation
``enum``, ``maxLength``, ``minLength``, ``maximum``,   PropertyConstraintViolation
``minimum``, ``multipleOf``, ``pattern``,
``additionalProperties``
anything else                                          FormationViolation
=====================================================  ==============================

Two deliberate departures from a literal reading of the schemas:

- ``date-time`` is lenient: whatever :func:`csms.protocol.timefmt.parse_timestamp` reads
  (``datetime.fromisoformat`` of Python 3.11, with or without offset) passes; OCPP 1.6, 3.15
  asks receivers to cope with fractions and offsets, and real chargers omit the offset.
- ``multipleOf: 0.1`` (charging limits in SetChargingProfile, RemoteStartTransaction and
  GetCompositeScheduleResponse) is checked in decimal, not binary, floating point: ``12.3`` is
  a multiple of 0.1, although ``12.3 / 0.1`` is ``122.99999999999999``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema

from csms.protocol.frames import ErrorCode
from csms.protocol.timefmt import canonical_timestamp

__all__ = [
    "CENTRAL_SYSTEM_ACTIONS",
    "CHARGE_POINT_ACTIONS",
    "KNOWN_ACTIONS",
    "SECURITY_CENTRAL_SYSTEM_ACTIONS",
    "SECURITY_CHARGE_POINT_ACTIONS",
    "Violation",
    "is_known",
    "request_schema",
    "validate_request",
    "validate_response",
]

#: The charger-initiated messages of the 1.6 security extension (Security Whitepaper 5).
SECURITY_CHARGE_POINT_ACTIONS: frozenset[str] = frozenset(
    {
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
    }
)

#: The CSMS-initiated messages of the 1.6 security extension (Security Whitepaper 5).
SECURITY_CENTRAL_SYSTEM_ACTIONS: frozenset[str] = frozenset(
    {
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "SignedUpdateFirmware",
    }
)

#: The charger-initiated messages of OCPP 1.6 (section 4) and of its security extension,
#: all served by the CSMS.
CHARGE_POINT_ACTIONS: frozenset[str] = SECURITY_CHARGE_POINT_ACTIONS | frozenset(
    {
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
    }
)

#: The CSMS-initiated messages of OCPP 1.6 (section 5) and of its security extension, all
#: sendable through the API.
CENTRAL_SYSTEM_ACTIONS: frozenset[str] = SECURITY_CENTRAL_SYSTEM_ACTIONS | frozenset(
    {
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
    }
)

_SCHEMA_DIR = resources.files("ocpp") / "v16" / "schemas"
_RESPONSE = "Response"

#: Every action with a schema (the ``ocpp`` package ships the security extension's too).
KNOWN_ACTIONS: frozenset[str] = frozenset(
    entry.name.removesuffix(".json")
    for entry in _SCHEMA_DIR.iterdir()
    if entry.name.endswith(".json") and not entry.name.endswith(f"{_RESPONSE}.json")
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """Why a payload fails its schema: the CALLERROR code and the offending field.

    ``field`` reads like ``meterValue[0].sampledValue[1].unit``; ``""`` is the whole payload.
    """

    error_code: ErrorCode
    field: str
    description: str


def is_known(action: str) -> bool:
    """Whether ``action`` is an OCPP 1.6 action (NotSupported rather than NotImplemented)."""
    return action in KNOWN_ACTIONS


def request_schema(action: str) -> dict[str, Any]:
    """The JSON schema of ``action``'s CALL payload, as shipped (the admin API documents its
    command bodies with it); a fresh copy each call."""
    if action not in KNOWN_ACTIONS:
        raise KeyError(action)
    return _definition(action)


def validate_request(action: str, payload: dict[str, Any]) -> Violation | None:
    """Check a CALL payload for ``action``; ``None`` when it conforms."""
    return _validate(action, action, payload)


def validate_response(action: str, payload: dict[str, Any]) -> Violation | None:
    """Check the CALLRESULT payload answering ``action``; ``None`` when it conforms."""
    return _validate(action, action + _RESPONSE, payload)


_RULE_CODES: dict[str, ErrorCode] = {
    "type": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "format": ErrorCode.TYPE_CONSTRAINT_VIOLATION,
    "required": ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
    "minItems": ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
    "maxItems": ErrorCode.OCCURENCE_CONSTRAINT_VIOLATION,
    **dict.fromkeys(
        (
            "enum",
            "maxLength",
            "minLength",
            "maximum",
            "minimum",
            "multipleOf",
            "pattern",
            "additionalProperties",
        ),
        ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
    ),
}

# A step of a path into a payload: a property name, or "*" for every item of an array.
_Pattern = tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Schema:
    """A compiled schema, and the decimal ``multipleOf`` checks taken out of it; ``conforms``
    (None for a schema it cannot decide) says True only of payloads ``check`` passes."""

    check: Callable[[Any], Any]
    multiples: tuple[tuple[_Pattern, Decimal], ...]
    conforms: Callable[[Any], bool] | None = None


def _validate(action: str, name: str, payload: dict[str, Any]) -> Violation | None:
    if action not in KNOWN_ACTIONS:
        return Violation(
            error_code=ErrorCode.NOT_IMPLEMENTED,
            field="",
            description=f"unknown action {action!r}",
        )
    schema = _compiled(name)
    if schema.conforms is not None and schema.conforms(payload):
        return None  # the common case; fastjsonschema below only names what is wrong
    try:
        schema.check(payload)
    except fastjsonschema.JsonSchemaValueException as exc:
        return _violation(exc)
    for pattern, step in schema.multiples:
        for field, value in _values_at(payload, pattern, ""):
            if not _is_multiple(value, step):
                return Violation(
                    error_code=ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
                    field=field,
                    description=f"{field} must be a multiple of {step}",
                )
    return None


def _date_time(text: str) -> bool:
    return canonical_timestamp(text) is not None


@cache
def _compiled(name: str) -> _Schema:
    """Load and compile one schema; cached, so each file is read and compiled once."""
    definition = _definition(name)
    multiples: list[tuple[_Pattern, Decimal]] = []
    _take_decimal_multiples(definition, (), multiples)
    check = fastjsonschema.compile(definition, formats={"date-time": _date_time}, use_default=False)
    conforms = None if multiples else _conformance(definition)
    return _Schema(check=check, multiples=tuple(multiples), conforms=conforms)


# Keywords that say nothing about a payload.
_ANNOTATIONS = frozenset({"$schema", "$id", "id", "title", "description", "javaType"})
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _conformance(node: Any) -> Callable[[Any], bool] | None:
    """A predicate that is True only of values the schema ``node`` admits, or None if the
    node uses a keyword not handled here (``$ref``, ``multipleOf``, ...).

    Why: the code ``fastjsonschema`` generates checks an enum with a chain of ``==`` and
    copies every object's keys into a set; for a MeterValues it was the largest single cost
    of the core. The predicate is stricter than the schema where that is simpler (exact
    types: no ``bool`` for ``integer``, no subclasses), never looser: a payload it refuses
    goes to ``fastjsonschema``, which decides, and names the violation.
    """
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        return None
    kind = node["type"]
    types = _TYPES.get(kind)
    rules = set(node) - _ANNOTATIONS - {"type"}
    if types is None:
        return None
    if kind == "object":
        if not rules <= {"properties", "required", "additionalProperties"}:
            return None
        return _object_conformance(node)
    if kind == "array":
        if not rules <= {"items", "minItems", "maxItems"}:
            return None
        return _array_conformance(node)
    # additionalProperties is about objects only: on a scalar it admits every value.
    rules.discard("additionalProperties")
    if kind != "string":
        if rules:
            return None
        return lambda value: type(value) in types
    if not rules <= {"enum", "maxLength", "minLength", "format"}:
        return None
    enum = node.get("enum")
    if enum is not None and not all(isinstance(e, str) for e in enum):
        return None
    if node.get("format", "date-time") != "date-time":
        return None
    allowed = frozenset(enum) if enum is not None else None
    longest = node.get("maxLength")
    shortest = node.get("minLength", 0)
    dated = "format" in node

    def string(value: Any) -> bool:
        return (
            type(value) is str
            and (allowed is None or value in allowed)
            and (longest is None or len(value) <= longest)
            and len(value) >= shortest
            and (not dated or _date_time(value))
        )

    return string


def _object_conformance(node: dict[str, Any]) -> Callable[[Any], bool] | None:
    properties: dict[str, Callable[[Any], bool]] = {}
    for key, child in (node.get("properties") or {}).items():
        check = _conformance(child)
        if check is None:
            return None
        properties[key] = check
    extra = node.get("additionalProperties", True)
    if extra not in (True, False):
        return None  # a schema for the additional properties
    closed = extra is False
    required = tuple(node.get("required") or ())

    def obj(value: Any) -> bool:
        if type(value) is not dict:
            return False
        for key in required:
            if key not in value:
                return False
        for key, item in value.items():
            check = properties.get(key)
            if check is None:
                if closed:
                    return False
            elif not check(item):
                return False
        return True

    return obj


def _array_conformance(node: dict[str, Any]) -> Callable[[Any], bool] | None:
    items = node.get("items")
    check = None
    if items is not None:
        check = _conformance(items)
        if check is None:
            return None
    shortest = node.get("minItems", 0)
    longest = node.get("maxItems")

    def array(value: Any) -> bool:
        if type(value) is not list or len(value) < shortest:
            return False
        if longest is not None and len(value) > longest:
            return False
        if check is not None:
            for item in value:
                if not check(item):
                    return False
        return True

    return array


def _definition(name: str) -> dict[str, Any]:
    return json.loads((_SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8-sig"))


def _take_decimal_multiples(
    node: Any, pattern: _Pattern, found: list[tuple[_Pattern, Decimal]]
) -> None:
    """Move fractional ``multipleOf`` rules out of the schema, remembering where they were.

    Only ``properties`` and ``items`` are followed: that is where the 1.6 schemas use it.
    """
    if not isinstance(node, dict):
        return
    step = node.get("multipleOf")
    if isinstance(step, float):
        del node["multipleOf"]
        found.append((pattern, Decimal(repr(step))))
    for key, child in (node.get("properties") or {}).items():
        _take_decimal_multiples(child, (*pattern, key), found)
    _take_decimal_multiples(node.get("items"), (*pattern, "*"), found)


def _values_at(node: Any, pattern: _Pattern, field: str) -> Iterator[tuple[str, Any]]:
    """Every value in ``node`` at ``pattern``, with its readable path."""
    if not pattern:
        yield field, node
        return
    step, rest = pattern[0], pattern[1:]
    if step == "*":
        if isinstance(node, list):
            for index, item in enumerate(node):
                yield from _values_at(item, rest, f"{field}[{index}]")
    elif isinstance(node, dict) and step in node:
        yield from _values_at(node[step], rest, f"{field}.{step}" if field else step)


def _is_multiple(value: Any, step: Decimal) -> bool:
    """Decimal check of ``multipleOf``: ``repr`` gives the shortest decimal for a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True  # not a number: the schema's own ``type`` rule has already spoken
    try:
        return Decimal(repr(value)) % step == 0
    except InvalidOperation:
        return False  # NaN or infinity is no multiple of anything


def _violation(exc: fastjsonschema.JsonSchemaValueException) -> Violation:
    rule = exc.rule or ""
    code = _RULE_CODES.get(rule, ErrorCode.FORMATION_VIOLATION)
    field = _field(exc.path or [])
    keys: list[str] = []
    reason = ""
    if rule == "required" and isinstance(exc.value, dict):
        keys = [key for key in exc.rule_definition or () if key not in exc.value]
        reason = "is required"
    elif rule == "additionalProperties" and isinstance(exc.value, dict):
        allowed = (exc.definition or {}).get("properties") or {}
        keys = sorted(key for key in exc.value if key not in allowed)
        reason = "is not allowed here"
    if keys:
        # Name the first missing or unexpected property itself, not its parent.
        field = _join(field, keys[0])
        return Violation(error_code=code, field=field, description=f"{field} {reason}")
    return Violation(error_code=code, field=field, description=_describe(exc.message))


def _describe(message: str) -> str:
    """fastjsonschema calls the payload ``data``: ``data.a[0] must be ...`` -> ``a[0] must ...``."""
    if message.startswith("data."):
        return message[len("data.") :]
    if message.startswith("data["):
        return message[len("data") :]
    return "payload" + message.removeprefix("data")


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _field(path: list[str]) -> str:
    """``['data', 'meterValue', '0', 'unit']`` -> ``meterValue[0].unit``."""
    field = ""
    for step in path[1:]:
        field = f"{field}[{step}]" if step.isdigit() else _join(field, step)
    return field
