"""Rows as frozen dataclasses: what the store reads and what a unit of work writes.

Writers send whole rows (upserts), never field patches, so a batch of several units of work
can be grouped by statement without changing the result: the last row written wins, and each
row has one owner (the charger's session for ``ChargerState``/``Connector``/``Transaction``,
the admin API for ``ChargerRegistration``/``IdTag``).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound=type)

JSONDict = dict[str, Any]


def slot_setters(cls: type) -> dict[str, Callable[[Any, Any], None]] | None:
    """Each field's slot setter (its descriptor's ``__set__``), or None if a field has no
    slot: writing through these skips the name lookup ``object.__setattr__`` makes."""
    setters = {}
    for f in dataclasses.fields(cls):
        slot = getattr(cls, f.name, None)
        if not isinstance(slot, types.MemberDescriptorType):
            return None
        setters[f.name] = slot.__set__
    return setters


def slot_init(cls: C) -> C:
    """Give a frozen, slotted, keyword-only dataclass an ``__init__`` that sets each slot
    through its own descriptor: the one ``dataclass`` writes calls ``object.__setattr__``
    with the name, which looks the slot up again for every field (records made for every
    OCPP message: a third fewer instructions each). Same parameters, defaults and default
    factories, in the same order; the classes it is used on have no ``__post_init__``."""
    params = getattr(cls, "__dataclass_params__", None)
    fields = dataclasses.fields(cls) if params is not None else ()
    setters = slot_setters(cls) if params is not None else None
    if (
        params is None
        or setters is None
        or not params.frozen
        or hasattr(cls, "__post_init__")
        or any(not f.init or not f.kw_only for f in fields)
    ):
        raise TypeError(f"slot_init: {cls.__name__} is no frozen, slotted, keyword-only dataclass")
    namespace: dict[str, Any] = {"MISSING": dataclasses.MISSING}
    args, body = [], []
    for f in fields:
        namespace[f"set_{f.name}"] = setters[f.name]
        if f.default is not dataclasses.MISSING:
            namespace[f"default_{f.name}"] = f.default
            args.append(f"{f.name}=default_{f.name}")
            body.append(f"    set_{f.name}(self, {f.name})")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"factory_{f.name}"] = f.default_factory
            args.append(f"{f.name}=MISSING")
            body.append(
                f"    set_{f.name}(self, factory_{f.name}() if {f.name} is MISSING else {f.name})"
            )
        else:
            args.append(f.name)
            body.append(f"    set_{f.name}(self, {f.name})")
    source = f"def __init__(self, *, {', '.join(args)}):\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc]
    return cls


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerRegistration:
    id: str
    password_hash: str | None
    description: str
    registration_policy: str  # Accepted | Pending | Rejected
    created_at: str
    updated_at: str
    # OCPP security profile (0 none, 1 Basic, 2 TLS + Basic, 3 TLS + client certificate):
    # a connection below it is refused (DESIGN 3).
    security_profile: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerState:
    charger_id: str
    registration_status: str | None = None  # None: never booted
    boot: JSONDict | None = None
    booted_at: str | None = None
    connected: bool = False
    connected_at: str | None = None
    disconnected_at: str | None = None
    last_seen_at: str | None = None
    remote_address: str | None = None
    last_sequence: int = 0
    firmware_status: str | None = None
    diagnostics_status: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Connector:
    charger_id: str
    connector_id: int
    status: str
    error_code: str
    info: str | None
    vendor_id: str | None
    vendor_error_code: str | None
    status_timestamp: str | None
    updated_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    id: int
    charger_id: str
    connector_id: int
    id_tag: str
    id_tag_status: str
    meter_start: int
    started_at: str
    reservation_id: int | None
    command_id: str | None
    meter_stop: int | None
    stopped_at: str | None
    stop_reason: str | None
    stop_id_tag: str | None
    last_meter: JSONDict | None
    energy_wh: float | None
    created_at: str
    updated_at: str

    @property
    def active(self) -> bool:
        return self.stopped_at is None


@slot_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionProgress:
    """A running transaction's latest reading: an update of the columns MeterValues changes.

    Written instead of the whole row, which an ``INSERT OR REPLACE`` deletes and inserts
    again in the table and in each of its indexes (a page of each, per message).
    """

    id: int
    last_meter: JSONDict | None
    energy_wh: float | None
    updated_at: str


@slot_init
@dataclass(frozen=True, slots=True, kw_only=True)
class MeterSample:
    """One ``meterValue`` element as received (its sampled values kept raw)."""

    charger_id: str
    connector_id: int
    transaction_id: int | None
    timestamp: str
    digest: str
    sampled_value: list[JSONDict]


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownStop:
    """A StopTransaction.req for a transaction we do not know, kept as received."""

    charger_id: str
    transaction_id: int
    digest: str
    payload: JSONDict
    recorded_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class IdTag:
    id_tag: str
    status: str  # Accepted | Blocked | Expired | Invalid | ConcurrentTx
    expiry_date: str | None
    parent_id_tag: str | None
    created_at: str
    updated_at: str


@slot_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """A stored event; ``pos`` (global commit order) is set by the store when read back."""

    id: str
    type: str
    charger_id: str | None
    sequence: int | None
    timestamp: str
    data: JSONDict
    pos: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A CSMS-initiated OCPP call and its life (requested -> accepted|rejected|failed)."""

    id: str
    charger_id: str
    action: str
    request: JSONDict
    status: str
    deferred: bool
    response: JSONDict | None
    error: JSONDict | None
    created_at: str
    sent_at: str | None
    completed_at: str | None

    @property
    def done(self) -> bool:
        return self.status != "requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargerSetting:
    """Something a charger accepted through a command (availability, profiles, ...)."""

    charger_id: str
    key: str
    value: Any
    updated_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    """A small setting the server keeps for itself (e.g. the generated API token's hash)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """An admin API bearer token the store keeps: its digest, never the token itself."""

    id: str
    digest: str  # hex SHA-256
    hint: str  # the token's first characters, to recognise it in a list
    label: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Statement:
    """A raw SQL write, for the store's own modules (e.g. webhook tables), never for callers
    outside ``storage/``. Grouped with other statements of the same text like any record."""

    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete one row of a table by its key (``table`` names a record type)."""

    table: str  # "chargers" | "id_tags" | "api_tokens" | ...
    key: str


Record = (
    ChargerRegistration
    | ChargerState
    | Connector
    | Transaction
    | TransactionProgress
    | MeterSample
    | IdTag
    | Event
    | Meta
    | ApiToken
    | Command
    | ChargerSetting
    | UnknownStop
)


@dataclass(slots=True)
class UnitOfWork:
    """What one OCPP message (or API call) changes; committed in one transaction or not at all."""

    writes: list[Record | Delete | Statement] = field(default_factory=list)

    def put(self, *records: Record | Delete | Statement) -> UnitOfWork:
        self.writes.extend(records)
        return self

    @property
    def events(self) -> list[Event]:
        return [w for w in self.writes if isinstance(w, Event)]

    def __bool__(self) -> bool:
        return bool(self.writes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EventFilter:
    types: tuple[str, ...] = ()  # exact names or globs (*, ?)
    charger_id: str | None = None
    since: str | None = None
    until: str | None = None
    ascending: bool = False
    limit: int = 20
    starting_after: str | None = None  # an event id
