"""The engine's writer: its statements, in the order it made them, batched into units.

One flush at a time, so a later write never becomes durable before an earlier one: the
result of event N is durable no later than the attempt record of event N+1, whatever
crashes. Everything written while a flush is on its way goes into the next one, which keeps
units large under load (thousands of deliveries a second as a few commits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from storage.records import Event, Statement, UnitOfWork
from storage.store import Store

log = logging.getLogger(__name__)

Write = Statement | Event


def ordered(writes: list[Write]) -> list[Write]:
    """The writes in an order that keeps their effect and makes long runs of one statement
    (one ``executemany`` each, instead of a thread round trip per row).

    Inserts come first, then updates of deliveries and attempts, then updates of endpoints,
    then deletes. Within inserts and delivery/attempt updates, each statement's rows go
    together, at the place the statement first appears, keeping their own order: those
    statements commute (each sets its own columns, or is an insert a later row depends on,
    such as an event before the delivery that selects its pos). Endpoint updates and
    deletes keep their exact order.
    """
    first: dict[str, int] = {}

    def key(item: tuple[int, Write]) -> tuple[int, int]:
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


class Journal:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._buffer: list[Write] = []  # written since the last flush began
        self._waiters: list[asyncio.Future[None]] = []  # resolved when the buffer is durable
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="webhook-journal")

    def append(self, writes: Iterable[Write]) -> asyncio.Future[None]:
        """Queue writes; the future resolves once they are durable (or fails)."""
        self._buffer.extend(writes)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._wakeup.set()
        return future

    async def write(self, writes: Iterable[Write]) -> None:
        await asyncio.shield(self.append(writes))

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            buffer, self._buffer = self._buffer, []
            waiters, self._waiters = self._waiters, []
            failure: Exception | None = None
            if buffer:
                try:
                    await self._store.commit(UnitOfWork(writes=ordered(buffer)))
                except Exception as exc:
                    log.exception("webhook bookkeeping could not be written")
                    failure = exc
            for waiter in waiters:
                if waiter.done():
                    continue
                if failure is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(failure)
            if self._closing and not self._buffer:
                return

    async def close(self) -> None:
        """Flush what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        await self._task
