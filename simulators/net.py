"""Connecting as a charger: the URL, the credentials and TLS of OCPP-J 1.6 section 3 and the
security profiles 1 and 2 of the 1.6 Security Whitepaper (HTTP Basic auth, over TLS).
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
from urllib.parse import quote, urlsplit

SUBPROTOCOL = "ocpp1.6"


def endpoint(url: str, charger_id: str) -> str:
    """The charger id is the last path segment, percent-encoded (OCPP-J 3.1.1)."""
    return f"{url.rstrip('/')}/{quote(charger_id, safe='')}"


def basic_auth(charger_id: str, password: str) -> dict[str, str]:
    """Security profile 1: `Authorization: Basic base64(chargerId:password)`."""
    token = base64.b64encode(f"{charger_id}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def ssl_context(url: str, ca: str | None) -> ssl.SSLContext | None:
    """Security profile 2: a TLS context that trusts `ca` (or the system store) for wss://."""
    if urlsplit(url).scheme != "wss":
        return None
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


def is_loopback_url(url: str) -> bool:
    """True when every address the URL's host resolves to is a loopback address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)
