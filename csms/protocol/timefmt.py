"""OCPP dateTime values in and out (OCPP 1.6, 7.x "dateTime"; OCPP-J 1.6 schemas ``date-time``).

Reading is lenient because real chargers are: whatever ``datetime.fromisoformat`` accepts in
Python 3.11 (a trailing ``Z``, any offset, no offset, 7-digit fractions, a bare date) is
taken, and a value without an offset is read as UTC. Writing is strict: UTC, milliseconds, ``Z``,
the form the OCPP 1.6 examples use (``2013-02-01T20:53:32.486Z``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["canonical_timestamp", "format_timestamp", "parse_timestamp"]


def parse_timestamp(text: str) -> datetime | None:
    """An aware UTC datetime for an OCPP dateTime, or ``None`` if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        # OverflowError: an offset that moves the time outside years 1..9999.
        return None


_last: tuple[datetime, str] | None = None  # the same instant is formatted several times a call


def format_timestamp(dt: datetime) -> str:
    """``2026-02-06T14:30:00.000Z``: UTC with milliseconds; a naive ``dt`` is taken as UTC."""
    global _last
    last = _last
    if last is not None and last[0] is dt:
        return last[1]
    if dt.tzinfo is UTC:  # the clock's own: no conversion, and the offset cut off
        text = dt.isoformat(timespec="milliseconds")[:-6] + "Z"
    else:
        utc = dt.astimezone(UTC) if dt.tzinfo is not None else dt
        text = utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    _last = (dt, text)
    return text


_last_text: tuple[str, str | None] = ("", None)
# Calendar date, time, and at least three fraction digits (more are cut): the stored form.
_UTC_MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}")


def canonical_timestamp(text: str) -> str | None:
    """``format_timestamp(parse_timestamp(text))``, or None when ``text`` is no dateTime.

    One MeterValues reads its timestamp three times (the schema's check, the stored sample,
    the reading), so the last answer is kept. A text already in UTC with a ``Z`` and at
    least millisecond digits is cut, not formatted again: the same result (``isoformat``
    truncates to milliseconds too) at a third of the cost.
    """
    global _last_text
    last = _last_text
    if last[0] == text and isinstance(text, str):
        return last[1]
    parsed = parse_timestamp(text)
    if parsed is None:
        canonical = None
    elif text[-1] == "Z" and _UTC_MILLIS.match(text):
        canonical = text[:23] + "Z"
    else:
        canonical = format_timestamp(parsed)
    if isinstance(text, str):
        _last_text = (text, canonical)
    return canonical
