"""Shared pieces of the webhook tests (no tests here): a real aiohttp receiver on loopback,
an event source that commits events through the store like the OCPP core does, and a
started ``WebhookService`` on a real SQLite file."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from storage import open_store
from storage.records import Event, UnitOfWork
from storage.store import Store
from tests.pg import key_file_of
from webhooks import Catalog, DeliveryConfig, EventType, WebhookService

TEST_TYPES = (
    "charger.connected",
    "charger.disconnected",
    "transaction.started",
    "transaction.updated",
    "transaction.stopped",
    "remote_start_transaction.rejected",
    "ocpp.message",
)

FAST = DeliveryConfig(
    allow_private_targets=True,
    timeout=2.0,
    retry_schedule=(0.05, 0.1, 0.1),
    disable_after=3600.0,
)


def catalog() -> Catalog:
    return Catalog(EventType(name=name, description=name) for name in TEST_TYPES)


@dataclass(frozen=True, slots=True)
class Received:
    headers: dict[str, str]
    body: bytes
    json: dict[str, Any]
    status: int  # what the receiver answered


Responder = Callable[[dict[str, Any], int], Awaitable[tuple[int, dict[str, str]]]]


async def answer_ok(envelope: dict[str, Any], nth: int) -> tuple[int, dict[str, str]]:
    return 200, {}


@dataclass
class Receiver:
    """Records every request; answers with ``respond(envelope, nth attempt of this id)``."""

    respond: Responder = answer_ok
    requests: list[Received] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    url: str = ""
    _tries: dict[str, int] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        envelope = await request.json()
        nth = self._tries[envelope["id"]] = self._tries.get(envelope["id"], 0) + 1
        status, headers = await self.respond(envelope, nth)
        async with self.changed:
            self.requests.append(Received(dict(request.headers), body, envelope, status))
            self.changed.notify_all()
        return web.Response(status=status, headers=headers)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), timeout)

    def delivered(self) -> list[dict[str, Any]]:
        """Envelopes answered with a 2xx, in arrival order."""
        return [r.json for r in self.requests if 200 <= r.status < 300]


@asynccontextmanager
async def receiver(
    respond: Responder = answer_ok, path: str = "/hook", port: int = 0
) -> AsyncIterator[Receiver]:
    rec = Receiver(respond=respond)
    app = web.Application()
    app.router.add_post(path, rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = runner.addresses[0][1]
    rec.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield rec
    finally:
        await runner.cleanup()


class EventSource:
    """Commits events as the OCPP core will: through ``store.commit``, gapless per charger."""

    def __init__(
        self, store: Store, *, first_id: int = 1, sequences: dict[str, int] | None = None
    ) -> None:
        """``first_id`` and ``sequences``: go on after events committed by an earlier run."""
        self.store = store
        self.sequences: dict[str, int] = dict(sequences or {})
        self._ids = itertools.count(first_id)

    def make(self, charger_id: str, event_type: str = "transaction.updated") -> Event:
        seq = None
        if event_type != "ocpp.message":
            seq = self.sequences[charger_id] = self.sequences.get(charger_id, 0) + 1
        return Event(
            id=f"evt_{next(self._ids):06d}{charger_id.replace('-', '')}",
            type=event_type,
            charger_id=charger_id,
            sequence=seq,
            timestamp="2026-02-06T14:30:00.000Z",
            data={"charger": charger_id, "n": seq},
        )

    async def emit(self, charger_id: str, count: int = 1, event_type: str = "transaction.updated"):
        events = [self.make(charger_id, event_type) for _ in range(count)]
        for event in events:  # one unit per event, as one OCPP message each
            await self.store.commit(UnitOfWork().put(event))
        return events


@asynccontextmanager
async def webhook_service(
    target: str, config: DeliveryConfig = FAST, **kwargs: Any
) -> AsyncIterator[tuple[Store, WebhookService]]:
    """The service on a store: ``target`` is a store URL (the ``store_url`` fixture) or a
    SQLite file's path."""
    url = target if "://" in target else f"sqlite:///{target}"
    store = await open_store(url)
    if store.default_key_file is None:
        config = dataclasses.replace(config, secret_key_file=key_file_of(url))
    service = await WebhookService.start(store, config, catalog(), **kwargs)
    store.add_commit_listener(service.notify)
    try:
        yield store, service
    finally:
        await service.close()
        await store.close()


async def settled(service: WebhookService, predicate: Callable[[], bool], timeout: float = 10.0):
    """Wait until ``predicate()`` holds, checked after each answer the engine records."""
    changed = asyncio.Event()
    service.engine.add_observer(lambda *_: changed.set())

    async def wait() -> None:
        while not predicate():
            await changed.wait()
            changed.clear()

    await asyncio.wait_for(wait(), timeout)
