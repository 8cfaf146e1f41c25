"""Recovery from a lost secret key file: a new key, and a new secret for every endpoint.

Without the key the stored secrets cannot be opened, so the server refuses to start (it
would sign with nothing). When no backup of the key exists, the only way on is new secrets,
which every receiver then needs: ``csms webhooks reset-secrets`` prints each one once.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from storage import webhook_tables as tables
from storage.records import UnitOfWork
from storage.store import Store
from webhooks import secretbox
from webhooks.signing import new_secret
from webhooks.timefmt import iso_utc


class RekeyRefused(Exception):
    """The key file still opens every secret: nothing is lost, so nothing is reset."""


@dataclass(frozen=True, slots=True)
class NewSecret:
    endpoint_id: str
    url: str
    secret: str


async def reset_secrets(store: Store, key_file: str) -> list[NewSecret]:
    """Write a new key to ``key_file`` and give every endpoint a new secret sealed with it.

    An unusable old key file is kept beside the new one (``.unusable-<time>``), never
    deleted. The secrets are committed before the new key takes the file's place: a crash
    in between leaves the old state or a key file that a second run replaces again.
    """
    rows = await tables.load_endpoints(store)
    path = Path(key_file)
    if rows and _opens_all(path, rows):
        raise RekeyRefused(
            f"the key file {key_file} opens every endpoint's secret; nothing to reset"
            " (rotate one secret with POST /api/v1/webhooks/{id}/rotate-secret)"
        )
    key = os.urandom(32)
    box = secretbox.SecretBox(key)
    now = iso_utc(time.time())
    fresh = []
    unit = UnitOfWork()
    for row in rows:
        secret = new_secret(secrets.token_bytes)
        fresh.append(NewSecret(row.id, row.url, secret))
        sealed = box.seal(secret, bound_to=row.id)
        unit.put(
            tables.put_endpoint(
                dataclasses.replace(
                    row,
                    secret=sealed,
                    previous_secret=None,
                    previous_secret_expires=None,
                    updated_at=now,
                )
            )
        )
    staged = path.with_name(path.name + ".new")
    staged.unlink(missing_ok=True)
    secretbox.write_key_file(staged, key)
    await store.commit(unit)
    _install(staged, path)
    return fresh


def _install(staged: Path, path: Path) -> None:
    if path.exists():
        path.rename(path.with_name(f"{path.name}.unusable-{int(time.time())}"))
    staged.rename(path)


def _opens_all(path: Path, rows: list[tables.EndpointRow]) -> bool:
    if not path.exists():
        return False
    try:
        box = secretbox.SecretBox(secretbox.load_or_create_key(str(path), create=False))
        for row in rows:
            box.open(row.secret, bound_to=row.id)
    except secretbox.SecretBoxError:
        return False
    return True
