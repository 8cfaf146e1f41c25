"""SQL for the webhook tables (migrations 0002, 0009, 0010): statements to write, queries to read.

Writes are ``Statement`` records, so the delivery engine's rows share the store's group
commit with everything else; reads go through ``fetch_all``/``fetch_one`` on the reader.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage import sqlite_rows as codec
from storage.records import Event, Statement
from storage.sqlite import SqliteStore

PENDING = "pending"
# Queued by a node for a partition another node holds (replay, redeliver in a cluster): the
# holder takes it into its streams and makes it pending (migration 0009).
HANDOFF = "handoff"
SUCCEEDED = "succeeded"
FAILED = "failed"

DELIVERY_ID = "delivery_id"
SYSTEM_SEQUENCE = "system_sequence"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


# (partition, node id, token): a write for a partition's streams happens only while this node
# holds that partition's lease with that token (checked in the writing transaction). None: no
# check (SQLite: one node holds every partition).
Fence = tuple[int, str, int]

_FENCE = "EXISTS (SELECT 1 FROM delivery_leases WHERE partition = ? AND node_id = ? AND token = ?)"


def _fenced_insert(insert: str) -> str:
    """``INSERT ... VALUES (...) [ON CONFLICT ...]`` as ``INSERT ... SELECT ... WHERE fence``."""
    head, _, rest = insert.partition(" VALUES (")
    marks, _, conflict = rest.partition(")")
    return f"{head} SELECT {marks} WHERE {_FENCE}{conflict}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointRow:
    id: str
    url: str
    enabled_events: list[str]
    charger_ids: list[str] | None
    description: str
    headers: dict[str, str]
    status: str
    disabled_reason: str | None
    secret: str  # sealed
    previous_secret: str | None  # sealed
    previous_secret_expires: float | None
    failing_since: float | None
    from_pos: int
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRow:
    id: int
    endpoint_id: str
    event_pos: int
    event_id: str
    charger_id: str | None
    status: str
    attempts: int
    next_attempt_at: float
    created_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRow:
    id: int
    delivery_id: int
    attempt: int
    endpoint_id: str
    event_id: str
    event_type: str
    started_at: str
    finished_at: str | None
    status_code: int | None
    latency_ms: float | None
    error: str | None
    outcome: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventHead:
    """What fan-out needs of an event, without its data."""

    pos: int
    id: str
    type: str
    charger_id: str | None


# -- writes ------------------------------------------------------------------------------

_UPSERT_ENDPOINT = codec.upsert(
    "webhook_endpoints",
    "id, url, enabled_events, charger_ids, description, headers, status, disabled_reason,"
    " secret, previous_secret, previous_secret_expires, failing_since, from_pos, created_at,"
    " updated_at",
    "id",
)


def put_endpoint(row: EndpointRow) -> Statement:
    return Statement(
        _UPSERT_ENDPOINT,
        (
            row.id,
            row.url,
            _json(row.enabled_events),
            _json(row.charger_ids),
            row.description,
            _json(row.headers),
            row.status,
            row.disabled_reason,
            row.secret,
            row.previous_secret,
            row.previous_secret_expires,
            row.failing_since,
            row.from_pos,
            row.created_at,
            row.updated_at,
        ),
    )


def delete_endpoint(endpoint_id: str) -> list[Statement]:
    return [
        Statement("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,)),
        Statement("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", (endpoint_id,)),
        Statement("DELETE FROM webhook_attempts WHERE endpoint_id = ?", (endpoint_id,)),
    ]


def set_endpoint_health(
    endpoint_id: str,
    *,
    status: str,
    disabled_reason: str | None,
    failing_since: float | None,
    updated_at: str,
    fence: Fence | None = None,
) -> Statement:
    """The endpoint disabled by an outcome (fenced by the partition of that delivery)."""
    sql = (
        "UPDATE webhook_endpoints SET status = ?, disabled_reason = ?, failing_since = ?,"
        " updated_at = ? WHERE id = ?"
    )
    params = (status, disabled_reason, failing_since, updated_at, endpoint_id)
    if fence is None:
        return Statement(sql, params)
    return Statement(f"{sql} AND {_FENCE}", (*params, *fence))


def set_failing_since(
    endpoint_id: str, failing_since: float | None, fence: Fence | None = None
) -> Statement:
    sql = "UPDATE webhook_endpoints SET failing_since = ? WHERE id = ?"
    if fence is None:
        return Statement(sql, (failing_since, endpoint_id))
    return Statement(f"{sql} AND {_FENCE}", (failing_since, endpoint_id, *fence))


# -- partitions and their leases (migration 0009) -----------------------------------------


def set_cursor(partition: int, pos: int, fence: Fence | None = None) -> Statement:
    """A partition's durable fan-out cursor; fenced, it is written only by the lease holder."""
    if fence is None:
        return Statement(
            "UPDATE delivery_leases SET fanout_pos = ? WHERE partition = ?", (pos, partition)
        )
    return Statement(
        "UPDATE delivery_leases SET fanout_pos = ? WHERE partition = ? AND node_id = ?"
        " AND token = ?",
        (pos, *fence),
    )


def lock_leases(node_id: str) -> Statement:
    """First in each of a node's bookkeeping transactions (PostgreSQL): its lease rows are
    share-locked until the commit, so no other node can take one of them in between: each
    fenced write's check holds until the writes are durable (and a take-over that already
    happened makes the checks fail)."""
    return Statement(
        "SELECT 1 FROM delivery_leases WHERE node_id = ? ORDER BY partition FOR SHARE", (node_id,)
    )


async def load_cursors(store: SqliteStore) -> dict[int, int]:
    rows = await store.fetch_all("SELECT partition, fanout_pos FROM delivery_leases")
    return {int(r[0]): int(r[1]) for r in rows}


async def min_cursor(store: SqliteStore) -> int:
    """The lowest durable fan-out cursor over all partitions (retention keeps what is past)."""
    row = await store.fetch_one("SELECT COALESCE(MIN(fanout_pos), 0) FROM delivery_leases")
    return int(row[0]) if row else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Taken:
    partition: int
    token: int
    cursor: int
    previous_node: str | None


async def acquire_leases(
    store: SqliteStore, *, node_id: str, ttl: float, limit: int, held: Sequence[int]
) -> list[Taken]:
    """Take up to ``limit`` partitions that are free, whose lease ran out (the database's
    clock), or that a previous run of this node id held (a restart need not wait for them
    to run out), bumping each one's token; rows another node is writing under are skipped,
    and so are those this run holds (``held``)."""
    rows = await store.fetch_all(
        "WITH free AS (SELECT partition, node_id AS previous FROM delivery_leases"
        " WHERE (node_id IS NULL OR node_id = ? OR expires_at IS NULL"
        " OR expires_at < extract(epoch FROM now())::float8)"
        " AND partition <> ALL(?::bigint[])"
        " ORDER BY partition LIMIT ? FOR UPDATE SKIP LOCKED)"
        " UPDATE delivery_leases l SET node_id = ?, token = l.token + 1,"
        " expires_at = extract(epoch FROM now())::float8 + ?::float8 FROM free"
        " WHERE l.partition = free.partition"
        " RETURNING l.partition, l.token, l.fanout_pos, free.previous",
        (node_id, list(held), limit, node_id, ttl),
    )
    return [
        Taken(partition=r[0], token=r[1], cursor=r[2], previous_node=r[3])
        for r in sorted(rows, key=lambda r: r[0])
    ]


async def renew_leases(
    store: SqliteStore, *, node_id: str, ttl: float, held: dict[int, int]
) -> set[int]:
    """Extend the leases still ours with the same token; the partitions renewed."""
    if not held:
        return set()
    rows = await store.fetch_all(
        "UPDATE delivery_leases l SET expires_at = extract(epoch FROM now())::float8 + ?::float8"
        " FROM unnest(?::bigint[], ?::bigint[]) AS h(partition, token)"
        " WHERE l.partition = h.partition AND l.token = h.token AND l.node_id = ?"
        " RETURNING l.partition",
        (ttl, list(held), list(held.values()), node_id),
    )
    return {int(r[0]) for r in rows}


async def release_leases(store: SqliteStore, *, node_id: str, held: dict[int, int]) -> None:
    """Give partitions back at once (surplus, or a clean stop): another node need not wait
    for them to run out. Their rows and cursors were written first."""
    if held:
        await store.fetch_all(
            "UPDATE delivery_leases l SET node_id = NULL, expires_at = NULL"
            " FROM unnest(?::bigint[], ?::bigint[]) AS h(partition, token)"
            " WHERE l.partition = h.partition AND l.token = h.token AND l.node_id = ?"
            " RETURNING l.partition",
            (list(held), list(held.values()), node_id),
        )


async def next_system_sequence(store: SqliteStore) -> int:
    """The next sequence of events of no charger, from the shared counter (several nodes)."""
    row = await store.fetch_one(
        "INSERT INTO webhook_counters (name, value) VALUES ('system_sequence', 1)"
        " ON CONFLICT (name) DO UPDATE SET value = webhook_counters.value + 1 RETURNING value"
    )
    return int(row[0])


async def live_nodes(store: SqliteStore, *, node_id: str, ttl: float) -> set[str]:
    """Nodes alive now: a recent heartbeat in ``cluster_nodes`` (migration 0008), or a
    lease of theirs not run out; and this one."""
    rows = await store.fetch_all(
        "SELECT node_id FROM cluster_nodes WHERE NOT stopped"
        " AND heartbeat_at > now() - make_interval(secs => ?)"
        " UNION SELECT node_id FROM delivery_leases WHERE node_id IS NOT NULL"
        " AND expires_at > extract(epoch FROM now())::float8",
        (ttl,),
    )
    return {r[0] for r in rows} | {node_id}


async def reserve_delivery_ids(store: SqliteStore, block: int) -> int:
    """Reserve the next ``block`` delivery ids for this node (PostgreSQL, several nodes):
    the last id reserved, above every id any node reserved or wrote before."""
    row = await store.fetch_one(
        "INSERT INTO webhook_counters (name, value) SELECT 'delivery_id',"
        " COALESCE((SELECT MAX(id) FROM webhook_deliveries), 0) + ?"
        " ON CONFLICT (name) DO UPDATE SET value = GREATEST(webhook_counters.value,"
        " (SELECT COALESCE(MAX(id), 0) FROM webhook_deliveries)) + ? RETURNING value",
        (block, block),
    )
    return int(row[0])


_INSERT_DELIVERY = (
    "INSERT INTO webhook_deliveries (id, endpoint_id, event_pos, event_id, charger_id, status,"
    " attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _delivery_params(row: DeliveryRow) -> tuple[Any, ...]:
    return (
        row.id,
        row.endpoint_id,
        row.event_pos,
        row.event_id,
        row.charger_id,
        row.status,
        row.attempts,
        row.next_attempt_at,
        row.created_at,
    )


# The fenced texts, made once: PostgreSQL writes runs of them as one statement (its store
# knows them by these texts).
FENCED_INSERT_DELIVERY = _fenced_insert(_INSERT_DELIVERY)


def insert_delivery(row: DeliveryRow, fence: Fence | None = None) -> Statement:
    if fence is None:
        return Statement(_INSERT_DELIVERY, _delivery_params(row))
    return Statement(FENCED_INSERT_DELIVERY, (*_delivery_params(row), *fence))


def insert_delivery_of(
    *,
    delivery_id: int,
    endpoint_id: str,
    event_id: str,
    attempts: int,
    next_attempt_at: float,
    created_at: str,
) -> Statement:
    """A delivery of an event written in the same transaction (its pos is not known yet).
    The casts tell PostgreSQL the parameters' types, which a SELECT list does not."""
    return Statement(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_pos, event_id, charger_id, status,"
        " attempts, next_attempt_at, created_at) SELECT CAST(? AS BIGINT), CAST(? AS TEXT), pos,"
        " id, charger_id, 'pending', CAST(? AS INTEGER), CAST(? AS DOUBLE PRECISION),"
        " CAST(? AS TEXT) FROM events WHERE id = ?",
        (delivery_id, endpoint_id, attempts, next_attempt_at, created_at, event_id),
    )


_UPSERT_DELIVERY = (
    _INSERT_DELIVERY + " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
    " attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at"
)


FENCED_UPSERT_DELIVERY = _fenced_insert(_UPSERT_DELIVERY)


def upsert_delivery(row: DeliveryRow, fence: Fence | None = None) -> Statement:
    """The first row of a delivery that lived in memory only (written with its first outcome,
    or when it must be visible to the store: replay, a paused endpoint); later ones update."""
    if fence is None:
        return Statement(_UPSERT_DELIVERY, _delivery_params(row))
    return Statement(FENCED_UPSERT_DELIVERY, (*_delivery_params(row), *fence))


_SETTLE = "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ? WHERE id = ?"


FENCED_SETTLE = f"{_SETTLE} AND {_FENCE}"


def settle_delivery(
    delivery_id: int,
    *,
    status: str,
    attempts: int,
    next_attempt_at: float,
    fence: Fence | None = None,
) -> Statement:
    params = (status, attempts, next_attempt_at, delivery_id)
    if fence is None:
        return Statement(_SETTLE, params)
    return Statement(FENCED_SETTLE, (*params, *fence))


_UPSERT_ATTEMPT = codec.upsert(
    "webhook_attempts",
    "delivery_id, attempt, endpoint_id, event_id, event_type, started_at, finished_at,"
    " status_code, latency_ms, error, outcome",
    "delivery_id, attempt",
)


FENCED_UPSERT_ATTEMPT = _fenced_insert(_UPSERT_ATTEMPT)


def record_attempt(
    *,
    delivery_id: int,
    attempt: int,
    endpoint_id: str,
    event_id: str,
    event_type: str,
    started_at: str,
    finished_at: str,
    status_code: int | None,
    latency_ms: float,
    error: str | None,
    outcome: str,
    fence: Fence | None = None,
) -> Statement:
    """An attempt, written once with its answer (with its delivery's outcome, in one unit)."""
    return Statement(
        _UPSERT_ATTEMPT if fence is None else FENCED_UPSERT_ATTEMPT,
        (
            delivery_id,
            attempt,
            endpoint_id,
            event_id,
            event_type,
            started_at,
            finished_at,
            status_code,
            latency_ms,
            error,
            outcome,
            *(fence or ()),
        ),
    )


_UPSERT_COUNTER = codec.upsert("webhook_counters", "name, value", "name")


def set_counter(name: str, value: int) -> Statement:
    return Statement(_UPSERT_COUNTER, (name, value))


def mark_interrupted(finished_at: str) -> Statement:
    """Attempts that never got an answer because the process stopped mid-post."""
    return Statement(
        "UPDATE webhook_attempts SET outcome = 'interrupted', finished_at = ?,"
        " error = 'interrupted: the server stopped before an answer' WHERE outcome IS NULL",
        (finished_at,),
    )


def prune(*, cutoff: str, max_event_pos: int, batch: int) -> list[Statement]:
    """One batch of retention: old attempts, settled deliveries and events nobody waits for."""
    return [
        Statement(
            "DELETE FROM webhook_attempts WHERE id IN (SELECT a.id FROM webhook_attempts a"
            " WHERE a.started_at < ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d"
            " WHERE d.id = a.delivery_id AND d.status IN ('pending', 'handoff')) LIMIT ?)",
            (cutoff, batch),
        ),
        Statement(
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
            " WHERE created_at < ? AND status NOT IN ('pending', 'handoff') LIMIT ?)",
            (cutoff, batch),
        ),
        Statement(
            "DELETE FROM events WHERE pos IN (SELECT e.pos FROM events e WHERE e.timestamp < ?"
            " AND e.pos <= ? AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d"
            " WHERE d.event_pos = e.pos AND d.status IN ('pending', 'handoff')) LIMIT ?)",
            (cutoff, max_event_pos, batch),
        ),
    ]


# -- batching ---------------------------------------------------------------------------


def in_batch_order(writes: list[Statement | Event]) -> list[Statement | Event]:
    """The delivery engine's writes in an order that keeps their effect and makes long runs
    of one statement (one ``executemany`` each, instead of a round trip per row).

    Inserts come first, then updates of deliveries and attempts, then updates of endpoints,
    then deletes. Within inserts and delivery/attempt updates, each statement's rows go
    together, at the place the statement first appears, keeping their own order: those
    statements commute (each sets its own columns, or is an insert a later row depends on,
    such as an event before the delivery that selects its pos). Endpoint updates and
    deletes keep their exact order.
    """
    first: dict[str, int] = {}

    def key(item: tuple[int, Statement | Event]) -> tuple[int, int]:
        index, write = item
        if isinstance(write, Event):
            return 0, first.setdefault("events", index)
        sql = write.sql
        verb = sql[:6].upper()
        if verb == "INSERT":
            return 0, first.setdefault(sql, index)
        if verb == "UPDATE":
            if sql.startswith("UPDATE webhook_endpoints"):
                return 2, index
            return 1, first.setdefault(sql, index)
        return 3, index

    return [write for _, write in sorted(enumerate(writes), key=key)]


# -- reads -------------------------------------------------------------------------------


def _endpoint(row: Any) -> EndpointRow:
    return EndpointRow(
        id=row["id"],
        url=row["url"],
        enabled_events=json.loads(row["enabled_events"]),
        charger_ids=None if row["charger_ids"] is None else json.loads(row["charger_ids"]),
        description=row["description"],
        headers=json.loads(row["headers"]),
        status=row["status"],
        disabled_reason=row["disabled_reason"],
        secret=row["secret"],
        previous_secret=row["previous_secret"],
        previous_secret_expires=row["previous_secret_expires"],
        failing_since=row["failing_since"],
        from_pos=row["from_pos"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _delivery(row: Any) -> DeliveryRow:
    return DeliveryRow(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        event_pos=row["event_pos"],
        event_id=row["event_id"],
        charger_id=row["charger_id"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
    )


def _attempt(row: Any) -> AttemptRow:
    return AttemptRow(
        id=row["id"],
        delivery_id=row["delivery_id"],
        attempt=row["attempt"],
        endpoint_id=row["endpoint_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        status_code=row["status_code"],
        latency_ms=row["latency_ms"],
        error=row["error"],
        outcome=row["outcome"],
    )


async def load_endpoints(store: SqliteStore) -> list[EndpointRow]:
    rows = await store.fetch_all("SELECT * FROM webhook_endpoints ORDER BY created_at, id")
    return [_endpoint(r) for r in rows]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredStream:
    """A (endpoint, charger) stream's pending rows: how many, and the highest id."""

    endpoint_id: str
    charger_id: str | None
    count: int
    max_id: int


async def pending_streams(store: SqliteStore) -> list[StoredStream]:
    """Every stream with pending rows (a start or a take-over queues them by count; their
    rows are read in windows by ``stream_window``). Index ``webhook_deliveries_stream``."""
    rows = await store.fetch_all(
        "SELECT endpoint_id, charger_id, COUNT(*), MAX(id) FROM webhook_deliveries"
        " WHERE status = 'pending' GROUP BY endpoint_id, charger_id"
    )
    return [
        StoredStream(endpoint_id=r[0], charger_id=r[1], count=int(r[2]), max_id=int(r[3]))
        for r in rows
    ]


_WINDOW = (
    "SELECT * FROM webhook_deliveries WHERE status = 'pending' AND endpoint_id = ?"
    " AND charger_id {} AND id > ? ORDER BY id LIMIT ?"
)
_WINDOW_OF_CHARGER = _WINDOW.format("= ?")
_WINDOW_OF_NONE = _WINDOW.format("IS NULL")


async def stream_window(
    store: SqliteStore, *, endpoint_id: str, charger_id: str | None, after: int, limit: int
) -> list[DeliveryRow]:
    """A stream's next pending rows by id (an index range scan of
    ``webhook_deliveries_stream`` on both databases: no ``IS ?``, which PostgreSQL would not
    match to the index)."""
    if charger_id is None:
        rows = await store.fetch_all(_WINDOW_OF_NONE, (endpoint_id, after, limit))
    else:
        rows = await store.fetch_all(_WINDOW_OF_CHARGER, (endpoint_id, charger_id, after, limit))
    return [_delivery(r) for r in rows]


async def load_handoffs(store: SqliteStore) -> list[DeliveryRow]:
    rows = await store.fetch_all(
        "SELECT * FROM webhook_deliveries WHERE status = 'handoff' ORDER BY id"
    )
    return [_delivery(r) for r in rows]


def accept_handoff(delivery_id: int, fence: Fence | None) -> Statement:
    """A delivery handed over by another node is in this holder's streams now."""
    sql = "UPDATE webhook_deliveries SET status = 'pending' WHERE id = ? AND status = 'handoff'"
    if fence is None:
        return Statement(sql, (delivery_id,))
    return Statement(f"{sql} AND {_FENCE}", (delivery_id, *fence))


async def load_counters(store: SqliteStore) -> dict[str, int]:
    rows = await store.fetch_all("SELECT name, value FROM webhook_counters")
    return {row["name"]: int(row["value"]) for row in rows}


async def max_event_pos(store: SqliteStore) -> int:
    row = await store.fetch_one("SELECT COALESCE(MAX(pos), 0) FROM events")
    return int(row[0]) if row else 0


async def max_delivery_id(store: SqliteStore) -> int:
    row = await store.fetch_one("SELECT COALESCE(MAX(id), 0) FROM webhook_deliveries")
    return int(row[0]) if row else 0


async def events_after(store: SqliteStore, pos: int, limit: int) -> list[Event]:
    rows = await store.fetch_all(
        "SELECT * FROM events WHERE pos > ? ORDER BY pos LIMIT ?", (pos, limit)
    )
    return [codec.event(r) for r in rows]


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownDelivery:
    id: int
    endpoint_id: str
    event_pos: int
    charger_id: str | None


async def deliveries_after(store: SqliteStore, pos: int) -> list[KnownDelivery]:
    """Every delivery row past ``pos`` (a take-over's fan-out skips them: those deliveries
    were settled, or are pending, already)."""
    rows = await store.fetch_all(
        "SELECT id, endpoint_id, event_pos, charger_id FROM webhook_deliveries WHERE event_pos > ?",
        (pos,),
    )
    return [KnownDelivery(id=r[0], endpoint_id=r[1], event_pos=r[2], charger_id=r[3]) for r in rows]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """An event as the log holds it, its data still JSON text."""

    pos: int
    id: str
    type: str
    timestamp: str
    charger_id: str | None
    sequence: int | None
    data_json: str


async def stored_events_at(store: SqliteStore, positions: Sequence[int]) -> list[StoredEvent]:
    if not positions:
        return []
    marks = ",".join("?" * len(positions))
    rows = await store.fetch_all(
        f"SELECT pos, id, type, timestamp, charger_id, sequence, data FROM events"
        f" WHERE pos IN ({marks})",
        list(positions),
    )
    return [
        StoredEvent(
            pos=r[0],
            id=r[1],
            type=r[2],
            timestamp=r[3],
            charger_id=r[4],
            sequence=r[5],
            data_json=r[6],
        )
        for r in rows
    ]


async def event_by_id(store: SqliteStore, event_id: str) -> Event | None:
    row = await store.fetch_one("SELECT * FROM events WHERE id = ?", (event_id,))
    return None if row is None else codec.event(row)


async def replay_candidates(
    store: SqliteStore,
    *,
    endpoint_id: str,
    since: str,
    until: str | None,
    only_failed: bool,
    after_pos: int,
    max_pos: int,
    limit: int,
) -> list[EventHead]:
    """Events in [since, until) after ``after_pos`` not already pending for the endpoint and,
    with ``only_failed``, never delivered to it successfully."""
    sql = (
        "SELECT e.pos, e.id, e.type, e.charger_id FROM events e WHERE e.pos > ? AND e.pos <= ?"
        " AND e.timestamp >= ?"
    )
    params: list[Any] = [after_pos, max_pos, since]
    if until is not None:
        sql += " AND e.timestamp < ?"
        params.append(until)
    excluded = "('pending', 'handoff', 'succeeded')" if only_failed else "('pending', 'handoff')"
    sql += (
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_pos = e.pos"
        f" AND d.endpoint_id = ? AND d.status IN {excluded}) ORDER BY e.pos LIMIT ?"
    )
    params += [endpoint_id, limit]
    rows = await store.fetch_all(sql, params)
    return [
        EventHead(pos=r["pos"], id=r["id"], type=r["type"], charger_id=r["charger_id"])
        for r in rows
    ]


async def list_attempts(
    store: SqliteStore,
    endpoint_id: str,
    *,
    limit: int,
    before_id: int | None = None,
    event_id: str | None = None,
) -> tuple[list[AttemptRow], bool]:
    """Newest first; ``before_id`` is the last id of the previous page."""
    sql, params = "SELECT * FROM webhook_attempts WHERE endpoint_id = ?", [endpoint_id]
    if before_id is not None:
        sql += " AND id < ?"
        params.append(before_id)
    if event_id is not None:
        sql += " AND event_id = ?"
        params.append(event_id)
    rows = await store.fetch_all(sql + " ORDER BY id DESC LIMIT ?", [*params, limit + 1])
    return [_attempt(r) for r in rows[:limit]], len(rows) > limit


async def has_prunable(store: SqliteStore, *, cutoff: str, max_event_pos: int) -> bool:
    row = await store.fetch_one(
        "SELECT 1 FROM events e WHERE e.timestamp < ? AND e.pos <= ? AND NOT EXISTS"
        " (SELECT 1 FROM webhook_deliveries d WHERE d.event_pos = e.pos"
        " AND d.status IN ('pending', 'handoff')) LIMIT 1",
        (cutoff, max_event_pos),
    )
    if row is not None:
        return True
    row = await store.fetch_one(
        "SELECT 1 FROM webhook_attempts a WHERE a.started_at < ? AND NOT EXISTS"
        " (SELECT 1 FROM webhook_deliveries d WHERE d.id = a.delivery_id"
        " AND d.status IN ('pending', 'handoff')) LIMIT 1",
        (cutoff,),
    )
    return row is not None
