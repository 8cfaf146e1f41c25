"""Catalog, event selection (globs, ocpp.message) and endpoint field validation."""

from __future__ import annotations

import pytest

from tests.test_webhook_support import catalog
from webhooks.endpoints import (
    InvalidEndpoint,
    check_charger_ids,
    check_enabled_events,
    check_headers,
    check_status,
)
from webhooks.filters import pattern_matches, selects


def test_builtin_types_are_registered():
    names = [t.name for t in catalog()]
    assert names[:2] == ["webhook.test", "webhook.disabled"]
    assert "transaction.started" in catalog()


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*", "transaction.started", True),
        ("transaction.*", "transaction.started", True),
        ("transaction.*", "charger.boot", False),
        ("*.rejected", "remote_start_transaction.rejected", True),
        ("*", "ocpp.message", False),
        ("ocpp.*", "ocpp.message", False),
        ("ocpp.message", "ocpp.message", True),
        ("transaction.started", "transaction.started", True),
        ("Transaction.started", "transaction.started", False),
    ],
)
def test_pattern_matches(pattern, event_type, expected):
    assert pattern_matches(pattern, event_type) is expected


def test_selects_any_pattern():
    assert selects(["charger.boot", "ocpp.message"], "ocpp.message")
    assert not selects([], "charger.boot")


def test_enabled_events_are_checked_against_the_catalog():
    cat = catalog()
    assert check_enabled_events(["*", "*", "ocpp.message"], cat) == ("*", "ocpp.message")
    with pytest.raises(InvalidEndpoint, match=r"no event type matches 'transaction\.strated'"):
        check_enabled_events(["transaction.strated"], cat)
    with pytest.raises(InvalidEndpoint, match=r"nothing\.\*"):
        check_enabled_events(["nothing.*"], cat)
    with pytest.raises(InvalidEndpoint, match=r"ocpp\.m"):
        check_enabled_events(["ocpp.m*"], cat)  # a glob never reaches ocpp.message
    for bad in ([], "*", [1], [""]):
        with pytest.raises(InvalidEndpoint):
            check_enabled_events(bad, cat)


def test_headers_cannot_override_ours():
    assert check_headers({"X-Api-Key": "k"}) == {"X-Api-Key": "k"}
    assert check_headers(None) == {}
    for name in ("webhook-signature", "Webhook-Id", "content-type", "Host", "Content-Length"):
        with pytest.raises(InvalidEndpoint, match="set by the server"):
            check_headers({name: "x"})
    with pytest.raises(InvalidEndpoint, match="one-line"):
        check_headers({"X-A": "a\r\nInjected: yes"})
    with pytest.raises(InvalidEndpoint, match="valid header name"):
        check_headers({"bad name": "x"})


def test_status_and_charger_ids():
    assert check_status("inactive") == "inactive"
    with pytest.raises(InvalidEndpoint):
        check_status("disabled")  # only the server disables
    assert check_charger_ids(None) is None
    assert check_charger_ids(["A", "A", "B"]) == ("A", "B")
    with pytest.raises(InvalidEndpoint):
        check_charger_ids("A")
