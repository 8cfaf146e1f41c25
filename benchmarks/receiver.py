"""The loopback webhook receiver of the benchmarks (aiohttp), run in its own pinned process.

``python -m benchmarks.receiver --port P [--stats-port Q]`` answers every ``POST /hook``
with 204 and records, per event: its id (duplicates are counted, not double counted), the
charger's ``sequence`` (order and gaps per charger), the arrival time, and for
``transaction.updated`` the end-to-end latency = arrival wall time - the meterValue
timestamp the load client wrote just before sending the MeterValues (same machine, same
clock). ``GET /stats?from=WALL&to=WALL`` answers the counts, with latency percentiles over
the events sent inside [from, to) (``&arrivedBy=WALL``: also how many of those had arrived
by then; ``?lite`` leaves the latency out, for frequent polls of a big backlog). It prints
``receiver: listening PORT`` when ready.

With ``--post-log`` it also keeps one entry per POST, duplicates included: arrival, the
sender's TCP port (which node posted it, for the cluster section), charger, sequence, type,
event id, the event's ``timestamp`` (when it was stored) and the meterValue send time;
``GET /posts?from=WALL`` answers those that arrived from then on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import signal
import sys
import time
from array import array
from datetime import datetime
from typing import Any

from aiohttp import web

MAX_POST_LOG = 2_000_000  # bounded: about 300 MB at most


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


class Recorder:
    def __init__(self) -> None:
        self.started_wall = time.time()
        self.ids: set[str] = set()
        self.duplicates = 0
        self.received = 0  # unique events
        self.posts = 0
        self.by_type: dict[str, int] = {}
        self.last_seq: dict[str, int] = {}
        self.first_seq: dict[str, int] = {}
        self.last_type: dict[str, str] = {}
        self.per_charger: dict[str, int] = {}  # unique events with a sequence
        self.out_of_order = 0
        self.gaps = 0
        self.broken: set[str] = set()  # chargers with a gap or an event out of order
        self.bad = 0
        self.first_arrival = 0.0
        self.last_arrival = 0.0
        self.arrivals: array[float] = array("d")  # wall time of each unique event
        self.sent: array[float] = array("d")  # transaction.updated: sent wall time
        self.latency: array[float] = array("d")  # ... and its end-to-end latency, s
        self._ts_cache: dict[str, float] = {}
        # --post-log: (arrival, sender port, charger, sequence, type, id, stored, sent)
        self.post_log: list[tuple[Any, ...]] | None = None

    def record(self, body: bytes, peer_port: int = 0) -> None:
        now = time.time()
        self.posts += 1
        try:
            event = json.loads(body)
            event_id = event["id"]
        except (ValueError, KeyError, TypeError):
            self.bad += 1
            return
        if self.post_log is not None and len(self.post_log) < MAX_POST_LOG:
            self.post_log.append(self._log_entry(now, peer_port, event))
        if event_id in self.ids:
            self.duplicates += 1
            return
        self.ids.add(event_id)
        self.received += 1
        if not self.first_arrival:
            self.first_arrival = now
        self.last_arrival = now
        self.arrivals.append(now)
        etype = event.get("type")
        self.by_type[etype] = self.by_type.get(etype, 0) + 1
        charger = event.get("chargerId")
        seq = event.get("sequence")
        if charger is not None and isinstance(seq, int):
            self.per_charger[charger] = self.per_charger.get(charger, 0) + 1
            last = self.last_seq.get(charger)
            if last is None:
                self.first_seq[charger] = seq
            elif seq <= last:
                self.out_of_order += 1
                self.broken.add(charger)
            elif seq != last + 1:
                self.gaps += 1
                self.broken.add(charger)
            if last is None or seq > last:
                self.last_seq[charger] = seq
                self.last_type[charger] = etype
        if etype == "transaction.updated":
            try:
                stamp = event["data"]["meterValue"][0]["timestamp"]
                sent = self._parse(stamp)
            except (KeyError, IndexError, TypeError, ValueError):
                return
            self.sent.append(sent)
            self.latency.append(now - sent)

    def _log_entry(self, now: float, port: int, event: dict[str, Any]) -> tuple[Any, ...]:
        stored = sent = None
        with contextlib.suppress(KeyError, IndexError, TypeError, ValueError, AttributeError):
            stored = self._parse(event["timestamp"])
        if event.get("type") == "transaction.updated":
            with contextlib.suppress(KeyError, IndexError, TypeError, ValueError, AttributeError):
                sent = self._parse(event["data"]["meterValue"][0]["timestamp"])
        return (
            now,
            port,
            event.get("chargerId"),
            event.get("sequence"),
            event.get("type"),
            event["id"],
            stored,
            sent,
        )

    def posts_since(self, t_from: float) -> list[tuple[Any, ...]]:
        return [p for p in self.post_log or () if p[0] >= t_from]

    def _parse(self, stamp: str) -> float:
        # "YYYY-MM-DDTHH:MM:SS.ffffffZ": the seconds part is cached
        head, _, frac = stamp.rstrip("Z").partition(".")
        base = self._ts_cache.get(head)
        if base is None:
            base = datetime.fromisoformat(head + "+00:00").timestamp()
            if len(self._ts_cache) > 100_000:
                self._ts_cache.clear()
            self._ts_cache[head] = base
        return base + (int(frac) / 10 ** len(frac) if frac else 0.0)

    def stats(
        self,
        t_from: float | None,
        t_to: float | None,
        *,
        lite: bool = False,
        arrived_by: float | None = None,
    ) -> dict[str, Any]:
        """``lite``: no latency figures (a poll while a million events arrive must not take
        the receiver's core); ``arrived_by``: also count the window's events that had
        arrived by then (what was still pending at that moment)."""
        lat: list[float] = []
        if not lite:
            lat = [
                lat
                for sent, lat in zip(self.sent, self.latency, strict=True)
                if (t_from is None or sent >= t_from) and (t_to is None or sent < t_to)
            ]
            lat.sort()
        by = None
        if arrived_by is not None and not lite:
            by = sum(
                1
                for sent, lat in zip(self.sent, self.latency, strict=True)
                if (t_from is None or sent >= t_from)
                and (t_to is None or sent < t_to)
                and sent + lat <= arrived_by
            )

        def q(p: float) -> float:
            if not lat:
                return 0.0
            i = max(0, min(len(lat) - 1, int(p / 100 * len(lat) + 0.5) - 1))
            return round(lat[i] * 1000, 3)

        in_window = None
        if t_from is not None and t_to is not None:
            in_window = sum(1 for a in self.arrivals if t_from <= a < t_to)
        # complete: sequences 1, 2, ... without a gap, ending with charger.disconnected
        complete = sum(
            1
            for c in self.last_seq
            if self.first_seq.get(c) == 1
            and c not in self.broken
            and self.last_type.get(c) == "charger.disconnected"
        )
        incomplete = [
            {
                "chargerId": c,
                "firstSequence": self.first_seq.get(c),
                "lastSequence": last,
                "lastType": self.last_type.get(c),
                "broken": c in self.broken,
            }
            for c, last in sorted(self.last_seq.items())
            if self.first_seq.get(c) != 1
            or c in self.broken
            or self.last_type.get(c) != "charger.disconnected"
        ]
        # a stream that ends with charger.disconnected had that many events: the ones missing
        # are the events lost (given up by the sender, never posted)
        ended = [c for c in self.last_seq if self.last_type.get(c) == "charger.disconnected"]
        expected = sum(self.last_seq[c] for c in ended)
        got = sum(self.per_charger.get(c, 0) for c in ended)
        return {
            "received": self.received,
            "expectedOfEndedStreams": expected,
            "missing": expected - got,
            "incompleteCount": len(incomplete),
            "incomplete": incomplete[:10],
            "posts": self.posts,
            "duplicates": self.duplicates,
            "bad": self.bad,
            "byType": self.by_type,
            "chargers": len(self.last_seq),
            "chargersComplete": complete,
            "outOfOrder": self.out_of_order,
            "gaps": self.gaps,
            "firstArrival": self.first_arrival,
            "lastArrival": self.last_arrival,
            "startedWall": self.started_wall,
            "arrivedInWindow": in_window,
            "e2eArrivedBy": by,
            "e2eCount": len(lat),
            "e2eMs": {"p50": q(50), "p90": q(90), "p99": q(99), "max": q(100)},
            "cpuS": round(_cpu(), 3),
        }


def make_app(rec: Recorder) -> web.Application:
    async def hook(request: web.Request) -> web.Response:
        port = 0
        if rec.post_log is not None:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            port = peer[1] if peer else 0
        rec.record(await request.read(), port)
        return web.Response(status=204)

    async def posts(request: web.Request) -> web.Response:
        return web.json_response(rec.posts_since(float(request.query.get("from", "0"))))

    async def stats(request: web.Request) -> web.Response:
        q = request.query
        t_from = float(q["from"]) if "from" in q else None
        t_to = float(q["to"]) if "to" in q else None
        by = float(q["arrivedBy"]) if "arrivedBy" in q else None
        return web.json_response(rec.stats(t_from, t_to, lite="lite" in q, arrived_by=by))

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_get("/posts", posts)
    return app


async def main_async(port: int, post_log: bool = False) -> None:
    rec = Recorder()
    if post_log:
        rec.post_log = []
    runner = web.AppRunner(make_app(rec), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    server: Any = site._server
    actual = server.sockets[0].getsockname()[1]
    print(f"receiver: listening {actual}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), 3600)
    except TimeoutError:
        pass
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.receiver")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--post-log", action="store_true", help="keep every POST (see above)")
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.port, args.post_log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
