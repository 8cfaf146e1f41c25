"""One HTTP attempt: sign, POST, classify. The only place that talks to receivers.

Success is any 2xx within the time-out; redirects are not followed (a 3xx is a failure: a
receiver that moved must be re-registered, and following would bypass the target check).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from webhooks.endpoints import Endpoint
from webhooks.signing import secret_key, signature_header
from webhooks.targets import GuardedResolver, TargetError, literal_address, parse_url
from webhooks.targets import refuse_non_global as _refuse

USER_AGENT = "chargehook-webhooks/0.1 (+https://github.com/chargehook)"
_MAX_BODY = 64 * 1024  # of the receiver's answer; we keep none of it
_MAX_ERROR = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptResult:
    status_code: int | None  # None: no HTTP answer
    latency_ms: float
    error: str | None
    retry_after: str | None = None  # the raw header, parsed by the scheduler

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def make_session(*, max_in_flight: int, allow_private: bool) -> aiohttp.ClientSession:
    """Keep-alive connections, one pool for all endpoints, the target check at connect."""
    connector = aiohttp.TCPConnector(
        limit=max_in_flight,
        limit_per_host=0,
        keepalive_timeout=30,
        resolver=None if allow_private else GuardedResolver(),
    )
    # No cookie jar: a receiver's cookies must not ride along to the next POST (to it or to
    # another endpoint), and skipping the jar's bookkeeping saves ~10% of a POST's CPU.
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class Poster:
    def __init__(
        self, session: aiohttp.ClientSession, *, timeout: float, allow_private: bool
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._allow_private = allow_private
        self._literal_ok: dict[str, str | None] = {}  # url -> refusal (IP literals only)
        self._keys: dict[str, bytes] = {}  # secret -> HMAC key (decoded once)

    def _key(self, secret: str) -> bytes:
        key = self._keys.get(secret)
        if key is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            key = self._keys[secret] = secret_key(secret)
        return key

    def _refusal(self, url: str) -> str | None:
        """IP-literal hosts never reach the resolver, so they are checked here."""
        if self._allow_private:
            return None
        if url not in self._literal_ok:
            refusal = None
            try:
                host = parse_url(url).host
                ip = literal_address(host)
                if ip is not None:
                    _refuse(host, [str(ip)])
            except TargetError as exc:
                refusal = str(exc)
            self._literal_ok[url] = refusal
        return self._literal_ok[url]

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
        keys = [self._key(s) for s in endpoint.signing_secrets(float(timestamp))]
        headers = {
            **endpoint.headers,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(keys, event_id, timestamp, body),
        }
        refusal = self._refusal(endpoint.url)
        if refusal is not None:
            return AttemptResult(status_code=None, latency_ms=0.0, error=refusal)
        started = time.perf_counter()
        timeout = self._timeout
        if within is not None and within < timeout.total:  # type: ignore[operator]
            timeout = aiohttp.ClientTimeout(total=max(within, 0.001))
        try:
            async with self._session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                await response.content.read(_MAX_BODY)
                return AttemptResult(
                    status_code=response.status,
                    latency_ms=_ms(started),
                    error=None if 200 <= response.status < 300 else f"HTTP {response.status}",
                    retry_after=response.headers.get("Retry-After"),
                )
        except TimeoutError:
            error = f"timed out after {timeout.total:g} s"
        except aiohttp.ClientConnectorError as exc:
            error = f"cannot connect: {exc.os_error or exc}"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except OSError as exc:
            error = f"network error: {exc}"
        except asyncio.CancelledError:
            raise
        return AttemptResult(status_code=None, latency_ms=_ms(started), error=error[:_MAX_ERROR])


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 2)
