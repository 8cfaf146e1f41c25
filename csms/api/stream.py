"""``GET /api/v1/events/stream``: the event log as Server-Sent Events, live and resumable.

Every stream is a cursor on ``pos``, the log's commit order: it reads the events after its
cursor from the store, sends those its filters select, moves the cursor past everything it
read, and when it has read all there is, waits for the tail of the log to move. There is no
separate history phase and live phase, so there is no switch between them to get wrong: an
event is sent because it was read from the store after the one before it, never because a
listener saw it go by. ``pos`` is handed out in commit order and becomes visible in that order
(the Store contract, tests/test_store_backends.py), so no event can turn up behind a cursor.

The commit listener only wakes the streams (``EventTail.notify``). Events the main store did
not commit (the webhook engine's ``webhook.*`` events, written by its sibling store, or another
node on the same PostgreSQL database) are found by a poll of the log's last pos once a second
while streams are open.

A slow client: a stream holds at most one batch of events in memory, and writes it only once
the previous one has gone into the socket (aiohttp waits for the send buffer to drain below
64 KiB). So a client that reads slowly only falls behind the log, reading it at its own pace,
as a resumed client would; memory does not grow with its lag. A client that takes nothing for
``send_timeout`` seconds is dropped: the stream ends with an ``event: stream.closed`` saying
why, behind what it already sent, and the client resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from fnmatch import fnmatchcase

from aiohttp import web

from csms.api.common import bad_request
from csms.api.events import _types as requested_types
from csms.api.keys import EVENT_TYPES, STORE
from csms.api.query import accepts
from storage import webhook_tables as tables
from storage.records import Event, EventFilter
from storage.store import Store
from webhooks.envelope import envelope_body
from webhooks.filters import is_glob, pattern_matches, selects

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 15.0  # a ": keep-alive" comment after this long without a write
SEND_TIMEOUT = 10.0  # a write the client does not take within this long: dropped as too slow
POLL_INTERVAL = 1.0  # how often open streams look for events no commit listener reported
BATCH = 200  # events read from the store at a time, per stream
FINAL_WRITE_TIMEOUT = 1.0  # for the closing message of a stream
DROP_GRACE = 60.0  # a dropped client that reads nothing more is cut off after this long

routes = web.RouteTableDef()


class EventTail:
    """The last committed ``pos`` the streams know of, and the streams' wake-up call.

    One per app; the store's commit listener is ``notify``. The intervals are attributes so
    that tests can shorten them on a running server.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keepalive = KEEPALIVE_INTERVAL
        self.send_timeout = SEND_TIMEOUT
        self.poll_interval = POLL_INTERVAL
        self.batch = BATCH
        self.head = 0  # every event up to this pos is committed (maybe more are)
        self.closing = False
        self.streams = 0  # open streams
        self._wake = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    def notify(self, events: Sequence[Event], first_pos: int) -> None:
        """The store's commit listener (on the loop that committed, the API's)."""
        if events:
            self.advance(first_pos + len(events) - 1)

    def advance(self, pos: int) -> None:
        if pos > self.head:
            self.head = pos
            self._wake_all()

    async def wait_beyond(self, pos: int, timeout: float) -> None:
        """Return once an event after ``pos`` may be committed, at close, or after
        ``timeout``. ``head`` only grows, so a commit between a stream's read and this call
        is never missed."""
        if self.head > pos or self.closing:
            return
        wake = self._wake
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                await wake.wait()

    def opened(self) -> None:
        self.streams += 1
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="event-stream-poll")

    def ended(self) -> None:
        self.streams -= 1

    async def close(self, _app: web.Application | None = None) -> None:
        """End every stream (each sends why and returns); on the app's ``on_shutdown``."""
        self.closing = True
        self._wake_all()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    def _wake_all(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def _poll(self) -> None:
        while self.streams > 0 and not self.closing:
            await asyncio.sleep(self.poll_interval)
            try:
                self.advance(await tables.max_event_pos(self.store))
            except Exception as exc:  # a stream reading the store will say so
                log.debug("event stream poll failed: %s", exc)


EVENT_TAIL = web.AppKey("event_tail", EventTail)


def install(app: web.Application, store: Store) -> EventTail:
    """Give the app its tail, wake it on every commit, and end the streams at shutdown.
    Called before the other routes are added: ``/events/stream`` is not an event id."""
    tail = EventTail(store)
    app[EVENT_TAIL] = tail
    store.add_commit_listener(tail.notify)
    app.on_shutdown.append(tail.close)
    app.add_routes(routes)
    return tail


class _TooSlow(Exception):
    """The client took nothing for ``send_timeout`` seconds."""


@routes.get("/api/v1/events/stream")
@accepts("type", "chargerId", "since")
async def stream_events(request: web.Request) -> web.StreamResponse:
    """Everything is checked before the 200: a stream that starts is a stream that works."""
    tail = request.app[EVENT_TAIL]
    store = request.app[STORE]
    patterns = _patterns(request)
    charger_id = request.query.get("chargerId") or None
    cursor, cursor_id, resumed = await _start_point(request, store)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a proxy (nginx) must not hold events back
        }
    )
    response.force_close()  # a stream ends only when dropped or at shutdown
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    stream = _Stream(request, response, tail, patterns, charger_id)
    tail.advance(cursor)
    tail.opened()
    try:
        await stream.run(cursor, cursor_id, resumed)
    finally:
        tail.ended()
    return response


def _patterns(request: web.Request) -> tuple[str, ...]:
    """The ``type`` filters, checked as ``GET /api/v1/events`` checks them; a glob that
    selects only ``ocpp.message`` (``ocpp.*``) is refused: a stream sends that type only when
    it is named exactly, so the glob would select nothing."""
    patterns = requested_types(request)
    known = [t["name"] for t in request.app[EVENT_TYPES]()]
    for pattern in patterns:
        if is_glob(pattern) and not any(pattern_matches(pattern, name) for name in known):
            only = [name for name in known if fnmatchcase(name, pattern)]
            raise bad_request(
                f"type: {pattern} matches only {', '.join(only)}, which a stream sends only"
                f" when named exactly (type={only[0]})",
                "invalid_parameter",
            )
    return patterns


async def _start_point(request: web.Request, store: Store) -> tuple[int, str | None, bool]:
    """(pos, event id, resumed): where the stream starts. ``Last-Event-ID`` wins over
    ``since``: a reconnecting EventSource sends both, the header being the newer."""
    header = request.headers.get("Last-Event-ID", "").strip()
    since = request.query.get("since", "").strip()
    name, resume = ("Last-Event-ID", header) if header else ("since", since)
    if resume:
        event = await store.get_event(resume)
        if event is None or event.pos is None:
            raise bad_request(
                f"{name}: no stored event has the id {resume} (an event id, evt_...; events"
                " older than webhooks.retention are no longer stored)",
                "invalid_parameter",
            )
        return event.pos, event.id, True
    newest = (await store.list_events(EventFilter(limit=1))).items
    if not newest or newest[0].pos is None:
        return 0, None, False
    return newest[0].pos, newest[0].id, False


class _Stream:
    """One client's stream: a cursor on ``pos``, the filters, and the socket."""

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        tail: EventTail,
        patterns: tuple[str, ...],
        charger_id: str | None,
    ) -> None:
        self.request = request
        self.response = response
        self.tail = tail
        self.patterns = patterns or ("*",)
        self.charger_id = charger_id

    def selects(self, event: Event) -> bool:
        if self.charger_id is not None and event.charger_id != self.charger_id:
            return False
        return selects(self.patterns, event.type)

    async def run(self, cursor: int, cursor_id: str | None, resumed: bool) -> None:
        """Send until the client goes, is too slow, or the server shuts down.

        ``cursor_id`` is the id of the last event read (sent or not); ``held_id`` the resume
        point the client holds. A keep-alive carries ``id: cursor_id`` when they differ, so a
        client whose filters skipped events still resumes from where the stream is.
        """
        tail, loop = self.tail, asyncio.get_running_loop()
        held_id = cursor_id if resumed else None
        try:
            opening = b": stream open\n"
            if cursor_id is not None and not resumed:
                opening += b"id: %s\n" % cursor_id.encode()
                held_id = cursor_id
            await self._send(opening + b"\n")
            last_write = loop.time()
            while not tail.closing:
                known = tail.head  # committed before the read: the read sees it, or it is gone
                try:
                    events = await tables.events_after(tail.store, cursor, tail.batch)
                except Exception as exc:
                    log.warning("event stream: reading the log failed: %s", exc)
                    await self._end("storage_unavailable", f"the store did not answer: {exc}")
                    return
                if events:
                    chosen = [e for e in events if self.selects(e)]
                    if chosen:
                        await self._send(b"".join(_frame(e) for e in chosen))
                        held_id, last_write = chosen[-1].id, loop.time()
                    cursor, cursor_id = events[-1].pos or cursor, events[-1].id
                    if len(events) == tail.batch:
                        continue
                else:
                    cursor = max(cursor, known)  # pruned by retention as they were stored
                idle = loop.time() - last_write
                if idle >= tail.keepalive:
                    beat = b": keep-alive\n"
                    if cursor_id is not None and cursor_id != held_id:
                        beat += b"id: %s\n" % cursor_id.encode()
                        held_id = cursor_id
                    await self._send(beat + b"\n")
                    last_write = loop.time()
                    continue
                await tail.wait_beyond(cursor, tail.keepalive - idle)
            await self._end("shutdown", "the server is shutting down")
        except _TooSlow:
            log.info("event stream: dropped a client that read nothing for %ss", tail.send_timeout)
            await self._end(
                "too_slow", f"the client read nothing for {tail.send_timeout:g} seconds"
            )
        except ConnectionError:
            pass  # the client went away

    async def _send(self, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.tail.send_timeout):
                await self.response.write(data)
        except TimeoutError:
            raise _TooSlow from None

    async def _end(self, reason: str, message: str) -> None:
        """The last message, behind everything sent. A client that takes nothing gets it in
        the socket's buffer, which is closed once flushed (or cut off after a grace)."""
        body = json.dumps(
            {"reason": reason, "message": f"{message}; reconnect with Last-Event-ID to resume"}
        )
        try:
            async with asyncio.timeout(FINAL_WRITE_TIMEOUT):
                await self.response.write_eof(f"event: stream.closed\ndata: {body}\n\n".encode())
        except TimeoutError:
            transport = self.request.transport
            if transport is not None:
                transport.close()
                grace = 0.0 if self.tail.closing else DROP_GRACE
                asyncio.get_running_loop().call_later(grace, transport.abort)
        except ConnectionError:
            pass


def _frame(event: Event) -> bytes:
    """One SSE message; the envelope is compact JSON, so ``data`` is one line."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        event.id.encode(),
        event.type.encode(),
        envelope_body(event),
    )
