"""The WebSocket layer under the OCPP endpoint (csms/transport.py, on picows): messages in
fragments, size and UTF-8 limits, order under pipelining, and how a socket's end is recorded.

The handshake rules themselves are tested in test_ocpp_connection.py and
test_security_profiles.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import websockets

from csms.transport import Accept, Connection, WebSocketServer
from tests.conftest import Api, RawCharger, raw_charger
from tests.helpers import events_of, wait_disconnected

MAX_MESSAGE = 1 << 20


async def closed_with(charger: RawCharger) -> int | None:
    await asyncio.wait_for(charger.ws.wait_closed(), 15)
    return charger.ws.close_code


async def test_a_fragmented_call_is_answered(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-FRAG")
    try:
        text = json.dumps([2, "frag1", "Heartbeat", {}])
        await charger.ws.send([text[:5], text[5:12], text[12:]])  # three frames, one message
        answer = await charger.receive()
        assert answer[:2] == [3, "frag1"], answer
        assert (await charger.call("Heartbeat", {}))[0] == 3
    finally:
        await charger.close()


async def test_pipelined_calls_are_answered_in_order(csms, api: Api) -> None:
    # More than the 16 a connection queues before it stops reading: nothing is lost.
    charger = await raw_charger(csms, api, "CP-PIPE")
    try:
        for n in range(60):
            await charger.ws.send(json.dumps([2, f"p{n}", "Heartbeat", {}]))
        ids = [(await charger.receive())[1] for _ in range(60)]
        assert ids == [f"p{n}" for n in range(60)]
    finally:
        await charger.close()


async def test_a_message_over_one_mib_closes_1009(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-BIG")
    half = "x" * (MAX_MESSAGE // 2 + 16)
    with contextlib.suppress(websockets.exceptions.ConnectionClosed):
        await charger.ws.send([half, half])  # each frame fits, the message does not
    assert await closed_with(charger) == 1009
    await wait_disconnected(api, "CP-BIG")


async def test_a_frame_over_one_mib_closes_1009(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-BIGF")
    with contextlib.suppress(websockets.exceptions.ConnectionClosed):
        await charger.ws.send("y" * (MAX_MESSAGE + 1))
    assert await closed_with(charger) == 1009
    await wait_disconnected(api, "CP-BIGF")


async def test_text_that_is_not_utf8_closes_1007(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-UTF")
    await charger.ws.send(b'[2, "u1", "Heartbeat", {"x": "\xff"}]', text=True)
    assert await closed_with(charger) == 1007
    await wait_disconnected(api, "CP-UTF")


async def test_the_chargers_close_code_is_recorded(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-BYE")
    await charger.ws.close(code=4001, reason="going")
    assert charger.ws.close_code == 4001  # echoed back
    await wait_disconnected(api, "CP-BYE")
    gone = (await events_of(api, "CP-BYE"))[-1]
    assert gone["type"] == "charger.disconnected"
    assert (gone["data"]["reason"], gone["data"]["closeCode"]) == ("closed", 4001)


async def test_a_lost_socket_is_recorded_as_lost(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-LOST")
    charger.ws.transport.abort()  # no CLOSE: the TCP connection just ends
    await wait_disconnected(api, "CP-LOST")
    gone = (await events_of(api, "CP-LOST"))[-1]
    assert (gone["data"]["reason"], gone["data"]["closeCode"]) == ("lost", 1006)


async def test_a_request_head_that_is_no_http_gets_400(csms) -> None:
    host, port = csms.ocpp_url.removeprefix("ws://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"NONSENSE\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 400 "), status
        rest = await asyncio.wait_for(reader.read(), 5)  # returns at EOF: then closed
        assert b"Connection: close\r\n" in rest and rest.endswith(b"not an HTTP/1.1 request\n")
    finally:
        writer.close()


async def test_the_servers_close_waits_for_an_end_still_being_handled() -> None:
    """A peer that closes just before the server stops: its ``ended`` (the hub records the
    disconnect there) is still running when ``close`` is called, and ``close`` waits for it,
    so the disconnect is written before the store closes behind it."""
    ending = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    class SlowEnd(Connection):
        async def ended(self) -> None:
            ending.set()
            await release.wait()
            finished.append("ended")

    async def decide(request, transport) -> Accept:  # type: ignore[no-untyped-def]
        return Accept(connection=SlowEnd(), subprotocol=None)

    server = WebSocketServer(
        decide, server_header=None, ping_interval=20, ping_timeout=20, max_message=MAX_MESSAGE
    )
    await server.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/x", open_timeout=5)
        await ws.close()
        await asyncio.wait_for(ending.wait(), 5)

        async def close() -> None:
            await server.close()
            finished.append("closed")

        closing = asyncio.ensure_future(close())
        for _ in range(50):  # turns enough for a close that does not wait to be over
            await asyncio.sleep(0)
        release.set()
        await asyncio.wait_for(closing, 5)
        assert finished == ["ended", "closed"]
        assert not server.connections
    finally:
        release.set()
        await server.close()
