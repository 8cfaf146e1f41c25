"""Security profiles at the WebSocket upgrade (DESIGN 3; Security Whitepaper 2.1-2.5).

Profile 0: no authentication; 1: HTTP Basic over ``ws://``; 2: Basic over TLS; 3: TLS with a
client certificate signed by ``ocpp.tls_ca`` whose subject CN is the charger id (the
certificate is the credential). With TLS on, one port serves 2 and 3: a client certificate is
optional at the TLS handshake (one from another CA fails the handshake itself), and decided on
here. A charger's registered profile is the least it may connect with (A00.FR.005: no
downgrade). Kept apart from ``csms/server.py`` so the upgrade path only asks these questions.
"""

from __future__ import annotations

import http
import ssl
from dataclasses import dataclass
from typing import Any

from csms.config import OcppSettings
from storage.records import ChargerRegistration

PROFILES = (0, 1, 2, 3)


class TlsSetupError(Exception):
    """The TLS material in the settings cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """An upgrade refused: the HTTP status, and why (for the log line, never the peer)."""

    status: http.HTTPStatus
    reason: str


def server_context(settings: OcppSettings) -> ssl.SSLContext | None:
    """The TLS context of the OCPP endpoint, or None for plain ``ws://``."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # A00.FR.312
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError(
            f"ocpp.tls_cert / ocpp.tls_key: cannot load {settings.tls_cert!r} with its key: {exc}"
        ) from None
    if settings.tls_ca:
        try:
            context.load_verify_locations(cafile=settings.tls_ca)
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError(
                f"ocpp.tls_ca: cannot load {settings.tls_ca!r} as PEM certificates: {exc}"
            ) from None
        # Optional: profile 2 chargers on the same port have none (DESIGN 3).
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def client_common_names(transport: Any) -> list[str] | None:
    """The subject CNs of the verified client certificate; None when none was presented."""
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    certificate = ssl_object.getpeercert()
    if not certificate:
        return None
    return [
        value for rdn in certificate.get("subject", ()) for key, value in rdn if key == "commonName"
    ]


def certificate_refusal(charger_id: str, names: list[str] | None) -> Refusal | None:
    """A presented certificate must name this charger (A00.FR.405), whatever its profile."""
    if names is None or names == [charger_id]:
        return None
    shown = ", ".join(repr(n[:64]) for n in names) or "none"
    return Refusal(
        http.HTTPStatus.FORBIDDEN,
        f"client certificate subject CN ({shown}) is not the charger id",
    )


def achieved_profile(*, certificate: bool, basic: bool, tls: bool) -> int:
    """The profile a connection proved: 3 with a client certificate, else 2/1 with Basic
    auth over TLS/plain, else 0."""
    if certificate:
        return 3
    if basic:
        return 2 if tls else 1
    return 0


def profile_refusal(registration: ChargerRegistration | None, achieved: int) -> Refusal | None:
    """A connection below the charger's registered profile is refused (no downgrade)."""
    required = registration.security_profile if registration is not None else 0
    if achieved >= required:
        return None
    if required == 3:
        return Refusal(
            http.HTTPStatus.UNAUTHORIZED,
            f"registered at security profile 3, connected at {achieved}: no client certificate",
        )
    return Refusal(
        http.HTTPStatus.FORBIDDEN,
        f"registered at security profile {required}, connected at {achieved}"
        + (" (plain ws://, TLS required)" if required == 2 and achieved == 1 else ""),
    )
