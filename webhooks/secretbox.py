"""Endpoint secrets at rest: sealed with AES-256-GCM under a key kept outside the database.

We must sign with the plain secret, so it cannot be hashed like a password. Sealing it with a
key held in a separate file (mode 0600, created at first use) means a copied database file
alone gives no secret away; whoever has both files has them, as with any server that signs.
The endpoint id is the associated data, so a sealed secret cannot be moved to another row.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"
_NONCE_BYTES = 12


class SecretBoxError(RuntimeError):
    """The key file is missing, unreadable, or does not open a stored secret."""


class SecretBox:
    def __init__(self, key: bytes, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if len(key) != 32:
            raise SecretBoxError("the webhook secret key must be 32 bytes")
        self._aead = AESGCM(key)
        self._random_bytes = random_bytes

    def seal(self, plain: str, *, bound_to: str) -> str:
        nonce = self._random_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plain.encode(), bound_to.encode())
        return f"{_VERSION}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, bound_to: str) -> str:
        version, _, payload = sealed.partition(":")
        if version != _VERSION:
            raise SecretBoxError(f"unknown sealed secret format {version!r}")
        raw = base64.b64decode(payload)
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], bound_to.encode())
        except InvalidTag:
            raise SecretBoxError(
                f"the secret of {bound_to} does not open with this key file (wrong key?)"
            ) from None
        return plain.decode()


def load_or_create_key(path: str | None, *, create: bool) -> bytes:
    """Read the 32-byte key (base64) from ``path``; create it (0600) when allowed.

    ``create`` is False when sealed secrets already exist: a fresh key would not open them,
    so a missing file is an error that names it rather than a silent loss of every secret.
    ``path`` None (an in-memory database) gives a key that lives as long as the process.
    """
    if path is None:
        return os.urandom(32)
    file = Path(path)
    if file.exists():
        try:
            key = base64.b64decode(file.read_text().strip(), validate=True)
        except (OSError, ValueError) as exc:
            raise SecretBoxError(f"cannot read the webhook secret key file {path}: {exc}") from None
        if len(key) != 32:
            raise SecretBoxError(f"the webhook secret key file {path} does not hold 32 bytes")
        return key
    if not create:
        raise SecretBoxError(
            f"the webhook secret key file {path} is missing but endpoints with secrets sealed"
            " by it exist"
        )
    key = os.urandom(32)
    write_key_file(file, key)
    return key


def write_key_file(path: Path, key: bytes) -> None:
    """A new key file, mode 0600 from its creation, flushed to disk before it is used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode() + "\n")
        fh.flush()
        os.fsync(fh.fileno())
