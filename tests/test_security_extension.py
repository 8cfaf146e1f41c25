"""Issue 16: the OCPP 1.6 security extension's messages in both directions, against the `ocpp`
library's ChargePoint and against our simulator; and the simulator taking a changed
MeterValueSampleInterval at once.

Use cases (Security Whitepaper): A02/A03 certificate renewal (SignCertificate answered by an
external CA through the commands API), certificate management (InstallCertificate,
GetInstalledCertificateIds, DeleteCertificate), N01 security events, N02 logs (GetLog and
LogStatusNotification), L01 signed firmware (SignedUpdateFirmware and its notifications).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ocpp.charge_point import camel_to_snake_case
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result

from csms.protocol.timefmt import parse_timestamp
from simulators.charger import EventKind
from tests.conftest import PASSWORD, Api, basic_auth, open_socket, register, wait_for
from tests.pki import Authority, csr, pem
from tests.test_ocpp_connection import refused_status
from tests.test_sim_csms import TAG, events, simulator, wait_for_event

STAMP = "2026-02-06T14:30:00.000Z"
FIRMWARE_URL = "https://firmware.example.com/fw-2.0.bin"


class LibCharger(ChargePoint):
    """The `ocpp` library's charge point, answering the extension's CSMS-initiated actions
    with ``answers`` and recording the CALLs it received (camelCase, as on the wire)."""

    def __init__(self, charger_id: str, ws: Any) -> None:
        super().__init__(charger_id, ws, response_timeout=5)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, dict[str, Any]] = {}

    async def route_message(self, raw_msg: str) -> None:
        frame = json.loads(raw_msg)
        if frame[0] == 2:
            self.received.append((frame[2], frame[3]))
        await super().route_message(raw_msg)

    def answer(self, kind: Any) -> Any:
        return kind(**camel_to_snake_case(self.answers.get(kind.__name__, {"status": "Accepted"})))

    @on("CertificateSigned")
    async def on_certificate_signed(self, **_: Any) -> Any:
        return self.answer(call_result.CertificateSigned)

    @on("InstallCertificate")
    async def on_install_certificate(self, **_: Any) -> Any:
        return self.answer(call_result.InstallCertificate)

    @on("GetInstalledCertificateIds")
    async def on_get_installed_certificate_ids(self, **_: Any) -> Any:
        return self.answer(call_result.GetInstalledCertificateIds)

    @on("DeleteCertificate")
    async def on_delete_certificate(self, **_: Any) -> Any:
        return self.answer(call_result.DeleteCertificate)

    @on("ExtendedTriggerMessage")
    async def on_extended_trigger_message(self, **_: Any) -> Any:
        return self.answer(call_result.ExtendedTriggerMessage)

    @on("GetLog")
    async def on_get_log(self, **_: Any) -> Any:
        return self.answer(call_result.GetLog)

    @on("SignedUpdateFirmware")
    async def on_signed_update_firmware(self, **_: Any) -> Any:
        return self.answer(call_result.SignedUpdateFirmware)


async def send(api: Api, charger_id: str, action: str, body: Any) -> dict[str, Any]:
    path = f"/api/v1/chargers/{charger_id}/commands/{action}?wait=5"
    return await api.post(path, body, expect=200)


def hash_of(certificate: x509.Certificate) -> dict[str, str]:
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "0f" * 32,
        "issuerKeyHash": "1e" * 32,
        "serialNumber": format(certificate.serial_number, "x")[:40],
    }


async def test_the_extension_with_the_ocpp_library_charger(csms, api: Api, tmp_path: Path) -> None:
    ca = Authority.create(tmp_path)
    await register(api, "LIB-SEC")
    charger = LibCharger("LIB-SEC", await open_socket(csms, "LIB-SEC"))
    listener = asyncio.create_task(charger.start())
    try:
        await charger.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))

        # Charger-initiated (N01, A03, N02, L01).
        await charger.call(
            call.SecurityEventNotification(
                type="TamperDetectionActivated", timestamp=STAMP, tech_info="lid opened"
            ),
            suppress=False,
        )
        request, key = csr("LIB-SEC")
        signing = await charger.call(call.SignCertificate(csr=request), suppress=False)
        assert signing.status == "Accepted"
        other, _ = csr("SOMEONE-ELSE")
        refused = await charger.call(call.SignCertificate(csr=other), suppress=False)
        assert refused.status == "Rejected"
        await charger.call(
            call.LogStatusNotification(status="Uploaded", request_id=7), suppress=False
        )
        await charger.call(
            call.SignedFirmwareStatusNotification(status="SignatureVerified", request_id=3),
            suppress=False,
        )
        event = await wait_for_event(api, "LIB-SEC", "charger.security_event")
        assert event["data"] == {
            "type": "TamperDetectionActivated",
            "timestamp": STAMP,
            "techInfo": "lid opened",
        }
        asked = await wait_for_event(
            api, "LIB-SEC", "charger.certificate_signing_requested", status="Accepted"
        )
        assert asked["data"]["signedBy"] == "external" and asked["data"]["csr"] == request
        log = await wait_for_event(api, "LIB-SEC", "charger.log_status")
        assert log["data"] == {"status": "Uploaded", "requestId": 7}
        firmware = await wait_for_event(api, "LIB-SEC", "charger.signed_firmware_status")
        assert firmware["data"] == {"status": "SignatureVerified", "requestId": 3}

        # An external CA answers the CSR through the commands API (A02/A03 steps 6-9).
        signed_pem = pem(sign_csr(ca, request))
        charger.answers["CertificateSigned"] = {"status": "Accepted"}
        done = await send(api, "LIB-SEC", "CertificateSigned", {"certificateChain": signed_pem})
        assert done["status"] == "accepted"
        assert charger.received[-1] == ("CertificateSigned", {"certificateChain": signed_pem})
        leaf = x509.load_pem_x509_certificate(signed_pem.encode())
        assert leaf.public_key() == key.public_key()

        # CSMS-initiated: each action, its answer, and the outcome DESIGN 6 maps it to.
        cert_hash = hash_of(ca.certificate)
        cases: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
            (
                "InstallCertificate",
                {
                    "certificateType": "CentralSystemRootCertificate",
                    "certificate": pem(ca.certificate),
                },
                {"status": "Failed"},
                "rejected",
            ),
            (
                "GetInstalledCertificateIds",
                {"certificateType": "CentralSystemRootCertificate"},
                {"status": "Accepted", "certificateHashData": [cert_hash]},
                "accepted",
            ),
            (
                "DeleteCertificate",
                {"certificateHashData": cert_hash},
                {"status": "NotFound"},
                "rejected",
            ),
            (
                "ExtendedTriggerMessage",
                {"requestedMessage": "SignChargePointCertificate"},
                {"status": "Accepted"},
                "accepted",
            ),
            (
                "GetLog",
                {
                    "logType": "SecurityLog",
                    "requestId": 7,
                    "log": {"remoteLocation": "https://x/up"},
                },
                {"status": "AcceptedCanceled", "filename": "security.log"},
                "accepted",
            ),
            (
                "SignedUpdateFirmware",
                {
                    "requestId": 3,
                    "firmware": {
                        "location": FIRMWARE_URL,
                        "retrieveDateTime": STAMP,
                        "signingCertificate": pem(ca.certificate),
                        "signature": "c2lnbmF0dXJl",
                    },
                },
                {"status": "InvalidCertificate"},
                "rejected",
            ),
            ("CertificateSigned", {"certificateChain": "x"}, {"status": "Rejected"}, "rejected"),
        ]
        for action, body, answer, outcome in cases:
            charger.answers[action] = answer
            done = await send(api, "LIB-SEC", action, body)
            assert (done["status"], done["response"]) == (outcome, answer), action
            assert charger.received[-1] == (action, body)
            snake = done_type(action)
            await wait_for_event(api, "LIB-SEC", f"{snake}.{outcome}", commandId=done["id"])

        # A payload that fails the extension's schema: 400 naming the field, nothing sent.
        count = len(charger.received)
        status, body = await api.request(
            "POST",
            "/api/v1/chargers/LIB-SEC/commands/GetLog",
            json_body={"logType": "AuditLog", "requestId": 1, "log": {"remoteLocation": "x"}},
        )
        assert status == 400 and "logType" in body["error"]["message"], body
        status, body = await api.request(
            "POST",
            "/api/v1/chargers/LIB-SEC/commands/DeleteCertificate",
            json_body={"certificateHashData": {"hashAlgorithm": "SHA256"}},
        )
        assert status == 400 and "issuerNameHash" in body["error"]["message"], body
        assert len(charger.received) == count
    finally:
        listener.cancel()
        await charger._connection.close()


def done_type(action: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")


def sign_csr(ca: Authority, request_pem: str) -> x509.Certificate:
    import datetime as dt

    from cryptography.hazmat.primitives import hashes

    request = x509.load_pem_x509_csr(request_pem.encode())
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )


async def test_the_extension_with_the_simulator(csms, api: Api, tmp_path: Path) -> None:
    ca = Authority.create(tmp_path)
    root = pem(ca.certificate)
    async with simulator(csms, api, "SIM-SEC") as ch:
        # Certificate management: install, list, delete, and the answers for what is not there.
        kind = {"certificateType": "ManufacturerRootCertificate"}
        listed = await send(api, "SIM-SEC", "GetInstalledCertificateIds", kind)
        assert listed["status"] == "rejected" and listed["response"] == {"status": "NotFound"}
        installed = await send(api, "SIM-SEC", "InstallCertificate", {**kind, "certificate": root})
        assert installed["status"] == "accepted"
        garbage = await send(api, "SIM-SEC", "InstallCertificate", {**kind, "certificate": "x"})
        assert garbage["response"] == {"status": "Rejected"}
        listed = await send(api, "SIM-SEC", "GetInstalledCertificateIds", kind)
        assert listed["status"] == "accepted"
        (hash_data,) = listed["response"]["certificateHashData"]
        assert hash_data["serialNumber"] == format(ca.certificate.serial_number, "x")[:40]
        deleted = await send(
            api, "SIM-SEC", "DeleteCertificate", {"certificateHashData": hash_data}
        )
        assert deleted["status"] == "accepted"
        again = await send(api, "SIM-SEC", "DeleteCertificate", {"certificateHashData": hash_data})
        assert again["response"] == {"status": "NotFound"} and again["status"] == "rejected"

        # N02: GetLog, then the upload reported by LogStatusNotification.
        get_log = {
            "logType": "SecurityLog",
            "requestId": 11,
            "log": {"remoteLocation": "https://x/"},
        }
        logged = await send(api, "SIM-SEC", "GetLog", get_log)
        assert logged["status"] == "accepted" and logged["response"]["filename"]
        await wait_for_event(api, "SIM-SEC", "charger.log_status", status="Uploaded", requestId=11)

        # L01: SignedUpdateFirmware walks to Installed, with a FirmwareUpdated security event.
        firmware = {
            "requestId": 5,
            "firmware": {
                "location": FIRMWARE_URL,
                "retrieveDateTime": STAMP,
                "signingCertificate": root,
                "signature": "c2lnbmF0dXJl",
            },
        }
        updated = await send(api, "SIM-SEC", "SignedUpdateFirmware", firmware)
        assert updated["status"] == "accepted"
        await wait_for_event(
            api, "SIM-SEC", "charger.signed_firmware_status", status="Installed", requestId=5
        )
        await wait_for_event(api, "SIM-SEC", "charger.security_event", type="FirmwareUpdated")
        bad = {**firmware, "firmware": {**firmware["firmware"], "signingCertificate": "x"}}
        refused = await send(api, "SIM-SEC", "SignedUpdateFirmware", bad)
        assert refused["response"] == {"status": "InvalidCertificate"}

        # A02 with an external CA: the CSMS triggers a new key; we sign the CSR it passed on.
        triggered = await send(
            api,
            "SIM-SEC",
            "ExtendedTriggerMessage",
            {"requestedMessage": "SignChargePointCertificate"},
        )
        assert triggered["status"] == "accepted"
        asked = await wait_for_event(
            api, "SIM-SEC", "charger.certificate_signing_requested", status="Accepted"
        )
        wrong = await send(api, "SIM-SEC", "CertificateSigned", {"certificateChain": root})
        assert wrong["response"] == {"status": "Rejected"}  # not the key it asked for (A02.FR.07)
        await wait_for_event(
            api, "SIM-SEC", "charger.security_event", type="InvalidChargePointCertificate"
        )
        signed = pem(sign_csr(ca, asked["data"]["csr"]))
        accepted = await send(api, "SIM-SEC", "CertificateSigned", {"certificateChain": signed})
        assert accepted["status"] == "accepted"
        assert ch.model.security.certificate == signed
        key = ch.model.security.certificate_key
        assert key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == x509.load_pem_x509_certificate(signed.encode()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

        # The charger's own messages.
        ch.security_event("TamperDetectionActivated", "lid opened")
        ch.log_status("Idle")
        ch.signed_firmware_status("Idle")
        await wait_for_event(
            api, "SIM-SEC", "charger.security_event", type="TamperDetectionActivated"
        )
        await wait_for_event(api, "SIM-SEC", "charger.log_status", status="Idle")
        await wait_for_event(api, "SIM-SEC", "charger.signed_firmware_status", status="Idle")
        triggered = await send(
            api, "SIM-SEC", "ExtendedTriggerMessage", {"requestedMessage": "LogStatusNotification"}
        )
        assert triggered["status"] == "accepted"


async def test_simulator_takes_a_new_sample_interval_at_once(csms, api: Api) -> None:
    """A CSMS sets MeterValueSampleInterval to 1 s and starts a transaction: MeterValues come
    every second (before the fix the next sample stayed on the old 60 s schedule, so none
    came within 3 s). The cadence is read from the charger's own sample timestamps, so a
    slow machine does not blur it; the wait is bounded."""
    await api.post("/api/v1/id-tags", {"idTag": TAG})
    async with simulator(csms, api, "SIM-IVL", sample_interval=None):
        changed = await send(
            api,
            "SIM-IVL",
            "ChangeConfiguration",
            {"key": "MeterValueSampleInterval", "value": "1"},
        )
        assert changed["status"] == "accepted"
        remote = await send(
            api, "SIM-IVL", "RemoteStartTransaction", {"idTag": TAG, "connectorId": 1}
        )
        assert remote["status"] == "accepted"
        samples: list[dict[str, Any]] = []

        async def two_samples() -> bool:
            items = await events(api, "SIM-IVL")
            samples[:] = [e["data"] for e in items if e["type"] == "transaction.updated"]
            return len(samples) >= 2

        await wait_for(two_samples, timeout=5.0, interval=0.05)
        first, second = (parse_timestamp(s["timestamp"]) for s in samples[:2])
        assert first is not None and second is not None
        assert 0.5 <= (second - first).total_seconds() <= 1.5


async def test_a01_a_new_authorization_key_through_change_configuration(csms, api: Api) -> None:
    """Security Whitepaper A01: the CSMS gives the charger a new AuthorizationKey; once the
    charger accepts it, the next connection needs it, and the key is shown nowhere."""
    new_key = "a-new-authorization-key-01"
    async with simulator(csms, api, "SIM-KEY") as ch:
        body = {"key": "AuthorizationKey", "value": new_key}
        done = await send(api, "SIM-KEY", "ChangeConfiguration", body)
        assert done["status"] == "accepted"
        view = await api.get("/api/v1/chargers/SIM-KEY")
        assert new_key not in json.dumps(view) and view["hasPassword"] is True
        mark = ch.mark()
        await ch.go_offline()
        ch.go_online()
        await ch.wait_for(EventKind.CONNECTED, since=mark, timeout=5)
    url = f"{csms.ocpp_url}/SIM-KEY"
    assert await refused_status(url, basic_auth("SIM-KEY", PASSWORD)) == 401
    ws = await open_socket(csms, "SIM-KEY", password=new_key)
    await ws.close()
