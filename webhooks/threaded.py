"""The webhook service on an event loop of its own, in a thread of the same process.

Why: on the loop that also serves the chargers, every await on the delivery path (record the
attempt, post, record the result) waits for a full turn of that loop, which under load is
the time to handle one message of every busy charger (~300 ms with 1,000 of them). Delivery
then falls seconds behind ingest. On its own loop, its awaits wait only for its own work;
the two loops share the CPU through the GIL. The delivery engine keeps its own store
reader to the same SQLite file (WAL: readers never block) and writes through the CSMS's one
writer connection and thread (two writers would take turns through SQLite's sleeping busy
handler).

``ThreadedWebhookService`` offers what the CSMS and the admin API use of ``WebhookService``
(``webhooks.admin.WebhookAdmin``, method by method): coroutines run on the service's loop and
are awaited from the caller's; the few plain reads (``wants``, ``get_endpoint``,
``list_endpoints``) read the service's state directly, which holds under the GIL (whole-dict
copies, no iteration over live views).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from storage.records import Event
from storage.store import Store
from storage.webhook_tables import AttemptRow
from webhooks.catalog import Catalog
from webhooks.config import DeliveryConfig
from webhooks.endpoints import Endpoint
from webhooks.service import TestResult, WebhookService

log = logging.getLogger(__name__)

T = TypeVar("T")


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class ThreadedWebhookService:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        store: Store,
        service: WebhookService,
    ) -> None:
        self._loop = loop  # the service's own loop, run by ``thread``
        self._thread = thread
        self._store = store  # the service's own connections to the database
        self.service = service
        self.catalog = service.catalog
        self._closed = False

    @classmethod
    async def start(
        cls, main_store: Store, config: DeliveryConfig, catalog: Catalog
    ) -> ThreadedWebhookService:
        """The service on its own loop, with ``main_store.open_sibling()`` as its store.
        Delivery gives way to the caller's thread (the CSMS loop: charger answers first)."""
        host_cpu = _thread_cpu_clock(threading.get_ident())
        host_loop = asyncio.get_running_loop()
        loop = _new_loop()
        thread = threading.Thread(target=loop.run_forever, name="webhooks", daemon=True)
        thread.start()

        async def open_service() -> tuple[Store, WebhookService]:
            store = await main_store.open_sibling()
            try:
                service = await WebhookService.start(store, config, catalog)
                store.add_commit_listener(service.notify)  # its own events (webhook.disabled)
                if host_cpu is not None:
                    service.engine.defer_to(host_cpu, host_loop.call_soon_threadsafe)
                return store, service
            except BaseException:
                await store.close()
                raise

        try:
            store, service = await _await_in(loop, open_service())
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, 10)
            loop.close()
            raise
        return cls(loop, thread, store, service)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await _await_in(self._loop, self.service.close())
            await _await_in(self._loop, self._store.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 10)
            if not self._thread.is_alive():
                self._loop.close()

    # -- what the CSMS calls --------------------------------------------------------------

    def notify(self, events: Sequence[Event], first_pos: int) -> None:
        """The main store's commit listener: hand the events to the service's loop."""
        if not self._closed:
            with contextlib.suppress(RuntimeError):  # the loop is stopping
                self._loop.call_soon_threadsafe(self.service.notify, events, first_pos)

    def wants(self, event_type: str) -> bool:
        return self.service.wants(event_type)

    # -- what metrics read ----------------------------------------------------------------

    def add_commit_listener(self, listener: Callable[[Sequence[Event], int], None]) -> None:
        """Listen to the service's own store too (the events it writes, webhook.disabled);
        the listener runs on the service's thread."""
        self._store.add_commit_listener(listener)

    def add_attempt_observer(self, observer: Callable[[str, bool, float], None]) -> None:
        """``Engine.add_attempt_observer``; the observer runs on the service's thread."""
        self.service.engine.add_attempt_observer(observer)

    async def pending_snapshot(self) -> dict[str, tuple[int, str | None]]:
        """Per endpoint: deliveries pending and the id of the oldest event among them,
        computed on the service's loop (its queues change only there)."""
        engine = self.service.engine

        async def snapshot() -> dict[str, tuple[int, str | None]]:
            counts = engine.pending_snapshot()
            oldest = [pos for _, pos in counts.values() if pos is not None]
            ids = await engine.event_ids_at(oldest) if oldest else {}
            return {
                endpoint_id: (count, None if pos is None else ids.get(pos))
                for endpoint_id, (count, pos) in counts.items()
            }

        return await _await_in(self._loop, snapshot())

    # -- what the admin API calls ---------------------------------------------------------

    def list_endpoints(self) -> list[Endpoint]:
        return self.service.list_endpoints()

    def get_endpoint(self, endpoint_id: str) -> Endpoint:
        return self.service.get_endpoint(endpoint_id)

    async def create_endpoint(self, spec: Mapping[str, Any]) -> Endpoint:
        return await self._run(self.service.create_endpoint(spec))

    async def update_endpoint(self, endpoint_id: str, patch: Mapping[str, Any]) -> Endpoint:
        return await self._run(self.service.update_endpoint(endpoint_id, patch))

    async def delete_endpoint(self, endpoint_id: str) -> None:
        await self._run(self.service.delete_endpoint(endpoint_id))

    async def rotate_secret(self, endpoint_id: str, secret: Any = None) -> Endpoint:
        return await self._run(self.service.rotate_secret(endpoint_id, secret))

    async def send_test(self, endpoint_id: str) -> TestResult:
        return await self._run(self.service.send_test(endpoint_id))

    async def replay(
        self, endpoint_id: str, *, since: str, until: str | None, only_failed: bool
    ) -> int:
        return await self._run(
            self.service.replay(endpoint_id, since=since, until=until, only_failed=only_failed)
        )

    async def redeliver(self, event_id: str, endpoint_id: str | None) -> list[str]:
        return await self._run(self.service.redeliver(event_id, endpoint_id))

    async def attempts(
        self, endpoint_id: str, *, limit: int, starting_after: str | None, event_id: str | None
    ) -> tuple[list[AttemptRow], bool]:
        return await self._run(
            self.service.attempts(
                endpoint_id, limit=limit, starting_after=starting_after, event_id=event_id
            )
        )

    # -- what cluster tests and metrics read -----------------------------------------------

    def held_back(self) -> float:
        """Seconds delivery held back for charger answers (webhooks/governor.py): a read
        of one float."""
        return self.service.engine.dispatcher.governor.held

    def partitions_held(self) -> int:
        """How many delivery partitions this node holds now (a plain read of a dict's size)."""
        return self.service.engine.ledger.held_count()

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of the service's coroutines on its loop; await its result here."""
        return await _await_in(self._loop, coro)


def _thread_cpu_clock(thread_id: int) -> Callable[[], float] | None:
    """A reader of that thread's CPU time, from any thread (None where the platform has no
    per-thread CPU clocks: delivery then does not give way)."""
    try:
        clock = time.pthread_getcpuclockid(thread_id)
        time.clock_gettime(clock)
    except (AttributeError, OSError):
        return None
    return lambda: time.clock_gettime(clock)


async def _await_in(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on ``loop`` (another thread's) and await its result here."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))
