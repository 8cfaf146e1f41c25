"""Named scenarios a simulated charger plays once it is booted (`csms-sim run --scenario`).

Each is `async def scenario(charger, options) -> None` and returns when the story is told;
the charger is already connected and Accepted when it starts. Sleeps here are the story's
own time (a car charging for a while); waits for the CSMS are bounded waits on events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulators.charger import Charger, EventKind, SimEvent
from simulators.status import ErrorCode, Status


class ScenarioError(RuntimeError):
    """The CSMS did not let the scenario go on (e.g. the id tag was refused)."""


class IdTagRefused(ScenarioError):
    """Authorize or StartTransaction answered an idTagInfo that is not Accepted.

    Raised at once: no transaction is coming, so waiting for one only hides why."""

    def __init__(self, id_tag: str, status: str, action: str) -> None:
        super().__init__(f"id tag {id_tag} was refused by the CSMS ({status})")
        self.id_tag = id_tag
        self.status = status
        self.action = action


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioOptions:
    connector: int = 1
    id_tag: str = "SIM-TAG-0001"
    duration: float | None = None  # seconds; None: the scenario's default (or forever)
    wait: float = 30.0  # bound on each wait for the CSMS
    error_code: ErrorCode = ErrorCode.GROUND_FAILURE  # for `faulted`


def _tag_status(event: SimEvent, default: str = "Invalid") -> str:
    """The idTagInfo status of an answer (Authorize.conf, StartTransaction.conf)."""
    info = (event.answer or {}).get("idTagInfo") or {}
    return str(info.get("status", default))


async def _start_session(ch: Charger, o: ScenarioOptions) -> int:
    """Plug in and present the tag; return the transactionId the CSMS gave.

    Ends as soon as the CSMS has answered: a started transaction, or a refusal (the tag
    refused at Authorize or at StartTransaction, or either CALL failed), raised."""
    mark = ch.mark()
    ch.plug_in(o.connector)
    ch.present_tag(o.connector, o.id_tag)

    def outcome() -> SimEvent | None:
        for event in ch.events[mark:]:
            if event.kind == EventKind.TRANSACTION_STARTED and event.connector_id == o.connector:
                return event
            if (
                event.kind == EventKind.ANSWERED
                and event.action == "Authorize"
                and (event.payload or {}).get("idTag") == o.id_tag
                and _tag_status(event) != "Accepted"
            ):
                return event
            if event.kind == EventKind.CALL_FAILED and event.action in (
                "Authorize",
                "StartTransaction",
            ):
                return event
        return None

    try:
        await ch.wait_until(lambda: outcome() is not None, timeout=o.wait)
    except TimeoutError as exc:
        raise ScenarioError(f"no transaction started for {o.id_tag} in {o.wait:g} s") from exc
    event = outcome()
    assert event is not None
    if event.kind == EventKind.CALL_FAILED:
        raise ScenarioError(f"{event.action} for {o.id_tag} failed: {event.detail}")
    started = event.kind == EventKind.TRANSACTION_STARTED
    status = _tag_status(event, "Accepted" if started else "Invalid")
    if status != "Accepted":
        # What the refusal set off (StopTransaction DeAuthorized, the connector's status)
        # still reaches the CSMS, so its records end where the charger's do.
        await ch.drain(timeout=o.wait)
        raise IdTagRefused(o.id_tag, status, "StartTransaction" if started else "Authorize")
    assert event.transaction_id is not None
    return event.transaction_id


async def _end_session(ch: Charger, o: ScenarioOptions) -> None:
    """Stop locally with the same tag, then unplug: Finishing, Available (C6, F1)."""
    mark = ch.mark()
    ch.stop_transaction(o.connector, "Local", id_tag=o.id_tag)
    await ch.wait_for(EventKind.TRANSACTION_STOPPED, since=mark, timeout=o.wait)
    ch.unplug(o.connector)
    await ch.drain(timeout=o.wait)


async def session(ch: Charger, o: ScenarioOptions) -> None:
    """Plug in and charge: Preparing, Authorize, StartTransaction, Charging, MeterValues,
    StopTransaction, Finishing, Available."""
    await _start_session(ch, o)
    await asyncio.sleep(30.0 if o.duration is None else o.duration)
    await _end_session(ch, o)


async def remote(ch: Charger, o: ScenarioOptions) -> None:
    """Wait for RemoteStartTransaction; charge until RemoteStop or the duration ends."""
    loop = asyncio.get_running_loop()
    deadline = None if o.duration is None else loop.time() + o.duration

    def left() -> float:
        return 3600.0 if deadline is None else max(0.0, deadline - loop.time())

    while left() > 0:
        mark = ch.mark()
        try:
            started = await ch.wait_for(EventKind.TRANSACTION_STARTED, since=mark, timeout=left())
        except TimeoutError:
            continue
        connector = started.connector_id or o.connector
        try:
            await ch.wait_for(EventKind.TRANSACTION_STOPPED, since=started.index, timeout=left())
        except TimeoutError:
            if deadline is None:
                continue
            ch.stop_transaction(connector, "Local")
            await ch.wait_for(EventKind.TRANSACTION_STOPPED, since=started.index, timeout=o.wait)
        if ch.model.connectors[connector].status == Status.FINISHING:
            await asyncio.sleep(min(1.0, left()))  # the driver walks back to the car
            ch.unplug(connector)
    await ch.drain(timeout=o.wait)


async def faulted(ch: Charger, o: ScenarioOptions) -> None:
    """A connector fault (StatusNotification Faulted with an errorCode), then recovery."""
    hold = 5.0 if o.duration is None else o.duration / 2
    ch.fault(o.connector, o.error_code, info="simulated fault")
    await ch.drain(timeout=o.wait)
    await asyncio.sleep(hold)
    ch.recover(o.connector)
    await ch.drain(timeout=o.wait)


async def offline(ch: Charger, o: ScenarioOptions) -> None:
    """Lose the connection mid-session and keep charging; replay in order on reconnect (4.8).

    The first transaction starts online; its MeterValues and StopTransaction are queued
    offline. A second one starts and stops offline (authorized from the cache), so its
    StartTransaction gets its transactionId only when replayed.
    """
    step = 3.0 if o.duration is None else o.duration / 4
    await _start_session(ch, o)
    await asyncio.sleep(step)
    await ch.go_offline()
    await asyncio.sleep(step)
    ch.stop_transaction(o.connector, "Local", id_tag=o.id_tag)
    ch.unplug(o.connector)
    ch.plug_in(o.connector)
    ch.present_tag(o.connector, o.id_tag)
    await asyncio.sleep(step)
    ch.stop_transaction(o.connector, "Local", id_tag=o.id_tag)
    ch.unplug(o.connector)
    mark = ch.mark()
    ch.go_online()
    await ch.wait_for(EventKind.CONNECTED, since=mark, timeout=o.wait)
    await ch.drain(timeout=o.wait)


async def idle(ch: Charger, o: ScenarioOptions) -> None:
    """Booted; heartbeats only, until the duration ends (or forever)."""
    if o.duration is None:
        await asyncio.Event().wait()  # until cancelled (Ctrl-C)
    else:
        await asyncio.sleep(o.duration)


def result_line(ch: Charger, scenario: str, *, since: int = 0) -> str:
    """What a scenario did, in one line: `csms-sim run` prints it even with --quiet, so a
    script (or a person) sees the outcome without reading the message log."""
    events = ch.events[since:]
    stops = {e.transaction_id: e for e in events if e.kind == EventKind.TRANSACTION_STOPPED}
    transactions: list[str] = []
    for start in (e for e in events if e.kind == EventKind.TRANSACTION_STARTED):
        stop = stops.get(start.transaction_id)
        if stop is None:
            transactions.append(f"{start.transaction_id} (still open)")
            continue
        wh = int((stop.payload or {}).get("meterStop", 0)) - int(
            (start.payload or {}).get("meterStart", 0)
        )
        transactions.append(f"{start.transaction_id} ({wh} Wh)")
    if not transactions:
        parts = ["no transaction"]
    else:
        label = "transaction" if len(transactions) == 1 else "transactions"
        parts = [f"{label} {', '.join(transactions)}"]
    answered = [e for e in events if e.kind == EventKind.ANSWERED]
    for e in answered:
        payload = e.payload or {}
        if e.action == "StatusNotification" and payload.get("status") == "Faulted":
            connector, code = payload.get("connectorId"), payload.get("errorCode")
            parts.append(f"connector {connector} faulted ({code})")
    parts.append(f"{len(answered)} calls answered")
    return f"{scenario} done: {ch.charger_id}, {', '.join(parts)}"


Scenario = Callable[[Charger, ScenarioOptions], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {
    "session": session,
    "remote": remote,
    "faulted": faulted,
    "offline": offline,
    "idle": idle,
}
