"""The pure parts of issue 16: the security extension's handlers in the core, the upgrade's
profile rules, and the simulator's answers (no socket, no store)."""

from __future__ import annotations

import http
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from csms import handshake_security as hs
from csms.protocol.commands import classify
from csms.protocol.frames import ErrorCode
from csms.protocol.security import csr_problem
from csms.protocol.state import CoreSettings, RegistrationStatus
from simulators import commands as sim
from simulators.model import ChargerModel
from storage.records import ChargerRegistration
from tests.pki import csr
from tests.test_core import one_event, registration, rejected, run, snapshot

NOW = datetime(2026, 2, 6, 14, 30, tzinfo=UTC)


def test_csr_checks() -> None:
    good, _ = csr("CP-1")
    assert csr_problem(good, "CP-1") is None
    assert "CN" in (csr_problem(good, "CP-2") or "")
    assert "PKCS#10" in (csr_problem("-----BEGIN CERTIFICATE REQUEST-----", "CP-1") or "")
    tampered = good.replace(good.splitlines()[3], good.splitlines()[3][::-1])
    assert csr_problem(tampered, "CP-1") is not None


@pytest.mark.parametrize(("signs", "signed_by"), [(False, "external"), (True, "csms")])
def test_sign_certificate_says_who_signs(signs: bool, signed_by: str) -> None:
    good, _ = csr("CP-1")
    settings = CoreSettings(signs_certificates=signs)
    outcome = run(snapshot(), "SignCertificate", {"csr": good}, settings=settings)
    assert outcome.reply == {"status": "Accepted"}
    data = one_event(outcome, "charger.certificate_signing_requested")
    assert data == {"status": "Accepted", "csr": good, "signedBy": signed_by}


def test_security_notifications_become_events() -> None:
    payload = {"type": "ResetOrReboot", "timestamp": "2026-02-06T14:30:00Z"}
    assert one_event(
        run(snapshot(), "SecurityEventNotification", payload), "charger.security_event"
    )
    log = run(snapshot(), "LogStatusNotification", {"status": "Uploading", "requestId": 2})
    assert one_event(log, "charger.log_status") == {"status": "Uploading", "requestId": 2}
    firmware = run(snapshot(), "SignedFirmwareStatusNotification", {"status": "InvalidSignature"})
    assert one_event(firmware, "charger.signed_firmware_status") == {"status": "InvalidSignature"}


def test_before_accepted_only_billing_data_of_known_transactions_passes() -> None:
    pending = snapshot(RegistrationStatus.PENDING, policy="Pending")
    sample = [{"timestamp": "2026-02-06T14:30:00Z", "sampledValue": [{"value": "10"}]}]
    meter = {"connectorId": 1, "transactionId": 5, "meterValue": sample}
    rejected(run(pending, "MeterValues", meter), ErrorCode.SECURITY_ERROR)  # not known
    event = {"type": "X", "timestamp": "2026-02-06T14:30:00Z"}
    rejected(run(pending, "SecurityEventNotification", event), ErrorCode.SECURITY_ERROR)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("AcceptedCanceled", "accepted"),
        ("NotFound", "rejected"),
        ("InvalidCertificate", "rejected"),
        ("RevokedCertificate", "rejected"),
    ],
)
def test_extension_statuses(status: str, outcome: str) -> None:
    assert classify({"status": status}) == outcome


def test_profile_rules() -> None:
    assert hs.achieved_profile(certificate=True, basic=False, tls=True) == 3
    assert hs.achieved_profile(certificate=False, basic=True, tls=True) == 2
    assert hs.achieved_profile(certificate=False, basic=True, tls=False) == 1
    assert hs.achieved_profile(certificate=False, basic=False, tls=True) == 0
    assert hs.certificate_refusal("CP-1", None) is None
    assert hs.certificate_refusal("CP-1", ["CP-1"]) is None
    for names in (["CP-2"], [], ["CP-1", "CP-1"]):
        refusal = hs.certificate_refusal("CP-1", names)
        assert refusal is not None and refusal.status == http.HTTPStatus.FORBIDDEN
    at = {p: registration_at(p) for p in hs.PROFILES}
    assert hs.profile_refusal(None, 0) is None
    assert hs.profile_refusal(at[2], 3) is None and hs.profile_refusal(at[1], 2) is None
    downgrade = hs.profile_refusal(at[2], 1)
    assert downgrade is not None and downgrade.status == http.HTTPStatus.FORBIDDEN
    no_certificate = hs.profile_refusal(at[3], 2)
    assert no_certificate is not None and no_certificate.status == http.HTTPStatus.UNAUTHORIZED


def registration_at(profile: int) -> ChargerRegistration:
    return replace(registration(), security_profile=profile)


def test_simulator_extended_trigger_and_log() -> None:
    model = ChargerModel()
    model.security.common_name = "SIM-1"
    reply = sim.handle(
        model, "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}, NOW
    )
    assert reply.payload == {"status": "Accepted"} and reply.then[0].action == "SignCertificate"
    assert csr_problem(reply.then[0].payload["csr"], "SIM-1") is None
    bad = sim.handle(
        model, "ExtendedTriggerMessage", {"requestedMessage": "Heartbeat", "connectorId": 9}, NOW
    )
    assert bad.payload == {"status": "Rejected"}
    log = {"logType": "DiagnosticsLog", "requestId": 4, "log": {"remoteLocation": "gopher://x"}}
    reply = sim.handle(model, "GetLog", log, NOW)
    assert isinstance(reply.effect, sim.UploadLog)
    assert reply.effect.statuses == ("Uploading", "UploadFailure")
    # A charger does not serve the extension's charger-initiated actions.
    assert sim.handle(model, "SignCertificate", {"csr": "x"}, NOW).error is not None
