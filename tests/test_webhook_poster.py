"""The poster against a real aiohttp receiver on loopback: the connect-time guard, the pin
to a checked address, per-attempt time-outs, no redirects, no cookies, keep-alive."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import standardwebhooks
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.pki import Authority, _name, _write_key, pem
from webhooks import poster as poster_module
from webhooks.endpoints import Endpoint, EndpointStatus
from webhooks.poster import USER_AGENT, Poster
from webhooks.signing import new_secret
from webhooks.targets import TargetError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    peer_port: int


@dataclass
class Site:
    port: int
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


@asynccontextmanager
async def site(
    routes: dict[str, Handler] | None = None, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Site]:
    """A receiver on 127.0.0.1 that records every request, then answers by its path."""
    handlers = {"/hook": _ok, **(routes or {})}
    state = Site(port=0)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        port = peer[1] if peer else -1
        state.seen.append(Seen(request.path, dict(request.headers), body, port))
        return await handlers[request.path](request)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


def endpoint(url: str, headers: dict[str, str] | None = None) -> Endpoint:
    return Endpoint(
        id="we_test",
        url=url,
        enabled_events=("*",),
        charger_ids=None,
        description="",
        headers=headers or {},
        status=EndpointStatus.ACTIVE,
        disabled_reason=None,
        secret=new_secret(secrets.token_bytes),
        previous_secret=None,
        previous_secret_expires=None,
        failing_since=None,
        from_pos=0,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )


@asynccontextmanager
async def poster(**kwargs) -> AsyncIterator[Poster]:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("allow_private", True)
    p = Poster(**kwargs)
    try:
        yield p
    finally:
        await p.close()


async def post(p: Poster, ep: Endpoint, n: int = 1):
    body = b'{"id":"evt_%d"}' % n
    return await p.post(ep, event_id=f"evt_{n}", body=body, timestamp=int(time.time()))


def pinned(table: dict[str, list[str]]):
    """A resolver standing in for DNS: known names only, each address as given."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError(f"{host} does not resolve")
        answer = table[host]
        if not answer:
            raise TargetError(f"host {host} resolves to a non-public address (now)")
        return answer

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def test_a_name_resolving_to_loopback_is_refused_at_connect_time():
    async with site() as rec, poster(allow_private=False) as p:
        for url in (
            f"http://localhost:{rec.port}/hook",  # a name: resolved and checked
            f"http://127.0.0.1:{rec.port}/hook",  # a literal
            f"http://0x7f.1:{rec.port}/hook",  # 127.0.0.1 as the client's URL parser reads it
            f"http://[::ffff:127.0.0.1]:{rec.port}/hook",
        ):
            result = await post(p, endpoint(url))
            assert result.status_code is None and "non-public" in (result.error or ""), url
        assert rec.seen == []
    async with site() as rec, poster(allow_private=True) as p:
        result = await post(p, endpoint(f"http://localhost:{rec.port}/hook"))
        assert result.succeeded and len(rec.seen) == 1


async def test_a_pinned_name_connects_to_the_checked_address_only():
    """``.invalid`` never resolves: the POST gets there through the pin alone, and the
    request still names the host (Host header)."""
    resolve = pinned({"hooks.invalid": ["127.0.0.1"]})
    async with site() as rec, poster(allow_private=False, resolve=resolve) as p:
        ep = endpoint(f"http://hooks.invalid:{rec.port}/hook")
        for n in range(3):
            assert (await post(p, ep, n)).succeeded
        assert resolve.calls == ["hooks.invalid"]  # once, then the pin serves
        assert {s.headers["Host"] for s in rec.seen} == {f"hooks.invalid:{rec.port}"}
        unknown = await post(p, endpoint(f"http://other.invalid:{rec.port}/hook"))
        assert unknown.status_code is None and "does not resolve" in (unknown.error or "")
        assert len(rec.seen) == 3


async def test_a_name_that_now_resolves_to_a_private_address_is_refused(monkeypatch):
    """DNS rebinding: once the pin's time is up the name is resolved and checked again."""
    monkeypatch.setattr(poster_module, "_PIN_TTL", 0.0)
    table = {"hooks.invalid": ["127.0.0.1"]}
    resolve = pinned(table)
    async with site() as rec, poster(allow_private=False, resolve=resolve) as p:
        ep = endpoint(f"http://hooks.invalid:{rec.port}/hook")
        assert (await post(p, ep)).succeeded
        table["hooks.invalid"] = []  # the check refuses what it resolves to now
        async with asyncio.timeout(5):
            while True:
                result = await post(p, ep)
                if not result.succeeded:
                    break
        assert "non-public" in (result.error or "")
        assert (await post(p, ep)).error == result.error


async def test_each_attempt_has_its_time_out():
    async def stall(request: web.Request) -> web.StreamResponse:
        await rec.release.wait()
        return web.Response(status=204)

    async with site({"/slow": stall}) as rec, poster(timeout=0.3) as p:
        ep = endpoint(f"http://127.0.0.1:{rec.port}/slow")
        result = await post(p, ep)
        assert result.status_code is None and result.error == "timed out after 0.3 s"
        assert 250 <= result.latency_ms < 2000
        shorter = await p.post(ep, event_id="evt_2", body=b"{}", timestamp=1, within=0.1)
        assert shorter.error == "timed out after 0.1 s" and shorter.latency_ms < 1000
        rec.release.set()
        assert (await post(p, endpoint(f"http://127.0.0.1:{rec.port}/hook"))).succeeded


async def test_redirects_are_not_followed_and_cookies_not_kept():
    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": "/hook"})

    async def cookie(request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, headers={"Set-Cookie": "session=1; Path=/"})

    async with site({"/moved": moved, "/cookie": cookie}) as rec, poster() as p:
        result = await post(p, endpoint(f"http://127.0.0.1:{rec.port}/moved"))
        assert result.status_code == 307 and result.error == "HTTP 307" and not result.succeeded
        assert [s.path for s in rec.seen] == ["/moved"]
        assert (await post(p, endpoint(f"http://127.0.0.1:{rec.port}/cookie"))).succeeded
        assert (await post(p, endpoint(f"http://127.0.0.1:{rec.port}/cookie"))).succeeded
        assert all("Cookie" not in s.headers for s in rec.seen)


async def test_keep_alive_one_connection_for_sequential_posts():
    async with site() as rec, poster() as p:
        ep = endpoint(f"http://127.0.0.1:{rec.port}/hook")
        for n in range(5):
            assert (await post(p, ep, n)).succeeded
        assert len({s.peer_port for s in rec.seen}) == 1


async def test_headers_signature_and_answers():
    async def limited(request: web.Request) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": "7"}, body=b"x" * 1_000_000)

    async with site({"/limited": limited}) as rec, poster() as p:
        ep = endpoint(
            f"http://127.0.0.1:{rec.port}/hook", {"X-Tenant": "t1", "User-Agent": "theirs"}
        )
        assert (await post(p, ep, 5)).succeeded
        seen = rec.seen[0]
        standardwebhooks.Webhook(ep.secret).verify(seen.body, seen.headers)
        assert seen.headers["webhook-id"] == "evt_5" and seen.headers["webhook-timestamp"].isdigit()
        assert seen.headers["Content-Type"] == "application/json"
        # Header names go out in lower case (HTTP/1.1 names are case-insensitive).
        assert seen.headers["User-Agent"] == USER_AGENT and seen.headers["x-tenant"] == "t1"
        answer = await post(p, endpoint(f"http://127.0.0.1:{rec.port}/limited"))
        assert (answer.status_code, answer.retry_after) == (429, "7")  # a large body is fine


def _leaf(ca: Authority, dns: str, directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(dns))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    cert = directory / f"{dns}.pem"
    cert.write_text(pem(certificate))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, _write_key(key, directory / f"{dns}.key"))
    return context


@pytest.mark.parametrize("name", ["hooks.invalid", "other.invalid"])
async def test_tls_through_a_pin_checks_the_certificate_for_the_name(tmp_path, monkeypatch, name):
    """The pin changes where the client connects, not whom it expects: the certificate must
    be for the URL's host (the test CA is trusted through SSL_CERT_FILE)."""
    ca = Authority.create(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert))
    resolve = pinned({"hooks.invalid": ["127.0.0.1"]})
    async with (
        site(ssl_context=_leaf(ca, name, tmp_path)) as rec,
        poster(allow_private=False, resolve=resolve) as p,
    ):
        result = await post(p, endpoint(f"https://hooks.invalid:{rec.port}/hook"))
        if name == "hooks.invalid":
            assert result.succeeded, result.error
        else:
            assert result.status_code is None and "not valid for name" in (result.error or "")
            assert rec.seen == []


async def test_proxies_from_the_environment_are_not_used(monkeypatch):
    """A proxy would connect wherever it likes: the guard could not hold through it."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    async with site() as rec, poster() as p:
        assert (await post(p, endpoint(f"http://127.0.0.1:{rec.port}/hook"))).succeeded
        assert len(rec.seen) == 1
