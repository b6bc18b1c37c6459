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


def address_allowed(address: IPAddress, allow_private: bool) -> bool:
    """Public addresses always; loopback, private, link-local and the like only when allowed."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
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
