"""Admin API bearer tokens: which ones the API accepts, and making and revoking stored ones.

Tokens in ``[api] tokens`` are the only ones accepted when set: the configuration is then the
single truth. Otherwise the store's tokens are: the one generated at first start and those of
``csms token create``. Only SHA-256 digests are kept; a token is shown once, when made.
A running server re-reads the stored ones, so a token made or revoked by the CLI in another
process takes effect within ``REFRESH_S``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from csms.protocol.timefmt import format_timestamp
from storage.records import ApiToken, Delete, UnitOfWork
from storage.store import Store

TOKEN_PREFIX = "chk_"
HINT_LENGTH = 8  # "chk_" and four characters: enough to tell tokens apart in a list
REFRESH_S = 1.0  # how stale the stored tokens a running server accepts may be
MISS_REFRESH_S = 0.1  # on an unknown token, re-read unless read this recently


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just made: ``token`` is shown now and never again."""

    record: ApiToken
    token: str


FIRST_TOKEN_ID = "tok_generated"  # the one made at first start: easy to name when retiring it


async def create_token(store: Store, label: str, token_id: str | None = None) -> NewToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        id=token_id or "tok_" + secrets.token_hex(6),
        digest=token_digest(token),
        hint=token[:HINT_LENGTH],
        label=label,
        created_at=format_timestamp(datetime.now(UTC)),
    )
    await store.commit(UnitOfWork().put(record))
    return NewToken(record, token)


async def revoke_token(store: Store, token_id: str) -> bool:
    """Forget a stored token; False when no token has that id."""
    if not any(t.id == token_id for t in await store.list_api_tokens()):
        return False
    await store.commit(UnitOfWork().put(Delete("api_tokens", token_id)))
    return True


class TokenCheck:
    """Answers whether a bearer token is accepted, for the admin API's auth middleware."""

    def __init__(
        self,
        configured: Sequence[str],
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._configured = [token_digest(t) for t in configured]
        self._store = store
        self._clock = clock
        self._stored: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def uses_stored_tokens(self) -> bool:
        return not self._configured

    async def accepts(self, token: str) -> bool:
        digest = token_digest(token)
        if self._configured:
            return any(hmac.compare_digest(digest, known) for known in self._configured)
        await self._refresh(REFRESH_S)
        if digest in self._stored:
            return True
        await self._refresh(MISS_REFRESH_S)  # made by `csms token create` a moment ago?
        return digest in self._stored

    async def _refresh(self, max_age: float) -> None:
        if self._clock() - self._read_at <= max_age:
            return
        async with self._lock:
            if self._clock() - self._read_at <= max_age:
                return  # another request re-read them while this one waited
            tokens = await self._store.list_api_tokens()
            self._stored = frozenset(t.digest for t in tokens)
            self._read_at = self._clock()
