"""The charger's outgoing queue, kept across disconnects and reboots (OCPP 1.6, 4.8, 3.7).

Everything the charger sends goes through one FIFO, one CALL in flight at a time
(OCPP-J 4.1.1), so messages reach the CSMS in the order they happened. While offline:

- transaction messages (StartTransaction, StopTransaction, MeterValues) are kept and
  replayed in order on reconnect (4.8: "delivered in chronological order");
- a StatusNotification replaces an older queued one for the same connector (only the
  latest status is worth sending);
- Heartbeats are dropped.

A StartTransaction queued offline has no transactionId yet; messages that refer to its
transaction carry a local reference (`tx_ref`) that is turned into the id the CSMS
returns only when they are sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

TRANSACTION_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})

UNKNOWN_TRANSACTION = -1  # errata 3.18: a Stop whose Start was never accepted


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """A CALL the charger wants to send."""

    action: str
    payload: dict[str, Any] = field(default_factory=dict)
    # The local transaction this message is about: its CSMS id fills `transactionId` at
    # send time (a StartTransaction carries it so that its answer can bind the id).
    tx_ref: int | None = None


class Outbox:
    """FIFO of `Outgoing`; pure, the shell takes the head, sends it and pops it when answered."""

    def __init__(self, *, max_length: int = 10_000) -> None:
        self._queue: deque[Outgoing] = deque()  # oldest first; the head may be in flight
        self.max_length = max_length  # bound on what an offline charger keeps
        self.dropped = 0  # messages given up because the queue was full

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._queue)

    def push(self, message: Outgoing, *, online: bool) -> None:
        """Queue one message; offline, apply the keep/replace/drop rules above."""
        if not online:
            if message.action == "Heartbeat":
                return
            if message.action == "StatusNotification":
                connector = message.payload.get("connectorId")
                self._queue = deque(
                    m
                    for m in self._queue
                    if not (
                        m.action == "StatusNotification"
                        and m.payload.get("connectorId") == connector
                    )
                )
        self._queue.append(message)
        while len(self._queue) > self.max_length:
            self._drop_one()

    def _drop_one(self) -> None:
        """Make room: the oldest non-transaction message, else the oldest MeterValues."""
        for keep_tx in (True, False):
            for m in self._queue:
                if keep_tx and m.action in TRANSACTION_ACTIONS:
                    continue
                if not keep_tx and m.action != "MeterValues":
                    continue
                self._queue.remove(m)
                self.dropped += 1
                return
        self._queue.popleft()
        self.dropped += 1

    def head(self) -> Outgoing | None:
        return self._queue[0] if self._queue else None

    def pop(self) -> Outgoing:
        return self._queue.popleft()

    def forget_volatile(self) -> None:
        """On reboot: only what a charger keeps in non-volatile memory survives (5.14):
        transaction messages and firmware/diagnostics reports. Statuses are re-sent after
        boot anyway."""
        keep = TRANSACTION_ACTIONS | {"FirmwareStatusNotification", "DiagnosticsStatusNotification"}
        self._queue = deque(m for m in self._queue if m.action in keep)


def payload_for(message: Outgoing, tx_ids: dict[int, int]) -> dict[str, Any]:
    """The payload as sent: `transactionId` filled from the CSMS id bound to `tx_ref`."""
    if message.tx_ref is None or message.action == "StartTransaction":
        return message.payload
    return {**message.payload, "transactionId": tx_ids.get(message.tx_ref, UNKNOWN_TRANSACTION)}
