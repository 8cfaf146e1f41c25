"""One HTTP attempt: sign, POST, classify. The only place that talks to receivers.

Success is any 2xx within the time-out; redirects are not followed (a 3xx is a failure: a
receiver that moved must be re-registered, and following would bypass the target check).

The client is ``pyreqwest`` (Rust's reqwest, its I/O on a thread of its own): ~31 us of
process CPU per keep-alive POST where aiohttp's client took ~67 us, measured on one core.
reqwest has no resolver hook we could guard, so the guard is a pin: unless private targets
are allowed, every host name is resolved here, all of its addresses are checked (refused if
any is not global), and the host gets a client of its own that connects to a checked
address only (``ClientBuilder.resolve``; the URL keeps the name, so Host, SNI and the
certificate check use it). A name that later resolves elsewhere (DNS rebinding) is only
used once resolved and checked again. IP literals need no resolving and are checked here.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import ConnectError, PyreqwestError
from pyreqwest.http import Url

from webhooks.config import DeliveryConfig
from webhooks.endpoints import Endpoint
from webhooks.signing import secret_key, signature_header
from webhooks.targets import TargetError, global_addresses, parse_url, refuse_non_global

USER_AGENT = "chargehook-webhooks/0.1 (+https://github.com/chargehook)"
_MAX_BODY = 64 * 1024  # of the receiver's answer; we keep none of it
_MAX_ERROR = 500
_KEEPALIVE = datetime.timedelta(seconds=30)  # idle connections are closed after this
_PIN_TTL = 10.0  # seconds a checked address is used before the name is resolved again
_MAX_CACHED = 10_000  # per cache (urls, keys, hosts): cleared beyond, rebuilt on demand

# host, port -> the host's addresses, each checked (raises TargetError, or OSError if the
# name does not resolve)
Resolve = Callable[[str, int], Awaitable[list[str]]]


@dataclass(slots=True, kw_only=True)  # not frozen: one per POST, ~3x cheaper
class AttemptResult:
    status_code: int | None  # None: no HTTP answer
    latency_ms: float
    error: str | None
    retry_after: str | None = None  # the raw header, parsed by the scheduler

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a URL goes: a host name to pin (``None``: an IP literal, or private targets
    allowed: the shared client) or why it is refused."""

    host: str | None
    port: int
    refusal: str | None
    url: Url | None = None  # parsed once (the client parses a string on every request)


@dataclass(slots=True)
class _Pin:
    client: Client
    addresses: list[str]  # all checked; the client connects to addresses[index]
    index: int
    until: float  # monotonic: resolve again after this


def _client(pin: tuple[str, str] | None = None) -> Client:
    """A keep-alive client that follows no redirect, keeps no cookie, uses no proxy from
    the environment, asks for no compression, sends no Referer and writes header names in
    lower case, as given; ``pin``: (host, address),
    the only address it connects to for that host."""
    builder = (
        ClientBuilder()
        .follow_redirects(False)
        .no_proxy()
        .gzip(False)
        .brotli(False)
        .zstd(False)
        .deflate(False)
        .referer(False)
        .pool_idle_timeout(_KEEPALIVE)
        .http1_lower_case_headers()  # as written (reqwest would send Webhook-Id)
    )
    if pin is not None:
        builder = builder.resolve(pin[0], pin[1], 0)
    return builder.build()


class Poster:
    def __init__(
        self,
        *,
        timeout: float,
        allow_private: bool,
        resolve: Resolve = global_addresses,
    ) -> None:
        self._timeout = timeout
        self._timedelta = datetime.timedelta(seconds=timeout)
        self._allow_private = allow_private
        self._resolve = resolve
        self._shared = _client()  # IP literals (checked here), or any host if allowed
        self._pins: dict[str, _Pin] = {}  # host name -> its pinned client
        self._resolving: dict[str, asyncio.Task[_Pin]] = {}
        self._routes: dict[str, _Route] = {}  # url -> where it goes
        self._keys: dict[str, bytes] = {}  # secret -> HMAC key (decoded once)
        # endpoint id -> (its headers mapping, the header list made of it)
        self._headers: dict[str, tuple[object, list[tuple[str, str]]]] = {}
        # endpoint id -> (its secret, its previous secret, their keys: current first)
        self._signing: dict[str, tuple[str, str | None, list[bytes]]] = {}

    @classmethod
    def of(cls, config: DeliveryConfig) -> Poster:
        return cls(timeout=config.timeout, allow_private=config.allow_private_targets)

    async def close(self) -> None:
        for task in self._resolving.values():
            task.cancel()
        clients = [self._shared, *(pin.client for pin in self._pins.values())]
        self._pins.clear()
        for client in clients:
            await client.close()

    def _key(self, secret: str) -> bytes:
        key = self._keys.get(secret)
        if key is None:
            if len(self._keys) > _MAX_CACHED:
                self._keys.clear()
            key = self._keys[secret] = secret_key(secret)
        return key

    def _signing_keys(self, endpoint: Endpoint, now: float) -> list[bytes]:
        """The HMAC keys of ``endpoint.signing_secrets(now)``, in that order, kept per
        endpoint (a list and a lookup per secret on every POST, else)."""
        cached = self._signing.get(endpoint.id)
        if (
            cached is None
            or cached[0] is not endpoint.secret
            or cached[1] is not endpoint.previous_secret
        ):
            if len(self._signing) > _MAX_CACHED:
                self._signing.clear()
            keys = [self._key(endpoint.secret)]
            if endpoint.previous_secret:
                keys.append(self._key(endpoint.previous_secret))
            cached = self._signing[endpoint.id] = (
                endpoint.secret,
                endpoint.previous_secret,
                keys,
            )
        keys = cached[2]
        if len(keys) > 1 and not (endpoint.previous_secret_expires or 0) > now:
            return keys[:1]  # the previous secret expired: it signs no more
        return keys

    def _static_headers(self, endpoint: Endpoint) -> list[tuple[str, str]]:
        """The endpoint's own headers, then ours that do not change (ours win a clash)."""
        cached = self._headers.get(endpoint.id)
        if cached is not None and cached[0] is endpoint.headers:
            return cached[1]
        if len(self._headers) > _MAX_CACHED:
            self._headers.clear()
        static = [(k, v) for k, v in endpoint.headers.items() if k.lower() != "user-agent"]
        static += [("content-type", "application/json"), ("user-agent", USER_AGENT)]
        self._headers[endpoint.id] = (endpoint.headers, static)
        return static

    def _route(self, url: str) -> _Route:
        route = self._routes.get(url)
        if route is None:
            if len(self._routes) > _MAX_CACHED:
                self._routes.clear()
            route = self._routes[url] = self._new_route(url)
        return route

    def _new_route(self, url: str) -> _Route:
        """Classify the host as the client will see it (its own URL parser: it reads
        ``http://0x7f.1/`` as 127.0.0.1, which Python's would take for a name)."""
        try:
            target = parse_url(url)
            parsed = Url(url)
        except TargetError as exc:
            return _Route(None, 0, str(exc))
        except (ValueError, PyreqwestError) as exc:
            return _Route(None, 0, f"url is not valid: {exc}")
        if self._allow_private:
            return _Route(None, target.port, None, parsed)
        domain = parsed.domain
        if domain is not None:
            return _Route(domain, target.port, None, parsed)
        host = parsed.host_str or ""
        try:
            refuse_non_global(host, [str(ipaddress.ip_address(host.strip("[]")))])
        except (TargetError, ValueError) as exc:
            return _Route(None, 0, str(exc))
        return _Route(None, target.port, None, parsed)

    async def _pinned(self, host: str, port: int) -> Client:
        """The client of ``host``, pinned to a checked address; resolved again once its
        time is up (in the background: the old pin serves meanwhile)."""
        pin = self._pins.get(host)
        if pin is not None:
            if pin.until < time.monotonic() and host not in self._resolving:
                self._start_resolving(host, port, pin)
            return pin.client
        task = self._resolving.get(host) or self._start_resolving(host, port, None)
        return (await asyncio.shield(task)).client

    def _start_resolving(self, host: str, port: int, old: _Pin | None) -> asyncio.Task[_Pin]:
        task = asyncio.create_task(self._pin(host, port, old), name=f"resolve {host}")
        self._resolving[host] = task
        task.add_done_callback(lambda t: _consumed(t, self._resolving, host))
        return task

    async def _pin(self, host: str, port: int, old: _Pin | None, move: bool = False) -> _Pin:
        """Resolve and check ``host``; keep the old pin's client while its address is
        still among the checked ones (its connections stay in use). ``move``: the pinned
        address could not be connected to: use the next one."""
        try:
            addresses = await self._resolve(host, port)
        except BaseException:
            if self._pins.get(host) is old:
                self._pins.pop(host, None)  # refused or unresolvable now: nothing is used
            raise
        if old is not None and old.addresses[old.index] in addresses:
            index = addresses.index(old.addresses[old.index])
            if move and len(addresses) > 1:
                index = (index + 1) % len(addresses)
            else:
                pin = _Pin(old.client, addresses, index, time.monotonic() + _PIN_TTL)
                self._pins[host] = pin
                return pin
        else:
            index = 0
        # A replaced client is dropped, not closed: POSTs on their way with it finish, and
        # its idle connections close once it is collected.
        pin = _Pin(_client((host, addresses[index])), addresses, index, time.monotonic() + _PIN_TTL)
        if len(self._pins) > _MAX_CACHED:
            self._pins.clear()
        self._pins[host] = pin
        return pin

    def _moved(self, host: str, port: int) -> None:
        """The pinned address did not answer a connect: try the host's next one next time."""
        pin = self._pins.get(host)
        if pin is not None and len(pin.addresses) > 1 and host not in self._resolving:
            task = asyncio.create_task(self._pin(host, port, pin, move=True))
            self._resolving[host] = task
            task.add_done_callback(lambda t: _consumed(t, self._resolving, host))

    async def post(
        self,
        endpoint: Endpoint,
        *,
        event_id: str,
        body: bytes,
        timestamp: int,
        within: float | None = None,
    ) -> AttemptResult:
        """POST one event; ``within``: a shorter deadline than the configured timeout (the
        delivery lease runs out: the POST must be over before another node may post)."""
        route = self._route(endpoint.url)
        if route.refusal is not None:
            return AttemptResult(status_code=None, latency_ms=0.0, error=route.refusal)
        keys = self._signing_keys(endpoint, float(timestamp))
        headers = [
            *self._static_headers(endpoint),
            ("webhook-id", event_id),
            ("webhook-timestamp", str(timestamp)),
            ("webhook-signature", signature_header(keys, event_id, timestamp, body)),
        ]
        started = time.perf_counter()
        total = self._timeout
        limit = self._timedelta
        if within is not None and within < total:
            total = max(within, 0.001)
            limit = datetime.timedelta(seconds=total)
        try:
            if route.host is None:
                client = self._shared
            else:
                async with asyncio.timeout(total):
                    client = await self._pinned(route.host, route.port)
                spent = time.perf_counter() - started
                if spent > 0.001:  # resolving took a share of the attempt's time
                    limit = datetime.timedelta(seconds=max(total - spent, 0.001))
            request = (
                client.post(endpoint.url if route.url is None else route.url)
                .headers(headers)
                .body_bytes(body)
                .timeout(limit)
                .streamed_read_buffer_limit(_MAX_BODY)
                .build_streamed()
            )
            async with request as response:
                status = response.status
                retry_after = response.get_header("retry-after")
                await response.body_reader.read(_MAX_BODY)
            return AttemptResult(
                status_code=status,
                latency_ms=_ms(started),
                error=None if 200 <= status < 300 else f"HTTP {status}",
                retry_after=retry_after,
            )
        except TimeoutError:  # the client's (RequestTimeoutError is one) or resolving's
            error = f"timed out after {total:g} s"
        except TargetError as exc:
            error = f"cannot connect: {exc}"
        except ConnectError as exc:
            if route.host is not None:
                self._moved(route.host, route.port)
            error = f"cannot connect: {_describe(exc)}"
        except PyreqwestError as exc:
            error = f"{type(exc).__name__}: {_describe(exc)}"
        except OSError as exc:  # the name does not resolve
            error = f"cannot connect: {exc}"
        return AttemptResult(status_code=None, latency_ms=_ms(started), error=error[:_MAX_ERROR])


def _describe(exc: PyreqwestError) -> str:
    """The error and its deepest cause (reqwest's message alone says little)."""
    causes = (getattr(exc, "details", None) or {}).get("causes") or []
    if causes:
        return f"{exc.message} ({causes[-1]['message']})"
    return exc.message


def _consumed(
    task: asyncio.Task[_Pin], resolving: dict[str, asyncio.Task[_Pin]], host: str
) -> None:
    """A resolving task is over: forget it, and mark its error seen (its POSTs report it)."""
    if resolving.get(host) is task:
        del resolving[host]
    if not task.cancelled():
        task.exception()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 2)
