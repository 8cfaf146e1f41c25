"""Delivery leases on PostgreSQL: which partitions this node delivers, kept with the database.

Every ``ttl / 3`` a round renews the leases held (same token), learns which nodes are live
(``cluster_nodes`` heartbeats, or leases not run out), gives back what is above an even
share (after the engine has stopped those streams and written their state) and takes free
or expired partitions up to it (bumping their tokens). Times that decide ownership are the
database's (``now()``), so the nodes' clocks never have to agree; each node keeps its own
deadline per lease on its monotonic clock (``webhooks.partitions``), which stops its posts
before the database would let another node take over. A renewal that finds a lease taken
(or the round failing until a lease runs out locally) stops the partition at once.

SQLite has one node: ``Engine`` then holds every partition, with no lease and no round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from storage import webhook_tables as tables
from storage.store import Store
from webhooks.partitions import Grant, Lease, plan, post_window, target_count

log = logging.getLogger(__name__)

Taken = Callable[[list[Grant]], Awaitable[None]]
Lost = Callable[[list[int]], None]
GiveBack = Callable[[list[int]], Awaitable[bool]]


class LeaseKeeper:
    def __init__(
        self,
        store: Store,
        *,
        node_id: str,
        ttl: float,
        on_taken: Taken,
        on_lost: Lost,
        on_give_back: GiveBack,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.node_id = node_id
        self.ttl = ttl
        self.margin = ttl / 5  # a POST must be over this long before the lease runs out
        self._on_taken = on_taken
        self._on_lost = on_lost
        self._on_give_back = on_give_back  # stop, settle and write those streams; ok?
        self._monotonic = monotonic
        self.leases: dict[int, Lease] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.rounds = 0  # rounds completed (tests wait on it)

    async def start(self) -> None:
        """One round now (so a node alone starts with its partitions), then renewals every
        ttl/3 and balancing rounds as often: two tasks, so that a long take-over (catching
        up on a partition's backlog) never delays a renewal."""
        try:
            await self.round()
        except Exception:
            log.exception("delivery leases: the first round failed; retrying")
        self._tasks = [
            asyncio.create_task(self._every(self.renew), name="webhook-lease-renew"),
            asyncio.create_task(self._every(self.balance), name="webhook-lease-balance"),
        ]

    async def close(self, *, release: bool = True) -> None:
        """Stop renewing; ``release``: give the partitions back at once (their streams were
        stopped and written by the engine first). Without it they run out after ttl."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if release and self.leases:
            held = {p: lease.token for p, lease in self.leases.items()}
            if await self._on_give_back(sorted(held)):
                with contextlib.suppress(Exception):
                    await tables.release_leases(self._store, node_id=self.node_id, held=held)
            self.leases.clear()

    def window(self, partition: int) -> float | None:
        """Seconds a POST for this partition may take from now (None: no lease needed);
        zero or less: do not post now. KeyError: not held."""
        return post_window(self.leases[partition], self._monotonic(), self.margin)

    def valid(self, partition: int) -> bool:
        """Still ours by this node's clock (an answer may be recorded)."""
        lease = self.leases.get(partition)
        if lease is None:
            return False
        return lease.valid_until is None or self._monotonic() < lease.valid_until

    def wake(self) -> None:
        self._wake.set()

    async def _every(self, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ttl / 3):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("delivery leases: %s failed: %s", work.__name__, exc)
                self._expire()

    def _expire(self) -> None:
        """Leases run out by this node's clock while the database was not reachable: stop
        them (a renewal that works again gets them back only if nobody took them)."""
        now = self._monotonic()
        gone = [p for p, lease in self.leases.items() if lease.valid_until is not None
                and lease.valid_until <= now]  # fmt: skip
        if gone:
            self._drop(gone, "its lease ran out while the database was away")

    def _drop(self, partitions: list[int], why: str) -> None:
        for partition in partitions:
            self.leases.pop(partition, None)
            log.warning(
                "delivery partition %d lost: %s", partition, why, extra={"partition": partition}
            )
        self._on_lost(partitions)

    async def round(self) -> None:
        """A renewal, then a balancing round."""
        await self.renew()
        await self.balance()

    async def renew(self) -> None:
        started = self._monotonic()  # before the query: never later than the database
        held = {p: lease.token for p, lease in self.leases.items()}
        renewed = await tables.renew_leases(
            self._store, node_id=self.node_id, ttl=self.ttl, held=held
        )
        lost = sorted(p for p in set(held) - renewed if p in self.leases
                      and self.leases[p].token == held[p])  # fmt: skip
        if lost:
            self._drop(lost, "another node holds it now")
        for partition in renewed:
            lease = self.leases.get(partition)
            if lease is not None and lease.token == held[partition]:
                lease.valid_until = started + self.ttl

    async def balance(self) -> None:
        live = await tables.live_nodes(self._store, node_id=self.node_id, ttl=self.ttl)
        take, give = plan(held=len(self.leases), target=target_count(len(live)))
        if give:
            surplus = sorted(self.leases)[-give:]
            if await self._on_give_back(surplus):
                tokens = {p: self.leases.pop(p).token for p in surplus if p in self.leases}
                await tables.release_leases(self._store, node_id=self.node_id, held=tokens)
                log.info("gave back delivery partitions %s (%d live nodes)", surplus, len(live))
        if take:
            await self._take(take, len(live))
        self.rounds += 1

    async def _take(self, limit: int, live: int) -> None:
        started = self._monotonic()
        taken = await tables.acquire_leases(
            self._store, node_id=self.node_id, ttl=self.ttl, limit=limit, held=list(self.leases)
        )
        grants: list[Grant] = []
        for t in taken:
            self.leases[t.partition] = Lease(token=t.token, valid_until=started + self.ttl)
            grants.append(
                Grant(
                    partition=t.partition,
                    token=t.token,
                    cursor=t.cursor,
                    previous_node=t.previous_node,
                )
            )
            if t.previous_node is not None and t.previous_node != self.node_id:
                log.info(
                    "took over partition %d from %s",
                    t.partition,
                    t.previous_node,
                    extra={"partition": t.partition, "fromNode": t.previous_node},
                )
        if not grants:
            return
        log.info(
            "delivery partitions taken: %d (now %d held, %d live nodes)",
            len(grants),
            len(self.leases),
            live,
        )
        try:
            await self._on_taken(grants)
        except BaseException:
            # Not taken over after all (the store went away meanwhile): give them back.
            mine = {g.partition: g.token for g in grants}
            for partition in mine:
                self.leases.pop(partition, None)
            self._on_lost(list(mine))
            with contextlib.suppress(Exception):
                await tables.release_leases(self._store, node_id=self.node_id, held=mine)
            raise
