"""Retrying an action through Redis and object-store outages, with exponential backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from common.storage import StorageError

log = logging.getLogger("worker")
T = TypeVar("T")


def retry(action: Callable[[], T], what: str, attempts: int = 6, first_wait: float = 0.5) -> T:
    """Run `action`, retrying Redis and object-store outages; the last failure is raised."""
    wait = first_wait
    for attempt in range(1, attempts):
        try:
            return action()
        except (redis.RedisError, StorageError) as error:
            log.warning("%s failed (%s); retry %d/%d in %.1f s", what, error, attempt,
                        attempts - 1, wait)
            time.sleep(wait)
            wait = min(wait * 2, 10)
    return action()
