"""The web dashboard in a real browser: Debian's Chromium driven by Playwright.

One CSMS (SQLite, in this process), one webhook receiver and one browser serve the whole
module; each test opens its own browser context (its own sessionStorage) and logs in. Every
request any page makes is recorded, and so is every console error, page error and dialog:
the tests fail on any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from csms.app import Csms
from csms.dashboard import ASSETS, CONTENT_SECURITY_POLICY
from csms.protocol.schemas import CENTRAL_SYSTEM_ACTIONS
from simulators.charger import Charger
from simulators.model import ChargerModel, Identity
from tests.conftest import PASSWORD, TEST_TOKEN, Api, make_settings, wait_for
from tests.dashboard_support import LAUNCH_ARGS, require_chromium
from tests.helpers import REPO_ROOT

# One browser and one CSMS for the module (per xdist worker); each test makes what it shows.
pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = 10_000  # bound on every wait in the browser
# Each at most 20 characters: BootNotification's CiString20Type.
HOSTILE_VENDOR = "<svg onload=alert()>"
HOSTILE_MODEL = "<script>alert(2)"
# What would parse a string as markup or code; the app's modules use none of them.
MARKUP_SINKS = re.compile(
    r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|\beval\(|\bFunction\("
)


@dataclass
class Received:
    """What the webhook receiver was sent."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Env:
    csms: Csms
    api: Api
    browser: Any
    hook_url: str
    received: Received
    requests: list[str] = field(default_factory=list)  # every URL any page asked for
    problems: list[str] = field(default_factory=list)  # console errors, page errors, dialogs
    chargers: list[Charger] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.csms.api_url

    async def page(self, *, login: bool = True) -> Any:
        """A page in a context of its own, recorded, logged in unless told not to."""
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("request", lambda r: self.requests.append(r.url))
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

        async def dialog(d: Any) -> None:
            self.problems.append(f"dialog {d.type}: {d.message}")
            await d.dismiss()

        page.on("dialog", dialog)
        if login:
            await self.login(page)
        return page

    async def login(self, page: Any, token: str = TEST_TOKEN) -> None:
        await page.goto(self.base + "/")
        await page.fill("#token", token)
        await page.click("#login-form button[type=submit]")
        await page.wait_for_selector("#logout")

    async def charger(self, charger_id: str, **identity: str) -> Charger:
        await self.api.post("/api/v1/chargers", {"id": charger_id, "password": PASSWORD})
        model = ChargerModel(identity=Identity(serial=charger_id, **identity))
        sim = Charger(
            self.csms.ocpp_url,
            charger_id,
            password=PASSWORD,
            model=model,
            sample_interval=0.5,
            call_timeout=5,
        )
        self.chargers.append(sim)
        await sim.start(timeout=5)
        return sim


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, Received]]:
    received = Received()

    async def take(request: web.Request) -> web.Response:
        received.requests.append((dict(request.headers), await request.read()))
        received.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", take)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hooks", received
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    chromium = require_chromium()
    from playwright.async_api import async_playwright

    tmp: Path = tmp_path_factory.mktemp("dashboard")
    # accept_all: the remote start's id tag needs no registration; private targets: the
    # receiver is on 127.0.0.1.
    settings = make_settings(tmp, ocpp={"authorization": "accept_all", "call_timeout": 5})
    csms = await Csms.start(settings)
    try:
        async with (
            receiver() as (hook_url, received),
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_TOKEN}"}) as session,
            async_playwright() as pw,
        ):
            browser = await pw.chromium.launch(executable_path=chromium, args=LAUNCH_ARGS)
            env = Env(csms, Api(session, csms.api_url), browser, hook_url, received)
            try:
                yield env
            finally:
                for sim in env.chargers:
                    await sim.stop()
                await browser.close()
    finally:
        await csms.close()


@pytest.fixture
def clean(env: Env) -> Any:
    """Fails the test on any console error, page error or dialog it caused."""
    env.problems.clear()
    yield
    assert env.problems == [], env.problems


# -- served without a token, under a strict policy --------------------------------------------


async def test_the_page_and_its_files_need_no_token_and_carry_a_strict_csp(env: Env) -> None:
    policy = {d.split()[0]: d.split()[1:] for d in CONTENT_SECURITY_POLICY.split("; ")}
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert "'unsafe-eval'" not in CONTENT_SECURITY_POLICY
    assert policy["require-trusted-types-for"] == ["'script'"]
    documented = " ".join((REPO_ROOT / "docs" / "api.md").read_text().split())
    assert f"Content-Security-Policy: {CONTENT_SECURITY_POLICY}`" in documented
    paths = ["/", *(p for p in ASSETS if not p.endswith("index.html"))]
    assert "/static/js/main.js" in paths and "/static/app.css" in paths
    async with aiohttp.ClientSession() as anonymous:
        for path in paths:
            async with anonymous.get(env.base + path) as r:
                body = await r.text()
                assert r.status == 200, path
                assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.headers["X-Frame-Options"] == "DENY"
            if path == "/":
                assert r.content_type == "text/html"
                # No inline script or style: every script has a src, no style attribute.
                assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", body))
                assert "style=" not in body and "<style" not in body
            if path.endswith(".js"):
                assert r.content_type == "text/javascript"
                assert MARKUP_SINKS.search(body) is None, path
        # The API is still closed, and a path outside the dashboard's files is no file.
        async with anonymous.get(env.base + "/api/v1/chargers") as r:
            assert r.status == 401
        async with anonymous.get(env.base + "/static/../csms.db") as r:
            assert r.status in (401, 404)


async def test_nothing_calls_the_api_before_login_and_a_wrong_token_is_refused(
    env: Env, clean: None
) -> None:
    page = await env.page(login=False)
    seen: list[str] = []
    page.on("request", lambda r: seen.append(urlsplit(r.url).path))
    await page.goto(env.base + "/")
    await page.wait_for_selector("#login-form")
    assert seen and all(p == "/" or p.startswith("/static/") for p in seen), seen
    # The CSP arrives with the page in the browser too.
    response = await page.goto(env.base + "/")
    assert (await response.all_headers())["content-security-policy"] == CONTENT_SECURITY_POLICY
    await page.fill("#token", "not-the-token-0123456789")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#login-error:has-text('not accepted')")
    assert await page.evaluate("sessionStorage.length") == 0
    env.problems[:] = [p for p in env.problems if "401" not in p]  # the refused login's answer
    await page.context.close()


async def test_login_keeps_the_token_in_session_storage_only_and_logout_forgets_it(
    env: Env, clean: None
) -> None:
    page = await env.page(login=False)
    authorized: list[str] = []
    page.on(
        "request",
        lambda r: (
            authorized.append(r.headers.get("authorization", ""))
            if urlsplit(r.url).path.startswith("/api/v1/chargers")
            else None
        ),
    )
    await env.login(page)
    await page.wait_for_selector("#stat-chargers:not(:has-text('…'))")
    assert await page.evaluate("sessionStorage.getItem('chargehook.adminToken')") == TEST_TOKEN
    assert await page.evaluate("localStorage.length") == 0
    assert await page.context.cookies() == []
    assert TEST_TOKEN not in page.url
    assert all(TEST_TOKEN not in url for url in env.requests)  # never in a URL
    assert authorized and set(authorized) == {f"Bearer {TEST_TOKEN}"}
    await page.click("#logout")
    await page.wait_for_selector("#login-form")
    assert await page.evaluate("sessionStorage.length") == 0
    await page.reload()
    await page.wait_for_selector("#login-form")  # not logged in again by anything kept
    await page.context.close()


# -- live -------------------------------------------------------------------------------------


async def test_a_charger_appears_in_the_list_live_without_a_reload(env: Env, clean: None) -> None:
    page = await env.page()
    await page.goto(env.base + "/#/chargers")
    await page.wait_for_selector("#live-state.live-live")
    await page.wait_for_selector("table.chargers tbody tr")
    await page.evaluate("window.notReloaded = true")
    assert await page.locator('tr[data-charger="DASH-LIVE-1"]').count() == 0
    await env.charger("DASH-LIVE-1", vendor="Alfen", model="Eve Single")
    row = page.locator('tr[data-charger="DASH-LIVE-1"]')
    await row.locator("text=connected").wait_for()
    await row.locator("text=Alfen · Eve Single").wait_for()
    await row.locator(".chip:has-text('1 Available')").wait_for()
    assert await page.evaluate("window.notReloaded") is True
    await page.context.close()


async def test_registering_a_charger_shows_its_key_once_and_the_charger_connects_with_it(
    env: Env, clean: None
) -> None:
    page = await env.page()
    await page.goto(env.base + "/#/chargers")
    await page.click("#register-toggle")
    await page.fill("#reg-id", "DASH-REG-1")
    await page.click("#register-form button:has-text('Generate')")
    await page.click("#register-form button[type=submit]")
    shown = page.locator("#register-form [data-secret]")
    await shown.wait_for()
    key = (await shown.text_content() or "").strip()
    assert len(key) == 24
    assert await page.input_value("#reg-password") == ""  # the form forgets it
    sim = Charger(env.csms.ocpp_url, "DASH-REG-1", password=key, connect_attempts=1)
    env.chargers.append(sim)
    await sim.start(timeout=5)  # accepted with the key the page showed
    await page.locator('tr[data-charger="DASH-REG-1"]').locator("text=connected").wait_for()
    await page.context.close()


async def test_a_remote_start_from_the_charger_page_shows_in_the_live_tail_and_the_transactions(
    env: Env, clean: None
) -> None:
    await env.charger("DASH-START-1")
    tail = await env.page()
    await tail.goto(env.base + "/#/events")
    await tail.wait_for_selector("#live-state.live-live")
    page = await env.page()
    await page.goto(env.base + "/#/chargers/DASH-START-1")
    await page.wait_for_selector(
        "#command-action option[value=RemoteStartTransaction]", state="attached"
    )
    # Every command the API sends: OCPP 1.6's 19 and the security extension's 7.
    assert await page.locator("#command-action option").count() == len(CENTRAL_SYSTEM_ACTIONS)
    # The schema's errors come from the server and stand next to their field.
    await page.select_option("#command-action", "RemoteStartTransaction")
    await page.click("#command-send")
    error = page.locator('.field[data-path="idTag"] > .field-error')
    await error.wait_for()
    assert "required" in (await error.text_content() or "")
    assert [p for p in env.problems if "400 (Bad Request)" not in p] == []
    env.problems.clear()  # the browser logs the refused request's 400
    assert await env.api.get("/api/v1/commands?chargerId=DASH-START-1") == {
        "items": [],
        "hasMore": False,
    }
    await page.fill('[name="idTag"]', "USER-DASH")
    await page.fill('[name="connectorId"]', "1")
    await page.click("#command-send")
    await page.wait_for_selector("#command-result .badge:has-text('accepted')")
    started = tail.locator(
        '#event-tail details[data-type="transaction.started"]:has-text("DASH-START-1")'
    )
    await started.wait_for()
    assert "USER-DASH" in (await started.text_content() or "")
    row = page.locator("tr[data-transaction]:has-text('USER-DASH')")
    await row.locator("text=active").wait_for()
    await page.locator("tr[data-command]:has-text('RemoteStartTransaction')").wait_for()
    # ... and the transaction's own page, with its plot once meter values come in.
    tx_id = await row.get_attribute("data-transaction")
    await page.goto(f"{env.base}/#/transactions/{tx_id}")
    await page.wait_for_selector("#tx-plot svg path.line-energy")
    await tail.context.close()
    await page.context.close()


# -- webhooks ---------------------------------------------------------------------------------


async def test_creating_a_webhook_shows_its_secret_once_and_a_test_delivery(
    env: Env, clean: None
) -> None:
    page = await env.page()
    await page.goto(env.base + "/#/webhooks")
    await page.click("#webhook-new")
    await page.fill("#wh-url", env.hook_url)
    await page.fill("#wh-events", "webhook.test")
    await page.click("#webhook-form button[type=submit]")
    secret_box = page.locator("#webhook-created [data-secret]")
    await secret_box.wait_for()
    secret = (await secret_box.text_content() or "").strip()
    assert secret.startswith("whsec_")
    await page.click("#webhook-created a")  # to the endpoint's page
    await page.click("#webhook-test")
    await page.wait_for_selector("#webhook-messages:has-text('Test delivered: HTTP 204')")
    attempt = page.locator("tr[data-attempt]:has-text('webhook.test')")
    await attempt.wait_for()
    cells = [c.strip() for c in await attempt.locator("td").all_text_contents()]
    assert "204" in cells and any(re.fullmatch(r"[0-9.]+ ms", c) for c in cells), cells
    # The secret shown is the one that signs: the delivery verifies with it.
    headers, body = env.received.requests[-1]
    Webhook(secret).verify(body, headers)
    # Once: not on the endpoint's page, not in the API's answers.
    await page.reload()
    await page.wait_for_selector("tr[data-attempt]")
    assert secret not in (await page.content())
    await page.context.close()


# -- charger strings are text -----------------------------------------------------------------


async def test_html_and_script_from_a_charger_are_shown_as_text_and_run_nothing(
    env: Env, clean: None
) -> None:
    await env.charger("DASH-XSS-1", vendor=HOSTILE_VENDOR, model=HOSTILE_MODEL)
    page = await env.page()
    await page.goto(env.base + "/#/chargers")
    row = page.locator('tr[data-charger="DASH-XSS-1"] td.vendor')
    await row.wait_for()
    assert await row.text_content() == f"{HOSTILE_VENDOR} · {HOSTILE_MODEL}"
    await page.goto(env.base + "/#/chargers/DASH-XSS-1")
    await page.wait_for_selector("#boot-vendor:has-text('svg')")
    assert await page.text_content("#boot-vendor") == HOSTILE_VENDOR
    assert await page.text_content("#boot-model") == HOSTILE_MODEL
    boot = page.locator('#charger-events details[data-type="charger.boot"]')
    await boot.click()
    assert HOSTILE_VENDOR in (await boot.locator("pre").text_content() or "")
    # Nothing was parsed as markup: no element from the strings, one script (the app's).
    assert await page.locator("svg[onload]").count() == 0
    assert await page.locator("script").count() == 1
    assert env.problems == []  # no alert dialog, no error (checked again at teardown)
    await page.context.close()


# -- every view, offline ----------------------------------------------------------------------


async def test_every_view_renders_and_no_request_leaves_loopback(env: Env, clean: None) -> None:
    # Something in every view: a charger with a transaction, an endpoint with a delivery.
    await env.charger("DASH-VIEW-1")
    start = {"connectorId": 1, "idTag": "VIEW-TAG"}
    status, answer = await env.api.request(
        "POST",
        "/api/v1/chargers/DASH-VIEW-1/commands/RemoteStartTransaction?wait=10",
        json_body=start,
    )
    assert status == 200 and answer["data"]["status"] == "accepted", answer
    created = await env.api.post(
        "/api/v1/webhooks", {"url": env.hook_url, "enabledEvents": ["webhook.test"]}
    )
    await env.api.post(f"/api/v1/webhooks/{created['id']}/test", {}, expect=200)

    async def started() -> bool:
        page = await env.api.get("/api/v1/transactions?chargerId=DASH-VIEW-1")
        return bool(page["items"])

    await wait_for(started, timeout=10)
    page = await env.page()
    views = {
        "#/overview": "#overview-events details",
        "#/chargers": "tr[data-charger]",
        "#/chargers/DASH-VIEW-1": "#command-form .field",
        "#/events": "#event-tail details",
        "#/transactions": "tr[data-transaction]",
        "#/webhooks": "tr[data-webhook]",
        f"#/webhooks/{created['id']}": "tr[data-attempt]",
    }
    for fragment, ready in views.items():
        await page.goto(f"{env.base}/{fragment}")
        await page.wait_for_selector(ready)
    await page.context.close()
    hosts = {urlsplit(url).hostname for url in env.requests}
    assert len(env.requests) > 20
    assert hosts == {"127.0.0.1"}, hosts
