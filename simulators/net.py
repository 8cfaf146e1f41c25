"""Connecting as a charger: the URL, the credentials and TLS of OCPP-J 1.6 section 3 and the
security profiles 1 and 2 of the 1.6 Security Whitepaper (HTTP Basic auth, over TLS).

Also what a failed connect means, in words: a CSMS refuses an upgrade with a bare HTTP
status, and "HTTP 401" alone reads the same whether the password is wrong or the URL is
the admin API's. `connect_problem()` tells those apart so the CLI can say it in one line.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

SUBPROTOCOL = "ocpp1.6"
EXAMPLE_URL = "ws://127.0.0.1:9000/ocpp"
OCPP_URL_HINT = "chargers connect to ws://HOST:PORT/ocpp, the OCPP endpoint csms serve prints"


def endpoint(url: str, charger_id: str) -> str:
    """The charger id is the last path segment, percent-encoded (OCPP-J 3.1.1).

    A URL that already ends in the id (a charger's full URL, as a CSMS shows it) is used
    as it is: appending the id again would ask for a charger `CP-1/CP-1`."""
    base = url.rstrip("/")
    last = urlsplit(base).path.rsplit("/", 1)[-1]
    if last and unquote(last) == charger_id:
        return base
    return f"{base}/{quote(charger_id, safe='')}"


def check_url(url: str) -> str | None:
    """Why `url` cannot be a charger's CSMS URL, or None: said before any connect is tried."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        return f"{url!r} is not a URL ({exc}); e.g. {EXAMPLE_URL}"
    if parts.scheme in ("http", "https"):
        ws = "wss" if parts.scheme == "https" else "ws"
        fixed = parts._replace(scheme=ws).geturl()
        return f"{url} is an HTTP URL; a charger connects over WebSocket: {fixed}"
    if parts.scheme not in ("ws", "wss"):
        return f"{url!r} is not a ws:// or wss:// URL; e.g. {EXAMPLE_URL}"
    if not parts.hostname:
        return f"{url!r} has no host; e.g. {EXAMPLE_URL}"
    return None


def basic_auth(charger_id: str, password: str) -> dict[str, str]:
    """Security profile 1: `Authorization: Basic base64(chargerId:password)`."""
    token = base64.b64encode(f"{charger_id}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def ssl_context(
    url: str, ca: str | None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext | None:
    """Security profile 2: a TLS context that trusts `ca` (or the system store) for wss://;
    profile 3 with the client certificate `cert` (and its `key`, if not in the same file)."""
    if urlsplit(url).scheme != "wss":
        return None
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    if cert:
        context.load_cert_chain(cert, key or None)
    return context


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


# ----- why a connect failed ----------------------------------------------------------------

BAD_URL = "bad-url"
NOT_REGISTERED = "not-registered"
PASSWORD = "password"  # 401 with a Basic challenge: wrong or missing password
PROFILE = "profile"  # 401/403 without one: no or a wrong client certificate, a downgrade
NOT_OCPP = "not-ocpp"  # an HTTP answer that is no WebSocket upgrade, or no ocpp1.6
REFUSED = "refused"  # nothing listens there
TLS = "tls"
TIMEOUT = "timeout"
OTHER = "other"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectProblem:
    """A failed connect, for a person: what is wrong, what to do, and whether retrying helps."""

    kind: str  # one of the constants above
    message: str  # one line, no trailing period
    hint: str = ""  # what to do about it, or ""
    final: bool = False  # retrying cannot help until someone changes something
    status: int | None = None  # the HTTP status of a refused upgrade

    def line(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


def connect_problem(
    exc: BaseException, url: str, charger_id: str, *, password: bool
) -> ConnectProblem:
    """Name what `exc` (raised by a WebSocket connect to `url`) says is wrong."""
    target = endpoint(url, charger_id)
    if isinstance(exc, InvalidURI | ValueError):
        return ConnectProblem(
            kind=BAD_URL, message=check_url(url) or f"bad URL {url!r}: {exc}", final=True
        )
    if isinstance(exc, InvalidStatus):
        return _refused_upgrade(exc, target, charger_id, password=password)
    if isinstance(exc, InvalidHandshake):
        return ConnectProblem(
            kind=NOT_OCPP,
            message=f"{target} is not an OCPP 1.6 endpoint ({exc})",
            hint=OCPP_URL_HINT,
            final=True,
        )
    where = _host_port(url)
    if isinstance(exc, ConnectionRefusedError):
        return ConnectProblem(
            kind=REFUSED,
            message=f"cannot connect to {where}: connection refused",
            hint="is the CSMS running there (csms serve)?",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectProblem(
            kind=TLS,
            message=f"the TLS certificate of {where} is not trusted ({exc.verify_message})",
            hint="pass the CA that signed it with --ca",
            final=True,
        )
    if isinstance(exc, ssl.SSLError):
        return ConnectProblem(
            kind=TLS,
            message=f"TLS with {where} failed ({exc.reason or exc})",
            hint="is it a wss:// endpoint? without TLS the URL is ws://",
            final=True,
        )
    if isinstance(exc, socket.gaierror):
        return ConnectProblem(kind=OTHER, message=f"cannot resolve the host of {url}: {exc}")
    if isinstance(exc, TimeoutError):
        return ConnectProblem(kind=TIMEOUT, message=f"no answer from {where} in time")
    return ConnectProblem(kind=OTHER, message=f"cannot connect to {where}: {exc}")


def _refused_upgrade(
    exc: InvalidStatus, target: str, charger_id: str, *, password: bool
) -> ConnectProblem:
    """An HTTP answer instead of `101 Switching Protocols`.

    A CSMS refuses a charger with a bare 404 or 401 (with a Basic challenge); an answer in
    JSON or HTML, or any other status, comes from something that is not an OCPP endpoint
    (the admin API, a web server)."""
    response = exc.response
    status = response.status_code
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    body = bytes(response.body or b"").decode("utf-8", "replace").strip().splitlines()
    said = body[0][:120] if body and content_type in ("", "text/plain") else ""
    web_page = "json" in content_type or "html" in content_type
    challenge = response.headers.get("WWW-Authenticate", "").lower().startswith("basic")
    if status == 401 and challenge and not web_page:
        what = (
            f"charger {charger_id}: wrong password"
            if password
            else (f"charger {charger_id} needs a password")
        )
        return ConnectProblem(
            kind=PASSWORD,
            message=f"{what} (HTTP 401 from {target})",
            hint="pass the password it was registered with (--password)",
            final=True,
            status=status,
        )
    if status in (401, 403) and not web_page:
        # Security profiles (Security Whitepaper 2): profile 3 wants a client certificate
        # whose CN is the charger id; a charger registered at 2 or 3 cannot connect lower.
        return ConnectProblem(
            kind=PROFILE,
            message=f"charger {charger_id} refused (HTTP {status} from {target}): "
            + (said or "its security profile or client certificate does not fit"),
            hint="profile 3 needs --cert/--key (subject CN = the charger id) over wss://;"
            " profile 2 needs wss://",
            final=True,
            status=status,
        )
    if status == 404 and not web_page:
        if "/ocpp/" in said:  # this CSMS's answer to a path that is not /ocpp/{chargerId}
            return ConnectProblem(
                kind=NOT_OCPP,
                message=f"{target} is not a charger's OCPP path (HTTP 404: {said})",
                hint=OCPP_URL_HINT,
                final=True,
                status=status,
            )
        return ConnectProblem(
            kind=NOT_REGISTERED,
            message=f"charger {charger_id} is not registered at the CSMS (HTTP 404 from {target})",
            hint="register it (POST /api/v1/chargers) or check --id",
            final=True,
            status=status,
        )
    answered = f"HTTP {status}" + (f" {content_type}" if content_type else "")
    transient = status == 429 or status >= 500
    return ConnectProblem(
        kind=OTHER if transient else NOT_OCPP,
        message=(
            f"{target} answered {answered}"
            + ("" if transient else " instead of a WebSocket upgrade: not an OCPP endpoint")
        ),
        hint="" if transient else f"is that the admin API? {OCPP_URL_HINT}",
        final=not transient,
        status=status,
    )


def _host_port(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        return url
    return f"{parts.hostname}:{port}"
