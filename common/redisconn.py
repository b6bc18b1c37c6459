"""The one way both services open a Redis connection."""

from __future__ import annotations

import redis

from common.settings import Settings


def connect(settings: Settings, socket_timeout: float = 5.0) -> redis.Redis:
    """A client with short timeouts, so that an outage shows up as an error in seconds."""
    return redis.Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=socket_timeout,
        health_check_interval=15,
    )
