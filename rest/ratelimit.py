"""Per-client rate limits: a rolling window of accepted writes and one of refused ones, kept in
Redis so that every gateway process and replica counts together; the scripts are loaded once."""

from __future__ import annotations

import uuid

import redis

from common import keys
from rest.errors import ApiError

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


class RateLimiter:
    """RATE_LIMIT_PER_MIN writes per client (submissions, removals, new renditions)."""

    def __init__(self, client: redis.Redis, per_minute: int):
        self.per_minute = per_minute
        self._take = client.register_script(_TAKE_SLOT)
        self._refused = client.register_script(_REFUSED)

    def take(self, who: str) -> str | None:
        """Count one write for `who` (its slot id, or None with the limit off); 429 when full."""
        if self.per_minute <= 0:
            return None
        slot = uuid.uuid4().hex
        wait_ms = int(self._take(keys=[keys.rate(who), keys.rate_refused(who)],
                                 args=[self.per_minute, self.per_minute * REFUSALS_PER_WRITE,
                                       _WINDOW_MS, slot]))
        if wait_ms:
            retry_after = -(-abs(wait_ms) // 1000)  # whole seconds, rounded up
            what = (f"{self.per_minute} writes (submissions, removals, new renditions) per "
                    "minute" if wait_ms > 0 else
                    f"{self.per_minute * REFUSALS_PER_WRITE} refused requests per minute; "
                    "fix them")
            raise ApiError(429, f"rate limit reached: {what}; retry in {retry_after} s",
                           headers={"Retry-After": str(retry_after)})
        return slot

    def refused(self, who: str, slot: str) -> None:
        """Count a write that was refused among the refusals instead of the accepted writes."""
        self._refused(keys=[keys.rate(who), keys.rate_refused(who)], args=[slot, _WINDOW_MS])
