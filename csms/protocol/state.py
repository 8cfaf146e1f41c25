"""What the pure core knows about one charger, and what the I/O shell looks up for it.

``ChargerSnapshot`` is the charger's whole working state: its registration, what it last told
us, its connectors and its active transactions. It lives in memory while the CSMS runs and is
rebuilt from the store on first use, so the hot path (MeterValues, Heartbeat) reads nothing.
``Lookups`` carries the few facts a message needs that are not in the snapshot (an id tag, an
older transaction); the shell asks ``lookups_needed()`` which, fetches them, and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
DIGEST_CHARS = 24  # a digest of a meter value or stop: 12 bytes of BLAKE2b, in hex


@dataclass(frozen=True, slots=True)
class RecentDigests:
    """The charger's last ``RECENT_DIGESTS`` digests, oldest first, as one string of
    fixed-width entries. A lookup is one substring search over contiguous memory; in a
    tuple, each of the 64 strings compared was an object of its own somewhere on the heap,
    and with 1,000 chargers those compares missed the CPU cache (perf, ingest N=1000: 4.5%
    of the server's CPU in the tuple's ``in``)."""

    text: str = ""

    @classmethod
    def of(cls, digests: Iterable[str]) -> RecentDigests:
        """From digests as stored; one of another width (no digest this code makes) could
        never match a new one, so it is left out."""
        return cls().add([d for d in digests if len(d) == DIGEST_CHARS])

    def __contains__(self, digest: str) -> bool:
        text = self.text
        at = text.find(digest)
        while at >= 0:
            if at % DIGEST_CHARS == 0:  # on an entry's start, not across two entries
                return True
            at = text.find(digest, at + 1)
        return False

    def __len__(self) -> int:
        return len(self.text) // DIGEST_CHARS

    def __iter__(self) -> Iterator[str]:
        text = self.text
        return (text[i : i + DIGEST_CHARS] for i in range(0, len(text), DIGEST_CHARS))

    def add(self, digests: list[str]) -> RecentDigests:
        """These (each ``DIGEST_CHARS`` long) after the ones kept, the oldest dropped."""
        if not digests:
            return self
        text = self.text + "".join(digests)
        return RecentDigests(text[-RECENT_DIGESTS * DIGEST_CHARS :])


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
    recent_digests: RecentDigests = RecentDigests()  # meter values and stops recorded
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
