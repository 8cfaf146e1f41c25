"""What the pure core answers: an ``Outcome`` (next snapshot, reply or ``Reject``, rows to
write, domain events), and the small helpers every handler shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from csms.protocol.frames import ErrorCode
from csms.protocol.state import JSON, ChargerSnapshot, CoreSettings, Ids, Lookups
from storage.records import Record, slot_init


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """A CALLERROR to answer with, for a reason the peer should be told."""

    error_code: ErrorCode
    description: str
    details: JSON = field(default_factory=dict)


@slot_init
@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    """Something that happened to a charger; sealed into a stored ``Event`` by ``seal()``."""

    type: str
    data: JSON


@slot_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    snapshot: ChargerSnapshot
    reply: JSON | Reject
    writes: list[Record] = field(default_factory=list)
    events: list[DomainEvent] = field(default_factory=list)


@slot_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Ctx:
    """What a handler knows besides the snapshot and the payload."""

    now: datetime
    stamp: str  # ``now`` formatted once
    ids: Ids
    settings: CoreSettings
    lookups: Lookups


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def bad_value(name: str, description: str, snap: ChargerSnapshot) -> Outcome:
    return Outcome(
        snapshot=snap,
        reply=Reject(
            error_code=ErrorCode.PROPERTY_CONSTRAINT_VIOLATION,
            description=description,
            details={"field": name},
        ),
    )
