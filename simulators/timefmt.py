"""OCPP date-time text (section 3.15: UTC, RFC 3339, ending in Z) to and from `datetime`."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """`2026-02-06T14:30:00.000Z`: UTC with milliseconds, as OCPP recommends."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Read an OCPP date-time; one without a zone is taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
