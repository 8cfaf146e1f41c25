"""Where webhooks may be posted: http(s) URLs whose host resolves only to global addresses.

A webhook URL is chosen by an API caller but fetched by the server, the classic SSRF shape:
without a check, ``http://169.254.169.254/`` or an intranet host is one POST away. Every
A/AAAA record must be global (not private, loopback, link-local, CGNAT, unique-local,
multicast, unspecified or reserved; addresses embedded in IPv4-mapped, 6to4 and Teredo
IPv6 addresses are checked too). The check runs at registration and again when posting
(``global_addresses``: the poster connects only to an address it returned), so a name that
later resolves elsewhere (DNS rebinding) is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_MAX_URL = 2048


class TargetError(ValueError):
    """The URL is not one we post to; the message says why (shown to the API caller)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    scheme: str
    host: str
    port: int


def parse_url(url: str) -> Target:
    """Check the URL's shape: http or https, a host, no credentials, a sane length."""
    if len(url) > _MAX_URL:
        raise TargetError(f"url is longer than {_MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"url is not valid: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetError("url must start with http:// or https://")
    if not parts.hostname:
        raise TargetError("url has no host")
    if parts.username or parts.password:
        raise TargetError("url must not carry credentials; use headers instead")
    default = 443 if parts.scheme == "https" else 80
    return Target(scheme=parts.scheme, host=parts.hostname, port=port or default)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_global_address(ip: IPAddress) -> bool:
    """True only for addresses on the public internet."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        inner = _embedded_v4(ip)
        if inner is not None and not is_global_address(inner):
            return False
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip.is_loopback:
        return False
    if ip.is_link_local or ip.is_private or not ip.is_global:
        return False
    return not (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT)


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def refuse_non_global(host: str, addresses: list[str]) -> None:
    if not addresses:
        raise TargetError(f"host {host} has no address")
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        if not is_global_address(ip):
            raise TargetError(
                f"host {host} resolves to a non-public address ({ip}); private targets are"
                " not allowed (webhooks.allow_private_targets)"
            )


async def check_target(url: str, *, allow_private: bool) -> Target:
    """Validate the URL and, unless private targets are allowed, every address of its host."""
    target = parse_url(url)
    if allow_private:
        return target
    literal = literal_address(target.host)
    if literal is not None:
        refuse_non_global(target.host, [str(literal)])
        return target
    try:
        await global_addresses(target.host, target.port)
    except OSError as exc:
        raise TargetError(f"host {target.host} does not resolve: {exc}") from None
    return target


async def global_addresses(host: str, port: int) -> list[str]:
    """Every address of ``host``, all checked to be global (else ``TargetError``; OSError
    if it does not resolve)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    refuse_non_global(host, addresses)
    return addresses
