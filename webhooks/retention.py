"""What retention may prune (``webhooks.retention``): the decision, kept pure.

Events and attempts older than the retention go, except what delivery still needs: an event
not yet fanned out (past the cursor) or with a pending delivery stays until it is delivered
or given up, whatever its age. Pending deliveries and their attempts are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhooks.timefmt import iso_utc


@dataclass(frozen=True, slots=True, kw_only=True)
class PrunePlan:
    cutoff: str  # ISO timestamp: rows stamped before it may go
    max_event_pos: int  # events past the fan-out cursor are never pruned
    batch: int  # rows per statement, so a large prune never holds the writer long


def plan_prune(
    *, now: float, retention: float, fanout_cursor: int, batch: int = 5000
) -> PrunePlan | None:
    """None when nothing can be old enough yet (no retention, or nothing fanned out)."""
    if retention <= 0 or fanout_cursor <= 0:
        return None
    return PrunePlan(cutoff=iso_utc(now - retention), max_event_pos=fanout_cursor, batch=batch)


def may_prune_event(
    plan: PrunePlan, *, timestamp: str, pos: int, has_pending_delivery: bool
) -> bool:
    """The rule the storage query applies, spelled out for tests and readers."""
    return timestamp < plan.cutoff and pos <= plan.max_event_pos and not has_pending_delivery
