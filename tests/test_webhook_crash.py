"""Crash safety: a process running the engine is killed with SIGKILL while deliveries are
pending and the receiver is down; after a restart on the same file every event arrives, in
order per charger. (Engine-level: the child plays the CSMS, committing events itself.)"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from tests.test_webhook_support import FAST, receiver, settled, webhook_service

ROOT = Path(__file__).resolve().parent.parent
CHARGERS = ("CP-1", "CP-2", "CP-3")
PER_CHARGER = 10
CONFIG = dataclasses.replace(FAST, retry_schedule=(0.05,) * 30)

CHILD = """
import asyncio, dataclasses, sys
from storage.records import UnitOfWork
from tests.test_webhook_support import FAST, EventSource, webhook_service

async def main(path, url):
    config = dataclasses.replace(FAST, retry_schedule=(0.05,) * 30)
    async with webhook_service(path, config) as (store, service):
        enough = asyncio.Event()
        seen = []
        def observe(dispatch, result, decision):
            seen.append(result)
            if len(seen) >= ANSWERS:
                enough.set()
        service.engine.add_observer(observe)
        await service.create_endpoint({"url": url, "enabledEvents": ["*"]})
        source = EventSource(store)
        # one commit: all are fanned out before the first answer comes
        events = [source.make(c) for _ in range(PER_CHARGER) for c in CHARGERS]
        await store.commit(UnitOfWork(writes=events))
        await asyncio.wait_for(enough.wait(), 20)
        await service.engine.settled()  # the answers so far are durable
        print("pending", flush=True)
        await asyncio.sleep(3600)  # killed here

PER_CHARGER, CHARGERS = int(sys.argv[3]), sys.argv[4].split(",")
ANSWERS = int(sys.argv[5])  # wait for this many answers before saying "pending"
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_child(path: str, url: str, answers: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        path,
        url,
        str(PER_CHARGER),
        ",".join(CHARGERS),
        str(answers),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )


async def kill(child: asyncio.subprocess.Process) -> None:
    child.send_signal(signal.SIGKILL)
    await child.wait()
    assert child.returncode == -signal.SIGKILL


async def test_sigkill_with_pending_deliveries_loses_nothing(store_url):
    path = store_url
    port = free_port()  # nothing listens yet: the receiver is down
    url = f"http://127.0.0.1:{port}/hook"
    child = await start_child(path, url, 20)
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"pending"
    finally:
        await kill(child)

    async with receiver(port=port) as rec, webhook_service(path, CONFIG) as (_, service):
        total = len(CHARGERS) * PER_CHARGER
        await rec.wait_for(lambda: len({e["id"] for e in rec.delivered()}) == total, 20)
        for charger in CHARGERS:
            seqs = [e["sequence"] for e in rec.delivered() if e["chargerId"] == charger]
            assert seqs == list(range(1, PER_CHARGER + 1))  # in order, none twice
        rows = await service.store.fetch_all(
            "SELECT COUNT(*) FROM webhook_attempts WHERE outcome IN ('failed', 'interrupted')"
        )
        # the failed attempts before the crash were recorded with their answers
        assert rows[0][0] >= 1


@asynccontextmanager
async def hanging_receiver(port: int, heads: int) -> AsyncIterator[asyncio.Event]:
    """Answers each charger's first event with 200 and never answers the others; the event is
    set once ``heads`` of those came (the second head of each stream). It goes by the event,
    not by arrival order: one stream's second POST may arrive before another's first."""
    arrived, never = asyncio.Event(), asyncio.Event()
    hanging = 0

    async def hang(request: web.Request) -> web.Response:
        nonlocal hanging
        if (await request.json())["sequence"] == 1:
            return web.Response(status=200)
        hanging += 1
        if hanging >= heads:
            arrived.set()
        await never.wait()
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/hook", hang)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield arrived
    finally:
        never.set()
        await runner.cleanup()


async def test_sigkill_before_any_answer_loses_nothing(store_url):
    """Killed while every stream's head is posted and unanswered, after the first event of
    each was answered and recorded: nothing about the later deliveries was written (rows
    come with the first answer), so the restart fans the events out again from the durable
    cursor, which stayed below them; each arrives, in order, once answered."""
    path = store_url
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    async with hanging_receiver(port, heads=len(CHARGERS)) as arrived:
        child = await start_child(path, url, len(CHARGERS))
        try:
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line.strip() == b"pending"
            await asyncio.wait_for(arrived.wait(), 20)
        finally:
            await kill(child)

    async with receiver(port=port) as rec, webhook_service(path, CONFIG) as (store, service):
        total = len(CHARGERS) * PER_CHARGER
        rest = total - len(CHARGERS)  # the first of each charger was answered before
        await rec.wait_for(lambda: len({e["id"] for e in rec.delivered()}) == rest, 20)
        for charger in CHARGERS:
            seqs = [e["sequence"] for e in rec.delivered() if e["chargerId"] == charger]
            assert seqs == list(range(2, PER_CHARGER + 1))  # in order, none twice
        await settled(service, lambda: service.engine.scheduler.pending == 0)
        await service.engine.settled()  # what was recorded before is durable now
        rows = await store.fetch_all(
            "SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status"
        )
        assert {r[0]: r[1] for r in rows} == {"succeeded": total}
