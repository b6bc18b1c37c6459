"""Logging to stdout and to the bounded Redis list `logging`.

Each line pushed reads `<host>.<service>.<level>:<message>`; the list is trimmed to the
newest LOG_LIST_MAX lines. A Redis outage never breaks logging: the line still reaches stdout.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import redis

from common import keys
from common.settings import Settings

_HANDLER_NAME = "micro-demucs"  # ours: replaced, not doubled, when set up again


class RedisListHandler(logging.Handler):
    """Pushes each record onto the `logging` list, dropping it if Redis is unreachable."""

    def __init__(self, client: redis.Redis, host: str, service: str, max_length: int):
        super().__init__()
        self.client = client
        self.prefix = f"{host}.{service}"
        self.max_length = max_length

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{self.prefix}.{record.levelname.lower()}:{self.format(record)}"
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(keys.LOGGING, line)
            pipe.ltrim(keys.LOGGING, -self.max_length, -1)
            pipe.execute()
        except redis.RedisError:
            pass  # stdout has the line; the list is best effort by design


def setup_logging(settings: Settings, service: str, client: redis.Redis) -> logging.Logger:
    """Configure the root logger for a service; returns the service's logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    shipped = RedisListHandler(client, settings.hostname, service, settings.log_list_max)
    for handler in (stdout, shipped):
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Libraries' chatter stays out of the shared list.
    for noisy in ("urllib3", "werkzeug", "botocore", "demucs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(service)


def follow(client: redis.Redis, out: TextIO | None = None, timeout: float = 5.0,
           once: bool = False) -> None:
    """Print log lines as they arrive, oldest first; `once` stops when the list is empty."""
    out = out or sys.stdout
    while True:
        item = client.blpop([keys.LOGGING], timeout=timeout)
        if item is None:
            if once:
                return
            continue
        print(item[1], file=out, flush=True)
