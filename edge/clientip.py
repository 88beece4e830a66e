"""Which address a request comes from, for per-IP rate limits and logs.

`X-Forwarded-For` is written by whoever sent the request, so it is believed only when the direct
peer is a trusted proxy (the load balancer, the CDN), and then only as far as the chain of
trusted proxies goes: each proxy appends the address it saw, so walking the header from the
right, the first address that is not a trusted proxy is the client. Anything further left was
written by the client itself and may be forged. The walk is bounded (`edge_forwarded_hops_max`)
and stops at an entry that is not an address (a proxy that wrote `unknown`, or garbage), where
the last address of the trusted chain stands in for the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from tessera import limits

__all__ = ["IPAddress", "Network", "client_ip", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"


def parse_networks(cidrs: Sequence[str]) -> list[Network]:
    """`["10.0.0.0/8", "::1"]` → networks (host bits allowed; a bare address is a /32 or /128).
    Raises ValueError naming a bad entry."""
    return [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs]


def parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it (`1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:443`), with
    IPv4-mapped IPv6 (`::ffff:1.2.3.4`) turned into IPv4 so one client has one key; else None."""
    text = text.strip()
    if text.startswith("["):  # [v6] or [v6]:port
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # v4:port (a bare IPv6 address has at least two colons)
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, trusted: Sequence[Network]) -> bool:
    # An IPv4 address is never "in" an IPv6 network and vice versa (the check is False).
    return any(address in network for network in trusted)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address as a normalised string (`peer` as given if it is not an address,
    e.g. a test client's name; "unknown" when there is no peer)."""
    if peer is None:
        return UNKNOWN
    peer_address = parse_address(peer)
    if peer_address is None:
        return peer
    if not forwarded_for or not _trusted(peer_address, trusted):
        return str(peer_address)
    client = peer_address
    # rsplit bounds the work however long the header is: only the last hops are looked at.
    hops = forwarded_for.rsplit(",", limits.edge_forwarded_hops_max)[
        -limits.edge_forwarded_hops_max :
    ]
    for entry in reversed(hops):
        address = parse_address(entry)
        if address is None:
            break
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)
