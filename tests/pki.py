"""Certificates made in the test (the ``cryptography`` package): a CA that signs charger
client certificates, a server certificate for 127.0.0.1, client certificates and CSRs."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: Any, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class Authority:
    """A CA in ``directory``: ``cert``/``key`` paths; ``issue`` writes a signed leaf."""

    directory: Path
    name: str
    certificate: x509.Certificate
    key: Any

    @classmethod
    def create(cls, directory: Path, name: str = "Test CA") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        authority = cls(directory, name, certificate, key)
        authority.cert.write_text(pem(certificate))
        _write_key(key, authority.key_path)
        return authority

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-").lower()

    @property
    def cert(self) -> Path:
        return self.directory / f"{self.slug}.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / f"{self.slug}.key"

    def issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        """A leaf for ``cn`` (a client certificate, or the server's for 127.0.0.1)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        certificate = builder.sign(self.key, hashes.SHA256())
        slug = f"{self.slug}-{cn}".replace("/", "_")
        cert_path = self.directory / f"{slug}.pem"
        cert_path.write_text(pem(certificate))
        return cert_path, _write_key(key, self.directory / f"{slug}.key")


def csr(cn: str) -> tuple[str, Any]:
    """A PEM certificate signing request for ``cn`` and its private key."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder().subject_name(_name(cn)).sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode(), key


def write_leaf(directory: Path, name: str, chain: str, key: Any) -> tuple[Path, Path]:
    """A certificate chain received in CertificateSigned, and its key, as files to use."""
    cert_path = directory / f"{name}.pem"
    cert_path.write_text(chain)
    return cert_path, _write_key(key, directory / f"{name}.key")
