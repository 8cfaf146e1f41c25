"""The catalog of event types: what ``enabledEvents`` may name and what ``/event-types`` lists.

Generic on purpose: the CSMS registers its own (OCPP) types at start; this package adds only
the ``webhook.*`` types it emits itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from webhooks.filters import is_glob, pattern_matches

WEBHOOK_TEST = "webhook.test"
WEBHOOK_DISABLED = "webhook.disabled"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventType:
    name: str
    description: str
    example: dict[str, Any] = field(default_factory=dict)  # an example of the envelope's data


BUILTIN_TYPES = (
    EventType(
        name=WEBHOOK_TEST,
        description="A test event sent to one endpoint on request (POST /webhooks/{id}/test).",
        example={"isTest": True, "webhookId": "wh_2Yt0cJ6kqV1xWw0s"},
    ),
    EventType(
        name=WEBHOOK_DISABLED,
        description="An endpoint was disabled (it answered 410 Gone or kept failing).",
        example={
            "webhookId": "wh_2Yt0cJ6kqV1xWw0s",
            "url": "https://example.com/hooks",
            "reason": "failing continuously for 86400 s",
        },
    ),
)


class Catalog:
    """Event types by name, in registration order."""

    def __init__(self, types: Iterable[EventType] = ()) -> None:
        self._types: dict[str, EventType] = {}
        for event_type in (*BUILTIN_TYPES, *types):
            self.register(event_type)

    def register(self, event_type: EventType) -> None:
        if not event_type.name or is_glob(event_type.name):
            raise ValueError(f"bad event type name: {event_type.name!r}")
        self._types[event_type.name] = event_type

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def get(self, name: str) -> EventType | None:
        return self._types.get(name)

    def unknown_patterns(self, patterns: Iterable[str]) -> list[str]:
        """The patterns that name no type: an exact name not in the catalog, or a glob that
        matches none of its types (a typo would otherwise silently subscribe to nothing)."""
        bad = []
        for pattern in patterns:
            if is_glob(pattern):
                if not any(pattern_matches(pattern, name) for name in self._types):
                    bad.append(pattern)
            elif pattern not in self._types:
                bad.append(pattern)
        return bad
