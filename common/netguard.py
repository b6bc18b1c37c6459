"""Which callback URLs and addresses may be contacted.

Checked twice: when a song is submitted (scheme, length, literal addresses) and when the
callback is sent (every address the host name resolves to), so a DNS name that points at
a private address later is still refused.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# IPv6 ranges whose last 32 bits are an IPv4 address a gateway or the host would reach:
# IPv4-compatible (::a.b.c.d), IPv4-translated (SIIT) and the well-known NAT64 prefix.
_EMBEDDING_IPV4 = [ipaddress.ip_network(net) for net in
                   ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")]
# The local-use NAT64 prefix embeds IPv4 at an operator-chosen place: never public.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


class UnsafeUrl(ValueError):
    """The callback URL may not be used; the message says why."""


def literal_address(host: str) -> IPAddress | None:
    """The address a host name spells literally, including forms like 0x7f000001 or 2130706433."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        # inet_aton accepts the legacy spellings (hex, octal, a single integer) that
        # resolvers and HTTP clients accept too.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to (mapped, compatible, NAT64, 6to4, Teredo)."""
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if any(address in network for network in _EMBEDDING_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_allowed(address: IPAddress, allow_private: bool) -> bool:
    """Public addresses always; loopback, private, link-local and the like only when allowed."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return allow_private
        if address != ipaddress.IPv6Address("::1"):  # loopback, not the IPv4 0.0.0.1
            address = _embedded_ipv4(address) or address
    if address.is_multicast or address.is_unspecified:
        return False
    return address.is_global or allow_private


def check_callback_url(url: str, allow_private: bool) -> tuple[str, str, int]:
    """Validate a callback URL; returns (scheme, host, port) or raises UnsafeUrl."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"callback.url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UnsafeUrl(f"callback.url is not a valid URL: {error}") from None
    if port == 0:  # urlsplit refuses only ports above 65535; 0 would mean the default port
        raise UnsafeUrl("callback.url has port 0; use a port from 1 to 65535")
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("callback.url must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("callback.url must not carry a user name or password")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("callback.url has no host name")
    if any(ord(char) < 33 for char in url):
        raise UnsafeUrl("callback.url must not contain spaces or control characters")
    address = literal_address(host)
    if address is not None and not address_allowed(address, allow_private):
        raise UnsafeUrl(f"callback.url points at a non-public address ({address}); "
                        "the operator has not allowed private callback destinations")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)
