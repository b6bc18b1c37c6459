"""The one way both services open a Redis connection, and typed reads of its replies."""

from __future__ import annotations

from typing import cast

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


class TextReads:
    """Reads of a client that decodes its replies, typed as the `str` they are.

    redis-py types every reply `bytes | str`, whatever the client; the casts live here, once,
    behind a check that the client really decodes (decode_responses=True, as `connect` sets).
    """

    def __init__(self, client: redis.Redis):
        if not client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("the Redis client must decode its replies (decode_responses=True)")
        self.client = client

    def hash(self, key: str) -> dict[str, str]:
        """Every field of a hash ({} when the key does not exist)."""
        return cast("dict[str, str]", self.client.hgetall(key))

    def field(self, key: str, name: str) -> str | None:
        """One field of a hash."""
        return cast("str | None", self.client.hget(key, name))

    def items(self, key: str) -> list[str]:
        """Every entry of a list, head first."""
        return cast("list[str]", self.client.lrange(key, 0, -1))

    def members(self, key: str) -> set[str]:
        """Every member of a set."""
        return cast("set[str]", self.client.smembers(key))

    def value(self, key: str) -> str | None:
        """A string key's value."""
        return cast("str | None", self.client.get(key))
