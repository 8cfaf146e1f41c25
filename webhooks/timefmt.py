"""Timestamps as the event log writes them: ISO 8601 UTC, milliseconds, a trailing Z."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(seconds: float) -> str:
    millis = int(seconds * 1000)
    second, milli = divmod(millis, 1000)
    if second != _last[0]:  # hot path: many rows share a second
        moment = datetime.fromtimestamp(second, UTC)
        _last[0], _last[1] = second, moment.strftime("%Y-%m-%dT%H:%M:%S.")
    return f"{_last[1]}{milli:03d}Z"


_last: list = [None, ""]  # the last second formatted, up to its "."


def parse_iso(text: str) -> float:
    """Unix seconds from an ISO 8601 timestamp; a naive one is taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
