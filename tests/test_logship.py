"""Log lines reach stdout and the bounded list `logging` as <host>.<service>.<level>:<message>."""

import io
import logging
from contextlib import redirect_stdout

import redis

from common.logship import RedisListHandler, follow, setup_logging


def test_lines_are_pushed_in_the_agreed_format_and_the_list_is_bounded(make_settings,
                                                                        redis_client):
    settings = make_settings(LOG_LIST_MAX="5")
    log = setup_logging(settings, "rest", redis_client)
    try:
        for number in range(8):
            log.warning("line %d", number)
        lines = redis_client.lrange("logging", 0, -1)
        assert lines == [f"{settings.hostname}.rest.warning:line {n}" for n in range(3, 8)]
        printed = io.StringIO()
        with redirect_stdout(printed):
            follow(redis_client, timeout=1, once=True)
        assert printed.getvalue().splitlines() == lines
        assert redis_client.llen("logging") == 0
    finally:
        for handler in list(logging.getLogger().handlers):
            if handler.get_name() == "micro-demucs":
                logging.getLogger().removeHandler(handler)


def test_a_redis_outage_does_not_break_logging():
    from scripts.stack import free_port

    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    handler = RedisListHandler(client, "host", "worker", 10)
    record = logging.LogRecord("worker", logging.ERROR, __file__, 1, "lost", None, None)
    handler.emit(record)  # must not raise
