"""Where we post: URL shape, global addresses only, checked again at connect time."""

from __future__ import annotations

import ipaddress

import pytest

from webhooks.targets import (
    TargetError,
    check_target,
    global_addresses,
    is_global_address,
    parse_url,
)


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
        "64:ff9b:1::1",
    ],
)
def test_non_global_addresses(address):
    assert not is_global_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_global_addresses(address):
    assert is_global_address(ipaddress.ip_address(address))


def test_url_shape():
    assert parse_url("https://example.com/x").port == 443
    assert parse_url("http://example.com:8080/x").port == 8080
    for bad in ("ftp://example.com", "example.com", "http://", "https://u:p@example.com/"):
        with pytest.raises(TargetError):
            parse_url(bad)


async def test_private_hosts_refused_unless_allowed():
    with pytest.raises(TargetError, match="non-public"):
        await check_target("http://127.0.0.1:9/x", allow_private=False)
    with pytest.raises(TargetError, match="non-public"):
        await check_target("http://localhost:9/x", allow_private=False)
    with pytest.raises(TargetError, match="non-public"):
        await check_target("http://[::ffff:192.168.0.1]/x", allow_private=False)
    assert (await check_target("http://localhost:9/x", allow_private=True)).host == "localhost"


async def test_the_connect_time_check_refuses_a_name_of_a_non_global_address():
    with pytest.raises(TargetError, match="non-public"):
        await global_addresses("localhost", 80)
