"""``GET /metrics``: a real CSMS, a charger over raw frames, a real webhook receiver; the
answer parsed as Prometheus parses it. And the Grafana dashboard asks only for what is there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from csms.app import Csms
from csms.metrics import event_time
from storage.ids import time_ordered_id
from tests.conftest import TEST_TOKEN, Api, raw_charger, register, wait_for
from tests.test_webhook_support import receiver

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana-dashboard.json"
CHARGER = "metrics-cp-1"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(csms: Csms, token: str | None = TEST_TOKEN) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{csms.api_url}/metrics", headers=headers) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_need_the_token_unless_public(
    csms_factory: Callable[..., Awaitable[Csms]],
) -> None:
    private = await csms_factory()
    assert (await scrape(private, None))[0] == 401
    assert (await scrape(private, "wrong-token-0123456789"))[0] == 401
    status, content_type, text = await scrape(private)
    assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
    assert "chargehook_chargers_connected 0.0" in text
    public = await csms_factory(metrics={"public": True})
    assert (await scrape(public, None))[0] == 200
    # Each CSMS has a registry of its own: the two in this process do not clash.
    assert private.metrics.registry is not public.metrics.registry


async def test_ocpp_calls_events_commands_and_a_delivery_are_counted(csms: Csms, api: Api) -> None:
    async with receiver() as rec:
        webhook = await api.post(
            "/api/v1/webhooks", {"url": rec.url, "enabledEvents": ["transaction.*"]}
        )
        charger = await raw_charger(csms, api, CHARGER)  # its BootNotification
        try:
            answer = await charger.call(
                "StartTransaction",
                {
                    "connectorId": 1,
                    "idTag": "TAG-1",
                    "meterStart": 0,
                    "timestamp": "2026-02-06T14:30:00Z",
                },
            )
            assert answer[0] == 3, answer
            await charger.send_raw('[2, "bad-1", "Heartbeat"]')  # no payload: malformed
            answer = await charger.receive()
            assert answer[0] == 4 and answer[1] == "bad-1", answer
            error_code = answer[2]
            await rec.wait_for(lambda: len(rec.delivered()) >= 1)

            async def delivered() -> bool:
                found = samples((await scrape(csms))[2])
                return value(found, "chargehook_webhook_deliveries_total", outcome="success") >= 1

            await wait_for(delivered)
            await register(api, "metrics-cp-offline")
            await api.post(
                "/api/v1/chargers/metrics-cp-offline/commands/Reset?queue=true",
                {"type": "Soft"},
                expect=202,
            )
            status, _, text = await scrape(csms)
        finally:
            await charger.close()
    assert status == 200
    found = samples(text)
    assert value(found, "chargehook_chargers_connected") == 1
    assert value(found, "chargehook_webhook_partitions_owned") == 64  # alone: every one
    assert ("chargehook_webhook_held_back_seconds_total", frozenset()) in found  # exported
    ok = "chargehook_ocpp_calls_total"
    assert value(found, ok, action="BootNotification", result="ok") == 1
    assert value(found, ok, action="StartTransaction", result="ok") == 1
    assert value(found, ok, action="invalid", result=error_code) == 1
    seconds = "chargehook_ocpp_call_seconds_count"
    assert value(found, seconds, action="StartTransaction") == 1
    assert value(found, "chargehook_ocpp_call_seconds_bucket", action="BootNotification", le="+Inf")
    assert value(found, "chargehook_events_total", type="charger.connected") == 1
    assert value(found, "chargehook_events_total", type="transaction.started") == 1
    assert value(found, "chargehook_webhook_deliveries_total", outcome="failure") == 0
    assert value(found, "chargehook_webhook_delivery_seconds_count") >= 1
    assert value(found, "chargehook_webhook_delivery_seconds_sum") < 60
    assert (
        "chargehook_webhook_pending",
        frozenset({("webhook", webhook["id"])}),
    ) in found
    assert value(found, "chargehook_webhook_oldest_pending_seconds", webhook=webhook["id"]) >= 0
    assert value(found, "chargehook_commands_total", action="Reset", status="requested") == 1
    labels = {label for (_, pairs) in found for _, label in pairs}
    assert not {CHARGER, "metrics-cp-offline"} & labels, labels


async def test_a_pending_delivery_shows_its_age(csms: Csms, api: Api) -> None:
    async def refuse(envelope: dict[str, Any], nth: int) -> tuple[int, dict[str, str]]:
        return 503, {}

    async with receiver(refuse) as rec:
        webhook = await api.post("/api/v1/webhooks", {"url": rec.url, "enabledEvents": ["*"]})
        charger = await raw_charger(csms, api, CHARGER)
        try:
            await rec.wait_for(lambda: len(rec.requests) >= 1)

            async def failed() -> bool:
                found = samples((await scrape(csms))[2])
                return value(found, "chargehook_webhook_deliveries_total", outcome="failure") >= 1

            await wait_for(failed)
            found = samples((await scrape(csms))[2])
        finally:
            await charger.close()
    assert value(found, "chargehook_webhook_pending", webhook=webhook["id"]) >= 1
    age = value(found, "chargehook_webhook_oldest_pending_seconds", webhook=webhook["id"])
    assert 0 < age < 60


def test_event_time_reads_the_clock_of_an_event_id() -> None:
    assert event_time(time_ordered_id("evt_", now_ms=1_770_388_200_123)) == 1_770_388_200.123
    assert event_time("evt_x") is None
    assert event_time("evt_!!!!!!!!abc") is None


async def test_the_dashboard_asks_only_for_exposed_metrics(csms: Csms, api: Api) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert exprs
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
    # Every family, with the names its samples take (a family may have none yet).
    async with receiver() as rec:
        await api.post("/api/v1/webhooks", {"url": rec.url, "enabledEvents": ["*"]})
        text = (await scrape(csms))[2]
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exposed = set()
    for family in text_string_to_metric_families(text):
        exposed |= {family.name} | {family.name + s for s in suffixes.get(family.type, ())}
    functions = {"sum", "rate", "by", "histogram_quantile", "le", "max", "increase", "irate"}
    for expr in exprs:
        names = set(re.findall(r"\b(chargehook_[a-z_]+)", expr))
        assert names, expr
        assert names <= exposed, (expr, names - exposed)
        words = set(re.findall(r"\b([a-z_]+)\s*\(", expr))
        assert words <= functions, expr
