"""Issue 16: security profile 3 (TLS client certificates), profiles kept with the registration
and enforced (no downgrade), the generated AuthorizationKey shown once, and the Pending rule
for billing data (DESIGN 3 and 6; Security Whitepaper 2.1-2.5, A02/A03).

Certificates are made in the test (``tests/pki.py``); both ends are real sockets.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
import websockets
from cryptography import x509
from cryptography.x509.oid import NameOID
from websockets.exceptions import InvalidStatus

from csms.app import Csms, StartError
from simulators.charger import Charger, EventKind
from tests.conftest import (
    PASSWORD,
    Api,
    RawCharger,
    basic_auth,
    make_settings,
    open_socket,
    register,
)
from tests.helpers import api_client, events_of, wait_disconnected, wait_events
from tests.pki import Authority, csr, write_leaf
from tests.test_sim_csms import wait_for_event

BOOT = {"chargePointVendor": "Test", "chargePointModel": "Raw"}
STAMP = "2026-02-06T14:30:00.000Z"


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


async def connect(url: str, context: ssl.SSLContext | None, **headers: str) -> Any:
    return await websockets.connect(
        url,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        ssl=context,
        additional_headers=headers,
        open_timeout=5,
    )


async def refused(url: str, context: ssl.SSLContext | None, **headers: str) -> int:
    with pytest.raises(InvalidStatus) as caught:
        ws = await connect(url, context, **headers)
        await ws.close()
    return caught.value.response.status_code


def subject_cn(certificate: x509.Certificate) -> str:
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_security_profile_3_end_to_end(csms_factory, tmp_path: Path) -> None:
    ca = Authority.create(tmp_path)
    server_cert, server_key = ca.issue("127.0.0.1", server=True)
    csms = await csms_factory(
        ocpp={
            "tls_cert": str(server_cert),
            "tls_key": str(server_key),
            "tls_ca": str(ca.cert),
            "tls_ca_key": str(ca.key_path),
        }
    )
    base = csms.ocpp_url
    async with api_client(csms.api_url) as api:
        view = await register(api, "CP-P3", password=None, securityProfile=3)
        assert view["securityProfile"] == 3 and view["hasPassword"] is False
        assert "password" not in view  # the certificate is the credential: no key made
        await register(api, "CP-P2", securityProfile=2)

        # The right CN gets in, at profile 3.
        good_cert, good_key = ca.issue("CP-P3")
        charger = RawCharger(
            await connect(f"{base}/CP-P3", client_context(ca.cert, good_cert, good_key))
        )
        try:
            assert (await charger.call("BootNotification", BOOT))[2]["status"] == "Accepted"
            # A03 with the CSMS's CA: the CSR is signed and sent back by CertificateSigned.
            request, new_key = csr("CP-P3")
            answer = await charger.call("SignCertificate", {"csr": request})
            assert answer[2] == {"status": "Accepted"}
            signed = await charger.receive()
            assert signed[0] == 2 and signed[2] == "CertificateSigned", signed
            chain = signed[3]["certificateChain"]
            leaf = x509.load_pem_x509_certificates(chain.encode())[0]
            assert subject_cn(leaf) == "CP-P3" and leaf.issuer == ca.certificate.subject
            leaf.verify_directly_issued_by(ca.certificate)
            assert leaf.public_key() == new_key.public_key()
            await charger.send_raw(f'[3, "{signed[1]}", {{"status": "Accepted"}}]')
            await wait_for_event(api, "CP-P3", "certificate_signed.accepted")
            # A CSR for another charger is refused (A02.FR.12).
            other, _ = csr("CP-OTHER")
            assert (await charger.call("SignCertificate", {"csr": other}))[2] == {
                "status": "Rejected"
            }
            assert (await charger.call("SignCertificate", {"csr": "not a csr"}))[2] == {
                "status": "Rejected"
            }
        finally:
            await charger.close()
        await wait_disconnected(api, "CP-P3")

        # The certificate it was given is as good as the first one.
        new_cert, new_key_path = write_leaf(tmp_path, "cp-p3-renewed", chain, new_key)
        ws = await connect(f"{base}/CP-P3", client_context(ca.cert, new_cert, new_key_path))
        await ws.close()
        await wait_disconnected(api, "CP-P3")

        # A wrong CN, no certificate, a certificate of another CA: refused.
        wrong_cert, wrong_key = ca.issue("CP-OTHER")
        url = f"{base}/CP-P3"
        assert await refused(url, client_context(ca.cert, wrong_cert, wrong_key)) == 403
        assert await refused(url, client_context(ca.cert)) == 401
        assert await refused(url, client_context(ca.cert), **basic_auth("CP-P3", PASSWORD)) == 401
        stranger = Authority.create(tmp_path, "Stranger CA")
        foreign_cert, foreign_key = stranger.issue("CP-P3")
        refusals = (ssl.SSLError, ConnectionError, websockets.exceptions.WebSocketException)
        with pytest.raises(refusals) as caught:
            ws = await connect(url, client_context(ca.cert, foreign_cert, foreign_key))
            # TLS 1.3 reports a refused client certificate after the client's handshake;
            # bounded, and a time-out is no refusal (it would fail the test).
            await asyncio.wait_for(ws.recv(), 5)
        assert not isinstance(caught.value, TimeoutError)

        # Profile 2 on the same port: Basic over TLS; nothing is no way in.
        ws = await connect(
            f"{base}/CP-P2", client_context(ca.cert), **basic_auth("CP-P2", PASSWORD)
        )
        await ws.close()
        assert await refused(f"{base}/CP-P2", client_context(ca.cert)) == 401

        # Our simulator at profile 3 (--cert/--key), and A02: the CSMS asks it for a new key.
        await register(api, "SIM-P3", password=None, securityProfile=3)
        sim_cert, sim_key = ca.issue("SIM-P3")
        sim = Charger(
            base,
            "SIM-P3",
            ca=str(ca.cert),
            cert=str(sim_cert),
            key=str(sim_key),
            call_timeout=5,
            reconnect_delay=0.05,
        )
        await sim.start(timeout=5)
        try:
            await api.post(
                "/api/v1/chargers/SIM-P3/commands/ExtendedTriggerMessage?wait=5",
                {"requestedMessage": "SignChargePointCertificate"},
                expect=200,
            )
            await wait_for_event(api, "SIM-P3", "certificate_signed.accepted")
            assert sim.model.security.certificate is not None
        finally:
            await sim.stop()

        p3 = [e for e in await events_of(api, "CP-P3") if e["type"] == "charger.connected"]
        assert [e["data"]["securityProfile"] for e in p3] == [3, 3]
        requested = await wait_for_event(
            api, "CP-P3", "charger.certificate_signing_requested", status="Accepted"
        )
        assert requested["data"]["signedBy"] == "csms"
        rejected = await wait_for_event(
            api, "CP-P3", "charger.certificate_signing_requested", status="Rejected"
        )
        assert "CN" in rejected["data"]["reason"]
        p2 = [e for e in await events_of(api, "CP-P2") if e["type"] == "charger.connected"]
        assert [e["data"]["securityProfile"] for e in p2] == [2]
        sim_events = await events_of(api, "SIM-P3")
        assert sim_events[0]["data"]["securityProfile"] == 3


async def test_generated_key_profiles_and_downgrades(csms, api: Api) -> None:
    created = await api.post("/api/v1/chargers", {"id": "CP-GEN"})
    key = created["password"]
    assert len(key) == 24 and created["securityProfile"] == 1 and created["hasPassword"]
    # Shown in that answer only.
    assert "password" not in await api.get("/api/v1/chargers/CP-GEN")
    assert key not in str(await api.get("/api/v1/chargers"))
    assert key not in str(await api.get("/api/v1/events"))
    ws = await open_socket(csms, "CP-GEN", password=key)
    await ws.close()
    url = f"{csms.ocpp_url}/CP-GEN"
    assert await refused(url, None) == 401

    # Profile 0 says it: no key, no authentication.
    open_ = await register(api, "CP-ZERO", password=None, securityProfile=0)
    assert "password" not in open_ and open_["hasPassword"] is False
    ws = await open_socket(csms, "CP-ZERO", password=None)
    await ws.close()
    # Moving it to profile 1 makes a key, shown once; a password cannot be dropped at 1.
    _, moved = await api.request(
        "PATCH", "/api/v1/chargers/CP-ZERO", json_body={"securityProfile": 1}, expect=200
    )
    assert len(moved["data"]["password"]) == 24
    status, body = await api.request(
        "PATCH", "/api/v1/chargers/CP-ZERO", json_body={"password": None}
    )
    assert status == 400 and "securityProfile 0" in body["error"]["message"]
    _, kept = await api.request(
        "PATCH", "/api/v1/chargers/CP-ZERO", json_body={"description": "x"}, expect=200
    )
    assert "password" not in kept["data"] and kept["data"]["hasPassword"] is True

    for body in (
        {"id": "CP-BAD", "securityProfile": 0, "password": PASSWORD},
        {"id": "CP-BAD", "securityProfile": 3, "password": PASSWORD},
        {"id": "CP-BAD", "securityProfile": 4},
        {"id": "CP-BAD", "securityProfile": "1"},
        {"id": "CP-BAD", "securityProfile": True},
    ):
        status, answer = await api.request("POST", "/api/v1/chargers", json_body=body)
        assert (status == 400 and "securityProfile" in answer["error"]["message"]) or (
            status == 400 and "password" in answer["error"]["message"]
        ), answer

    # No downgrade: profile 2 needs TLS, 3 a client certificate; this server has neither.
    await register(api, "CP-TWO", securityProfile=2)
    two = f"{csms.ocpp_url}/CP-TWO"
    assert await refused(two, None, **basic_auth("CP-TWO", PASSWORD)) == 403
    sim = Charger(csms.ocpp_url, "CP-TWO", password=PASSWORD, connect_attempts=1)
    await sim.start(wait_boot=False)
    try:
        failed = await sim.wait_for(EventKind.CONNECT_FAILED, timeout=5)
    finally:
        await sim.stop()
    assert "HTTP 403" in (failed.detail or "") and sim.gave_up is not None
    await register(api, "CP-THREE", password=None, securityProfile=3)
    assert await refused(f"{csms.ocpp_url}/CP-THREE", None) == 401
    assert await events_of(api, "CP-TWO") == [] and await events_of(api, "CP-THREE") == []


async def test_before_accepted_billing_data_of_a_known_transaction_is_taken(csms, api: Api) -> None:
    await api.post("/api/v1/id-tags", {"idTag": "TAG-P"})
    await register(api, "CP-PEND")
    charger = RawCharger(await open_socket(csms, "CP-PEND"))
    try:
        await charger.call("BootNotification", BOOT)
        start = {"connectorId": 1, "idTag": "TAG-P", "meterStart": 0, "timestamp": STAMP}
        tx_id = (await charger.call("StartTransaction", start))[2]["transactionId"]
        await api.request(
            "PATCH",
            "/api/v1/chargers/CP-PEND",
            json_body={"registrationPolicy": "Pending"},
            expect=200,
        )
        assert (await charger.call("BootNotification", BOOT))[2]["status"] == "Pending"
        sample = [{"timestamp": STAMP, "sampledValue": [{"value": "1500", "unit": "Wh"}]}]
        meter = {"connectorId": 1, "transactionId": tx_id, "meterValue": sample}
        assert (await charger.call("MeterValues", meter))[0] == 3
        # Billing data of a transaction the CSMS does not know stays refused, as does the rest.
        unknown = {**meter, "transactionId": tx_id + 1000}
        assert (await charger.call("MeterValues", unknown))[2] == "SecurityError"
        no_tx = {"connectorId": 1, "meterValue": sample}
        assert (await charger.call("MeterValues", no_tx))[2] == "SecurityError"
        assert (await charger.call("Authorize", {"idTag": "TAG-P"}))[2] == "SecurityError"
        stop = {"transactionId": tx_id, "meterStop": 2000, "timestamp": STAMP}
        assert (await charger.call("StopTransaction", stop))[0] == 3
        again = {"transactionId": tx_id + 1000, "meterStop": 1, "timestamp": STAMP}
        assert (await charger.call("StopTransaction", again))[2] == "SecurityError"
    finally:
        await charger.close()
    events = await wait_events(api, "CP-PEND", 7)
    types = [e["type"] for e in events]
    assert types.count("transaction.updated") == 1 and types.count("transaction.stopped") == 1
    stopped = next(e for e in events if e["type"] == "transaction.stopped")
    assert stopped["data"]["transactionId"] == tx_id and stopped["data"]["meterStop"] == 2000


async def test_unusable_ca_files_fail_the_start_naming_the_key(tmp_path: Path) -> None:
    ca = Authority.create(tmp_path)
    other = Authority.create(tmp_path, "Other CA")
    cert, key = ca.issue("127.0.0.1", server=True)
    tls = {"tls_cert": str(cert), "tls_key": str(key), "tls_ca": str(ca.cert)}
    wrong_key = make_settings(tmp_path, ocpp={**tls, "tls_ca_key": str(other.key_path)})
    with pytest.raises(StartError, match=r"ocpp\.tls_ca_key: not the key of"):
        await Csms.start(wrong_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    not_pem = make_settings(tmp_path, ocpp={**tls, "tls_ca": str(garbage)})
    with pytest.raises(StartError, match=r"ocpp\.tls_ca: cannot load"):
        await Csms.start(not_pem)
