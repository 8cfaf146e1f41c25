"""The ledger: the one part of the engine that writes delivery rows, attempts, fan-out cursors
and counters, through one ordered ``Journal``.

It owns what says how far the store is: the deliveries that live only in memory until their
first answer (``UnwrittenDeliveries``), each partition's durable fan-out cursor (kept below
the oldest of them), delivery ids, and the fences of the partitions this node holds (on
PostgreSQL every write for a partition checks its lease in the same transaction). Fan-out
and dispatch decide; the ledger writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from storage import webhook_tables as tables
from storage.records import Event, Statement
from storage.store import Store
from webhooks.journal import Journal, Write
from webhooks.partitions import PartitionCache
from webhooks.scheduler import Pending
from webhooks.timefmt import iso_utc
from webhooks.unwritten import StreamKey, Unwritten, UnwrittenDeliveries

ID_BLOCK = 100_000  # delivery ids a node reserves at a time (PostgreSQL, several nodes)
CURSOR_EVERY = 0.5  # seconds between writes of moved cursors (a lagging cursor only re-reads)


class Ledger:
    def __init__(
        self,
        store: Store,
        *,
        node_id: str,
        clustered: bool,
        clock: Callable[[], float],
        new_id: Callable[[str], str],
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.clustered = clustered  # PostgreSQL: leases, fences and id blocks
        self.clock = clock
        self.new_id = new_id
        self.journal = Journal(
            store, node_id=node_id, first=tables.lock_leases(node_id) if clustered else None
        )
        self.lock = asyncio.Lock()  # held while allocating delivery ids and writing their rows
        self.partition_of = PartitionCache()
        self._unwritten = UnwrittenDeliveries()  # fanned out, rows not written yet
        self._fences: dict[int, tables.Fence | None] = {}  # the partitions held
        self._floors: dict[int, int] = {}  # a held partition's events up to here: not ours
        self._cursors: dict[int, int] = {}  # as last written
        self._catching: set[int] = set()  # taken over, not fanned out up to ``fanned_to`` yet
        self._cursor_due = 0.0  # monotonic: when moved cursors may be written again
        self._cursor_timer: asyncio.TimerHandle | None = None
        self.fanned_to = 0  # events up to here are fanned out (in memory)
        self._last_id = 0  # the last delivery id given out
        self._id_limit = 0  # clustered: the last id of the reserved block
        self._system_sequence = 0

    async def start(self) -> None:
        counters = await tables.load_counters(self.store)
        self._system_sequence = counters.get(tables.SYSTEM_SEQUENCE, 0)
        if not self.clustered:
            self._last_id = max(
                counters.get(tables.DELIVERY_ID, 0), await tables.max_delivery_id(self.store)
            )
            self._id_limit = -1  # unlimited

    async def close(self) -> None:
        """Write the cursors as they are, and what waits; then stop."""
        if self._cursor_timer is not None:
            self._cursor_timer.cancel()
        self.append([], cursors=True)
        await self.journal.close()

    # -- partitions ----------------------------------------------------------------------

    def hold(self, partition: int, token: int, cursor: int) -> None:
        """This node delivers the partition from now on, from its durable cursor."""
        self._fences[partition] = (partition, self.node_id, token) if self.clustered else None
        self._floors[partition] = cursor
        self._cursors[partition] = cursor
        self._catching.add(partition)  # until its events up to ``fanned_to`` are fanned out

    def let_go(self, partition: int) -> None:
        """The partition is another node's (or will be): nothing of it is written any more."""
        self._fences.pop(partition, None)
        self._floors.pop(partition, None)
        self._cursors.pop(partition, None)
        self._catching.discard(partition)
        self._unwritten.drop_partition(partition)

    def holds(self, partition: int) -> bool:
        return partition in self._fences

    def held(self) -> list[int]:
        return sorted(self._fences)

    def held_count(self) -> int:
        """How many partitions are held: one atomic read, safe from another thread."""
        return len(self._fences)

    def fence(self, partition: int) -> tables.Fence | None:
        return self._fences.get(partition)

    def token(self, partition: int) -> int | None:
        """The token the partition is held with (0 on SQLite); None: not held."""
        if partition not in self._fences:
            return None
        fence = self._fences[partition]
        return 0 if fence is None else fence[2]

    def caught_up(self, partitions: list[int]) -> None:
        """The partitions' events up to ``fanned_to`` are fanned out: their cursors may move."""
        self._catching.difference_update(partitions)

    def wanted(self, partition: int, pos: int) -> bool:
        """Is this event (of this partition) one this node fans out?"""
        floor = self._floors.get(partition)
        return floor is not None and pos > floor

    # -- ids -----------------------------------------------------------------------------

    async def reserve_ids(self, count: int, *, above: int = 0) -> None:
        """Make sure ``count`` ids can be given out, all above ``above`` (a stream taken over
        has rows up to it: its new deliveries must come after them). Hold ``lock``."""
        if self._id_limit < 0:
            self._last_id = max(self._last_id, above)
            return
        if self._last_id < above or self._last_id + count > self._id_limit:
            block = max(ID_BLOCK, count)
            limit = await tables.reserve_delivery_ids(self.store, block)
            self._last_id, self._id_limit = limit - block, limit

    def next_id(self) -> int:
        """The next delivery id (reserved first); hold ``lock`` until its row is written."""
        self._last_id += 1
        return self._last_id

    def id_counter(self) -> list[Write]:
        """One node: the counter, so ids stay unique after their rows are pruned."""
        return [] if self.clustered else [tables.set_counter(tables.DELIVERY_ID, self._last_id)]

    # -- rows ----------------------------------------------------------------------------

    def new_row(self, endpoint_id: str, pos: int, event_id: str, charger_id: str | None,
                now: float, writes: list[Write]) -> Pending:  # fmt: skip
        """A delivery written now (replay, redeliver: the store must see it at once; behind
        a failed head: it may wait for hours)."""
        delivery_id = self.next_id()
        row = _new_row(delivery_id, endpoint_id, pos, event_id, charger_id, tables.PENDING, now)
        writes.append(tables.insert_delivery(row, self._fences.get(self.partition_of(charger_id))))
        return Pending(
            delivery_id=delivery_id,
            endpoint_id=endpoint_id,
            charger_id=charger_id,
            event_pos=pos,
            next_at=now,
        )

    def handoff_row(self, endpoint_id: str, pos: int, event_id: str, charger_id: str | None,
                    now: float) -> Write:  # fmt: skip
        """A delivery for a partition another node holds (replay, redeliver through this
        node's API): written for the holder to take into its streams (unfenced: not ours)."""
        return tables.insert_delivery(
            _new_row(self.next_id(), endpoint_id, pos, event_id, charger_id, tables.HANDOFF, now)
        )

    def in_memory(self, endpoint_id: str, pos: int, event_id: str, charger_id: str | None,
                  partition: int, now: float, created_at: str) -> Pending:  # fmt: skip
        """A fanned-out delivery, in memory until its first answer."""
        delivery_id = self.next_id()
        self._unwritten.add(
            delivery_id,
            Unwritten(
                endpoint_id=endpoint_id,
                event_pos=pos,
                event_id=event_id,
                charger_id=charger_id,
                created_at=created_at,
                partition=partition,
            ),
        )
        return Pending(
            delivery_id=delivery_id,
            endpoint_id=endpoint_id,
            charger_id=charger_id,
            event_pos=pos,
            next_at=now,
        )

    def settle_unwritten(self, delivery_id: int, key: StreamKey) -> Unwritten | None:
        """The delivery answered: its row-to-be (None if it has a row already)."""
        return self._unwritten.settle(delivery_id, key)

    def write_out(self, endpoint_id: str) -> list[Write]:
        """Rows for the endpoint's deliveries that live in memory only, as still pending."""
        return self._pending_rows(self._unwritten.take_endpoint(endpoint_id))

    def write_out_stream(self, key: StreamKey) -> list[Write]:
        """Rows for a stream's deliveries waiting in memory behind a head that failed: they
        may wait for hours, and must not hold the fan-out cursor (and retention) back."""
        return self._pending_rows(self._unwritten.take_stream(key))

    def drop_endpoint(self, endpoint_id: str) -> None:
        self._unwritten.drop_endpoint(endpoint_id)

    def _pending_rows(self, taken: list[tuple[int, Unwritten]]) -> list[Write]:
        now = self.clock()
        return [
            tables.upsert_delivery(
                tables.DeliveryRow(
                    id=delivery_id,
                    endpoint_id=d.endpoint_id,
                    event_pos=d.event_pos,
                    event_id=d.event_id,
                    charger_id=d.charger_id,
                    status=tables.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=d.created_at,
                ),
                self._fences.get(d.partition),
            )
            for delivery_id, d in taken
        ]

    def system_event_now(
        self, event_type: str, data: dict[str, object]
    ) -> tuple[Event, list[Write]]:
        """One node: an event of no charger, with the next sequence of its own (its counter
        in the same transaction). The caller writes the returned rows."""
        assert not self.clustered, "clustered: system_event (the sequence is the database's)"
        self._system_sequence += 1
        return self._event(event_type, data, self._system_sequence), [
            tables.set_counter(tables.SYSTEM_SEQUENCE, self._system_sequence)
        ]

    async def system_event(
        self, event_type: str, data: dict[str, object]
    ) -> tuple[Event, list[Write]]:
        """As ``system_event_now``; clustered, the sequence is taken from the database's
        counter (one round trip), so that nodes never give out the same one."""
        if not self.clustered:
            return self.system_event_now(event_type, data)
        sequence = await tables.next_system_sequence(self.store)
        return self._event(event_type, data, sequence), []

    def _event(self, event_type: str, data: dict[str, object], sequence: int) -> Event:
        return Event(
            id=self.new_id("evt"),
            type=event_type,
            charger_id=None,
            sequence=sequence,
            timestamp=iso_utc(self.clock()),
            data=data,
        )

    # -- writing -------------------------------------------------------------------------

    def append(self, writes: list[Write], *, cursors: bool = False) -> asyncio.Future[None]:
        """Journal these writes (in order after everything appended before), and the moved
        cursors after them when they are due (or ``cursors``: at once, and the future then
        also covers everything appended before)."""
        self._cursors_due(writes, cursors)
        if not writes and not cursors:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return self.journal.append(writes)

    def add(self, writes: list[Write]) -> None:
        """``append`` for a caller that does not wait for durability (fan-out, answers)."""
        self._cursors_due(writes, False)
        if writes:
            self.journal.add(writes)

    def _cursors_due(self, writes: list[Write], now_: bool) -> None:
        """Add the moved cursors to ``writes`` when due (or ``now_``); else see that they
        are written soon, also when idle."""
        now = time.monotonic()
        if now_ or now >= self._cursor_due:
            self._cursor_due = now + CURSOR_EVERY
            writes += self._moved_cursors()
        elif self._cursor_timer is None:
            self._cursor_timer = asyncio.get_running_loop().call_later(
                self._cursor_due - now, self._write_cursors
            )

    def _write_cursors(self) -> None:
        self._cursor_timer = None
        self.append([])

    async def write(self, writes: Iterable[Write]) -> None:
        """Write and wait until durable (raises ``StoreUnavailable`` if the store is away)."""
        await self.journal.write(writes)

    async def settled(self) -> None:
        """Everything appended so far is durable, cursors included."""
        await asyncio.shield(self.append([], cursors=True))

    def _moved_cursors(self) -> list[Statement]:
        out: list[Statement] = []
        fanned_to = self.fanned_to
        for partition, floor in self._floors.items():
            if partition in self._catching:
                continue
            cursor = max(floor, self._unwritten.cursor(fanned_to, partition))
            if cursor != self._cursors.get(partition):
                self._cursors[partition] = cursor
                out.append(tables.set_cursor(partition, cursor, self._fences.get(partition)))
        return out


def _new_row(
    delivery_id: int,
    endpoint_id: str,
    pos: int,
    event_id: str,
    charger_id: str | None,
    status: str,
    now: float,
) -> tables.DeliveryRow:
    """A delivery not attempted yet, due now."""
    return tables.DeliveryRow(
        id=delivery_id,
        endpoint_id=endpoint_id,
        event_pos=pos,
        event_id=event_id,
        charger_id=charger_id,
        status=status,
        attempts=0,
        next_attempt_at=now,
        created_at=iso_utc(now),
    )
