"""Running a worker as a process: its start (settings, Redis, logs, metrics), then the claim
loop until SIGTERM, which finishes the job in hand before the process exits."""

from __future__ import annotations

import logging
import os
import signal
import threading

import redis

from common.logship import setup_logging
from common.redisconn import connect
from common.settings import Settings
from worker.runtime.loop import ClaimLoop
from worker.runtime.metrics import WorkerMetrics

log = logging.getLogger("worker")


def start(service: str) -> tuple[Settings, redis.Redis, WorkerMetrics] | None:
    """What every worker process sets up first: its settings, a Redis client its logs are
    shipped through, and its metrics and /healthz served (the probes ask them from the start);
    None, the bad variable printed, when the configuration cannot be used."""
    settings = Settings.for_service(service)
    if settings is None:
        return None
    client = connect(settings, socket_timeout=10)
    setup_logging(settings, service, client)
    metrics = WorkerMetrics()
    metrics.serve(settings.metrics_port)
    return settings, client, metrics


def serve(worker: ClaimLoop, grace_s: float) -> None:
    """Run `worker` until SIGTERM or SIGINT: the first stops claiming and lets the job in hand
    finish within `grace_s`, after which it is handed back and the process exits; a second
    signal hands it back at once (a cold stop)."""

    def cold_stop() -> None:
        worker.hand_back_held()
        logging.shutdown()
        os._exit(0)

    def on_signal(signum: int, _frame=None) -> None:
        if worker.stopping.is_set():
            log.warning("signal %d again: handing back now", signum)
            cold_stop()
        log.info("signal %d: finishing the current job within %d s", signum, grace_s)
        worker.stop()
        timer = threading.Timer(grace_s, cold_stop)
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.run()
