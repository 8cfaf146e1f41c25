"""What an answer to a POST becomes in the store: one pure function, ``record``.

Both the engine's sends and the API's test send go through it, so an attempt and its
delivery's row are always written the same way. No clock (``now`` is passed in), no I/O:
the caller hands the returned statements to the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import webhook_tables as tables
from storage.records import Statement
from webhooks.poster import AttemptResult
from webhooks.scheduler import Decision, Verdict
from webhooks.timefmt import iso_utc


@dataclass(slots=True, kw_only=True)  # not frozen: made per answer, ~3x cheaper
class DeliveryState:
    """A delivery as it stands when its answer comes."""

    delivery_id: int
    endpoint_id: str
    event_pos: int
    event_id: str
    event_type: str
    charger_id: str | None
    attempt: int  # the attempt just answered, counting from 1
    started: float  # when it was posted (unix seconds); -1: nothing was posted
    created_at: str
    written: bool  # the delivery has a row already (else this outcome writes its first)
    failing_since: float | None  # the endpoint's, before this answer


@dataclass(slots=True, kw_only=True)  # not frozen: made per answer, ~3x cheaper
class Answer:
    """The answer, and what the scheduler decided of it (a test send: no scheduler)."""

    result: AttemptResult
    verdict: Verdict
    next_at: float | None = None
    failing_since: float | None = None  # the endpoint's after this answer
    disabled_reason: str | None = None  # set when this very answer disabled the endpoint


@dataclass(slots=True, kw_only=True)  # not frozen: made per answer, ~3x cheaper
class Recorded:
    status: str  # the delivery's status now
    writes: list[Statement]
    disabled_reason: str | None  # follow-up: the endpoint is disabled (event, log, pause)
    failing_since: float | None


_STATUS = {Verdict.SUCCEEDED: tables.SUCCEEDED, Verdict.FAILED: tables.FAILED}


def answer_of(result: AttemptResult, decision: Decision) -> Answer:
    return Answer(
        result=result,
        verdict=decision.verdict,
        next_at=decision.next_at,
        failing_since=decision.failing_since,
        disabled_reason=decision.disabled_reason,
    )


def test_answer(result: AttemptResult) -> Answer:
    """A test send is not retried and does not touch the endpoint's health."""
    verdict = Verdict.SUCCEEDED if result.succeeded else Verdict.FAILED
    return Answer(result=result, verdict=verdict)


def record(
    state: DeliveryState,
    answer: Answer,
    now: float,
    *,
    fence: tables.Fence | None = None,
    health: bool = True,
) -> Recorded:
    """The rows for this answer: the attempt (if one was posted), the delivery's row (its
    first if it lived in memory), and the endpoint's health when it changed (``health``)."""
    result = answer.result
    writes: list[Statement] = []
    if state.started >= 0:
        writes.append(
            tables.record_attempt(
                delivery_id=state.delivery_id,
                attempt=state.attempt,
                endpoint_id=state.endpoint_id,
                event_id=state.event_id,
                event_type=state.event_type,
                started_at=iso_utc(state.started),
                finished_at=iso_utc(now),
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                error=result.error,
                outcome=tables.SUCCEEDED if result.succeeded else tables.FAILED,
                fence=fence,
            )
        )
    status = _STATUS.get(answer.verdict, tables.PENDING)
    next_attempt_at = answer.next_at or now
    if state.written:
        writes.append(
            tables.settle_delivery(
                state.delivery_id,
                status=status,
                attempts=state.attempt,
                next_attempt_at=next_attempt_at,
                fence=fence,
            )
        )
    else:
        writes.append(
            tables.upsert_delivery(
                tables.DeliveryRow(
                    id=state.delivery_id,
                    endpoint_id=state.endpoint_id,
                    event_pos=state.event_pos,
                    event_id=state.event_id,
                    charger_id=state.charger_id,
                    status=status,
                    attempts=state.attempt,
                    next_attempt_at=next_attempt_at,
                    created_at=state.created_at,
                ),
                fence,
            )
        )
    disabled = answer.disabled_reason if health else None
    if disabled is not None:
        writes.append(
            tables.set_endpoint_health(
                state.endpoint_id,
                status="disabled",
                disabled_reason=disabled,
                failing_since=answer.failing_since,
                updated_at=iso_utc(now),
                fence=fence,
            )
        )
    elif health and answer.failing_since != state.failing_since:
        writes.append(tables.set_failing_since(state.endpoint_id, answer.failing_since, fence))
    return Recorded(
        status=status,
        writes=writes,
        disabled_reason=disabled,
        failing_since=answer.failing_since,
    )
