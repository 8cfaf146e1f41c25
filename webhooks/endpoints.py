"""Webhook endpoints (subscriptions): the model and the validation of what callers send.

Pure: the service resolves hosts, seals secrets and writes rows; this only says what a valid
endpoint is and whether it wants a given event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from webhooks.catalog import Catalog
from webhooks.filters import selects, selects_memo

MAX_HEADERS = 20
MAX_DESCRIPTION = 1000
MAX_PATTERNS = 100
MAX_CHARGER_IDS = 1000
# Ours to set: the signature, the framing and the body's type.
RESERVED_HEADERS = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "host",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")


class EndpointStatus(StrEnum):
    ACTIVE = "active"  # receives events
    INACTIVE = "inactive"  # paused by its owner; pending deliveries wait
    DISABLED = "disabled"  # paused by us (410, failing too long), with a reason


class InvalidEndpoint(ValueError):
    """What the caller sent is not a valid endpoint; the message names the field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    id: str
    url: str
    enabled_events: tuple[str, ...]
    charger_ids: tuple[str, ...] | None  # None: every charger
    description: str
    headers: Mapping[str, str]
    status: EndpointStatus
    disabled_reason: str | None
    secret: str  # plain, in memory only; sealed at rest (see secretbox)
    previous_secret: str | None  # the rotated-out one, still signing until it expires
    previous_secret_expires: float | None
    failing_since: float | None
    from_pos: int  # the event log's last pos when created: older events are not fanned out
    created_at: str
    updated_at: str

    @property
    def active(self) -> bool:
        return self.status is EndpointStatus.ACTIVE

    def wants(self, event_type: str, charger_id: str | None) -> bool:
        """Subscribed to this event. A charger filter applies to events that have a charger;
        events of no charger (``webhook.*``) pass it."""
        patterns = self.enabled_events
        if isinstance(patterns, tuple):
            if not selects_memo(patterns, event_type):
                return False
        elif not selects(patterns, event_type):
            return False
        return self.charger_ids is None or charger_id is None or charger_id in self.charger_ids

    def signing_secrets(self, now: float) -> list[str]:
        secrets = [self.secret]
        if self.previous_secret and (self.previous_secret_expires or 0) > now:
            secrets.append(self.previous_secret)
        return secrets


def check_enabled_events(value: Any, catalog: Catalog) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidEndpoint("enabledEvents", "must be a non-empty list of event types")
    if len(value) > MAX_PATTERNS or not all(isinstance(v, str) and v for v in value):
        raise InvalidEndpoint("enabledEvents", f"must hold 1-{MAX_PATTERNS} non-empty strings")
    unknown = catalog.unknown_patterns(value)
    if unknown:
        raise InvalidEndpoint("enabledEvents", f"no event type matches {unknown[0]!r}")
    return tuple(dict.fromkeys(value))


def check_charger_ids(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidEndpoint("chargerIds", "must be a list of charger ids or null")
    if len(value) > MAX_CHARGER_IDS:
        raise InvalidEndpoint("chargerIds", f"at most {MAX_CHARGER_IDS} charger ids")
    return tuple(dict.fromkeys(value))


def check_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise InvalidEndpoint("description", f"must be a string of at most {MAX_DESCRIPTION}")
    return value


def check_headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidEndpoint("headers", "must be an object of header names to strings")
    if len(value) > MAX_HEADERS:
        raise InvalidEndpoint("headers", f"at most {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise InvalidEndpoint("headers", f"{name!r} is not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidEndpoint("headers", f"{name} is set by the server and cannot be set")
        if not isinstance(text, str) or len(text) > 4096 or any(c in text for c in "\r\n\0"):
            raise InvalidEndpoint("headers", f"the value of {name} must be a one-line string")
        headers[name] = text
    return headers


def check_status(value: Any) -> EndpointStatus:
    """Callers may set active or inactive; only the server disables."""
    if value not in (EndpointStatus.ACTIVE, EndpointStatus.INACTIVE):
        raise InvalidEndpoint("status", "must be 'active' or 'inactive'")
    return EndpointStatus(value)


def matching(
    endpoints: Sequence[Endpoint], event_type: str, charger_id: str | None
) -> list[Endpoint]:
    return [e for e in endpoints if e.active and e.wants(event_type, charger_id)]
