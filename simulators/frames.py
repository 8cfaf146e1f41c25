"""OCPP-J 1.6 message frames: CALL, CALLRESULT, CALLERROR (OCPP-J 1.6, section 4).

Plain JSON in, plain JSON out, no schema validation: the simulator and the load driver
must stay cheap on the hot path, and they must be able to see exactly what the server
sent. `parse()` never raises: a frame it cannot read comes back as `Unreadable`.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

Payload = dict[str, Any]


class MessageType(enum.IntEnum):
    """The message type number, the first element of every frame (OCPP-J 4.1.3)."""

    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4


class ErrorCode(enum.StrEnum):
    """CALLERROR codes with the 1.6 spellings (OCPP-J 1.6, section 4.2.3)."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    FORMATION_VIOLATION = "FormationViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """A request: `[2, uniqueId, action, payload]`."""

    unique_id: str
    action: str
    payload: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    """An answer: `[3, uniqueId, payload]`."""

    unique_id: str
    payload: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class CallError:
    """A failure answer: `[4, uniqueId, errorCode, errorDescription, errorDetails]`."""

    unique_id: str
    code: str
    description: str = ""
    details: Payload | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Unreadable:
    """A frame that is not valid OCPP-J; `unique_id` is set when one could be read."""

    raw: str
    reason: str
    unique_id: str | None = None


Frame = Call | CallResult | CallError | Unreadable


def encode(frame: Call | CallResult | CallError) -> str:
    """Serialise one frame to its JSON text."""
    if isinstance(frame, Call):
        body: list[Any] = [MessageType.CALL, frame.unique_id, frame.action, frame.payload]
    elif isinstance(frame, CallResult):
        body = [MessageType.CALLRESULT, frame.unique_id, frame.payload]
    else:
        body = [
            MessageType.CALLERROR,
            frame.unique_id,
            frame.code,
            frame.description,
            frame.details or {},
        ]
    return json.dumps(body, separators=(",", ":"))


def parse(raw: str | bytes) -> Frame:
    """Read one frame; anything malformed becomes `Unreadable` with the reason."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        data = json.loads(text)
    except ValueError as exc:
        return Unreadable(raw=text, reason=f"not JSON: {exc}")
    if not isinstance(data, list) or len(data) < 3:
        return Unreadable(raw=text, reason="not an OCPP-J array")
    kind, unique_id = data[0], data[1]
    if not isinstance(unique_id, str):
        return Unreadable(raw=text, reason="unique id is not a string")
    if kind == MessageType.CALL and len(data) == 4 and isinstance(data[2], str):
        if isinstance(data[3], dict):
            return Call(unique_id=unique_id, action=data[2], payload=data[3])
    elif kind == MessageType.CALLRESULT and len(data) == 3 and isinstance(data[2], dict):
        return CallResult(unique_id=unique_id, payload=data[2])
    elif kind == MessageType.CALLERROR and len(data) == 5:
        details = data[4] if isinstance(data[4], dict) else None
        return CallError(
            unique_id=unique_id, code=str(data[2]), description=str(data[3]), details=details
        )
    return Unreadable(raw=text, reason="bad frame shape", unique_id=unique_id)
