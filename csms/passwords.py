"""Charger passwords (OCPP security profile 1/2 AuthorizationKey), stored as scrypt hashes.

The cost is a trade: every charger that connects after a restart must be checked, and a
fleet reconnects at once. N=2**12 (4 MiB, ~10 ms here) lets a 2-core server take ~150
new connections per second, while an AuthorizationKey is a 16-40 byte machine secret (the
Security Whitepaper has the CSMS generate it), not a human password. Hashes carry their
parameters, so they can be raised later without breaking stored ones. A charger that
reconnects to the same process is checked against an in-memory cache of keyed digests of
what verified, so it costs no scrypt at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_N, _R, _P = 2**12, 8, 1
_PREFIX = "scrypt"
MIN_KEY_BYTES, MAX_KEY_BYTES = 16, 40  # Security Whitepaper: AuthorizationKey 16-40 bytes


def key_problem(password: str) -> str | None:
    """Why ``password`` cannot be an AuthorizationKey, or None."""
    size = len(password.encode())
    if not MIN_KEY_BYTES <= size <= MAX_KEY_BYTES:
        return f"password must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes long"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in password):
        return "password must not contain control characters"
    return None


GENERATED_KEY_LENGTH = 24  # DESIGN 6: the key made for a charger registered without one


def generate_key() -> str:
    """A random AuthorizationKey (A01.FR.07): 24 URL-safe characters, 144 bits."""
    return secrets.token_urlsafe(GENERATED_KEY_LENGTH * 3 // 4)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "$".join((_PREFIX, str(_N), str(_R), str(_P), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _PREFIX:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class VerifiedCache:
    """Remembers which (charger, stored hash, key) triples verified, by a keyed digest."""

    def __init__(self, size: int = 100_000) -> None:
        self._key = secrets.token_bytes(32)
        self._seen: dict[str, str] = {}
        self._size = size

    def _digest(self, stored: str, password: str) -> str:
        return hmac.new(self._key, f"{stored}\0{password}".encode(), "sha256").hexdigest()

    def known(self, charger_id: str, stored: str, password: str) -> bool:
        return self._seen.get(charger_id) == self._digest(stored, password)

    def add(self, charger_id: str, stored: str, password: str) -> None:
        if len(self._seen) >= self._size:
            self._seen.pop(next(iter(self._seen)))
        self._seen[charger_id] = self._digest(stored, password)

    def forget(self, charger_id: str) -> None:
        self._seen.pop(charger_id, None)
