"""Tests for csms.protocol.frames: OCPP-J 1.6 section 4 frames."""

from __future__ import annotations

import json
from typing import Any

import pytest

from csms.protocol.frames import (
    MAX_UNIQUE_ID_LENGTH,
    Call,
    CallError,
    CallResult,
    ErrorCode,
    FrameError,
    MessageTypeId,
    dumps,
    encode_call,
    encode_call_error,
    encode_call_result,
    loads,
    parse_frame,
)

FV = ErrorCode.FORMATION_VIOLATION
PE = ErrorCode.PROTOCOL_ERROR
PCV = ErrorCode.PROPERTY_CONSTRAINT_VIOLATION
ID36 = "x" * MAX_UNIQUE_ID_LENGTH
ID37 = "x" * (MAX_UNIQUE_ID_LENGTH + 1)

# OCPP-J 1.6, 4.2.1 and 4.2.2 examples, and the CallError example of the errata sheet (3.7).
BOOT_CALL = """[2,
 "19223201",
 "BootNotification",
 {"chargePointVendor": "VendorX", "chargePointModel": "SingleSocketCharger"}
]"""
BOOT_RESULT = """[3,
 "19223201",
 {"status":"Accepted", "currentTime":"2013-02-01T20:53:32.486Z", "heartbeatInterval":300}
]"""
ERRATA_ERROR = """[4,
  "162376037",
  "NotSupported",
  "SendLocalList.req not implemented",
  {}
]"""


def test_error_codes_use_the_ocpp_j_16_spellings() -> None:
    assert [code.value for code in ErrorCode] == [
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    ]


def test_message_type_ids() -> None:
    assert (MessageTypeId.CALL, MessageTypeId.CALLRESULT, MessageTypeId.CALLERROR) == (2, 3, 4)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            BOOT_CALL,
            Call(
                unique_id="19223201",
                action="BootNotification",
                payload={"chargePointVendor": "VendorX", "chargePointModel": "SingleSocketCharger"},
            ),
        ),
        (
            BOOT_RESULT,
            CallResult(
                unique_id="19223201",
                payload={
                    "status": "Accepted",
                    "currentTime": "2013-02-01T20:53:32.486Z",
                    "heartbeatInterval": 300,
                },
            ),
        ),
        (
            ERRATA_ERROR,
            CallError(
                unique_id="162376037",
                error_code="NotSupported",
                description="SendLocalList.req not implemented",
                details={},
            ),
        ),
        # bytes are decoded as UTF-8 (4.1.2)
        (
            '[2,"a","DataTransfer",{"vendorId":"Zoë"}]'.encode(),
            Call(unique_id="a", action="DataTransfer", payload={"vendorId": "Zoë"}),
        ),
        # null payloads are the other notation 4.2.1/4.2.2 allow for "no payload"
        ('[2,"a","Heartbeat",null]', Call(unique_id="a", action="Heartbeat", payload={})),
        ('[3,"a",null]', CallResult(unique_id="a", payload={})),
        (
            '[4,"a","GenericError",null,null]',
            CallError(unique_id="a", error_code="GenericError", description="", details={}),
        ),
        # a code outside table 7 still fails the request it answers
        (
            '[4,"a","Weird","d",{"k":1}]',
            CallError(unique_id="a", error_code="Weird", description="d", details={"k": 1}),
        ),
        # 36 characters is the limit, not over it (4.1.4)
        (f'[3,"{ID36}",{{}}]', CallResult(unique_id=ID36, payload={})),
        # numbers parse normally
        (
            '[2,"a","MeterValues",{"n":1.5e3,"i":12345678901234567890}]',
            Call(
                unique_id="a",
                action="MeterValues",
                payload={"n": 1500.0, "i": 12345678901234567890},
            ),
        ),
    ],
)
def test_parse_valid_frames(raw: str | bytes, expected: Any) -> None:
    assert parse_frame(raw) == expected


@pytest.mark.parametrize(
    ("raw", "unique_id", "code"),
    [
        # not JSON: the id of a CALL is recovered so it can still be answered
        ('[2, "abc", "Heartbeat", {', "abc", FV),
        ('  [ 2 ,"abc-1"', "abc-1", FV),
        ('[2,"a","Heartbeat",{}', "a", FV),
        # ... but never the id of a response, nor an id that cannot be valid
        ('[3, "abc", {', None, FV),
        ('[4, "abc", "x"', None, FV),
        (f'[2, "{ID37}", "Heartbeat", {{', None, FV),
        ('[2, "a\\"b", {', None, FV),
        ("", None, FV),
        ("hello", None, FV),
        (b"\xff\xfe", None, FV),
        (b'[2,"abc","DataTransfer",{"vendorId":"\xff"}]', "abc", FV),
        # NaN and Infinity are not JSON
        ('[2,"a","MeterValues",{"v":NaN}]', "a", FV),
        ('[2,"a","MeterValues",{"v":Infinity}]', "a", FV),
        ('[2,"a","MeterValues",{"v":-Infinity}]', "a", FV),
        # nesting deeper than the decoder can go
        ('[2,"deep","DataTransfer",' + "[" * 100_000 + "]" * 100_000 + "]", "deep", FV),
        # JSON, but not a non-empty array
        ("{}", None, FV),
        ('{"a": 1}', None, FV),
        ('"[2,\\"a\\"]"', None, FV),
        ("2", None, FV),
        ("null", None, FV),
        ("[]", None, FV),
        # MessageTypeId not an integer
        ('["2","a","Heartbeat",{}]', "a", FV),
        ('[2.0,"a","Heartbeat",{}]', "a", FV),
        ('[true,"a","Heartbeat",{}]', "a", FV),
        ('[null,"a","Heartbeat",{}]', "a", FV),
        ('["2"]', None, FV),
        ('[true,5,"Heartbeat",{}]', None, FV),
        ('[true,"a","Heartbeat",{},1]', None, FV),
        # ... answered only when CALL-shaped: a response never gets an error back
        ('[3.0,"a",{}]', None, FV),
        ('["4","a","GenericError","",{}]', None, FV),
        # MessageTypeId an integer outside table 2 (4.1.3)
        ('[5,"a","Heartbeat",{}]', "a", PE),
        ('[0,"a"]', None, PE),
        ('[5,"a",{}]', None, PE),
        ('[5,"a",7,{}]', None, PE),
        ("[1]", None, PE),
        (f'[5,"{ID37}","Heartbeat",{{}}]', None, PE),
        ('[5,"","Heartbeat",{}]', None, PE),
        ('[5,7,"Heartbeat",{}]', None, PE),
        # UniqueId missing, not a string, empty or too long (4.1.4)
        ("[2]", None, FV),
        ('[2,19223201,"Heartbeat",{}]', None, FV),
        ('[2,null,"Heartbeat",{}]', None, FV),
        ('[2,"","Heartbeat",{}]', "", PCV),
        (f'[2,"{ID37}","Heartbeat",{{}}]', ID37, PCV),
        # CALL with the wrong number of elements (4.2.1)
        ('[2,"a"]', "a", PE),
        ('[2,"a","Heartbeat"]', "a", PE),
        ('[2,"a","Heartbeat",{},{}]', "a", FV),
        # CALL Action not a non-empty string
        ('[2,"a",7,{}]', "a", FV),
        ('[2,"a","",{}]', "a", FV),
        ('[2,"a",null,{}]', "a", FV),
        # CALL payload not an object
        ('[2,"a","Heartbeat",[]]', "a", FV),
        ('[2,"a","Heartbeat","{}"]', "a", FV),
        ('[2,"a","Heartbeat",1]', "a", FV),
        # a bad response is never answered
        ("[3]", None, FV),
        ("[3,7,{}]", None, FV),
        (f'[3,"{ID37}",{{}}]', None, PCV),
        ('[3,"a"]', None, FV),
        ('[3,"a",{},{}]', None, FV),
        ('[3,"a",[]]', None, FV),
        ('[4,"a","GenericError",""]', None, FV),
        ('[4,"a","GenericError","",{},1]', None, FV),
        ('[4,"a",7,"",{}]', None, FV),
        ('[4,"a","GenericError",7,{}]', None, FV),
        ('[4,"a","GenericError","",[]]', None, FV),
        ('[4,"","GenericError","",{}]', None, PCV),
    ],
)
def test_parse_bad_frames(raw: str | bytes, unique_id: str | None, code: ErrorCode) -> None:
    result = parse_frame(raw)
    assert isinstance(result, FrameError)
    assert (result.unique_id, result.error_code) == (unique_id, code)
    assert result.description


@pytest.mark.parametrize("raw", [None, 2, ["[2]"]])
def test_parse_frame_refuses_what_is_not_text(raw: Any) -> None:
    assert parse_frame(raw) == FrameError(
        unique_id=None, error_code=FV, description=f"frame is {type(raw).__name__}, not text"
    )


def test_parse_frame_accepts_bytearray_and_memoryview() -> None:
    raw = b'[3,"a",{}]'
    expected = CallResult(unique_id="a", payload={})
    assert parse_frame(bytearray(raw)) == expected
    assert parse_frame(memoryview(raw)) == expected


def test_encoders_write_compact_utf8_json() -> None:
    assert encode_call("19223201", "Heartbeat", {}) == '[2,"19223201","Heartbeat",{}]'
    assert encode_call("a", "DataTransfer", {"data": "Zoë"}) == (
        '[2,"a","DataTransfer",{"data":"Zoë"}]'
    )
    assert encode_call_result("a", {"currentTime": "2013-02-01T20:53:32.486Z"}) == (
        '[3,"a",{"currentTime":"2013-02-01T20:53:32.486Z"}]'
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("a", ErrorCode.NOT_SUPPORTED), '[4,"a","NotSupported","",{}]'),
        (("a", "GenericError", "boom"), '[4,"a","GenericError","boom",{}]'),
        (
            ("162376037", ErrorCode.NOT_SUPPORTED, "SendLocalList.req not implemented", {"k": 1}),
            '[4,"162376037","NotSupported","SendLocalList.req not implemented",{"k":1}]',
        ),
    ],
)
def test_encode_call_error(args: tuple[Any, ...], expected: str) -> None:
    assert encode_call_error(*args) == expected


@pytest.mark.parametrize(
    "frame",
    [
        encode_call("id-1", "StatusNotification", {"connectorId": 1, "status": "Available"}),
        encode_call_result("id-1", {}),
        encode_call_error("id-1", ErrorCode.INTERNAL_ERROR, "oops", {"cause": "x"}),
    ],
)
def test_encoded_frames_parse_back(frame: str) -> None:
    parsed = parse_frame(frame)
    assert not isinstance(parsed, FrameError)
    assert json.loads(frame)[1] == parsed.unique_id


def test_codec_refuses_nan_both_ways() -> None:
    assert loads('{"a":[1,2.5,"x"]}') == {"a": [1, 2.5, "x"]}
    with pytest.raises(ValueError):
        loads("NaN")
    with pytest.raises(ValueError):
        dumps({"v": float("nan")})
    assert dumps({"a": [1, "ö"]}) == '{"a":[1,"ö"]}'


@pytest.mark.parametrize(
    ("raw", "unique_id"),
    [
        (r'[2, "\ud800", "Heartbeat", {}]', None),  # in the id: nothing to answer to
        (r'[2, "m1", "DataTransfer", {"vendorId": "\udc00"}]', "m1"),
        (r'[2, "m2", "DataTransfer", {"vendorId": "V", "data": "x\uDBFFy"}]', "m2"),
        (r'[2, "m3", "Heartbeat", {"\ud800": 1}]', "m3"),
        (r'[3, "m4", {"status": "\ud800"}]', None),  # a response is never answered
    ],
)
def test_lone_surrogate_escapes_are_not_unicode_text(raw: str, unique_id: str | None) -> None:
    # Decoded, a lone surrogate cannot be encoded as UTF-8 again: an answer quoting it (or a
    # stored event holding it) could never be written, so the frame is refused at the door.
    assert parse_frame(raw) == FrameError(
        unique_id=unique_id,
        error_code=FV,
        description="frame holds a lone UTF-16 surrogate escape: it is not Unicode text",
    )


def test_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    pair = parse_frame(r'[2, "m1", "DataTransfer", {"vendorId": "\ud834\udd1e"}]')
    assert pair == Call(unique_id="m1", action="DataTransfer", payload={"vendorId": "\U0001d11e"})
    literal = parse_frame(r'[2, "m2", "DataTransfer", {"vendorId": "\\ud800"}]')
    assert literal == Call(unique_id="m2", action="DataTransfer", payload={"vendorId": r"\ud800"})
