"""The web dashboard (DESIGN 9): a small ES-module app served by the admin API at ``/``.

The page and its assets are static files shipped in the package (``static/``), loaded without
a token; the app asks for the admin token, keeps it in ``sessionStorage`` and calls the admin
API with it. The server's part is only to serve the files with a strict Content-Security-Policy:
scripts, styles, images and requests from this origin only, no inline script or style, no
``eval``, and Trusted Types required, so that no string can ever be parsed as markup by the app
(every charger-supplied string is set as text; an ``innerHTML`` assignment would throw).

The files are read once at import: a fixed table of paths, so a request can name nothing else
(no path traversal to think about), and the exact set of public paths is known.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from csms.api.apidoc import not_an_operation

STATIC_DIR = Path(__file__).parent / "static"
INDEX_PATH = "/"
ASSET_PREFIX = "/static/"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Revalidated on every load (by ETag): an upgraded server never runs yesterday's script.
    "Cache-Control": "no-cache",
}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _load() -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for file in sorted(STATIC_DIR.rglob("*")):
        if not file.is_file() or file.name.startswith("."):
            continue
        body = file.read_bytes()
        kind = _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0]
        found[ASSET_PREFIX + file.relative_to(STATIC_DIR).as_posix()] = Asset(
            body=body,
            content_type=kind or "application/octet-stream",
            etag='"' + hashlib.sha256(body).hexdigest()[:20] + '"',
        )
    return found


ASSETS = _load()
_INDEX = ASSET_PREFIX + "index.html"
# The auth middleware lets exactly these through without a token.
PUBLIC_PATHS = frozenset({INDEX_PATH, *(p for p in ASSETS if p != _INDEX)})

routes = web.RouteTableDef()


def _answer(request: web.Request, asset: Asset) -> web.Response:
    headers = {**HEADERS, "ETag": asset.etag}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if asset.content_type.startswith(("text/", "image/svg")) else None
    return web.Response(
        body=asset.body, content_type=asset.content_type, charset=charset, headers=headers
    )


@routes.get(INDEX_PATH)
@not_an_operation
async def index(request: web.Request) -> web.Response:
    """The app's one page; its views are chosen by the URL fragment (``#/chargers``)."""
    return _answer(request, ASSETS[_INDEX])


@routes.get(ASSET_PREFIX + "{name:.+}")
@not_an_operation
async def asset(request: web.Request) -> web.Response:
    found = ASSETS.get(request.path)
    if found is None or request.path == _INDEX:
        raise web.HTTPNotFound(reason=f"no dashboard file {request.path}")
    return _answer(request, found)
