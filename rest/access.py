"""Who may call what: API keys, keys refused in the query string, and per-client rate limits."""

from __future__ import annotations

import hmac
import uuid

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


# A rolling window: at most ARGV[1] writes in any ARGV[2] ms, timed by Redis's clock so that
# every REST replica agrees. Returns 0 when the write is counted, else the ms until a slot frees.
_ROLLING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""
_WINDOW_MS = 60_000


def rate_limit(client: redis.Redis, who: str, per_minute: int) -> None:
    """Count one write for `who`; 429 with Retry-After while `per_minute` fell in the last 60 s."""
    if per_minute <= 0:
        return
    wait_ms = client.register_script(_ROLLING_WINDOW)(
        keys=[keys.rate(who)], args=[per_minute, _WINDOW_MS, uuid.uuid4().hex])
    if wait_ms:
        retry_after = -(-int(wait_ms) // 1000)  # whole seconds, rounded up
        raise ApiError(429, f"rate limit reached: {per_minute} submissions per minute; "
                            f"retry in {retry_after} s",
                       headers={"Retry-After": str(retry_after)})
