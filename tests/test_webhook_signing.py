"""Standard Webhooks signatures and secrets; secrets sealed at rest."""

from __future__ import annotations

import base64
import os
import stat

import pytest
import standardwebhooks
import svix.webhooks

from webhooks.secretbox import SecretBox, SecretBoxError, load_or_create_key
from webhooks.signing import (
    SecretFormatError,
    new_secret,
    secret_key,
    signature,
    signature_header,
)


def test_signature_matches_the_reference_libraries():
    secret = new_secret(lambda n: bytes(range(n)))
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    body = b'{"id":"evt_1","type":"x"}'
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(int(__import__("time").time())),
    }
    headers["webhook-signature"] = signature_header(
        [secret_key(secret)], "evt_1", int(headers["webhook-timestamp"]), body
    )
    standardwebhooks.Webhook(secret).verify(body, headers)
    svix.webhooks.Webhook(secret).verify(body, headers)
    ref = standardwebhooks.Webhook(secret).sign("evt_1", _dt(headers), body.decode())
    assert ref == headers["webhook-signature"]


def _dt(headers):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)


def test_two_secrets_two_signatures():
    keys = [b"a" * 32, b"b" * 32]
    header = signature_header(keys, "evt_1", 1, b"{}")
    assert header.split(" ") == [signature(k, "evt_1", 1, b"{}") for k in keys]


@pytest.mark.parametrize(
    "secret",
    [
        "abc",
        "whsec_",
        "whsec_!!!notbase64",
        "whsec_" + base64.b64encode(b"short").decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ],
)
def test_bad_caller_secrets_are_refused(secret):
    with pytest.raises(SecretFormatError):
        secret_key(secret)


def test_secret_box_round_trip_and_binding():
    box = SecretBox(b"k" * 32)
    sealed = box.seal("whsec_abc", bound_to="wh_1")
    assert "whsec_abc" not in sealed
    assert box.open(sealed, bound_to="wh_1") == "whsec_abc"
    with pytest.raises(SecretBoxError):
        box.open(sealed, bound_to="wh_2")  # cannot be moved to another endpoint's row
    with pytest.raises(SecretBoxError):
        SecretBox(b"o" * 32).open(sealed, bound_to="wh_1")


def test_key_file_is_created_private_and_required_once_used(tmp_path):
    path = str(tmp_path / "csms.db.webhook-key")
    key = load_or_create_key(path, create=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path, create=False) == key
    os.remove(path)
    with pytest.raises(SecretBoxError, match="missing"):
        load_or_create_key(path, create=False)
