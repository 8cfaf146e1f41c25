"""The OCPP 1.6 security extension on the charger's side (Security Whitepaper, sections 2-5).

Answers CertificateSigned, InstallCertificate, GetInstalledCertificateIds, DeleteCertificate,
GetLog and SignedUpdateFirmware as a real charger does (ExtendedTriggerMessage is in
``commands.py``, beside TriggerMessage), and builds the charger's own CALLs:
SecurityEventNotification, SignCertificate (a fresh key pair and a PEM CSR whose CN is the
charger id and O the CpoName key, A02.FR.02-03/13), LogStatusNotification and
SignedFirmwareStatusNotification. A signed certificate is checked against the pending key
and its validity period before it is Accepted (A02.FR.06); a bad one is Rejected with an
InvalidChargePointCertificate security event (A02.FR.07).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from simulators.outbox import Outgoing
from simulators.replies import InstallSignedFirmware, Reply, UploadLog
from simulators.timefmt import iso, parse_iso

if TYPE_CHECKING:
    from simulators.model import ChargerModel

CERTIFICATE_TYPES = ("CentralSystemRootCertificate", "ManufacturerRootCertificate")
UPLOAD_SCHEMES = frozenset({"ftp", "ftps", "sftp", "http", "https"})
_HASHES = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}


@dataclass(slots=True)
class SecurityState:
    """What the charger keeps for the extension."""

    common_name: str = ""  # the charger id: the CN of its CSRs
    installed: dict[str, list[str]] = field(default_factory=dict)  # type -> PEM certificates
    pending_key: Any = None  # the private key of the CSR sent last (A02.FR.05: never leaves)
    certificate: str | None = None  # the charger certificate (chain) last Accepted
    certificate_key: Any = None
    log_status: str = "Idle"
    log_request: int | None = None
    firmware_status: str = "Idle"  # of SignedUpdateFirmware
    firmware_request: int | None = None


# ----- the charger's CALLs -------------------------------------------------------------


def security_event(kind: str, now: datetime, tech_info: str | None = None) -> Outgoing:
    payload: dict[str, Any] = {"type": kind[:50], "timestamp": iso(now)}
    if tech_info:
        payload["techInfo"] = tech_info[:255]
    return Outgoing(action="SecurityEventNotification", payload=payload)


def sign_certificate(m: ChargerModel) -> Outgoing:
    """A new key pair and its CSR (A02.FR.02-03); the key waits for CertificateSigned."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, m.security.common_name)]
    cpo = m.config.get_text("CpoName") if m.config.has("CpoName") else ""
    if cpo:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, cpo))
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(key, hashes.SHA256())
    )
    m.security.pending_key = key
    csr = request.public_bytes(serialization.Encoding.PEM).decode()
    return Outgoing(action="SignCertificate", payload={"csr": csr})


def log_status(m: ChargerModel, status: str, request_id: int | None) -> Outgoing:
    m.security.log_status = status
    payload: dict[str, Any] = {"status": status}
    if request_id is not None:
        payload["requestId"] = request_id
    return Outgoing(action="LogStatusNotification", payload=payload)


def signed_firmware_status(m: ChargerModel, status: str, request_id: int | None) -> Outgoing:
    m.security.firmware_status = status
    payload: dict[str, Any] = {"status": status}
    if request_id is not None:
        payload["requestId"] = request_id
    return Outgoing(action="SignedFirmwareStatusNotification", payload=payload)


# ----- answers to the CSMS ---------------------------------------------------------------


def certificate_signed(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    chain = str(p["certificateChain"])
    key = m.security.pending_key
    try:
        leaf = x509.load_pem_x509_certificates(chain.encode())[0]
    except ValueError:
        leaf = None
    valid = (
        leaf is not None
        and key is not None
        and leaf.public_key() == key.public_key()
        and leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
    )
    if not valid:
        event = security_event("InvalidChargePointCertificate", now, "CertificateSigned refused")
        return Reply(payload={"status": "Rejected"}, then=[event])
    m.security.certificate, m.security.certificate_key = chain, key
    m.security.pending_key = None
    return Reply(payload={"status": "Accepted"})


def install_certificate(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    kind, pem = str(p["certificateType"]), str(p["certificate"])
    if kind not in CERTIFICATE_TYPES or _load(pem) is None:
        return Reply(payload={"status": "Rejected"})
    installed = m.security.installed.setdefault(kind, [])
    if pem not in installed:
        installed.append(pem)
    return Reply(payload={"status": "Accepted"})


def get_installed_certificate_ids(
    m: ChargerModel, p: dict[str, Any], now: datetime, online: bool
) -> Reply:
    found = [hash_data(pem) for pem in m.security.installed.get(str(p["certificateType"]), [])]
    if not found:
        return Reply(payload={"status": "NotFound"})
    return Reply(payload={"status": "Accepted", "certificateHashData": found})


def delete_certificate(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    wanted = p["certificateHashData"]
    algorithm = str(wanted["hashAlgorithm"])
    for kind, pems in m.security.installed.items():
        for pem in pems:
            if _same(hash_data(pem, algorithm), wanted):
                m.security.installed[kind] = [x for x in pems if x != pem]
                return Reply(payload={"status": "Accepted"})
    return Reply(payload={"status": "NotFound"})


def get_log(m: ChargerModel, p: dict[str, Any], now: datetime, online: bool) -> Reply:
    request_id = int(p["requestId"])
    m.security.log_request = request_id
    location = str(p["log"]["remoteLocation"])
    kind = "security" if p["logType"] == "SecurityLog" else "diagnostics"
    busy = m.security.log_status == "Uploading"
    final = "Uploaded" if urlsplit(location).scheme.lower() in UPLOAD_SCHEMES else "UploadFailure"
    return Reply(
        payload={
            "status": "AcceptedCanceled" if busy else "Accepted",
            "filename": f"{kind}-{m.identity.serial}-{now.strftime('%Y%m%dT%H%M%SZ')}.log",
        },
        effect=UploadLog(request_id=request_id, statuses=("Uploading", final)),
    )


def signed_update_firmware(
    m: ChargerModel, p: dict[str, Any], now: datetime, online: bool
) -> Reply:
    firmware = p["firmware"]
    if _load(str(firmware["signingCertificate"])) is None:
        event = security_event("InvalidFirmwareSigningCertificate", now)
        return Reply(payload={"status": "InvalidCertificate"}, then=[event])
    busy = m.security.firmware_request is not None
    request_id = int(p["requestId"])
    m.security.firmware_request = request_id
    return Reply(
        payload={"status": "AcceptedCanceled" if busy else "Accepted"},
        effect=InstallSignedFirmware(
            request_id=request_id,
            location=str(firmware["location"]),
            retrieve_at=parse_iso(str(firmware["retrieveDateTime"])),
        ),
    )


HANDLERS = {
    "CertificateSigned": certificate_signed,
    "DeleteCertificate": delete_certificate,
    "GetInstalledCertificateIds": get_installed_certificate_ids,
    "GetLog": get_log,
    "InstallCertificate": install_certificate,
    "SignedUpdateFirmware": signed_update_firmware,
}


# ----- certificates --------------------------------------------------------------------


def hash_data(pem: str, algorithm: str = "SHA256") -> dict[str, str]:
    """CertificateHashDataType (6.1) of a PEM certificate, as OCPP 2.0.1 defines its parts:
    hashes of the issuer's DER name and of the certificate's public key bits, and the serial
    number in hex."""
    certificate = _load(pem)
    assert certificate is not None
    digest = _HASHES.get(algorithm, hashes.SHA256)
    issuer = certificate.issuer.public_bytes()
    public = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    name = hashlib.new(digest.name, issuer).hexdigest()
    key = hashlib.new(digest.name, public).hexdigest()
    return {
        "hashAlgorithm": algorithm if algorithm in _HASHES else "SHA256",
        "issuerNameHash": name[:128],
        "issuerKeyHash": key[:128],
        "serialNumber": format(certificate.serial_number, "x")[:40],
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber")
    return all(str(a[k]).lower() == str(b.get(k, "")).lower() for k in keys)


def _load(pem: str) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
