"""OCPP-J 1.6 RPC frames: parse what a peer sends, encode what we send (OCPP-J 1.6, section 4).

Pure: no I/O, no clock. :func:`parse_frame` never raises; a frame we cannot accept becomes a
:class:`FrameError` that carries the CALLERROR code to answer with (OCPP-J 1.6, 4.2.3, table 7)
and the message id to answer to, or ``None`` when there is nothing to answer (log only).

How each bad frame is classified, and why:

=====================================================  ===========================  ============
frame                                                  error code                   answered to
=====================================================  ===========================  ============
bytes that are not UTF-8, text that is not JSON,       FormationViolation           id recovered
NaN/Infinity literals, nesting too deep, a lone        (4.1.2: "MUST be valid       from text
``\ud800``-``\udfff`` escape (not Unicode text:       JSON": syntactically         if a CALL
RFC 8259, 8.2; it cannot be written back as UTF-8)     incorrect)
JSON but not an array, or an empty array               FormationViolation           nobody
                                                       (not the 4.2 PDU structure)
MessageTypeId not an integer (``"2"``, ``2.0``,        FormationViolation           id if the
``true``)                                              (PDU structure, 4.2)         rest is
                                                                                    CALL-shaped
MessageTypeId an integer other than 2, 3, 4            ProtocolError                id if the
                                                       (4.1.3: the number "MUST" be rest is
                                                       one of table 2; the frame is CALL-shaped
                                                       well formed but breaks the RPC
                                                       protocol itself; its payload
                                                       is ignored, as 4.1.3 says)
UniqueId not a string                                  FormationViolation           nobody
UniqueId empty or longer than 36 characters            PropertyConstraintViolation  that id
                                                       (4.1.4 table 3: max 36; 4.2.3
                                                       lists "unique identifier too
                                                       long" as a CallError case)
CALL with fewer than 4 elements                        ProtocolError                that id
                                                       (table 7: "Payload for Action
                                                       is incomplete")
CALL with more than 4 elements                         FormationViolation           that id
                                                       (4.2.1: "always consists of
                                                       4 elements")
CALL Action not a string, or empty                     FormationViolation           that id
CALL payload neither an object nor null                FormationViolation           that id
                                                       (4.2.1: "a JSON object")
CALLRESULT / CALLERROR of any bad shape                FormationViolation etc.      nobody
                                                       (a result is never answered)
=====================================================  ===========================  ============

A ``null`` payload in a CALL or CALLRESULT is accepted as ``{}``: 4.2.1 and 4.2.2 allow both
notations ("JSON allows for two different notations: null or an empty object"). For the same
reason a received CALLERROR with ``null`` description or details reads as ``""`` / ``{}``.
``true`` and ``false`` are never integers here, although Python's ``bool`` is an ``int``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

import orjson

__all__ = [
    "MAX_UNIQUE_ID_LENGTH",
    "Call",
    "CallError",
    "CallResult",
    "ErrorCode",
    "Frame",
    "FrameError",
    "MessageTypeId",
    "dumps",
    "encode_call",
    "encode_call_error",
    "encode_call_result",
    "loads",
    "parse_frame",
]

#: OCPP-J 1.6, 4.1.4 table 3: "Maximum of 36 characters, to allow for GUIDs".
MAX_UNIQUE_ID_LENGTH = 36


class MessageTypeId(IntEnum):
    """The message type numbers of OCPP-J 1.6, 4.1.3 table 2."""

    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4


class ErrorCode(StrEnum):
    """CALLERROR codes, spelt as in OCPP-J 1.6, 4.2.3 table 7.

    The spellings ``FormationViolation`` and ``OccurenceConstraintViolation`` are kept on
    purpose (OCPP-J 1.6 errata 5.1 and 5.2: "Do not fix"), unlike the ``ocpp`` library.
    """

    NOT_IMPLEMENTED = "NotImplemented"  # the action is not known by the receiver
    NOT_SUPPORTED = "NotSupported"  # the action is known but not supported by the receiver
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
    """A request: ``[2, "<UniqueId>", "<Action>", {<Payload>}]`` (OCPP-J 1.6, 4.2.1)."""

    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    """A response: ``[3, "<UniqueId>", {<Payload>}]`` (OCPP-J 1.6, 4.2.2)."""

    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallError:
    """An error response (OCPP-J 1.6, 4.2.3).

    ``error_code`` stays a plain string: a peer may send a code outside table 7, and the
    caller still has to fail the matching request.
    """

    unique_id: str
    error_code: str
    description: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameError:
    """A frame we could not accept, and the CALLERROR it deserves (OCPP-J 1.6, 4.2.3).

    ``unique_id`` is ``None`` when no answer must be sent: no id could be read, or the frame
    was a CALLRESULT/CALLERROR (answering a response with an error would start a loop).
    """

    unique_id: str | None
    error_code: ErrorCode
    description: str


Frame = Call | CallResult | CallError | FrameError


def loads(text: str) -> Any:
    """Decode JSON text; raise ``ValueError`` on anything but strict JSON (no NaN/Infinity).

    orjson (several times faster than json on the hot path) is strict already: NaN,
    Infinity, lone surrogate escapes and nesting past 1024 levels are errors; an integer
    beyond 64 bits reads as a float (and then fails an integer field's schema).
    """
    return orjson.loads(text)


def dumps(value: Any) -> str:
    """Encode compactly, UTF-8 text kept as is (OCPP-J 1.6, 4.1.2). Still json: our own
    frames are small, and orjson would quietly write NaN as null instead of refusing it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_call(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    """Encode a CALL (OCPP-J 1.6, 4.2.1)."""
    return dumps([MessageTypeId.CALL.value, unique_id, action, payload])


def encode_call_result(unique_id: str, payload: dict[str, Any]) -> str:
    """Encode a CALLRESULT (OCPP-J 1.6, 4.2.2). Our answers to chargers hold no floats (so
    no NaN to refuse): orjson, on the hot path."""
    try:
        return orjson.dumps([MessageTypeId.CALLRESULT.value, unique_id, payload]).decode()
    except TypeError:  # an integer beyond 64 bits
        return dumps([MessageTypeId.CALLRESULT.value, unique_id, payload])


def encode_call_error(
    unique_id: str,
    error_code: ErrorCode | str,
    description: str = "",
    details: dict[str, Any] | None = None,
) -> str:
    """Encode a CALLERROR; details are ``{}`` when there are none (OCPP-J 1.6, 4.2.3)."""
    return dumps(
        [
            MessageTypeId.CALLERROR.value,
            unique_id,
            str(error_code),
            description,
            {} if details is None else details,
        ]
    )


# Reads the id of a CALL from text that is not JSON, e.g. `[2, "abc", "Heartbeat", {` : only
# a CALL (type 2) is answered, and only with an id that could be valid.
_CALL_ID = re.compile(r'\A\s*\[\s*2\s*,\s*"([^"\\]{1,' + str(MAX_UNIQUE_ID_LENGTH) + r'})"')


# A JSON escape of a UTF-16 surrogate; in a pair it is one character, alone it is no Unicode
# text (the decoder refuses it; this names the reason in the CALLERROR).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _recover_call_id(text: str) -> str | None:
    match = _CALL_ID.match(text)
    return match.group(1) if match else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _call_shaped_id(message: list[Any]) -> str | None:
    """The id of a frame with a bad MessageTypeId, if it looks like a CALL (4.2.1) and may be
    answered; a frame shaped like a response is not, so that no result gets an error back."""
    if len(message) != 4 or not isinstance(message[2], str):
        return None
    unique_id = message[1]
    if isinstance(unique_id, str) and 0 < len(unique_id) <= MAX_UNIQUE_ID_LENGTH:
        return unique_id
    return None


def parse_frame(raw: str | bytes) -> Call | CallResult | CallError | FrameError:
    """Parse one WebSocket text message into a frame (OCPP-J 1.6, 4.1 and 4.2); never raises.

    The module docstring tabulates the error code given to each kind of bad frame.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            return FrameError(
                unique_id=_recover_call_id(bytes(raw).decode("utf-8", errors="replace")),
                error_code=ErrorCode.FORMATION_VIOLATION,
                description="frame is not valid UTF-8",
            )
    elif isinstance(raw, str):
        text = raw
    else:
        return FrameError(
            unique_id=None,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description=f"frame is {type(raw).__name__}, not text",
        )
    try:
        message = loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and our NaN/Infinity refusal.
        description = (
            "frame holds a lone UTF-16 surrogate escape: it is not Unicode text"
            if _SURROGATE_ESCAPE.search(text) and "surrogate" in str(exc)
            else f"frame is not valid JSON: {exc}"[:200]
        )
        return FrameError(
            unique_id=_recover_call_id(text),
            error_code=ErrorCode.FORMATION_VIOLATION,
            description=description,
        )
    if not isinstance(message, list) or not message:
        return FrameError(
            unique_id=None,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description="frame is not a non-empty JSON array",
        )
    type_id = message[0]
    if not _is_int(type_id):
        return FrameError(
            unique_id=_call_shaped_id(message),
            error_code=ErrorCode.FORMATION_VIOLATION,
            description="MessageTypeId is not an integer",
        )
    if type_id == MessageTypeId.CALL:
        return _parse_call(message)
    if type_id == MessageTypeId.CALLRESULT:
        return _parse_call_result(message)
    if type_id == MessageTypeId.CALLERROR:
        return _parse_call_error(message)
    return FrameError(
        unique_id=_call_shaped_id(message),
        error_code=ErrorCode.PROTOCOL_ERROR,
        description=f"unknown MessageTypeId {type_id}",
    )


def _check_id(message: list[Any]) -> FrameError | None:
    """Check element 1, the UniqueId (OCPP-J 1.6, 4.1.4); the error answers a CALL."""
    if len(message) < 2:
        return FrameError(
            unique_id=None,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description="frame has no UniqueId",
        )
    unique_id = message[1]
    if not isinstance(unique_id, str):
        return FrameError(
            unique_id=None,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description="UniqueId is not a string",
        )
    if not 0 < len(unique_id) <= MAX_UNIQUE_ID_LENGTH:
        return FrameError(
            unique_id=unique_id,
            error_code=ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            description=f"UniqueId must be 1 to {MAX_UNIQUE_ID_LENGTH} characters",
        )
    return None


def _parse_call(message: list[Any]) -> Call | FrameError:
    if (error := _check_id(message)) is not None:
        return error
    unique_id: str = message[1]
    if len(message) < 4:
        return FrameError(
            unique_id=unique_id,
            error_code=ErrorCode.PROTOCOL_ERROR,
            description=f"CALL has {len(message)} elements, needs 4: it is incomplete",
        )
    if len(message) > 4:
        return FrameError(
            unique_id=unique_id,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description=f"CALL has {len(message)} elements, must have exactly 4",
        )
    action, payload = message[2], message[3]
    if not isinstance(action, str) or not action:
        return FrameError(
            unique_id=unique_id,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description="Action is not a non-empty string",
        )
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        return FrameError(
            unique_id=unique_id,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description="payload is not a JSON object",
        )
    return Call(unique_id=unique_id, action=action, payload=payload)


def _unanswerable(error: FrameError) -> FrameError:
    """The same error without an id: a response is never answered (OCPP-J 1.6, 4.1.1)."""
    return FrameError(unique_id=None, error_code=error.error_code, description=error.description)


def _parse_call_result(message: list[Any]) -> CallResult | FrameError:
    if (error := _check_id(message)) is not None:
        return _unanswerable(error)
    if len(message) != 3:
        return FrameError(
            unique_id=None,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description=f"CALLRESULT has {len(message)} elements, must have exactly 3",
        )
    payload = {} if message[2] is None else message[2]
    if not isinstance(payload, dict):
        return FrameError(
            unique_id=None,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description="CALLRESULT payload is not a JSON object",
        )
    return CallResult(unique_id=message[1], payload=payload)


def _parse_call_error(message: list[Any]) -> CallError | FrameError:
    if (error := _check_id(message)) is not None:
        return _unanswerable(error)
    if len(message) != 5:
        return FrameError(
            unique_id=None,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description=f"CALLERROR has {len(message)} elements, must have exactly 5",
        )
    error_code = message[2]
    description = "" if message[3] is None else message[3]
    details = {} if message[4] is None else message[4]
    if (
        not isinstance(error_code, str)
        or not isinstance(description, str)
        or not isinstance(details, dict)
    ):
        return FrameError(
            unique_id=None,
            error_code=ErrorCode.FORMATION_VIOLATION,
            description="CALLERROR needs a string code, a string description and an object",
        )
    return CallError(
        unique_id=message[1], error_code=error_code, description=description, details=details
    )
