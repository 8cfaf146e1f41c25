"""The ``baseline`` central system: what a user gets by following the ``ocpp`` library's README.

The library's ``ChargePoint`` (OCPP 1.6) on a ``websockets`` server, ``@on`` handlers for
BootNotification, StatusNotification, StartTransaction, MeterValues, Heartbeat and
StopTransaction (plus Authorize), answering and storing nothing. Library defaults are kept
(schema validation on, in its thread pool as shipped); only the per-message INFO logging of
the README's ``logging.basicConfig(level=logging.INFO)`` is left off, which favours the
baseline. ``python -m benchmarks.baseline_server [--port 0]`` prints
``baseline: OCPP endpoint ws://127.0.0.1:PORT/ocpp/{chargerId}`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import signal
import sys
from datetime import UTC, datetime

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as cp
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

_transaction_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class ChargePoint(cp):
    @on(Action.boot_notification)
    def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **kwargs):
        return call_result.BootNotification(
            current_time=_now(), interval=10, status=RegistrationStatus.accepted
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **kwargs):
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status_notification(self, connector_id: int, error_code: str, status: str, **kwargs):
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **kwargs):
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kwargs
    ):
        return call_result.StartTransaction(
            transaction_id=next(_transaction_ids),
            id_tag_info={"status": AuthorizationStatus.accepted},
        )

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: list, **kwargs):
        return call_result.MeterValues()

    @on(Action.stop_transaction)
    def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int, **kwargs):
        return call_result.StopTransaction()


async def on_connect(websocket) -> None:
    """As in the README: check the subprotocol, take the id from the path, start."""
    try:
        requested = websocket.request.headers["Sec-WebSocket-Protocol"]
    except KeyError:
        return await websocket.close()
    if websocket.subprotocol is None:
        return await websocket.close()
    del requested
    charge_point_id = websocket.request.path.strip("/").split("/")[-1]
    charge_point = ChargePoint(charge_point_id, websocket)
    with contextlib.suppress(websockets.exceptions.ConnectionClosed):
        await charge_point.start()


async def main_async(host: str, port: int) -> None:
    server = await websockets.serve(on_connect, host, port, subprotocols=["ocpp1.6"])
    actual = server.sockets[0].getsockname()[1]
    print(f"baseline: OCPP endpoint ws://{host}:{actual}/ocpp/{{chargerId}}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), 3600)
    except TimeoutError:
        pass
    finally:
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.baseline_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main_async(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
