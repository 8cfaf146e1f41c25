"""The charger-initiated messages of the OCPP 1.6 security extension (Security Whitepaper 5).

SecurityEventNotification (N01), SignCertificate (A02/A03), LogStatusNotification (N02) and
SignedFirmwareStatusNotification (L01): ordinary OCPP-J CALLs with their own action names,
answered here as pure functions like those of ``core.py``.

SignCertificate: the CSR must be a PEM PKCS#10 request with a valid self-signature whose
subject CN is the charger id (the CN that profile 3 checks at the upgrade); else Rejected
(A02.FR.12). An accepted CSR is signed by the CSMS when ``ocpp.tls_ca_key`` is set (the
shell sends the certificate by a CertificateSigned command once the answer is out), else it
goes out in ``charger.certificate_signing_requested`` for an external CA, which answers
through the commands API (CertificateSigned).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from csms.protocol.outcome import Ctx, DomainEvent, Outcome
from csms.protocol.state import JSON, ChargerSnapshot

SIGNED_BY_CSMS = "csms"
SIGNED_BY_EXTERNAL = "external"


def csr_problem(pem: str, charger_id: str) -> str | None:
    """Why ``pem`` is no acceptable certificate signing request for this charger, or None."""
    try:
        request = x509.load_pem_x509_csr(pem.encode())
    except (ValueError, UnicodeEncodeError):
        return "csr is not a PEM encoded PKCS#10 certificate signing request"
    try:
        if not request.is_signature_valid:
            return "csr signature does not verify"
    except Exception:  # an algorithm the library cannot check: as good as unsigned
        return "csr signature cannot be verified"
    names = [str(a.value) for a in request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [charger_id]:
        return f"csr subject CN {names!r} is not the charger id"
    return None


def security_event(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    data = {k: payload[k] for k in ("type", "timestamp", "techInfo") if k in payload}
    return Outcome(
        snapshot=snap,
        reply={},
        events=[DomainEvent(type="charger.security_event", data=data)],
    )


def sign_certificate(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    csr = payload["csr"]
    problem = csr_problem(csr, snap.charger_id)
    status = "Rejected" if problem else "Accepted"
    data: JSON = {"status": status, "csr": csr}
    if problem:
        data["reason"] = problem
    else:
        data["signedBy"] = SIGNED_BY_CSMS if ctx.settings.signs_certificates else SIGNED_BY_EXTERNAL
    return Outcome(
        snapshot=snap,
        reply={"status": status},
        events=[DomainEvent(type="charger.certificate_signing_requested", data=data)],
    )


def log_status(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    data = {k: payload[k] for k in ("status", "requestId") if k in payload}
    return Outcome(
        snapshot=snap, reply={}, events=[DomainEvent(type="charger.log_status", data=data)]
    )


def signed_firmware_status(snap: ChargerSnapshot, payload: JSON, ctx: Ctx) -> Outcome:
    data = {k: payload[k] for k in ("status", "requestId") if k in payload}
    return Outcome(
        snapshot=snap,
        reply={},
        events=[DomainEvent(type="charger.signed_firmware_status", data=data)],
    )


def will_sign(call_action: str, reply: JSON | object) -> bool:
    """Whether the shell should sign the CSR of this answered CALL (an accepted one)."""
    return (
        call_action == "SignCertificate"
        and isinstance(reply, dict)
        and reply.get("status") == "Accepted"
    )
