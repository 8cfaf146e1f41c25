"""`csms-sim` says what is wrong in one line and stops, instead of retrying in silence.

Each case runs the real `csms-sim` executable against a real CSMS started in this event loop
on free loopback ports, and checks the exit status, the one line on stderr and that it
ended well within a bound (no waiting out a 30 s time-out). The server's side of a refused
upgrade (its log line) is checked here too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from simulators.load import LoadOptions, api_root, run_load
from simulators.net import check_url, endpoint
from tests.conftest import PASSWORD, TEST_TOKEN, Api, basic_auth, register
from tests.helpers import events_of

CSMS_SIM = str(Path(sys.executable).with_name("csms-sim"))
BOUND = 15.0  # seconds any refused run may take, start-up of the process included
QUICK = 10.0  # ... and what it must stay under: far below the 30 s call time-out
TAG = "USER001"


async def sim(*args: str, timeout: float = BOUND) -> tuple[int, str, list[str], float]:
    """Run csms-sim; its exit status, stdout, stderr lines and how long it took."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        CSMS_SIM, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"csms-sim {' '.join(args)} still running after {timeout} s") from None
    assert proc.returncode is not None
    lines = err.decode().splitlines()
    return proc.returncode, out.decode(), lines, time.monotonic() - started


def one_line(lines: list[str]) -> str:
    """The single stderr line of a refused run, checked to be single and prefixed."""
    assert len(lines) == 1, lines
    assert lines[0].startswith("csms-sim: "), lines
    return lines[0]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----- csms-sim run: refused connects --------------------------------------------------------


async def test_run_not_registered(csms: Any) -> None:
    code, out, err, took = await sim(
        "run", "--url", csms.ocpp_url, "--id", "CP-NOPE", "--password", PASSWORD,
        "--scenario", "session",
    )  # fmt: skip
    line = one_line(err)
    assert code == 1 and out == ""
    assert "charger CP-NOPE is not registered" in line and "HTTP 404" in line
    assert "POST /api/v1/chargers" in line
    assert took < QUICK


async def test_run_wrong_password(csms: Any, api: Api) -> None:
    await register(api, "CP-PW")
    code, _, err, took = await sim(
        "run", "--url", csms.ocpp_url, "--id", "CP-PW", "--password", "not-the-password-1",
        "--scenario", "session",
    )  # fmt: skip
    line = one_line(err)
    assert code == 1 and "wrong password (HTTP 401" in line and "--password" in line
    assert took < QUICK


async def test_run_missing_password(csms: Any, api: Api) -> None:
    await register(api, "CP-NOPW")
    code, _, err, took = await sim(
        "run", "--url", csms.ocpp_url, "--id", "CP-NOPW", "--scenario", "session"
    )
    line = one_line(err)
    assert code == 1 and "charger CP-NOPW needs a password (HTTP 401" in line
    assert took < QUICK


async def test_run_against_the_admin_api_port(csms: Any, api: Api) -> None:
    """The admin API answers the upgrade with JSON: not an OCPP endpoint, not a password."""
    await register(api, "CP-API")
    url = csms.api_url.replace("http://", "ws://") + "/ocpp"
    code, _, err, took = await sim(
        "run", "--url", url, "--id", "CP-API", "--password", PASSWORD, "--scenario", "session"
    )
    line = one_line(err)
    assert code == 1 and "not an OCPP endpoint" in line and "application/json" in line
    assert "password" not in line
    assert took < QUICK


async def test_run_wrong_path(csms: Any, api: Api) -> None:
    await register(api, "CP-PATH")
    url = csms.ocpp_url.replace("/ocpp", "/chargers")
    code, _, err, _ = await sim(
        "run", "--url", url, "--id", "CP-PATH", "--password", PASSWORD, "--scenario", "session"
    )
    line = one_line(err)
    assert code == 1 and "is not a charger's OCPP path (HTTP 404" in line


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/ocpp", "notaurl", "ws://:9000/ocpp"])
async def test_run_bad_url(url: str) -> None:
    code, _, err, took = await sim("run", "--url", url, "--id", "CP-1", "--scenario", "session")
    line = one_line(err)
    assert code == 2
    assert "Task exception" not in line and "Traceback" not in line
    if url.startswith("http://"):
        assert "is an HTTP URL" in line and "ws://127.0.0.1:9/ocpp" in line
    else:
        assert "ws://" in line
    assert took < QUICK


async def test_run_connection_refused_gives_up_after_the_attempts() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ocpp"
    code, _, err, took = await sim(
        "run", "--url", url, "--id", "CP-1", "--scenario", "session",
        "--connect-attempts", "2", "--quiet",
    )  # fmt: skip
    line = one_line(err)
    assert code == 1 and "connection refused" in line and "csms serve" in line
    assert took < QUICK


# ----- csms-sim run: refused id tag, a full URL, --quiet ---------------------------------------


async def test_run_refused_id_tag_stops_at_once(csms: Any, api: Api) -> None:
    await register(api, "CP-TAG")
    code, out, err, took = await sim(
        "run", "--url", csms.ocpp_url, "--id", "CP-TAG", "--password", PASSWORD,
        "--scenario", "session", "--quiet",
    )  # fmt: skip
    line = one_line(err)
    assert code == 1 and out == ""
    assert line == (
        "csms-sim: id tag SIM-TAG-0001 was refused by the CSMS (Invalid);"
        " register it (POST /api/v1/id-tags) or pass --id-tag"
    )
    assert took < QUICK  # not the 30 s wait for a transaction that never comes
    items = await events_of(api, "CP-TAG")
    authorizations = [e["data"] for e in items if e["type"] == "charger.authorization"]
    assert [a["status"] for a in authorizations] == ["Invalid"]
    assert not any(e["type"].startswith("transaction.") for e in items)


async def test_run_url_that_ends_in_the_id_and_quiet_result_line(csms: Any, api: Api) -> None:
    await register(api, "CP-FULL")
    await api.post("/api/v1/id-tags", {"idTag": TAG})
    code, out, err, _ = await sim(
        "run", "--url", f"{csms.ocpp_url}/CP-FULL/", "--id", "CP-FULL", "--password", PASSWORD,
        "--id-tag", TAG, "--scenario", "session", "--duration", "0.2", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    assert err == []  # --quiet: no log lines
    (result,) = out.splitlines()
    assert result.startswith("csms-sim: session done: CP-FULL, transaction ")
    assert " Wh)" in result and "calls answered" in result
    types = [e["type"] for e in await events_of(api, "CP-FULL")]
    assert types.count("transaction.started") == types.count("transaction.stopped") == 1


def test_endpoint_appends_the_id_once() -> None:
    assert endpoint("ws://h:1/ocpp", "CP-1") == "ws://h:1/ocpp/CP-1"
    assert endpoint("ws://h:1/ocpp/", "CP-1") == "ws://h:1/ocpp/CP-1"
    assert endpoint("ws://h:1/ocpp/CP-1", "CP-1") == "ws://h:1/ocpp/CP-1"
    assert endpoint("ws://h:1/ocpp/CP%201", "CP 1") == "ws://h:1/ocpp/CP%201"
    assert endpoint("ws://h:1/ocpp/CP-1", "CP-2") == "ws://h:1/ocpp/CP-1/CP-2"


def test_check_url() -> None:
    assert check_url("ws://127.0.0.1:9000/ocpp") is None
    assert check_url("wss://example.com/ocpp") is None
    assert "wss://example.com/ocpp" in (check_url("https://example.com/ocpp") or "")
    assert check_url("notaurl") is not None
    assert check_url("ws://127.0.0.1:port/ocpp") is not None


async def test_help_shows_the_defaults() -> None:
    code, out, _, _ = await sim("run", "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert "(default: SIM-TAG-0001)" in flat and "(default: 5)" in flat
    assert "--retry-forever" in flat


# ----- csms-sim load ------------------------------------------------------------------------


async def test_load_with_nothing_connected_fails_with_the_reason(csms: Any) -> None:
    code, out, err, _ = await sim(
        "load", "--url", csms.ocpp_url, "--chargers", "3", "--duration", "1", "--quiet"
    )
    line = one_line(err)
    assert code == 1
    assert line.startswith("csms-sim: load: no charger connected: ")
    assert "upgrades answered HTTP 404 (not registered; pass --register-api URL --token T)" in line
    summary = json.loads(out)
    assert summary["connected"] == 0 and summary["failure"] in line


@pytest.mark.parametrize("suffix", ["/api/v1", "", "/api/v1/", "/"])
async def test_load_register_api_with_or_without_the_prefix(
    csms: Any, api: Api, suffix: str
) -> None:
    prefix = f"L{len(suffix)}{'S' if suffix.endswith('/') else ''}-"
    code, out, err, _ = await sim(
        "load", "--url", csms.ocpp_url, "--chargers", "2", "--duration", "1", "--quiet",
        "--id-prefix", prefix, "--register-api", csms.api_url + suffix, "--token", TEST_TOKEN,
    )  # fmt: skip
    assert code == 0, err
    assert err == []
    assert json.loads(out)["connected"] == 2
    charger = await api.get(f"/api/v1/chargers/{prefix}00001")
    assert charger["id"] == f"{prefix}00001"


async def test_load_register_api_with_a_wrong_token(csms: Any) -> None:
    code, out, err, _ = await sim(
        "load", "--url", csms.ocpp_url, "--chargers", "2", "--duration", "1",
        "--register-api", csms.api_url + "/api/v1", "--token", "not-the-token-0123456789",
    )  # fmt: skip
    line = one_line(err)
    assert code == 2 and out == ""
    assert "HTTP 401" in line and "--token" in line


def test_api_root_takes_both_forms() -> None:
    for url in ("http://h:8080", "http://h:8080/", "http://h:8080/api/v1", "http://h:8080/api/v1/"):
        assert api_root(url) == "http://h:8080"


async def test_load_reports_progress(csms: Any, api: Api) -> None:
    lines: list[str] = []
    options = LoadOptions(url=csms.ocpp_url, chargers=2, duration=1.0, grace=2.0, id_prefix="PG-")
    result = await run_load(
        options,
        register_api=csms.api_url,
        token=TEST_TOKEN,
        progress=lines.append,
        progress_every=0.25,
    )
    assert result["connected"] == 2 and result["failure"] is None
    assert len(lines) >= 2
    assert all("/2 connected, " in line and " calls, " in line for line in lines), lines


# ----- the server's log of a refused upgrade --------------------------------------------------


async def test_server_logs_why_it_refused_an_upgrade(
    csms: Any, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    await register(api, "CP-LOG")

    async def refused(path: str, headers: dict[str, str]) -> int:
        url = csms.ocpp_url.removesuffix("/ocpp") + path
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(
                url, subprotocols=["ocpp1.6"], additional_headers=headers, open_timeout=5
            )  # type: ignore[call-overload]
        return int(info.value.response.status_code)

    caplog.set_level(logging.INFO, logger="csms.server")
    assert await refused("/ocpp/CP-LOG/extra", {}) == 404
    assert await refused("/ocpp/CP-UNKNOWN", {}) == 404
    assert await refused("/ocpp/CP-LOG", {}) == 401
    assert await refused("/ocpp/CP-LOG", basic_auth("CP-LOG", "not-the-password-1")) == 401
    assert await refused("/ocpp/CP-LOG", basic_auth("CP-OTHER", PASSWORD)) == 401
    logged = [r.getMessage() for r in caplog.records if r.name == "csms.server"]
    assert any("HTTP 404, path '/ocpp/CP-LOG/extra' is not /ocpp/{chargerId}" in m for m in logged)
    assert any("'CP-UNKNOWN'" in m and "HTTP 404, not registered" in m for m in logged)
    assert any("HTTP 401, no Authorization header" in m for m in logged)
    assert any("HTTP 401, wrong password" in m for m in logged)
    assert any("user name 'CP-OTHER' is not the charger id" in m for m in logged)
    assert all(r.levelno == logging.INFO for r in caplog.records if "refused" in r.getMessage())


async def test_run_says_so_when_the_csms_keeps_the_charger_pending(csms: Any, api: Api) -> None:
    """Even with --quiet: a charger the CSMS answers Pending must not look hung."""
    await register(api, "CP-PEND", registrationPolicy="Pending")
    proc = await asyncio.create_subprocess_exec(
        CSMS_SIM, "run", "--url", csms.ocpp_url, "--id", "CP-PEND", "--password", PASSWORD,
        "--scenario", "session", "--quiet",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stderr.readline(), BOUND)).decode()
    finally:
        proc.kill()
        await proc.wait()
    assert "CP-PEND: BootNotification answered Pending; asking again in" in line
    assert "registrationPolicy" in line


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--url", "ws://127.0.0.1:9/ocpp", "--cert", "c.pem"], "--cert/--key are for wss://"),
        (["--url", "wss://127.0.0.1:9/ocpp", "--key", "k.pem"], "--key needs --cert"),
        (["--url", "wss://127.0.0.1:9/ocpp", "--cert", "/nonexistent.pem"], "cannot use"),
    ],
)
async def test_run_bad_client_certificate_options(options: list[str], said: str) -> None:
    code, _, err, took = await sim("run", *options, "--id", "CP-1", "--scenario", "session")
    assert code == 2 and said in one_line(err)
    assert took < QUICK
