"""Work repeated at a fixed period for as long as the task lives (sweeps, heartbeats)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(interval: float, work: Callable[[], Awaitable[None]], what: str) -> None:
    """Run ``work`` every ``interval`` seconds until cancelled; a failure is logged (as
    ``what``) and the next period tries again."""
    while True:
        await asyncio.sleep(interval)  # a period, not a wait for a condition
        try:
            await work()
        except Exception as exc:
            log.warning("%s failed: %s", what, exc)
