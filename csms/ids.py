"""The running server's ids: transaction ids counted up, event and command ids fresh (the
formats are in ``storage.ids``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from storage.ids import random_id, time_ordered_id

BLOCK = 1000  # transaction ids a cluster node takes from the store at a time
# ... and takes the next block when fewer than this are left: more than the StartTransactions
# that can be between their ``ready()`` and their unit's computation at once.
LOW = 500


class IdSource:
    """Implements ``csms.protocol.state.Ids`` for the running server.

    Transaction ids count up. With one process on the store (SQLite), from the largest one
    stored, in memory. On a cluster, from blocks each node takes from the store
    (``take_block(n)`` answers the last id of a block of n), so nodes never hand out the same
    id. Either way an id taken by a unit that failed to commit is a gap, never a duplicate.
    """

    def __init__(
        self, last_transaction_id: int, take_block: Callable[[int], Awaitable[int]] | None = None
    ) -> None:
        self._last_transaction_id = last_transaction_id
        self._take_block = take_block
        self._block_end = last_transaction_id if take_block is not None else None

    async def ready(self) -> None:
        """Make sure ids are at hand before a unit may take one (a cluster node's block)."""
        if self._take_block is None or self._block_end is None:
            return
        if self._block_end - self._last_transaction_id >= LOW:
            return
        end = await self._take_block(BLOCK)
        if self._block_end - self._last_transaction_id >= LOW:
            return  # another caller refilled meanwhile: keep its block, waste this one
        self._last_transaction_id, self._block_end = end - BLOCK, end

    def at_hand(self) -> bool:
        """Whether ``transaction_id()`` can be called now, without awaiting ``ready()``."""
        if self._take_block is None or self._block_end is None:
            return True
        return self._block_end - self._last_transaction_id >= LOW

    def transaction_id(self) -> int:
        if self._block_end is not None and self._last_transaction_id >= self._block_end:
            raise RuntimeError("no transaction id at hand: IdSource.ready() was not awaited")
        self._last_transaction_id += 1
        return self._last_transaction_id

    def event_id(self) -> str:
        return time_ordered_id("evt_")

    def command_id(self) -> str:
        return random_id("cmd_")
