"""``GET /api/v1/events/stream`` on a real CSMS over real sockets, on both stores: live events,
resuming without a gap or a duplicate while events keep being committed, filters, keep-alives,
a client too slow to keep up, bad resume points, auth, and shutdown.

Events are committed through the CSMS's own store (the path the OCPP core takes), or by real
chargers; waits are bounded and wait for something, never for time to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from csms.api.stream import EVENT_TAIL, EventTail
from csms.app import Csms
from csms.protocol.timefmt import format_timestamp
from storage import webhook_tables as tables
from storage.records import Event, UnitOfWork
from storage.store import Store
from tests.conftest import TEST_TOKEN, Api, raw_charger, wait_for

STREAM = "/api/v1/events/stream"


def tail_of(csms: Csms) -> EventTail:
    return csms._runner.app[EVENT_TAIL]


class Producer:
    """Commits events as the OCPP core does: one unit each, gapless sequences per charger."""

    _runs = itertools.count(1)

    def __init__(self, store: Store) -> None:
        self.store = store
        self.prefix = f"evt_s{next(self._runs):03d}"
        self._ids = itertools.count(1)
        self._sequences: dict[str, int] = {}

    def make(self, charger_id: str, event_type: str, pad: int = 0) -> Event:
        sequence = None
        if event_type != "ocpp.message":
            sequence = self._sequences[charger_id] = self._sequences.get(charger_id, 0) + 1
        data: dict[str, Any] = {"n": sequence}
        if pad:
            data["pad"] = "x" * pad
        return Event(
            id=f"{self.prefix}_{next(self._ids):06d}",
            type=event_type,
            charger_id=charger_id,
            sequence=sequence,
            timestamp=format_timestamp(datetime.now(UTC)),  # not pruned by retention
            data=data,
        )

    async def emit(
        self, count: int = 1, charger_id: str = "CP-1", event_type: str = "transaction.updated"
    ) -> list[Event]:
        events = [self.make(charger_id, event_type) for _ in range(count)]
        for event in events:
            await self.store.commit(UnitOfWork().put(event))
        return events


async def log_ids(store: Store, after_pos: int = 0) -> list[str]:
    """Every stored event id after ``after_pos``, in commit order."""
    return [e.id for e in await tables.events_after(store, after_pos, 100_000)]


@dataclass
class Message:
    event: str | None = None
    id: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def envelope(self) -> dict[str, Any]:
        return json.loads(self.data or "null")


class Stream:
    """An SSE client over aiohttp, reading one message (a block up to a blank line) at a time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 5.0) -> Message:
        async def read() -> Message:
            message = Message()
            seen = False
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("the stream ended")
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if seen:
                        return message
                    continue
                seen = True
                if line.startswith(":"):
                    message.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                setattr(message, name, value.removeprefix(" "))

        return await asyncio.wait_for(read(), timeout)

    async def next_event(self, timeout: float = 5.0) -> Message:
        """The next message that is an event (skipping keep-alives and the opening)."""
        while True:
            message = await self.next(timeout)
            if message.data is not None:
                return message

    async def events(self, count: int, timeout: float = 10.0) -> list[Message]:
        return [await self.next_event(timeout) for _ in range(count)]


@contextlib.asynccontextmanager
async def open_stream(
    api: Api, query: str = "", *, last_event_id: str | None = None, status: int = 200
) -> AsyncIterator[Stream]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with api.session.get(api.base + STREAM + query, headers=headers) as response:
        assert response.status == status, (response.status, await response.text())
        if status == 200:
            assert response.headers["Content-Type"].startswith("text/event-stream")
        yield Stream(response)


async def test_live_events_of_a_real_charger_arrive_as_they_are_stored(
    csms: Csms, api: Api
) -> None:
    async with open_stream(api) as stream:
        opening = await stream.next()
        assert opening.comments == ["stream open"] and opening.data is None
        charger = await raw_charger(csms, api, "ST-1")
        try:
            got = await stream.events(2)
        finally:
            await charger.close()
    assert [m.event for m in got] == ["charger.connected", "charger.boot"]
    stored = (await api.get("/api/v1/events?chargerId=ST-1&order=asc"))["items"]
    assert [m.envelope for m in got] == stored[:2]  # the envelope, as the events API has it
    assert [m.id for m in got] == [e["id"] for e in stored[:2]]


async def test_the_stream_opens_at_the_newest_event_and_names_it_as_the_resume_point(
    csms: Csms, api: Api
) -> None:
    producer = Producer(csms.store)
    old = await producer.emit(3)
    async with open_stream(api) as stream:
        opening = await stream.next()
        assert opening.id == old[-1].id  # sets EventSource's lastEventId, dispatches nothing
        new = await producer.emit(2)
        assert [m.id for m in await stream.events(2)] == [e.id for e in new]


@pytest.mark.parametrize("how", ["Last-Event-ID", "since"])
async def test_resume_gives_every_event_once_while_hundreds_are_committed_concurrently(
    csms: Csms, api: Api, how: str
) -> None:
    """The first stream stops part-way through the history; the second resumes while six
    committers keep writing (group commits of several units), so the history it reads and
    the events committed meanwhile meet. Together they are the log, in order, once each."""
    producer = Producer(csms.store)
    start = (await producer.emit(1))[0]
    await producer.emit(100, "CP-A")
    received: list[str] = []
    async with open_stream(api, f"?since={start.id}") as first:
        received += [m.id or "" for m in await first.events(40)]
    switching = asyncio.Event()

    async def committer(charger_id: str) -> None:
        await producer.emit(10, charger_id)
        await switching.wait()
        await producer.emit(40, charger_id)

    tail_of(csms).keepalive = 0.05  # to see below that nothing follows the last event
    load = [asyncio.create_task(committer(f"CP-L{n}")) for n in range(6)]
    total = 100 + 6 * 50
    resume = received[-1]
    query, header = (f"?since={resume}", None) if how == "since" else ("", resume)
    try:
        switching.set()  # the second stream opens while the committers write
        async with open_stream(api, query, last_event_id=header) as second:
            while len(received) < total:
                received.append((await second.next_event()).id or "")
            await asyncio.wait_for(asyncio.gather(*load), 30)
            # Nothing more: the stream goes quiet, no event comes twice.
            while (quiet := await second.next()).comments != ["keep-alive"]:
                assert quiet.data is None, quiet
    finally:
        for task in load:
            task.cancel()
    start_pos = (await csms.store.get_event(start.id)).pos  # type: ignore[union-attr]
    assert received == await log_ids(csms.store, start_pos)


async def test_the_last_event_id_header_wins_over_since(csms: Csms, api: Api) -> None:
    """A reconnecting EventSource sends its original URL (with ``since``) and the header."""
    events = await Producer(csms.store).emit(4)
    async with open_stream(api, f"?since={events[0].id}", last_event_id=events[2].id) as stream:
        assert (await stream.next_event()).id == events[3].id


async def test_filters_by_type_glob_and_charger_and_ocpp_message_only_by_name(
    csms: Csms, api: Api
) -> None:
    producer = Producer(csms.store)
    start = (await producer.emit(1, "CP-0", "charger.connected"))[0]
    mix = [
        producer.make("CP-1", "charger.boot"),
        producer.make("CP-1", "ocpp.message"),
        producer.make("CP-1", "transaction.started"),
        producer.make("CP-2", "transaction.started"),
        producer.make("CP-2", "ocpp.message"),
        producer.make("CP-1", "transaction.stopped"),
    ]
    await csms.store.commit(UnitOfWork(writes=list(mix)))
    tail_of(csms).keepalive = 0.1
    cases = {
        "": [0, 2, 3, 5],  # no type: everything but ocpp.message
        "&type=*": [0, 2, 3, 5],
        "&type=transaction.*&chargerId=CP-1": [2, 5],
        "&type=charger.boot&type=transaction.stopped": [0, 5],  # repeated
        "&type=charger.boot,transaction.started": [0, 2, 3],  # comma-separated
        "&type=ocpp.message": [1, 4],
        "&type=ocpp.message,transaction.*&chargerId=CP-2": [3, 4],
    }
    for query, chosen in cases.items():
        async with open_stream(api, f"?since={start.id}{query}") as stream:
            got = [(await stream.next_event()).id for _ in chosen]
            # All of the history is read before the stream goes quiet: nothing else matched.
            quiet = await stream.next()
            assert quiet.data is None and quiet.comments == ["keep-alive"], (query, quiet)
        assert got == [mix[i].id for i in chosen], query


async def test_keep_alives_when_quiet_carry_the_resume_point_past_filtered_events(
    csms: Csms, api: Api
) -> None:
    producer = Producer(csms.store)
    tail_of(csms).keepalive = 0.1
    async with open_stream(api, "?type=transaction.*") as stream:
        await stream.next()  # the opening
        beat = await stream.next()
        assert beat.comments == ["keep-alive"] and beat.id is None and beat.data is None
        skipped = (await producer.emit(1, event_type="charger.boot"))[0]
        beat = await stream.next()
        while beat.id is None:  # a beat may have been on its way before the commit
            beat = await stream.next()
        assert beat.comments == ["keep-alive"] and beat.id == skipped.id
    after = (await producer.emit(1))[0]
    async with open_stream(api, "?type=transaction.*", last_event_id=skipped.id) as stream:
        assert (await stream.next_event()).id == after.id


async def test_events_committed_outside_the_api_loop_are_found_by_the_poll(
    csms: Csms, api: Api
) -> None:
    """``webhook.test`` is committed by the webhook engine's own store on its own thread: no
    commit listener of the API's store hears of it, the poll of the log's end does."""
    tail_of(csms).poll_interval = 0.05
    endpoint = await api.post(
        "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "enabledEvents": ["*"]}
    )
    async with open_stream(api, "?type=webhook.*") as stream:
        await stream.next()
        _, answer = await api.request("POST", f"/api/v1/webhooks/{endpoint['id']}/test")
        got = await stream.next_event()
    assert got.event == "webhook.test" and got.id == answer["data"]["eventId"]


async def test_a_client_that_reads_nothing_is_dropped_with_the_reason_and_resumes(
    csms: Csms, api: Api
) -> None:
    """The client stops reading; once the server's buffers for it are full and a write waits
    longer than send_timeout, the stream ends with ``stream.closed`` behind everything it
    sent. The client then reads it all and resumes from its last id: nothing is missing."""
    tail = tail_of(csms)
    tail.send_timeout = 0.3
    producer = Producer(csms.store)
    start = (await producer.emit(1))[0]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", csms.api_port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    writer.write(
        f"GET {STREAM}?since={start.id} HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {TEST_TOKEN}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head

    async def dropped() -> bool:
        if tail.streams == 0:
            return True
        for _ in range(5):  # 320 KiB a round; the kernel takes a few MiB before it stalls
            await csms.store.commit(UnitOfWork().put(producer.make("CP-1", "charger.boot", 65536)))
        return False

    await wait_for(dropped, timeout=30, interval=0.05)
    body = await asyncio.wait_for(_dechunk(reader), 30)
    writer.close()
    messages = _parse_sse(body)
    assert messages[-1]["event"] == "stream.closed", messages[-1]
    closing = json.loads(messages[-1]["data"])
    assert closing["reason"] == "too_slow" and "Last-Event-ID" in closing["message"]
    seen = [m["id"] for m in messages if "data" in m and m.get("event") != "stream.closed"]
    start_pos = (await csms.store.get_event(start.id)).pos  # type: ignore[union-attr]
    stored = await log_ids(csms.store, start_pos)
    assert seen == stored[: len(seen)] and 0 < len(seen) < len(stored)
    async with open_stream(api, last_event_id=seen[-1]) as stream:
        rest = [(await stream.next_event()).id for _ in stored[len(seen) :]]
    assert seen + rest == stored


async def _dechunk(reader: asyncio.StreamReader) -> bytes:
    """An HTTP/1.1 chunked body, to its last chunk."""
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            return body
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _parse_sse(body: bytes) -> list[dict[str, str]]:
    messages = []
    for block in body.decode().split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        fields = dict(line.split(": ", 1) for line in lines)
        if fields:
            messages.append(fields)
    return messages


@pytest.mark.parametrize(
    ("query", "header", "code", "fragment"),
    [
        ("?since=evt_nosuchevent", None, "invalid_parameter", "since: no stored event"),
        ("", "evt_nosuchevent", "invalid_parameter", "Last-Event-ID: no stored event"),
        ("?since=2026-02-06T14:30:00Z", None, "invalid_parameter", "an event id"),
        ("?type=nosuch.*", None, "invalid_parameter", "no event type"),
        ("?type=ocpp.*", None, "invalid_parameter", "type=ocpp.message"),
        ("?charger=CP-1", None, "unknown_parameter", "chargerId, since, type"),
    ],
)
async def test_a_bad_request_gets_400_before_any_streaming(
    csms: Csms, api: Api, query: str, header: str | None, code: str, fragment: str
) -> None:
    headers = {"Last-Event-ID": header} if header else {}
    status, body = await api.request("GET", STREAM + query, headers=headers)
    assert status == 400, body
    assert body["error"]["code"] == code and fragment in body["error"]["message"], body


async def test_the_stream_needs_a_token(csms: Csms) -> None:
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer not-a-token-of-ours"}):
            async with session.get(csms.api_url + STREAM, headers=headers) as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "unauthorized"


async def test_shutdown_ends_streams_with_the_reason_at_once(csms: Csms, api: Api) -> None:
    producer = Producer(csms.store)
    async with open_stream(api) as stream, open_stream(api, "?type=charger.*") as other:
        await stream.next()
        await other.next()
        sent = (await producer.emit(1))[0]
        assert (await stream.next_event()).id == sent.id
        await asyncio.wait_for(csms.close(), 10)  # not aiohttp's 60 s wait for handlers
        for client in (stream, other):
            closing = await client.next_event()
            assert closing.event == "stream.closed"
            assert closing.envelope["reason"] == "shutdown"
            with pytest.raises(EOFError):
                await client.next()
    assert tail_of(csms).streams == 0


async def test_a_head_request_answers_the_headers_only(csms: Csms) -> None:
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.head(csms.api_url + STREAM) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
