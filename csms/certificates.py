"""Signing chargers' certificate requests with the configured CA (``ocpp.tls_ca_key``).

Use cases A02/A03 of the Security Whitepaper: a charger sends SignCertificate with a CSR, the
CSMS answers Accepted (``csms/protocol/security.py`` checked the CSR), and then sends the
signed certificate with a CertificateSigned command: through the command dispatcher, so it is
stored, has its ``certificate_signed.*`` events, and waits for a charger that went away
meanwhile. A02.FR.04 recommends a dedicated CA server; without ``tls_ca_key`` the CSR is left
to one (event ``charger.certificate_signing_requested``, answer through the commands API).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from csms.commands import CommandDispatcher, CommandRefused
from csms.handshake_security import TlsSetupError
from csms.protocol.frames import Call
from csms.protocol.security import will_sign

log = logging.getLogger(__name__)

VALIDITY = dt.timedelta(days=365)
BACKDATE = dt.timedelta(minutes=5)  # a charger whose clock is a little behind accepts it too


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: Any  # a private key the certificate's public key belongs to

    @classmethod
    def load(cls, cert_path: str, key_path: str) -> CertificateAuthority:
        """Read the CA; a file that cannot serve fails the start naming its key."""
        try:
            with open(cert_path, "rb") as file:
                certificate = x509.load_pem_x509_certificates(file.read())[0]
        except (OSError, ValueError) as exc:
            raise TlsSetupError(f"ocpp.tls_ca: cannot read a PEM certificate: {exc}") from None
        try:
            with open(key_path, "rb") as file:
                key = serialization.load_pem_private_key(file.read(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise TlsSetupError(
                f"ocpp.tls_ca_key: cannot read an unencrypted PEM private key: {exc}"
            ) from None
        if not isinstance(
            key,
            rsa.RSAPrivateKey
            | ec.EllipticCurvePrivateKey
            | ed25519.Ed25519PrivateKey
            | ed448.Ed448PrivateKey,
        ):
            raise TlsSetupError("ocpp.tls_ca_key: not a key that signs certificates")
        if key.public_key() != certificate.public_key():
            raise TlsSetupError("ocpp.tls_ca_key: not the key of the ocpp.tls_ca certificate")
        return cls(certificate, key)

    def sign(self, csr_pem: str, *, now: dt.datetime) -> str:
        """The charger certificate for a checked CSR, PEM, followed by the CA certificate."""
        request = x509.load_pem_x509_csr(csr_pem.encode())
        algorithm = (
            None
            if isinstance(self.key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
            else hashes.SHA256()
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(request.subject)
            .issuer_name(self.certificate.subject)
            .public_key(request.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, algorithm)
        )
        encoding = serialization.Encoding.PEM
        return (
            certificate.public_bytes(encoding) + self.certificate.public_bytes(encoding)
        ).decode()


class CertificateSigner:
    """Told of every answered CALL (``OcppServer.after_reply``); signs accepted CSRs."""

    def __init__(
        self,
        authority: CertificateAuthority,
        dispatcher: CommandDispatcher,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.authority = authority
        self.dispatcher = dispatcher
        self.clock = clock

    async def after_reply(self, charger_id: str, call: Call, reply: Any) -> None:
        if not will_sign(call.action, reply):
            return
        try:
            chain = await asyncio.to_thread(
                self.authority.sign, call.payload["csr"], now=self.clock()
            )
            await self.dispatcher.submit(
                charger_id, "CertificateSigned", {"certificateChain": chain}, queue=True
            )
        except CommandRefused as exc:
            log.warning("%s: signed certificate not sent: %s", charger_id, exc)
        except Exception:
            log.exception("%s: could not sign the certificate request", charger_id)
