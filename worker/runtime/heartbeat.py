"""Worker membership, all of it: a worker joins the `workers` set with its first heartbeat (a
Redis key with a short TTL, refreshed by a thread while it lives), and a reaper takes it out once
the heartbeat expired and the worker holds and owes nothing.

The first heartbeat is also when a worker is ready: it beats once its model is loaded, just
before it claims its first job (`beat_since`, for whoever starts workers and waits for them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from common import keys
from common.redisconn import TextReads

log = logging.getLogger("worker")


def beat(client: redis.Redis, worker_id: str, ttl_s: int) -> None:
    """Mark the worker alive for `ttl_s` seconds and registered as a holder of jobs."""
    pipe = client.pipeline()
    pipe.set(keys.heartbeat(worker_id), str(time.time()), ex=ttl_s)
    pipe.sadd(keys.WORKERS, worker_id)
    pipe.execute()


def is_alive(client: redis.Redis, worker_id: str) -> bool:
    """Whether the worker's heartbeat has not expired."""
    return bool(client.exists(keys.heartbeat(worker_id)))


def beat_since(client: redis.Redis, worker_id: str, since: float) -> bool:
    """Whether the worker beat at or after `since` (a Unix time): started and claiming."""
    last = TextReads(client).value(keys.heartbeat(worker_id))
    return last is not None and float(last) >= since


def members(client: redis.Redis) -> set[str]:
    """Every worker that joined and was not yet forgotten, alive or not."""
    return TextReads(client).members(keys.WORKERS)


def forget(client: redis.Redis, worker_id: str) -> None:
    """Take a dead worker out, once it holds and owes nothing (the reaper decides)."""
    client.srem(keys.WORKERS, worker_id)


class Heartbeat(threading.Thread):
    """Refreshes the heartbeat every third of its TTL, including while Demucs computes, as long
    as `check` finds nothing wrong: a worker whose loop hangs or whose reaper died lets its
    heartbeat expire, so its jobs are taken over and its liveness probe fails."""

    def __init__(self, client: redis.Redis, worker_id: str, ttl_s: int,
                 check: Callable[[], str | None] = lambda: None):
        super().__init__(name="heartbeat", daemon=True)
        self.client, self.worker_id, self.ttl_s = client, worker_id, ttl_s
        self.check = check
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            problem = self.check()
            try:
                if problem is None:
                    beat(self.client, self.worker_id, self.ttl_s)
                else:
                    log.error("heartbeat withheld: %s", problem)
            except redis.RedisError as error:
                log.warning("heartbeat not sent (Redis unavailable: %s)", error)
            self.stopped.wait(self.ttl_s / 3)

    def stop(self) -> None:
        """Stop beating and withdraw the heartbeat, once no job is held any more."""
        self.stopped.set()
        try:
            self.client.delete(keys.heartbeat(self.worker_id))
        except redis.RedisError:
            pass
