"""Which address a request is charged to (edge/clientip.py)."""

from __future__ import annotations

import ipaddress

import pytest

from edge.clientip import client_ip, parse_address, parse_networks
from tessera import limits

TRUSTED = parse_networks(["10.0.0.0/8", "127.0.0.1", "2001:db8:ffff::/48"])


def test_parse_networks() -> None:
    assert parse_networks([" 10.1.2.3/8 ", "::1", "192.0.2.9"]) == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("192.0.2.9/32"),
    ]
    with pytest.raises(ValueError, match="not-a-network"):
        parse_networks(["not-a-network"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        # No proxy involved.
        ("203.0.113.5", None, "203.0.113.5"),
        ("203.0.113.5", "", "203.0.113.5"),
        # An untrusted peer's X-Forwarded-For is whatever the client wanted: ignored.
        ("203.0.113.5", "198.51.100.1", "203.0.113.5"),
        ("203.0.113.5", "10.0.0.1", "203.0.113.5"),
        # The load balancer appended the address it saw.
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", " 198.51.100.1 ", "198.51.100.1"),
        # A client that forged entries: the right-most untrusted one is what our proxy saw.
        ("10.0.0.2", "6.6.6.6, 7.7.7.7, 198.51.100.1", "198.51.100.1"),
        # CDN → load balancer → edge: trusted hops are skipped from the right.
        ("10.0.0.2", "198.51.100.1, 10.9.9.9, 10.0.0.3", "198.51.100.1"),
        ("10.0.0.2", "1.1.1.1, 198.51.100.1, 10.9.9.9", "198.51.100.1"),
        # Everything trusted (an internal caller): the left-most address of the chain.
        ("10.0.0.2", "10.0.0.7, 10.0.0.3", "10.0.0.7"),
        # Garbage stops the walk at the last trusted address seen, or the peer.
        ("10.0.0.2", "198.51.100.1, unknown", "10.0.0.2"),
        ("10.0.0.2", "198.51.100.1, unknown, 10.0.0.3", "10.0.0.3"),
        ("10.0.0.2", "198.51.100.1,,10.0.0.3", "10.0.0.3"),
        ("10.0.0.2", "1.2.3.4.5", "10.0.0.2"),
        ("10.0.0.2", "<script>", "10.0.0.2"),
        ("10.0.0.2", "[2001:db8::1", "10.0.0.2"),
        # Ports, as some proxies write them.
        ("10.0.0.2", "198.51.100.1:4711", "198.51.100.1"),
        ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
        # IPv6, normalised; IPv4-mapped IPv6 is the IPv4 address.
        ("2001:db8:ffff::1", "2001:DB8:0:0::5", "2001:db8::5"),
        ("2001:db8:ffff::1", "2001:db8:ffff::2, 2001:db8::5", "2001:db8::5"),
        ("::ffff:203.0.113.5", "198.51.100.1", "203.0.113.5"),
        ("::ffff:10.0.0.2", "::ffff:198.51.100.1", "198.51.100.1"),
        ("2001:0db8:0000::0001", None, "2001:db8::1"),
        # Not an address at all (a test client's name): kept, and its header not believed.
        ("testclient", "198.51.100.1", "testclient"),
        (None, "198.51.100.1", "unknown"),
    ],
)
def test_client_ip(peer: str | None, forwarded_for: str | None, expected: str) -> None:
    assert client_ip(peer, forwarded_for, TRUSTED) == expected


def test_nothing_trusted_means_the_peer() -> None:
    assert client_ip("127.0.0.1", "198.51.100.1", []) == "127.0.0.1"


def test_the_walk_is_bounded() -> None:
    hops = limits.edge_forwarded_hops_max
    trusted_chain = ", ".join(f"10.0.{i // 256}.{i % 256}" for i in range(hops))
    # The client is one hop beyond the bound: the walk gives up on the last trusted address.
    assert client_ip("10.0.0.2", f"198.51.100.1, {trusted_chain}", TRUSTED) == "10.0.0.0"
    # Within the bound it is found.
    shorter = ", ".join(f"10.0.0.{i}" for i in range(hops - 1))
    assert client_ip("10.0.0.2", f"198.51.100.1, {shorter}", TRUSTED) == "198.51.100.1"
    # A huge header costs no more than its last hops.
    huge = "198.51.100.1, " * 100_000 + "203.0.113.9"
    assert client_ip("10.0.0.2", huge, TRUSTED) == "203.0.113.9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1:80 ", "192.0.2.1"),
        ("[::1]", "::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("unknown", None),
        ("", None),
        ("192.0.2.1:80:90", None),
    ],
)
def test_parse_address(text: str, expected: str | None) -> None:
    address = parse_address(text)
    assert (None if address is None else str(address)) == expected
