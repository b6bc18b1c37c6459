"""Log lines reach stdout and the bounded list `logging` as <host>.<service>.<level>:<message>."""

import io
import logging
from contextlib import redirect_stdout

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.logship import follow, setup_logging
from scripts.local.stack import free_port


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
        remove_our_handlers()


def test_a_redis_outage_drops_the_shipped_line_but_not_the_printed_one(make_settings):
    settings = make_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    # No retries: the outage is what is tested, not redis-py's patience with it.
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=0.2,
                                  retry=Retry(NoBackoff(), 0))
    printed = io.StringIO()
    try:
        with redirect_stdout(printed):
            log = setup_logging(settings, "worker", client)
            log.error("lost %d", 1)
            log.info("and the next line too")
    finally:
        remove_our_handlers()
        client.close()
    assert [line.split(" ", 2)[2] for line in printed.getvalue().splitlines()] == [
        "worker ERROR lost 1", "worker INFO and the next line too"]


def remove_our_handlers() -> None:
    for handler in list(logging.getLogger().handlers):
        if handler.get_name() == "micro-demucs":
            logging.getLogger().removeHandler(handler)
