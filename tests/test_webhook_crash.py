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
from pathlib import Path

from tests.test_webhook_support import FAST, receiver, webhook_service

ROOT = Path(__file__).resolve().parent.parent
CHARGERS = ("CP-1", "CP-2", "CP-3")
PER_CHARGER = 10
CONFIG = dataclasses.replace(FAST, retry_schedule=(0.05,) * 30)

CHILD = """
import asyncio, dataclasses, sys
from tests.test_webhook_support import FAST, EventSource, webhook_service

async def main(path, url):
    config = dataclasses.replace(FAST, retry_schedule=(0.05,) * 30)
    async with webhook_service(path, config) as (store, service):
        failures = asyncio.Event()
        seen = []
        def observe(dispatch, result, decision):
            seen.append(result)
            if len(seen) >= 20:
                failures.set()
        service.engine.add_observer(observe)
        await service.create_endpoint({"url": url, "enabledEvents": ["*"]})
        source = EventSource(store)
        for n in range(PER_CHARGER):
            for charger in CHARGERS:
                await source.emit(charger)
        await asyncio.wait_for(failures.wait(), 20)
        print("pending", flush=True)
        await asyncio.sleep(3600)  # killed here

PER_CHARGER, CHARGERS = int(sys.argv[3]), sys.argv[4].split(",")
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_sigkill_with_pending_deliveries_loses_nothing(tmp_path):
    path = str(tmp_path / "csms.db")
    port = free_port()  # nothing listens yet: the receiver is down
    url = f"http://127.0.0.1:{port}/hook"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        path,
        url,
        str(PER_CHARGER),
        ",".join(CHARGERS),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        assert line.strip() == b"pending"
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    async with receiver(port=port) as rec, webhook_service(path, CONFIG) as (_, service):
        total = len(CHARGERS) * PER_CHARGER
        await rec.wait_for(lambda: len({e["id"] for e in rec.delivered()}) == total, 20)
        for charger in CHARGERS:
            seqs = [e["sequence"] for e in rec.delivered() if e["chargerId"] == charger]
            assert seqs == list(range(1, PER_CHARGER + 1))  # in order, none twice
        rows = await service.store.fetch_all(
            "SELECT COUNT(*) FROM webhook_attempts WHERE outcome IN ('failed', 'interrupted')"
        )
        # every POST before the crash was recorded before it was sent; those whose answer
        # was not yet written when the process died are marked interrupted at restart
        assert rows[0][0] >= 20
