"""Prometheus metrics at /metrics: the cluster's jobs, read from Redis at each scrape, and this
gateway's HTTP requests.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR makes each process write its counters to files there,
and a scrape (answered by any one process) sums them all (rest/gunicorn.conf.py clears the
folder at start and forgets dead processes).
"""

from __future__ import annotations

import os
import time

import redis
from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from common import keys
from common.jobs import JobStore
from common.settings import Settings


class JobFigures(Collector):
    """Queue lengths, jobs in flight and jobs ended, from Redis, for the whole deployment."""

    def __init__(self, jobs: JobStore, settings: Settings):
        self.jobs = jobs
        self.queues = [keys.separation_queue(model, settings.default_model)
                       for model in settings.demucs_models] + [keys.RENDER_QUEUE]

    def collect(self):
        up = GaugeMetricFamily("micro_demucs_redis_up", "Whether Redis answered this scrape")
        try:
            figures = self._figures()
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from figures

    def _figures(self) -> list:
        waiting = GaugeMetricFamily("micro_demucs_queue_length", "Jobs waiting, per queue",
                                    labels=["queue"])
        running = GaugeMetricFamily("micro_demucs_jobs_in_flight",
                                    "Jobs being worked on, per queue", labels=["queue"])
        for queue in self.queues:
            waiting.add_metric([queue], self.jobs.queue_length(queue))
            running.add_metric([queue], len(self.jobs.in_flight(queue)))
        ended = CounterMetricFamily("micro_demucs_jobs_finished",
                                    "Jobs ended, by outcome (done, failed, cancelled) and reason",
                                    labels=["outcome", "reason"])
        for key, count in sorted(self.jobs.finished_counts().items()):
            outcome, _, reason = key.partition(":")
            ended.add_metric([outcome, reason], count)
        return [waiting, running, ended]


def init_metrics(app: Flask) -> None:
    """Count and time every request, and serve /metrics."""
    registry = CollectorRegistry()
    requests = Counter("micro_demucs_http_requests", "HTTP requests answered",
                       ["route", "method", "status"], registry=registry)
    latency = Histogram("micro_demucs_http_request_duration_seconds",
                        "Time to answer an HTTP request (to its first byte when streamed)",
                        ["route", "method"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
    figures = JobFigures(app.extensions["jobs"], app.config["SETTINGS"])
    registry.register(figures)

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        # The route's pattern, not the path: one series per route, not per song.
        route = request.url_rule.rule if request.url_rule else "unmatched"
        requests.labels(route, request.method, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            latency.labels(route, request.method).observe(time.perf_counter() - started)
        return response

    def metrics() -> Response:
        scraped = registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            scraped = CollectorRegistry()
            multiprocess.MultiProcessCollector(scraped)
            scraped.register(figures)
        return Response(generate_latest(scraped), content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
