"""Named scenarios a simulated charger plays once it is booted (`csms-sim run --scenario`).

Each is `async def scenario(charger, options) -> None` and returns when the story is told;
the charger is already connected and Accepted when it starts. Sleeps here are the story's
own time (a car charging for a while); waits for the CSMS are bounded waits on events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from simulators.charger import Charger, EventKind
from simulators.status import ErrorCode, Status


class ScenarioError(RuntimeError):
    """The CSMS did not let the scenario go on (e.g. the id tag was refused)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioOptions:
    connector: int = 1
    id_tag: str = "SIM-TAG-0001"
    duration: float | None = None  # seconds; None: the scenario's default (or forever)
    wait: float = 30.0  # bound on each wait for the CSMS
    error_code: ErrorCode = ErrorCode.GROUND_FAILURE  # for `faulted`


async def _start_session(ch: Charger, o: ScenarioOptions) -> int:
    """Plug in and present the tag; return the transactionId the CSMS gave."""
    mark = ch.mark()
    ch.plug_in(o.connector)
    ch.present_tag(o.connector, o.id_tag)
    try:
        started = await ch.wait_for(
            EventKind.TRANSACTION_STARTED, since=mark, connector_id=o.connector, timeout=o.wait
        )
    except TimeoutError as exc:
        raise ScenarioError(f"no transaction started for {o.id_tag} (refused?)") from exc
    assert started.transaction_id is not None
    return started.transaction_id


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


Scenario = Callable[[Charger, ScenarioOptions], Awaitable[None]]

SCENARIOS: dict[str, Scenario] = {
    "session": session,
    "remote": remote,
    "faulted": faulted,
    "offline": offline,
    "idle": idle,
}
