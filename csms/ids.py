"""Fresh identifiers: event ids, command ids, transaction ids.

Event ids are ``evt_`` + 16 base62 characters (no ``.``, as DESIGN 4 asks, so they can stand
in the Standard Webhooks signed content ``{id}.{timestamp}.{body}`` unambiguously).
"""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


class _RandomBytes:
    """CSPRNG bytes read 8 KiB at a time: one ``os.urandom`` per event id was a measurable
    share of the hot path."""

    def __init__(self, chunk: int = 8192) -> None:
        self._chunk = chunk
        self._buffer = b""
        self._offset = 0

    def take(self, size: int) -> bytes:
        if self._offset + size > len(self._buffer):
            self._buffer, self._offset = secrets.token_bytes(max(self._chunk, size)), 0
        start = self._offset
        self._offset += size
        return self._buffer[start : self._offset]


_random_bytes = _RandomBytes()


def random_id(prefix: str, length: int = 16) -> str:
    """``prefix`` + ``length`` base62 characters from CSPRNG bytes (~95 bits for 16)."""
    number = int.from_bytes(_random_bytes.take(length), "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return prefix + "".join(chars)


class IdSource:
    """Implements ``csms.protocol.state.Ids`` for the running server.

    Transaction ids count up from the largest one stored; one process owns the store, so an
    in-memory counter is enough, and an id taken by a unit that failed to commit is a gap,
    never a duplicate.
    """

    def __init__(self, last_transaction_id: int) -> None:
        self._last_transaction_id = last_transaction_id

    def transaction_id(self) -> int:
        self._last_transaction_id += 1
        return self._last_transaction_id

    def event_id(self) -> str:
        return random_id("evt_")

    def command_id(self) -> str:
        return random_id("cmd_")
