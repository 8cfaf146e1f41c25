"""The OCPP-J 1.6 handshake and connection life against a live server (DESIGN 3).

Authentication (security profiles 1 and 2), unknown identities, paths, subprotocol
negotiation (OCPP-J 1.6, 3.1.2), the newest connection winning, registration status kept
across reconnects (OCPP-J 1.6, 5.4), Pending/Rejected boots, and chargers left connected by
a server that was killed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import (
    PASSWORD,
    Api,
    RawCharger,
    basic_auth,
    open_socket,
    raw_charger,
    register,
)
from tests.helpers import (
    api_client,
    events_of,
    start_server_process,
    wait_disconnected,
    wait_events,
)

BOOT = {"chargePointVendor": "Test", "chargePointModel": "Raw"}


async def refused_status(url: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(InvalidStatus) as caught:
        ws = await websockets.connect(
            url, subprotocols=["ocpp1.6"], additional_headers=headers or {}, open_timeout=5
        )
        await ws.close()
    return caught.value.response.status_code


# -- authentication and identity (DESIGN 3; Security Whitepaper, profile 1) ---------------------


async def test_refused_connections_get_http_errors_and_no_events(csms, api: Api) -> None:
    await register(api, "CP-AUTH")
    url = f"{csms.ocpp_url}/CP-AUTH"
    assert await refused_status(url, basic_auth("CP-AUTH", "wrong-password-123")) == 401
    assert await refused_status(url) == 401  # no Authorization header
    assert await refused_status(url, basic_auth("CP-OTHER", PASSWORD)) == 401  # user != id
    assert await refused_status(url, {"Authorization": "Bearer " + PASSWORD}) == 401
    garbled = {"Authorization": "Basic !!!not-base64"}
    assert await refused_status(url, garbled) == 401
    no_colon = {"Authorization": "Basic " + base64.b64encode(b"CP-AUTH").decode()}
    assert await refused_status(url, no_colon) == 401
    unknown = f"{csms.ocpp_url}/CP-NOBODY"
    assert await refused_status(unknown, basic_auth("CP-NOBODY", PASSWORD)) == 404
    assert (await api.get("/api/v1/events"))["items"] == []
    view = await api.get("/api/v1/chargers/CP-AUTH")
    assert view["connected"] is False and view["registrationStatus"] is None
    await api.request("GET", "/api/v1/chargers/CP-NOBODY", expect=404)
    # The right password still works after all that.
    ws = await open_socket(csms, "CP-AUTH")
    await ws.close()


async def test_charger_without_password_needs_no_auth(csms, api: Api) -> None:
    await register(api, "CP-OPEN", password=None, securityProfile=0)
    charger = RawCharger(await open_socket(csms, "CP-OPEN", password=None))
    try:
        assert (await charger.call("BootNotification", BOOT))[2]["status"] == "Accepted"
    finally:
        await charger.close()
    connected = (await events_of(api, "CP-OPEN"))[0]
    assert connected["type"] == "charger.connected"
    assert connected["data"]["securityProfile"] == 0


async def test_password_change_takes_effect_at_the_next_connection(csms, api: Api) -> None:
    await register(api, "CP-ROT")
    ws = await open_socket(csms, "CP-ROT")  # verified once: cached
    await ws.close()
    new_password = "a-brand-new-key-0123"
    await api.request(
        "PATCH", "/api/v1/chargers/CP-ROT", json_body={"password": new_password}, expect=200
    )
    url = f"{csms.ocpp_url}/CP-ROT"
    assert await refused_status(url, basic_auth("CP-ROT", PASSWORD)) == 401
    ws = await open_socket(csms, "CP-ROT", password=new_password)
    await ws.close()


async def test_unknown_charger_is_registered_when_allowed(csms_factory) -> None:
    csms = await csms_factory(ocpp={"allow_unknown_chargers": True})
    async with api_client(csms.api_url) as api:
        charger = RawCharger(await open_socket(csms, "CP-FRESH", password=None))
        try:
            boot = await charger.call("BootNotification", BOOT)
            assert boot[2]["status"] == "Accepted"
        finally:
            await charger.close()
        view = await api.get("/api/v1/chargers/CP-FRESH")
        assert view["hasPassword"] is False
        assert view["registrationStatus"] == "Accepted"
        await wait_disconnected(api, "CP-FRESH")
        types = [e["type"] for e in await events_of(api, "CP-FRESH")]
        assert types == ["charger.connected", "charger.boot", "charger.disconnected"]
        # A registered charger still needs its password.
        await register(api, "CP-KNOWN")
        url = f"{csms.ocpp_url}/CP-KNOWN"
        assert await refused_status(url, basic_auth("CP-KNOWN", "not-the-password-42")) == 401
        assert await refused_status(url) == 401
        assert await events_of(api, "CP-KNOWN") == []


@pytest.mark.parametrize(
    "path",
    ["/ocpp/", "/ocpp", "/", "/other/CP-PATH", "/ocpp/CP-PATH/extra", "/ocpp/" + "x" * 49],
)
async def test_bad_path_is_404(csms, api: Api, path: str) -> None:
    await register(api, "CP-PATH")
    base = csms.ocpp_url.removesuffix("/ocpp")
    assert await refused_status(base + path, basic_auth("CP-PATH", PASSWORD)) == 404
    assert (await api.get("/api/v1/events"))["items"] == []


async def test_url_encoded_identity(csms, api: Api) -> None:
    await register(api, "CP 1+2")
    ws = await websockets.connect(
        f"{csms.ocpp_url}/CP%201%2B2",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=basic_auth("CP 1+2", PASSWORD),
        open_timeout=5,
    )
    charger = RawCharger(ws)
    try:
        assert (await charger.call("BootNotification", BOOT))[0] == 3
    finally:
        await charger.close()
    assert (await api.get("/api/v1/chargers/CP%201%2B2"))["registrationStatus"] == "Accepted"


# -- subprotocol (OCPP-J 1.6, 3.1.2) -------------------------------------------------------------


@pytest.mark.parametrize(
    "offered", [["ocpp2.0.1"], None, []], ids=["other-version", "none", "empty-header"]
)
async def test_no_supported_subprotocol_completes_then_closes(
    csms, api: Api, offered: list[str] | None
) -> None:
    await register(api, "CP-PROTO")
    # None: no Sec-WebSocket-Protocol header at all; []: the client library sends an empty
    # header, which is taken as no offer rather than answered 400.
    ws = await websockets.connect(
        f"{csms.ocpp_url}/CP-PROTO",
        subprotocols=offered,  # type: ignore[arg-type]
        additional_headers=basic_auth("CP-PROTO", PASSWORD),
        open_timeout=5,
    )
    assert ws.subprotocol is None  # the handshake completed without the header
    await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 1002
    assert (await api.get("/api/v1/events"))["items"] == []
    assert (await api.get("/api/v1/chargers/CP-PROTO"))["connected"] is False


async def test_ocpp16_is_chosen_among_several(csms, api: Api) -> None:
    await register(api, "CP-MULTI")
    ws = await open_socket(csms, "CP-MULTI", subprotocols=["ocpp2.0.1", "ocpp1.6", "ocpp1.5"])
    try:
        assert ws.subprotocol == "ocpp1.6"
    finally:
        await ws.close()


# -- newest connection wins; registration kept (OCPP-J 1.6, 5.4) ---------------------------------


async def test_second_connection_replaces_the_first(csms, api: Api) -> None:
    first = await raw_charger(csms, api, "CP-TWICE")
    second = RawCharger(await open_socket(csms, "CP-TWICE"))
    try:
        await asyncio.wait_for(first.ws.wait_closed(), 5)
        assert first.ws.close_code == 1000
        # The new socket works, without a new BootNotification.
        assert (await second.call("Heartbeat", {}))[0] == 3
        assert (await api.get("/api/v1/health"))["connectedChargers"] == 1
    finally:
        await second.close()
    await wait_disconnected(api, "CP-TWICE")
    events = await events_of(api, "CP-TWICE")
    assert [(e["type"], e["data"].get("reason")) for e in events] == [
        ("charger.connected", None),
        ("charger.boot", None),
        ("charger.disconnected", "replaced"),
        ("charger.connected", None),
        ("charger.disconnected", "closed"),
    ]
    assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5]
    assert events[3]["data"]["registrationStatus"] == "Accepted"


async def test_registration_status_is_kept_across_reconnects(csms, api: Api) -> None:
    charger = await raw_charger(csms, api, "CP-BACK")
    await charger.close()
    await wait_disconnected(api, "CP-BACK")
    again = RawCharger(await open_socket(csms, "CP-BACK"))
    try:
        answer = await again.call("Heartbeat", {})
        assert answer[0] == 3, answer
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        assert (await again.call("StatusNotification", status))[0] == 3
    finally:
        await again.close()
    await wait_disconnected(api, "CP-BACK")
    types = [e["type"] for e in await events_of(api, "CP-BACK")]
    assert types == [
        "charger.connected",
        "charger.boot",
        "charger.disconnected",
        "charger.connected",
        "connector.status_changed",
        "charger.disconnected",
    ]


# -- Pending and Rejected (OCPP 1.6, 4.2) ---------------------------------------------------------


async def test_pending_boot_then_accepted(csms, api: Api) -> None:
    await register(api, "CP-PEND", registrationPolicy="Pending")
    charger = RawCharger(await open_socket(csms, "CP-PEND"))
    try:
        boot = await charger.call("BootNotification", BOOT)
        assert boot[2]["status"] == "Pending"
        assert boot[2]["interval"] == 60  # retry interval, not the heartbeat interval
        answer = await charger.call("Heartbeat", {})
        assert answer[0] == 4 and answer[2] == "SecurityError"
        assert (await api.get("/api/v1/chargers/CP-PEND"))["registrationStatus"] == "Pending"

        # What the CSMS triggers, a Pending charger may send (4.2, 5.17).
        status = {"connectorId": 0, "errorCode": "NoError", "status": "Available"}
        command = asyncio.create_task(
            api.request(
                "POST",
                "/api/v1/chargers/CP-PEND/commands/TriggerMessage?wait=5",
                json_body={"requestedMessage": "StatusNotification"},
            )
        )
        trigger = await charger.receive()
        assert trigger[0] == 2 and trigger[2] == "TriggerMessage", trigger
        await charger.send_raw(json.dumps([3, trigger[1], {"status": "Accepted"}]))
        code, body = await command
        assert code in (200, 202) and body["data"]["status"] == "accepted", (code, body)
        assert (await charger.call("StatusNotification", status))[0] == 3
        # Once: a second one was not asked for.
        again = await charger.call("StatusNotification", {**status, "status": "Unavailable"})
        assert again[0] == 4 and again[2] == "SecurityError"

        await api.request(
            "PATCH",
            "/api/v1/chargers/CP-PEND",
            json_body={"registrationPolicy": "Accepted"},
            expect=200,
        )
        boot = await charger.call("BootNotification", BOOT)
        assert boot[2]["status"] == "Accepted" and boot[2]["interval"] == 300
        assert (await charger.call("Heartbeat", {}))[0] == 3
    finally:
        await charger.close()
    events = await events_of(api, "CP-PEND")
    boots = [e["data"]["registrationStatus"] for e in events if e["type"] == "charger.boot"]
    assert boots == ["Pending", "Accepted"]
    statuses = [e for e in events if e["type"] == "connector.status_changed"]
    assert [s["data"]["status"] for s in statuses] == ["Available"]


async def test_rejected_boot_refuses_everything_but_boot(csms, api: Api) -> None:
    await register(api, "CP-REJ")
    await api.request(
        "PATCH", "/api/v1/chargers/CP-REJ", json_body={"registrationPolicy": "Rejected"}, expect=200
    )
    charger = RawCharger(await open_socket(csms, "CP-REJ"))
    try:
        boot = await charger.call("BootNotification", BOOT)
        assert boot[2]["status"] == "Rejected" and boot[2]["interval"] == 60
        start = {
            "connectorId": 1,
            "idTag": "T",
            "meterStart": 0,
            "timestamp": boot[2]["currentTime"],
        }
        for action, payload in [("Heartbeat", {}), ("StartTransaction", start)]:
            answer = await charger.call(action, payload)
            assert answer[0] == 4 and answer[2] == "SecurityError", answer
        # Rejected is kept across a reconnect: no BootNotification, still refused.
        await charger.close()
        charger = RawCharger(await open_socket(csms, "CP-REJ"))
        answer = await charger.call("Heartbeat", {})
        assert answer[0] == 4 and answer[2] == "SecurityError"
        await api.request(
            "PATCH",
            "/api/v1/chargers/CP-REJ",
            json_body={"registrationPolicy": "Accepted"},
            expect=200,
        )
        # The policy answers the next boot; until then the charger is still Rejected.
        answer = await charger.call("Heartbeat", {})
        assert answer[0] == 4 and answer[2] == "SecurityError"
        assert (await charger.call("BootNotification", BOOT))[2]["status"] == "Accepted"
        assert (await charger.call("Heartbeat", {}))[0] == 3
    finally:
        await charger.close()
    types = [e["type"] for e in await events_of(api, "CP-REJ")]
    assert "transaction.started" not in types


# -- a server killed with charger still connected ------------------------------------------------


@pytest.fixture
async def killed_server_db(tmp_path: Path, store_url: str) -> AsyncIterator[str]:
    """A database left by a ``csms serve`` killed with SIGKILL while CP-KILL was connected
    and booted."""
    server = await start_server_process(tmp_path, store_url)  # the store csms_factory uses
    try:
        async with api_client(server.api_url) as api:
            await register(api, "CP-KILL")
        ws = await websockets.connect(
            f"{server.ocpp_url}/CP-KILL",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth("CP-KILL", PASSWORD),
            open_timeout=5,
        )
        charger = RawCharger(ws)
        assert (await charger.call("BootNotification", BOOT))[0] == 3
        server.kill()
        await server.wait()
        await asyncio.wait_for(ws.wait_closed(), 5)
    finally:
        server.kill()
        await server.wait()
    yield store_url


async def test_charger_left_connected_gets_disconnected_restart(
    killed_server_db: str, csms_factory
) -> None:
    csms = await csms_factory()
    async with api_client(csms.api_url) as api:
        events = await events_of(api, "CP-KILL")
        assert [(e["type"], e["data"].get("reason")) for e in events] == [
            ("charger.connected", None),
            ("charger.boot", None),
            ("charger.disconnected", "restart"),
        ]
        assert [e["sequence"] for e in events] == [1, 2, 3]
        assert (await api.get("/api/v1/chargers/CP-KILL"))["connected"] is False
        # Back on the new server: still Accepted, no BootNotification needed.
        charger = RawCharger(await open_socket(csms, "CP-KILL"))
        try:
            assert (await charger.call("Heartbeat", {}))[0] == 3
        finally:
            await charger.close()
        events = await wait_events(api, "CP-KILL", 5)
        assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5]


# -- security profile 2: TLS ---------------------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509", reason="needs the cryptography package")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_security_profile_2_over_tls(csms_factory, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    csms = await csms_factory(ocpp={"tls_cert": str(cert), "tls_key": str(key)})
    assert csms.ocpp_url.startswith("wss://")
    context = ssl.create_default_context(cafile=str(cert))
    async with api_client(csms.api_url) as api:
        await register(api, "CP-TLS")

        async def connect(**kwargs: Any) -> Any:
            return await websockets.connect(
                f"{csms.ocpp_url}/CP-TLS",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                open_timeout=5,
                **kwargs,
            )

        charger = RawCharger(
            await connect(ssl=context, additional_headers=basic_auth("CP-TLS", PASSWORD))
        )
        try:
            assert (await charger.call("BootNotification", BOOT))[2]["status"] == "Accepted"
        finally:
            await charger.close()
        # Over TLS a wrong password is still a 401.
        with pytest.raises(InvalidStatus) as caught:
            await connect(ssl=context, additional_headers=basic_auth("CP-TLS", "x" * 20))
        assert caught.value.response.status_code == 401
        # A client that does not trust the certificate does not get in.
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(
                ssl=ssl.create_default_context(),
                additional_headers=basic_auth("CP-TLS", PASSWORD),
            )
        events = await wait_events(api, "CP-TLS", 3)
        assert events[0]["type"] == "charger.connected"
        assert events[0]["data"]["securityProfile"] == 2
