"""A worker's own Prometheus metrics, served with /healthz on METRICS_PORT.

/healthz is the liveness probe: 200 while the process works, 503 once the check it watches
(the claim loop's, `ClaimLoop.unhealthy`) finds it stalled, so that Kubernetes restarts a
worker that hangs. Redis is not part of it: a loop that cannot reach Redis keeps ticking while
it retries, and a Redis failover must not restart workers (and lose their songs).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("worker")

_SECONDS = (1, 2.5, 5, 10, 20, 40, 60, 120, 300, 600, 1200, 2400, 3600)
_RATES = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _GpuMemory(Collector):
    """CUDA memory of this process, read at each scrape; nothing when torch has no CUDA."""

    def collect(self):
        torch = sys.modules.get("torch")  # the render worker never imports it
        if torch is None or not torch.cuda.is_available():
            return
        family = GaugeMetricFamily("micro_demucs_worker_gpu_memory_bytes",
                                   "CUDA memory of this worker", labels=["kind"])
        family.add_metric(["allocated"], torch.cuda.memory_allocated())
        family.add_metric(["reserved"], torch.cuda.memory_reserved())
        family.add_metric(["peak"], torch.cuda.max_memory_allocated())
        yield family


class WorkerMetrics:
    """The figures one worker process keeps; `serve` publishes them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.separation = Histogram(
            "micro_demucs_worker_separation_seconds", "Time the model took per song",
            ["model"], buckets=_SECONDS, registry=self.registry)
        self.rate = Histogram(
            "micro_demucs_worker_realtime_factor",
            "Audio seconds separated per second of separation", ["model"], buckets=_RATES,
            registry=self.registry)
        self.model_load = Gauge("micro_demucs_worker_model_load_seconds",
                                "Time the model took to load", ["model"],
                                registry=self.registry)
        self.busy = Gauge("micro_demucs_worker_busy", "1 while a job runs, 0 while idle",
                          registry=self.registry)
        self.batch = Gauge("micro_demucs_worker_batch_size", "Segments per forward pass",
                           registry=self.registry)
        self.jobs = Counter("micro_demucs_worker_jobs", "Jobs this worker ended, by outcome",
                            ["outcome"], registry=self.registry)
        self.registry.register(_GpuMemory())
        self._server: WSGIServer | None = None
        # Until the claim loop starts (model loading, start-up retries) the startup probe
        # governs and /healthz answers 200.
        self._liveness: Callable[[], str | None] = lambda: None

    def watch(self, check: Callable[[], str | None]) -> None:
        """From now on /healthz fails while `check` names a problem."""
        self._liveness = check

    def loaded(self, model: str, seconds: float, batch: int) -> None:
        """Record the model's load time and the batch size it runs with."""
        self.model_load.labels(model).set(seconds)
        self.batch.set(batch)

    def separated(self, model: str, seconds: float, audio_seconds: float) -> None:
        """Record one song's separation time and its real-time factor."""
        self.separation.labels(model).observe(seconds)
        if seconds > 0:
            self.rate.labels(model).observe(audio_seconds / seconds)

    @contextmanager
    def working(self) -> Iterator[None]:
        """Busy for the duration of the block."""
        self.busy.set(1)
        try:
            yield
        finally:
            self.busy.set(0)

    def serve(self, port: int, host: str = "0.0.0.0") -> int:
        """Serve /metrics and /healthz from a daemon thread; returns the port (0: none)."""
        if not port:
            return 0
        metrics = make_wsgi_app(self.registry)

        def app(environ, start_response):
            if environ.get("PATH_INFO") == "/healthz":
                problem = self._liveness()
                status = "503 Service Unavailable" if problem else "200 OK"
                start_response(status, [("Content-Type", "text/plain")])
                return [f"stalled: {problem}\n".encode() if problem else b"alive\n"]
            return metrics(environ, start_response)

        try:
            self._server = make_server(host, port, app, handler_class=_Quiet)
        except OSError as error:  # a metrics port in use must not stop the worker
            log.error("metrics not served on port %s: %s", port, error)
            return 0
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        return self._server.server_port

    def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's signature
        """Scrapes every few seconds would flood the log."""
