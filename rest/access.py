"""Who may call what: API keys, keys refused in the query string, and per-client rate limits."""

from __future__ import annotations

import hmac
import time

import redis
from flask import Request

from common import keys
from rest.errors import ApiError

_QUERY_KEY_NAMES = ("api_key", "apikey", "key", "token", "access_token")


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _may_write(api_keys: dict[str, bool], presented: str) -> bool | None:
    """Whether the key may write; None when it is not a key at all (compared in constant time)."""
    found = None
    for key, may_write in api_keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = may_write
    return found


def authorize(request: Request, api_keys: dict[str, bool], write: bool,
              protect_reads: bool) -> str | None:
    """Check the caller's key; returns it (or None when keys are off)."""
    if any(name in request.args for name in _QUERY_KEY_NAMES):
        raise ApiError(400, "API keys are not accepted in the query string; send "
                            "Authorization: Bearer <key>")
    if not api_keys or not (write or protect_reads):
        return None
    presented = _presented_key(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="micro-demucs"'}
    if presented is None:
        raise ApiError(401, "this route needs an API key: send Authorization: Bearer <key>",
                       headers=challenge)
    may_write = _may_write(api_keys, presented)
    if may_write is None:
        raise ApiError(401, "the API key is not valid", headers=challenge)
    if write and not may_write:
        raise ApiError(403, "this API key is read-only; submitting and removing need a "
                            "read-write key")
    return presented


def rate_limit(client: redis.Redis, who: str, per_minute: int) -> None:
    """Count one write for `who`; 429 with Retry-After once the minute's allowance is spent."""
    if per_minute <= 0:
        return
    now = time.time()
    minute = int(now // 60)
    counter = keys.rate(who, minute)
    pipe = client.pipeline()
    pipe.incr(counter)
    pipe.expire(counter, 120)
    count, _ = pipe.execute()
    if count > per_minute:
        retry_after = max(1, int(60 - now % 60))
        raise ApiError(429, f"rate limit reached: {per_minute} submissions per minute; "
                            f"retry in {retry_after} s",
                       headers={"Retry-After": str(retry_after)})
