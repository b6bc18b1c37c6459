"""Sending a job's callback: safe destinations only, signed, retried, never followed.

The host name is resolved here and the request goes to the checked address itself, so a
name that resolves to a private address (or changes between check and use) is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
from urllib.parse import urlsplit

import urllib3

from common.netguard import UnsafeUrl, address_allowed, check_callback_url, literal_address
from common.settings import Settings

log = logging.getLogger("worker")
BACKOFF_S = 0.5  # before the second attempt; doubled before each one after


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over `<timestamp>.<body>`, hex, as sent in X-Signature."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _safe_address(host: str, port: int, allow_private: bool) -> str:
    """The first address of `host`, after checking every address it resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        log.warning("callback host %s does not resolve: %s", host, error)
        raise UnsafeUrl(f"cannot resolve {host}") from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        literal = literal_address(address)
        if literal is None or not address_allowed(literal, allow_private):
            # What internal names resolve to stays in the log; the job record (which anyone
            # with the hash may read) says only that it was refused.
            log.warning("callback host %s resolves to the non-public address %s", host, address)
            raise UnsafeUrl(f"{host} resolves to a non-public address")
    return addresses[0]


def _host_header(host: str, port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port in (80, 443) else f"{name}:{port}"


def _pool(scheme: str, host: str, address: str, port: int,
          timeout: float) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to the checked address, no retries (send() retries)."""
    limit = urllib3.Timeout(total=timeout)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(address, port, server_hostname=host,
                                           assert_hostname=host, timeout=limit, retries=False,
                                           maxsize=1)
    return urllib3.HTTPConnectionPool(address, port, timeout=limit, retries=False, maxsize=1)


def send(url: str, data: object, delivery_id: str, settings: Settings, *,
         backoff_s: float = BACKOFF_S) -> str:
    """Deliver `data` as JSON; returns what happened, for the job record. Never raises.

    Attempts after a failure wait `backoff_s`, then twice as long each time."""
    try:
        scheme, host, port = check_callback_url(url, settings.callback_allow_private)
        address = _safe_address(host, port, settings.callback_allow_private)
    except UnsafeUrl as error:
        return f"refused: {error}"
    body = json.dumps(data).encode()
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    outcome = "failed: not attempted"
    for attempt in range(1, settings.callback_retries + 1):
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": "micro-demucs",
                   "Host": _host_header(host, port),
                   "X-Delivery-Id": delivery_id, "X-Timestamp": timestamp}
        if settings.callback_secret:
            digest = signature(settings.callback_secret, timestamp, body)
            headers["X-Signature"] = f"sha256={digest}"
        try:
            with _pool(scheme, host, address, port, settings.callback_timeout_s) as pool:
                response = pool.urlopen("POST", path, body=body, headers=headers, redirect=False,
                                        assert_same_host=False, release_conn=True)
        except urllib3.exceptions.HTTPError as error:
            outcome = f"failed: {type(error).__name__} on attempt {attempt}"
        else:
            if 200 <= response.status < 300:
                return f"delivered: HTTP {response.status}"
            outcome = f"failed: HTTP {response.status}"
            if response.status < 500 and response.status != 429:
                if 300 <= response.status < 400:
                    outcome += " (redirects are not followed)"
                return outcome  # the receiver refused it; sending again will not help
        if attempt < settings.callback_retries:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    return outcome
