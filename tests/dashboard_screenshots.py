"""Screenshots of each dashboard view for the README: ``python -m tests.dashboard_screenshots``.

Starts a CSMS on SQLite in a temporary directory with a few simulated chargers (one charging
after a remote start), a webhook endpoint with a real local receiver and a test delivery,
then drives Chromium through every view and saves ``docs/dashboard-<view>.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import Page, async_playwright

from csms.app import Csms
from simulators.charger import Charger
from simulators.model import ChargerModel, Identity
from tests.conftest import PASSWORD, TEST_TOKEN, Api, make_settings
from tests.dashboard_support import LAUNCH_ARGS, chromium_path

VIEWPORT = {"width": 1360, "height": 900}


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[str]:
    """A webhook receiver on 127.0.0.1 that answers 204 to everything."""

    async def take(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        await runner.cleanup()


async def login(page: Page, base: str) -> None:
    await page.goto(base + "/")
    await page.fill("#token", TEST_TOKEN)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#logout")


async def charger(csms: Csms, api: Api, charger_id: str, **identity: str) -> Charger:
    await api.post("/api/v1/chargers", {"id": charger_id, "password": PASSWORD})
    model = ChargerModel(connectors=2, identity=Identity(serial=charger_id, **identity))
    sim = Charger(csms.ocpp_url, charger_id, password=PASSWORD, model=model, sample_interval=1.0)
    await sim.start(timeout=10)
    return sim


async def main(out: Path) -> None:
    browser_path = chromium_path()
    if browser_path is None:
        sys.exit("no Chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(Path(tmp), ocpp={"authorization": "accept_all"})
        csms = await Csms.start(settings)
        sims: list[Charger] = []
        try:
            async with (
                receiver() as hook_url,
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {TEST_TOKEN}"}) as s,
            ):
                api = Api(s, csms.api_url)
                webhook = await api.post(
                    "/api/v1/webhooks",
                    {"url": hook_url, "enabledEvents": ["*"], "description": "billing service"},
                )
                await api.post(
                    "/api/v1/webhooks",
                    {"url": hook_url + "/crm", "enabledEvents": ["transaction.*"]},
                )
                for n, (vendor, model) in enumerate(
                    [("Alfen", "Eve Double Pro"), ("ABB", "Terra AC"), ("Wallbox", "Commander 2")]
                ):
                    sims.append(
                        await charger(csms, api, f"CP-{n + 1:04d}", vendor=vendor, model=model)
                    )
                for n in range(4, 9):
                    await api.post("/api/v1/chargers", {"id": f"CP-{n:04d}", "password": PASSWORD})
                for sim, connector in ((sims[0], 1), (sims[1], 2)):
                    start = f"/api/v1/chargers/{sim.charger_id}/commands/RemoteStartTransaction"
                    await api.post(
                        start + "?wait=5",
                        {"idTag": "USER001", "connectorId": connector},
                        expect=200,
                    )
                await api.post(f"/api/v1/webhooks/{webhook['id']}/test", {}, expect=200)
                await asyncio.sleep(12)  # meter values for the plot, one a second
                await shoot(csms.api_url, browser_path, out, webhook["id"])
        finally:
            for sim in sims:
                await sim.stop()
            await csms.close()


async def shoot(base: str, browser_path: str, out: Path, webhook_id: str) -> None:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=browser_path, args=LAUNCH_ARGS)
        page = await browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(base + "/")
        await page.wait_for_selector("#login-form")
        await page.screenshot(path=str(out / "dashboard-login.png"))
        await login(page, base)
        views: list[tuple[str, str, str]] = [
            ("overview", "#/overview", "#overview-events details"),
            ("chargers", "#/chargers", "tr[data-charger]"),
            ("charger", "#/chargers/CP-0001", "#command-form .field"),
            ("events", "#/events", "#event-tail details"),
            ("transactions", "#/transactions", "tr[data-transaction]"),
            ("transaction", "#/transactions/1", "#tx-plot svg"),
            ("webhooks", "#/webhooks", "tr[data-webhook]"),
            ("webhook", f"#/webhooks/{webhook_id}", "tr[data-attempt]"),
        ]
        for name, fragment, ready in views:
            await page.goto(base + "/" + fragment)
            await page.wait_for_selector(ready)
            await page.wait_for_timeout(1500)  # the live figures settle (screenshots only)
            await page.screenshot(path=str(out / f"dashboard-{name}.png"), full_page=True)
            print(f"saved docs/dashboard-{name}.png")
        await browser.close()
        if errors:
            sys.exit("browser errors: " + "; ".join(errors))


def _args(argv: list[str] | None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go")
    return parser.parse_args(argv)


if __name__ == "__main__":
    target = _args(None).out
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
