"""Run with `python -m logs`; reconnects when Redis goes away."""

import sys
import time

import redis

from common.logship import follow
from common.redisconn import connect
from common.settings import Settings


def main() -> int:
    """Print the shipped log lines as they arrive, until interrupted."""
    settings = Settings.for_service("logs")
    if settings is None:
        return 2
    client = connect(settings, socket_timeout=15)
    while True:
        try:
            follow(client)
        except redis.RedisError as error:
            print(f"logs: Redis unavailable ({error}); retrying in 2 s", file=sys.stderr)
            time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
