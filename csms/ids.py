"""The running server's ids: transaction ids counted up, event and command ids fresh (the
formats are in ``storage.ids``)."""

from __future__ import annotations

from storage.ids import random_id, time_ordered_id


class IdSource:
    """Implements ``csms.protocol.state.Ids`` for the running server.

    Transaction ids count up from the largest one stored; one process owns the store, so an
    in-memory counter is enough, and an id taken by a unit that failed to commit is a gap,
    never a duplicate.
    """

    def __init__(self, last_transaction_id: int) -> None:
        self._last_transaction_id = last_transaction_id

    def transaction_id(self) -> int:
        self._last_transaction_id += 1
        return self._last_transaction_id

    def event_id(self) -> str:
        return time_ordered_id("evt_")

    def command_id(self) -> str:
        return random_id("cmd_")
