"""``Turns``: a charger's lock that can also be taken without awaiting.

The hub answers most CALLs without a task (``ChargerHub.answer_now``): when the charger's
snapshot is in memory and nothing else holds its turn, the CALL is handled at once and the
turn is given back by the commit's callback. ``asyncio.Lock`` can only be taken by awaiting,
so this is the same thing with a synchronous ``try_take``. Waiters are served in arrival
order and the turn passes straight to the next one, so no newcomer can slip in between.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Turns:
    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    def try_take(self) -> bool:
        """Take the turn if it is free and nobody waits for it; never blocks."""
        if self._held or self._waiters:
            return False
        self._held = True
        return True

    async def take(self) -> None:
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed the turn as it was cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the turn passes to it: still held
                return
        self._held = False

    async def __aenter__(self) -> None:
        await self.take()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.give_back()
