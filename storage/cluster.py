"""The cluster's tables (PostgreSQL only, migration 0008): nodes and who holds which charger.

Times are the database's (``now()``), never a node's: nodes' clocks need not agree, and a node
that was paused judges nothing by its own stale sense of time. Every statement here is one
round trip on the store's read pool, outside the group commit: these are rare (a node's
heartbeat every few seconds, a charger's connect and disconnect).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.store import Store

CHANNEL = "chargehook"  # LISTEN/NOTIFY channel of the cluster's wake-ups


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_id: str
    started_at: datetime
    heartbeat_at: datetime
    api_url: str | None
    ocpp_url: str | None
    version: str | None


@dataclass(frozen=True, slots=True)
class Owner:
    node_id: str
    fence: int
    live: bool  # the node's heartbeat is within the lease


@dataclass(frozen=True, slots=True)
class Claim:
    fence: int
    previous: str | None  # the node that held the charger before, if another one


class ClusterTables:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- nodes ---------------------------------------------------------------------------

    async def register(
        self, node_id: str, incarnation: str, *, api_url: str, ocpp_url: str, version: str
    ) -> None:
        await self.store.fetch_all(
            "INSERT INTO cluster_nodes (node_id, incarnation, api_url, ocpp_url, version)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (node_id) DO UPDATE SET"
            " incarnation = EXCLUDED.incarnation, started_at = now(), heartbeat_at = now(),"
            " api_url = EXCLUDED.api_url, ocpp_url = EXCLUDED.ocpp_url,"
            " version = EXCLUDED.version, stopped = false",
            (node_id, incarnation, api_url, ocpp_url, version),
        )

    async def describe(self, node_id: str, *, api_url: str, ocpp_url: str) -> None:
        await self.store.fetch_all(
            "UPDATE cluster_nodes SET api_url = ?, ocpp_url = ? WHERE node_id = ?",
            (api_url, ocpp_url, node_id),
        )

    async def heartbeat(self, node_id: str, incarnation: str, *, conn: Any) -> bool:
        """False when the row is another process's now (the node id is taken twice).
        ``conn``: an asyncpg connection of the node's own, not the busy read pool."""
        found = await conn.fetchval(
            "UPDATE cluster_nodes SET heartbeat_at = now(), stopped = false"
            " WHERE node_id = $1 AND incarnation = $2 RETURNING node_id",
            node_id,
            incarnation,
        )
        return found is not None

    async def stopped(self, node_id: str, incarnation: str) -> None:
        """An orderly stop: the node's chargers were released; it is not lost, just gone."""
        await self.store.fetch_all(
            "UPDATE cluster_nodes SET stopped = true WHERE node_id = ? AND incarnation = ?",
            (node_id, incarnation),
        )

    async def live_nodes(self, ttl: float) -> list[NodeRow]:
        rows = await self.store.fetch_all(
            "SELECT node_id, started_at, heartbeat_at, api_url, ocpp_url, version"
            " FROM cluster_nodes WHERE NOT stopped"
            " AND heartbeat_at > now() - make_interval(secs => ?::float8) ORDER BY node_id",
            (ttl,),
        )
        return [NodeRow(*row) for row in rows]

    async def lost_nodes(self, ttl: float) -> list[str]:
        """Nodes silent past the lease (or stopped) that still hold chargers."""
        rows = await self.store.fetch_all(
            "SELECT DISTINCT o.node_id FROM charger_owners o"
            " LEFT JOIN cluster_nodes n ON n.node_id = o.node_id"
            " WHERE n.node_id IS NULL OR n.stopped"
            " OR n.heartbeat_at <= now() - make_interval(secs => ?::float8)",
            (ttl,),
        )
        return [row[0] for row in rows]

    async def end_sessions_of_lost_nodes(self, ttl: float) -> list[str]:
        """End the database sessions of nodes silent past the lease: a paused one keeps its
        row locks otherwise (its fencing). The nodes whose sessions were ended."""
        rows = await self.store.fetch_all(
            # MATERIALIZED, and the call in the select list: evaluated for the lost sessions
            # only (a volatile call in WHERE may run on every row before the joins).
            "WITH lost AS MATERIALIZED (SELECT b.pid, b.node_id FROM cluster_backends b"
            " JOIN pg_stat_activity a ON a.pid = b.pid AND a.backend_start = b.backend_start"
            " JOIN cluster_nodes n ON n.node_id = b.node_id"
            " WHERE n.heartbeat_at <= now() - make_interval(secs => ?::float8))"
            " SELECT node_id, pg_terminate_backend(pid) FROM lost",
            (ttl,),
        )
        await self.store.fetch_all(
            "DELETE FROM cluster_backends b WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a"
            " WHERE a.pid = b.pid AND a.backend_start = b.backend_start)"
        )
        return sorted({row[0] for row in rows if row[1]})

    async def forget_dead(self, keep_seconds: float) -> None:
        """Rows of nodes long gone and holding nothing."""
        await self.store.fetch_all(
            "DELETE FROM cluster_nodes n WHERE heartbeat_at < now()"
            " - make_interval(secs => ?::float8) AND NOT EXISTS"
            " (SELECT 1 FROM charger_owners o WHERE o.node_id = n.node_id)",
            (keep_seconds,),
        )

    # -- chargers ------------------------------------------------------------------------

    async def claim(self, charger_id: str, node_id: str) -> Claim:
        """Take the charger for ``node_id`` (its newest socket is there): a new fence."""
        row = await self.store.fetch_one(
            "WITH old AS (SELECT node_id FROM charger_owners WHERE charger_id = ?),"
            " claimed AS (INSERT INTO charger_owners (charger_id, node_id, fence)"
            " VALUES (?, ?, 1) ON CONFLICT (charger_id) DO UPDATE SET"
            " node_id = EXCLUDED.node_id, fence = charger_owners.fence + 1, since = now()"
            " RETURNING fence)"
            " SELECT (SELECT fence FROM claimed), (SELECT node_id FROM old)",
            (charger_id, charger_id, node_id),
        )
        assert row is not None
        fence, before = int(row[0]), row[1]
        # ``old`` is the statement's snapshot: a claim racing this one may not show in it,
        # but then the row existed, and the fence counts every claim since it was made.
        previous = before if before not in (None, node_id) else None
        if previous is None and fence > 1 and before is None:
            previous = "?"  # some node claimed it meanwhile
        return Claim(fence=fence, previous=previous)

    async def adopt(self, lost_node: str, node_id: str) -> list[tuple[str, int]]:
        """Take every charger a lost node held (to record that it lost them): (id, fence)."""
        rows = await self.store.fetch_all(
            "UPDATE charger_owners SET node_id = ?, fence = fence + 1, since = now()"
            " WHERE node_id = ? RETURNING charger_id, fence",
            (node_id, lost_node),
        )
        return [(row[0], row[1]) for row in rows]

    async def release(self, charger_id: str, node_id: str, fence: int) -> None:
        """The node no longer holds a socket for the charger (unless it was taken since)."""
        await self.store.fetch_all(
            "DELETE FROM charger_owners WHERE charger_id = ? AND node_id = ? AND fence = ?",
            (charger_id, node_id, fence),
        )

    async def holds(self, charger_id: str, node_id: str, fence: int) -> bool:
        row = await self.store.fetch_one(
            "SELECT 1 FROM charger_owners WHERE charger_id = ? AND node_id = ? AND fence = ?",
            (charger_id, node_id, fence),
        )
        return row is not None

    async def owners(self, charger_ids: list[str], ttl: float) -> dict[str, Owner]:
        if not charger_ids:
            return {}
        rows = await self.store.fetch_all(
            "SELECT o.charger_id, o.node_id, o.fence, COALESCE(NOT n.stopped AND n.heartbeat_at"
            " > now() - make_interval(secs => ?::float8), false)"
            " FROM charger_owners o LEFT JOIN cluster_nodes n ON n.node_id = o.node_id"
            " WHERE o.charger_id = ANY(?::text[])",
            (ttl, charger_ids),
        )
        return {row[0]: Owner(row[1], row[2], row[3]) for row in rows}

    async def held_by(self, node_id: str) -> list[tuple[str, int]]:
        rows = await self.store.fetch_all(
            "SELECT charger_id, fence FROM charger_owners WHERE node_id = ?", (node_id,)
        )
        return [(row[0], row[1]) for row in rows]

    async def unheld_connected(self) -> list[str]:
        """Chargers marked connected that no node holds: their node stopped or lost them
        before it could record it."""
        rows = await self.store.fetch_all(
            "SELECT s.charger_id FROM charger_state s WHERE s.connected = 1 AND NOT EXISTS"
            " (SELECT 1 FROM charger_owners o WHERE o.charger_id = s.charger_id)"
        )
        return [row[0] for row in rows]

    async def take_transaction_ids(self, count: int) -> int:
        """A block of ``count`` transaction ids for this node: the last one of it."""
        row = await self.store.fetch_one(
            "UPDATE store_counters SET value = value + ? WHERE name = 'transaction_ids'"
            " RETURNING value",
            (count,),
        )
        assert row is not None, "store_counters has no transaction_ids row"
        return int(row[0])

    async def notify(self, payload: str) -> None:
        await self.store.fetch_all("SELECT pg_notify(?, ?)", (CHANNEL, payload))
