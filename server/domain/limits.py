"""Abuse limits apart from any I/O: the address a request counts against, the paths that
do not count, and how long a refused client is told to wait.

The counting is atomic in the engine: ``ip_bucket.lua`` keeps a token bucket per client
address, and ``connection_open.lua`` a user's open room sockets, so both hold across
every server process sharing the engine.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import Any

# Probes and Prometheus scrapes hit these often and cheaply (a refused scrape is a gap in every
# graph); static files are the browser pages' assets. The payment webhooks (the sandbox's,
# Stripe's, the App Store's and Google Play's notifications) are signed (checked before any
# engine work) and come from the provider's few addresses in bursts, which a 429 would only
# turn into redeliveries and late coins or refunds.
EXEMPT_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/payments/webhook",
        "/v1/payments/stripe/webhook",
        "/v1/payments/apple/notifications",
        "/v1/payments/google/notifications",
    }
)
EXEMPT_PREFIXES = ("/static/",)
# The bucket shared by every client whose address is not an IP address.
UNKNOWN_ADDRESS = "unknown"
# One IPv6 subscriber usually holds a whole /64, so its addresses share one bucket.
IPV6_PREFIX = 64


def is_exempt(path: str) -> bool:
    """True for the paths the per-address request limit does not count."""
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


def address_in(host: str | None, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether the client ``host`` is an IP address in one of ``networks`` (an IPv4-mapped
    IPv6 address as its IPv4 address)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def client_address(client: Sequence[Any] | None) -> str | None:
    """The address an ASGI ``client`` (host, port) counts against; None if there is none.

    An IPv4 address as is; an IPv6 address as its /64 network, so one subscriber cannot step
    around the limit by changing the low bits; an IPv4-mapped IPv6 address as the IPv4
    address. A host that is not an IP address at all shares one bucket with every other
    such host. The result never contains a brace, so it can go into a hash tag.
    """
    if not client:
        return None
    return _address_of(str(client[0]))


@functools.lru_cache(maxsize=4096)
def _address_of(host: str) -> str:
    """``client_address`` of a host, parsed once per host however often it connects."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return UNKNOWN_ADDRESS
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # From the integer, so that a zone id (fe80::1%eth0) does not split the bucket.
        return str(ipaddress.IPv6Network((int(ip), IPV6_PREFIX), strict=False))
    return str(ip)


def retry_after_s(retry_after_ms: int) -> int:
    """The ``Retry-After`` seconds for a wait in milliseconds: rounded up, at least 1."""
    return max(1, -(-retry_after_ms // 1000))
