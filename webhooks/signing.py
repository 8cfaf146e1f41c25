"""Standard Webhooks signing (https://www.standardwebhooks.com/, the spec svix implements).

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed with
the base64-decoded part of the ``whsec_`` secret; several space-separated signatures while a
secret is being rotated, so receivers accept either secret during the overlap.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Protocol

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # what we generate
MIN_SECRET_BYTES = 24  # what we accept from callers (as svix does)
MAX_SECRET_BYTES = 64


class SecretFormatError(ValueError):
    """A caller-supplied secret is not ``whsec_`` + base64 of 24-64 bytes."""


def new_secret(random_bytes: Callable[[int], bytes]) -> str:
    """A fresh ``whsec_`` secret from the given random source (``secrets.token_bytes``)."""
    return SECRET_PREFIX + base64.b64encode(random_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; raises ``SecretFormatError`` if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretFormatError(f"secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecretFormatError("secret must be whsec_ followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise SecretFormatError(
            f"secret must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}"
        )
    return key


class _Mac(Protocol):
    def copy(self) -> _Mac: ...
    def update(self, msg: bytes) -> None: ...
    def digest(self) -> bytes: ...


@functools.lru_cache(maxsize=1024)
def _keyed(key: bytes) -> _Mac:
    """HMAC-SHA256 with the key already absorbed: copying it is cheaper than keying anew.
    OpenSSL's HMAC object itself where ``hmac`` wraps one (its Python ``copy`` took ~1 us
    of the ~2.4 us a signature costs)."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    inner = getattr(mac, "_hmac", None)
    return mac if inner is None else inner


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = _keyed(key).copy()
    mac.update(b"%s.%d.%s" % (msg_id.encode(), timestamp, body))
    return "v1," + binascii.b2a_base64(mac.digest(), newline=False).decode()


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    if len(keys) == 1:  # no secret being rotated: the usual case, without a generator
        return signature(keys[0], msg_id, timestamp, body)
    return " ".join(signature(key, msg_id, timestamp, body) for key in keys)
