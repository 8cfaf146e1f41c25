"""The engine's writer: its statements, in the order it made them, batched into units.

One flush at a time, so a later write never becomes durable before an earlier one: the
result of event N is durable no later than the attempt record of event N+1, whatever
crashes. Everything written while a flush is on its way goes into the next one, which keeps
units large under load (thousands of deliveries a second as a few commits).

What nobody waits for (``add``: the answers to POSTs) also waits until ``LINGER`` after
the last flush began: at moderate rates each flush carried one or two answers, a commit of
its own each (at 1,000 MeterValues/s, ~500 of the server's ~1,250 commits a second). An
answer is at least once either way: one not yet durable when the process dies is posted
again, with the same ``webhook-id``. What someone waits for (``append``, ``write``: the
admin API, cursors, settling) is flushed at once, with everything before it.

The store may be away (``StoreUnavailable``). The engine's own bookkeeping (``append``) is then
kept and written once it is back, in the same order, so no delivery row, attempt or cursor is
lost: the engine goes on delivering meanwhile, from memory. Such a failed flush may have been
committed all the same (its COMMIT sent, the answer lost), and writing it twice would fail on
its inserts; so each flush also writes a token of its own to ``webhook_counters`` (a random
start per journal, then counted up: no ``os.urandom`` per flush), and after a failure the
token read back says whether it was. What a caller awaits (``write``: the admin
API) fails at once instead, as any request does while the store is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from storage import webhook_tables as tables
from storage.records import Event, Statement, UnitOfWork
from storage.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

Write = Statement | Event


@dataclass(slots=True)
class _Entry:
    writes: list[Write]
    # Resolved when the writes are durable (or failed for good); None: nobody waits (``add``)
    done: asyncio.Future[None] | None
    keep: bool  # kept through an outage and written when the store is back


# The webhook_counters row holding the token of the last flush written: one per node
# (``journal_flush:<node id>``), as each node has its own journal.
FLUSH_MARK = "journal_flush"
RETRY_FIRST = 0.25  # seconds before the first look at a store that was away; doubling
RETRY_MAX = 2.0  # also the longest the bookkeeping lags behind a store that is back
# Seconds between the starts of two flushes when nobody waits for the second (see above):
# chargehook-webhooks at 1,000 MeterValues/s open loop, one core, 866-885 -> 753-811 us of
# server CPU per call.
LINGER = 0.02


class Journal:
    def __init__(self, store: Store, *, node_id: str = "", first: Statement | None = None) -> None:
        self._store = store
        self._mark = f"{FLUSH_MARK}:{node_id}"
        self._first = [] if first is None else [first]  # leads every flush (the lease lock)
        self._entries: list[_Entry] = []  # appended since the last flush began
        # Flush tokens: unique within this journal, and (a random start) across restarts.
        self._tokens = itertools.count(secrets.randbits(61))
        self._wakeup = asyncio.Event()
        self._urgent = asyncio.Event()  # someone waits (or the journal closes): no linger
        self._closing = asyncio.Event()
        self._flushed = -LINGER  # loop time the last flush began
        self._task = asyncio.create_task(self._run(), name="webhook-journal")

    def append(self, writes: Iterable[Write]) -> asyncio.Future[None]:
        """Queue writes; the future resolves once they are durable. While the store is away
        they wait, and are written when it is back (failing only if the journal closes
        first, or if the store refuses them: logged here, so the engine need not look)."""
        future = self._add(writes, keep=True)
        future.add_done_callback(_retrieve)
        return future

    def add(self, writes: Iterable[Write]) -> None:
        """``append`` for a caller that does not wait: no future, and what follows another
        such add joins its entry (the engine records every answer this way: a future, its
        callback and an entry per delivery were measurable)."""
        entries = self._entries
        if entries and entries[-1].done is None:
            entries[-1].writes.extend(writes)
        else:
            entries.append(_Entry(list(writes), None, True))
        self._wakeup.set()

    async def write(self, writes: Iterable[Write]) -> None:
        """Write and wait until durable; raises ``StoreUnavailable`` if the store is away
        (the writes were then not written, unless that failure hid a commit)."""
        await asyncio.shield(self._add(writes, keep=False))

    def _add(self, writes: Iterable[Write], *, keep: bool) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._entries.append(_Entry(list(writes), future, keep))
        self._wakeup.set()
        self._urgent.set()
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            linger = self._flushed + LINGER - loop.time()
            if linger > 0 and not self._urgent.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(linger):
                        await self._urgent.wait()
            self._urgent.clear()
            self._flushed = loop.time()
            entries, self._entries = self._entries, []
            if entries:
                await self._flush(entries)
            if self._closing.is_set() and not self._entries:
                return

    async def _flush(self, entries: list[_Entry]) -> None:
        """Write the entries in one unit, again and again while the store is away."""
        delay = RETRY_FIRST
        while True:
            token = next(self._tokens)
            writes = [write for entry in entries for write in entry.writes]
            unit = UnitOfWork(
                writes=[
                    *self._first,
                    *tables.in_batch_order(writes),
                    tables.set_counter(self._mark, token),
                ]
            )
            try:
                await self._store.commit(unit)
            except StoreUnavailable as exc:
                failure: Exception = exc
            except Exception as exc:
                log.exception("webhook bookkeeping could not be written")
                _settle(entries, exc)
                return
            else:
                _settle(entries, None)
                return
            # Unknown whether it was written: callers that wait hear of it now; the rest is
            # kept for when the store is back (the token then says if it was written).
            _settle([e for e in entries if not e.keep], failure)
            entries = [e for e in entries if e.keep]
            if not entries:
                return
            if self._closing.is_set():  # that was the last try
                log.error("webhook bookkeeping lost at close, the store is away: %s", failure)
                _settle(entries, failure)
                return
            log.warning("webhook bookkeeping waits for the store: %s", failure)
            while True:
                closing = await self._closed_within(delay)  # on close: one last try now
                delay = min(delay * 2, RETRY_MAX)
                try:
                    counters = await tables.load_counters(self._store)
                except Exception as exc:
                    if closing:
                        log.error("webhook bookkeeping lost at close, the store is away: %s", exc)
                        _settle(entries, exc)
                        return
                    log.debug("the store is still away: %s", exc)
                    continue
                break
            if counters.get(self._mark) == token:
                log.info("webhook bookkeeping had been written before the store went away")
                _settle(entries, None)
                return
            log.info("the store is back: writing the webhook bookkeeping that waited")

    async def _closed_within(self, seconds: float) -> bool:
        """Wait ``seconds``, or less if the journal closes meanwhile; whether it does."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Flush what is queued, then stop (giving up what waits for a store that is away)."""
        self._closing.set()
        self._wakeup.set()
        self._urgent.set()
        await self._task


def _settle(entries: list[_Entry], failure: Exception | None) -> None:
    for entry in entries:
        done = entry.done
        if done is None or done.done():
            continue
        if failure is None:
            done.set_result(None)
        else:
            done.set_exception(failure)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
