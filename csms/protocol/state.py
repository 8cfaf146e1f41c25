"""What the pure core knows about one charger, and what the I/O shell looks up for it.

``ChargerSnapshot`` is the charger's whole working state: its registration, what it last told
us, its connectors and its active transactions. It lives in memory while the CSMS runs and is
rebuilt from the store on first use, so the hot path (MeterValues, Heartbeat) reads nothing.
``Lookups`` carries the few facts a message needs that are not in the snapshot (an id tag, an
older transaction); the shell asks ``lookups_needed()`` which, fetches them, and passes them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from storage.records import (
    ChargerRegistration,
    ChargerState,
    Connector,
    IdTag,
    Transaction,
)

# How many recent meter/stop digests a snapshot keeps to recognise re-sent messages: a
# charger re-sends what lost its answer, i.e. the last few; 64 bounds memory per charger.
RECENT_DIGESTS = 64


class RegistrationStatus:
    """BootNotification.conf status values (OCPP 1.6, 7.36 RegistrationStatus)."""

    ACCEPTED = "Accepted"
    PENDING = "Pending"
    REJECTED = "Rejected"
    ALL = (ACCEPTED, PENDING, REJECTED)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteStart:
    """An accepted RemoteStartTransaction, waiting for the StartTransaction it leads to."""

    command_id: str
    id_tag: str
    connector_id: int | None
    accepted_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerSnapshot:
    charger_id: str
    registration: ChargerRegistration | None  # None: registered on the fly (allow_unknown)
    state: ChargerState
    # The last event sequence and sign of life: kept here, not in ``state``, so that a message
    # which changes nothing else writes no state row (the events carry their sequence; the
    # row is brought up to date whenever it is written for another reason).
    sequence: int = 0
    last_seen_at: str | None = None
    connectors: dict[int, Connector] = field(default_factory=dict)
    active: dict[int, Transaction] = field(default_factory=dict)  # by transaction id
    recent_digests: tuple[str, ...] = ()  # meter values and stops already recorded
    # Actions a Pending charger may send because a TriggerMessage asked for them (4.2).
    triggered: frozenset[str] = frozenset()
    # Accepted RemoteStartTransaction commands not yet matched by a StartTransaction.
    remote_starts: tuple[RemoteStart, ...] = ()
    # What the charger accepted through commands (availability, profiles, ...), by key.
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> str:
        return (
            self.registration.registration_policy
            if self.registration
            else RegistrationStatus.ACCEPTED
        )

    @classmethod
    def new(cls, charger_id: str, registration: ChargerRegistration | None) -> ChargerSnapshot:
        return cls(
            charger_id=charger_id,
            registration=registration,
            state=ChargerState(charger_id=charger_id),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupRequest:
    """What the shell must fetch from the store before the core can handle a message."""

    id_tag: str | None = None
    transaction_id: int | None = None  # a transaction not in the snapshot
    start_key: tuple[int, str, str, int] | None = None  # connector, idTag, startedAt, meterStart

    def __bool__(self) -> bool:
        return self.id_tag is not None or self.transaction_id is not None or bool(self.start_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class Lookups:
    id_tag: IdTag | None = None
    transaction: Transaction | None = None  # by id, or the earlier twin of a re-sent start


class Ids(Protocol):
    """Where fresh identifiers come from; injected so the core stays deterministic."""

    def transaction_id(self) -> int: ...

    def event_id(self) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreSettings:
    authorization: str = "local"  # "local" | "accept_all"
    heartbeat_interval: int = 300
    retry_interval: int = 60  # BootNotification.conf interval when not Accepted
    signs_certificates: bool = False  # ocpp.tls_ca_key set: SignCertificate signed here


JSON = dict[str, Any]
