"""Who may call what: API keys, keys refused in the query string, and per-client rate limits.

`install` guards every route of a blueprint: a route is a write when its method changes
something (anything but GET, HEAD and OPTIONS) or when it is listed as a write by GET; writes
need a read-write key and are rate limited, reads need a key only with PROTECT_READS. Routes
added later get the same checks without doing anything.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

import redis
from flask import Blueprint, Request, current_app, g, request

from common import keys
from rest.errors import ApiError

# Query parameter names that look like credentials: api_key, apiKey, access-token, auth...
_CREDENTIAL_NAME = re.compile(r"key|token|auth|secret|passw", re.IGNORECASE)
_READ_METHODS = ("GET", "HEAD", "OPTIONS")


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
    if any(_CREDENTIAL_NAME.search(name) for name in request.args):
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


# A rolling window per client: at most ARGV[1] accepted writes and ARGV[2] refused ones in any
# ARGV[3] ms, timed by Redis's clock so that every REST replica agrees. A write takes a slot
# among the accepted (KEYS[1]) at once; if it is then refused, _REFUSED moves it to KEYS[2].
# Returns 0 when a slot was taken, else the ms until one frees (negative: refusals are full).
_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[3])
for i, limit in ipairs({tonumber(ARGV[1]), tonumber(ARGV[2])}) do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local wait = math.max(1, tonumber(oldest[2]) + window - now)
    if i == 2 then return -wait end
    return wait
  end
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""
_REFUSED = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
end
"""
_WINDOW_MS = 60_000
REFUSALS_PER_WRITE = 10  # a client may get this many refusals per allowed write


def take_slot(client: redis.Redis, who: str, per_minute: int) -> str | None:
    """Count one write for `who` (its slot id, or None with the limit off); 429 when full."""
    if per_minute <= 0:
        return None
    slot = uuid.uuid4().hex
    wait_ms = int(client.register_script(_TAKE_SLOT)(
        keys=[keys.rate(who), keys.rate_refused(who)],
        args=[per_minute, per_minute * REFUSALS_PER_WRITE, _WINDOW_MS, slot]))
    if wait_ms:
        retry_after = -(-abs(wait_ms) // 1000)  # whole seconds, rounded up
        what = (f"{per_minute} submissions per minute" if wait_ms > 0 else
                f"{per_minute * REFUSALS_PER_WRITE} refused requests per minute; fix them")
        raise ApiError(429, f"rate limit reached: {what}; retry in {retry_after} s",
                       headers={"Retry-After": str(retry_after)})
    return slot


def refused(client: redis.Redis, who: str, slot: str) -> None:
    """Count a write that was refused among the refusals instead of the accepted writes."""
    client.register_script(_REFUSED)(keys=[keys.rate(who), keys.rate_refused(who)],
                                     args=[slot, _WINDOW_MS])


def client_id(api_key: str | None) -> str:
    """Who is counted: the key when one is presented, else the client's address."""
    if api_key:
        return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return request.remote_addr or "unknown"


def install(blueprint: Blueprint, open_endpoints: set[str], writes_by_get: set[str]) -> None:
    """Check access before every route of `blueprint`; see the module's description."""

    @blueprint.before_request
    def guard():
        settings = current_app.config["SETTINGS"]
        write = request.method not in _READ_METHODS or request.endpoint in writes_by_get
        if request.endpoint in writes_by_get:
            allowed = ("DELETE",) if settings.remove_requires_delete else ("GET", "DELETE")
            if request.method not in allowed:  # HEAD must never change anything
                raise ApiError(405, f"use {' or '.join(allowed)} to remove",
                               headers={"Allow": ", ".join(allowed)})
        if request.endpoint in open_endpoints:
            return
        api_key = authorize(request, settings.api_keys, write, settings.protect_reads)
        if write:
            who = client_id(api_key)
            g.rate_slot = (who, take_slot(current_app.extensions["redis"], who,
                                          settings.rate_limit_per_min))

    @blueprint.after_request
    def uncount_refusals(response):
        who, slot = g.pop("rate_slot", (None, None))
        if slot is not None and response.status_code >= 400:
            try:
                refused(current_app.extensions["redis"], who, slot)
            except redis.RedisError:
                pass  # the slot stays counted as a write: the safe side
        return response
