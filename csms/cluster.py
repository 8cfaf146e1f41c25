"""This node's place in the cluster (DESIGN 8): liveness, which charger it holds, wake-ups.

Mechanisms, all in PostgreSQL (no second service):

- Liveness: a row per node in ``cluster_nodes``, its heartbeat written every ``lease_ttl / 3``
  with the database's clock; silent for ``lease_ttl``, the node is lost.
- Ownership: ``charger_owners`` says which node holds a charger's socket, with a fence bumped
  by every claim. The newest connection claims the charger; the node that held it hears of it
  (NOTIFY) and closes its socket without recording anything (the new holder recorded the
  ``replaced`` disconnect). A node records a disconnect only while its fence still stands.
- Lost nodes: every node sweeps for nodes silent past the lease that still hold chargers; the
  first to adopt a charger (one UPDATE, so one node wins) records its ``node_lost`` disconnect
  unless the charger is back elsewhere, then releases it.
- Wake-ups: LISTEN/NOTIFY on one channel. The tables stay the truth: a lost notification
  delays nothing by more than a sweep (commands are also pulled on connect and periodically).

A SQLite file has one node (``Solo``): it holds every charger it serves, with no round trips.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from csms.periodic import every
from storage.cluster import CHANNEL, Claim, ClusterTables, NodeRow, Owner

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]
RECONNECT_FIRST = 0.2
RECONNECT_MAX = 5.0
FORGET_AFTER = 24 * 3600.0  # rows of nodes gone this long (and holding nothing) are deleted


class Solo:
    """One node, alone on its database: every claim succeeds, nobody else is told."""

    shared = False

    def __init__(self, node_id: str, *, api_url: str = "", ocpp_url: str = "") -> None:
        self.node_id = node_id
        self.lease_ttl = 0.0
        self._fence = 0
        self._started = datetime.now(UTC)
        self._api_url, self._ocpp_url = api_url, ocpp_url
        self.handlers: dict[str, Handler] = {}
        self.on_lost_charger: Callable[[str, int], Awaitable[None]] | None = None
        self.on_fence_lost: Callable[[], Awaitable[None]] | None = None

    async def start(self, *, api_url: str, ocpp_url: str, version: str) -> None:
        self._api_url, self._ocpp_url = api_url, ocpp_url

    async def close(self) -> None:
        return None

    async def describe(self, *, api_url: str, ocpp_url: str) -> None:
        """The addresses as bound (a configured port 0 becomes a real one)."""
        self._api_url, self._ocpp_url = api_url, ocpp_url

    async def claim(self, charger_id: str) -> Claim:
        self._fence += 1
        return Claim(fence=self._fence, previous=None)

    async def release(self, charger_id: str, fence: int) -> None:
        return None

    async def holds(self, charger_id: str, fence: int) -> bool:
        return True

    async def owners(self, charger_ids: list[str]) -> dict[str, Owner]:
        return {}

    async def leftovers(self) -> list[tuple[str, int | None]] | None:
        """At start, the chargers whose end of connection the last run left unrecorded, with
        this node's fence on them; None: all the store marks connected (one node)."""
        return None

    async def live_nodes(self) -> list[NodeRow]:
        now = datetime.now(UTC)
        return [NodeRow(self.node_id, self._started, now, self._api_url, self._ocpp_url, None)]

    async def notify(self, kind: str, **data: Any) -> None:
        return None


class PgCluster(Solo):
    """A node of a cluster on PostgreSQL."""

    shared = True

    def __init__(self, tables: ClusterTables, url: str, node_id: str, lease_ttl: float) -> None:
        super().__init__(node_id)
        self.tables = tables
        self.url = url
        self.lease_ttl = lease_ttl
        self.incarnation = secrets.token_hex(8)
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self._listening = asyncio.Event()
        self._last_beat = time.monotonic()
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()

    async def start(self, *, api_url: str, ocpp_url: str, version: str) -> None:
        await self.tables.register(
            self.node_id, self.incarnation, api_url=api_url, ocpp_url=ocpp_url, version=version
        )
        self._last_beat = time.monotonic()
        self._tasks = [
            asyncio.create_task(
                every(self.lease_ttl / 3, self.beat_once, "cluster heartbeat"),
                name="cluster-heartbeat",
            ),
            asyncio.create_task(self._listen_loop(), name="cluster-listen"),
        ]
        try:
            await asyncio.wait_for(self._listening.wait(), 5.0)
        except TimeoutError:
            log.warning("cluster: not listening for wake-ups yet; sweeps cover for it")

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.terminate()
        try:
            await self.tables.stopped(self.node_id, self.incarnation)
        except Exception as exc:
            log.warning("cluster: could not record this node's stop: %s", exc)

    async def describe(self, *, api_url: str, ocpp_url: str) -> None:
        await super().describe(api_url=api_url, ocpp_url=ocpp_url)
        await self.tables.describe(self.node_id, api_url=api_url, ocpp_url=ocpp_url)

    # -- ownership ---------------------------------------------------------------------------

    async def claim(self, charger_id: str) -> Claim:
        claim = await self.tables.claim(charger_id, self.node_id)
        if claim.previous is not None:
            await self.notify("taken", c=charger_id, n=self.node_id, f=claim.fence)
        return claim

    async def release(self, charger_id: str, fence: int) -> None:
        await self.tables.release(charger_id, self.node_id, fence)

    async def holds(self, charger_id: str, fence: int) -> bool:
        return await self.tables.holds(charger_id, self.node_id, fence)

    async def owners(self, charger_ids: list[str]) -> dict[str, Owner]:
        return await self.tables.owners(charger_ids, self.lease_ttl)

    async def live_nodes(self) -> list[NodeRow]:
        return await self.tables.live_nodes(self.lease_ttl)

    async def leftovers(self) -> list[tuple[str, int | None]] | None:
        """What this node id held in its last run, and what no node holds though connected
        (a node lost it before it could record it); not the chargers of live nodes."""
        held: list[tuple[str, int | None]] = list(await self.tables.held_by(self.node_id))
        return held + [(c, None) for c in await self.tables.unheld_connected()]

    # -- wake-ups ----------------------------------------------------------------------------

    async def notify(self, kind: str, **data: Any) -> None:
        try:
            await self.tables.notify(json.dumps({"k": kind, **data}, separators=(",", ":")))
        except Exception as exc:
            # A lost wake-up delays, never loses: the receivers also sweep the tables.
            log.warning("cluster: could not notify %s: %s", kind, exc)

    def _received(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            handler = self.handlers.get(message.get("k"))
        except ValueError:
            log.warning("cluster: ignored a malformed notification %r", payload[:200])
            return
        if handler is None:
            return
        task = asyncio.get_running_loop().create_task(self._handle(handler, message))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _handle(self, handler: Handler, message: dict[str, Any]) -> None:
        try:
            await handler(message)
        except Exception:
            log.exception("cluster: handling %s failed", message.get("k"))

    async def _listen_loop(self) -> None:
        delay = RECONNECT_FIRST
        while not self._closing:
            try:
                conn = await asyncpg.connect(self.url, timeout=2.0)
                await conn.add_listener(CHANNEL, self._received)
            except Exception as exc:
                log.warning("cluster: cannot listen for wake-ups: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            self._listener, delay = conn, RECONNECT_FIRST
            self._listening.set()
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            # A half-open connection never terminates by itself: a ping every beat.
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.lease_ttl / 3)
                except TimeoutError:
                    try:
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 2.0)
                    except Exception:
                        break
            conn.terminate()
            self._listener = None
            if not self._closing:
                log.warning("cluster: the wake-up connection was lost; reconnecting")

    # -- liveness and lost nodes -------------------------------------------------------------

    async def beat_once(self) -> None:
        """Heartbeat, then adopt what lost nodes held."""
        gap = time.monotonic() - self._last_beat
        if not await self.tables.heartbeat(self.node_id, self.incarnation):
            log.error(
                "cluster: node id %s was taken by another process; set cluster.node_id to a"
                " unique value on each node",
                self.node_id,
            )
            await self.tables.register(
                self.node_id, self.incarnation, api_url="", ocpp_url="", version=""
            )
        self._last_beat = time.monotonic()
        if gap > self.lease_ttl and self.on_fence_lost is not None:
            # Silent past the lease (a pause, a partition): others may have taken what this
            # node held; sockets whose fence fell are closed.
            await self.on_fence_lost()
        for lost in await self.tables.lost_nodes(self.lease_ttl):
            if lost == self.node_id:
                continue
            adopted = await self.tables.adopt(lost, self.node_id)
            if adopted:
                log.info(
                    "cluster: node %s is lost; recording the end of its %d charger connections",
                    lost,
                    len(adopted),
                )
            for charger_id, fence in adopted:
                if self.on_lost_charger is not None:
                    await self.on_lost_charger(charger_id, fence)
        await self.tables.forget_dead(FORGET_AFTER)


def default_node_id(hostname: str, ocpp_port: int) -> str:
    return f"{hostname}:{ocpp_port}"
