"""Tests for csms.protocol.timefmt: OCPP 1.6, 3.15 time notations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from csms.protocol.timefmt import format_timestamp, parse_timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the OCPP-J 1.6 example (4.2.2)
        ("2013-02-01T20:53:32.486Z", datetime(2013, 2, 1, 20, 53, 32, 486000, tzinfo=UTC)),
        ("2026-02-06T14:30:00Z", datetime(2026, 2, 6, 14, 30, tzinfo=UTC)),
        ("2026-02-06T14:30:00+00:00", datetime(2026, 2, 6, 14, 30, tzinfo=UTC)),
        # offsets are converted to UTC (3.15: receivers must handle offsets)
        ("2026-02-06T15:30:00+01:00", datetime(2026, 2, 6, 14, 30, tzinfo=UTC)),
        ("2026-02-06T09:00:00-05:30", datetime(2026, 2, 6, 14, 30, tzinfo=UTC)),
        ("2026-02-06T15:30:00+0100", datetime(2026, 2, 6, 14, 30, tzinfo=UTC)),
        # no offset: taken as UTC (some chargers omit it)
        ("2026-02-06T14:30:00", datetime(2026, 2, 6, 14, 30, tzinfo=UTC)),
        ("2026-02-06 14:30", datetime(2026, 2, 6, 14, 30, tzinfo=UTC)),
        # fractions of any length (3.15), cut to microseconds
        ("2026-02-06T14:30:00.1234567Z", datetime(2026, 2, 6, 14, 30, 0, 123456, tzinfo=UTC)),
        ("2026-02-06T14:30:00.5Z", datetime(2026, 2, 6, 14, 30, 0, 500000, tzinfo=UTC)),
        # what Python 3.11's fromisoformat reads, it reads
        ("20260206T143000Z", datetime(2026, 2, 6, 14, 30, tzinfo=UTC)),
        ("2026-02-06", datetime(2026, 2, 6, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "now",
        "2026-02-30T00:00:00Z",
        "2026-02-06T24:00:00Z",
        "2026-02-06T14:30:00z",
        " 2026-02-06T14:30:00Z",
        "06/02/2026 14:30",
        "1770388200",
        # valid text, but UTC falls outside years 1..9999
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        None,
        1770388200,
    ],
)
def test_parse_timestamp_refuses(text: Any) -> None:
    assert parse_timestamp(text) is None


@pytest.mark.parametrize(
    ("dt", "expected"),
    [
        (datetime(2026, 2, 6, 14, 30, tzinfo=UTC), "2026-02-06T14:30:00.000Z"),
        (datetime(2013, 2, 1, 20, 53, 32, 486999, tzinfo=UTC), "2013-02-01T20:53:32.486Z"),
        (
            datetime(2026, 2, 6, 15, 30, tzinfo=timezone(timedelta(hours=1))),
            "2026-02-06T14:30:00.000Z",
        ),
        (datetime(2026, 2, 6, 14, 30, 0, 1000), "2026-02-06T14:30:00.001Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),
    ],
)
def test_format_timestamp(dt: datetime, expected: str) -> None:
    assert format_timestamp(dt) == expected


def test_round_trip() -> None:
    text = "2026-02-06T14:30:00.123Z"
    parsed = parse_timestamp(text)
    assert parsed is not None
    assert format_timestamp(parsed) == text
