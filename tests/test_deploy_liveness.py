"""The workers' liveness probe (/healthz on METRICS_PORT, k8s/base/worker.yaml and render.yaml):
it fails when a real worker process stalls in the middle of a job, and holds through a Redis
outage, during which the claim loop keeps retrying."""

from __future__ import annotations

import time

import requests

from scripts.local.stack import free_port
from tests.helpers import LiveWorker, submit, wait_for
from tests.servers import TcpProxy

BOUND_S = 3  # STALL_TIMEOUT_S of these workers: short, so that a stall shows in seconds


def healthz(port: int) -> tuple[int, str]:
    """The probe's answer: (status, body)."""
    response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    return response.status_code, response.text


def test_a_worker_stalled_mid_job_fails_its_liveness_probe(live_stack, s3_server, short_mp3):
    # The worker reaches the store through a proxy that, once the worker is ready, holds every
    # reply for an hour: its download of the song never ends and never reports progress.
    proxy = TcpProxy(s3_server)
    port = free_port()
    try:
        worker = LiveWorker(live_stack, MINIO_HOST=proxy.address, METRICS_PORT=str(port),
                            STALL_TIMEOUT_S=str(BOUND_S)).wait_ready()
        assert healthz(port) == (200, "alive\n")
        proxy.delay_s = 3600
        proxy.cut()  # pooled connections go; new ones get the held replies
        proxy.restore()
        base_url = live_stack.start_rest()
        started = time.monotonic()  # no stall before the song exists
        submit(base_url, short_mp3)
        status, body = wait_for(lambda: (answer := healthz(port))[0] != 200 and answer,
                                BOUND_S + 30, "a stalled worker still passes its probe")
        assert status == 503 and "no progress" in body, body
        # The loop's last tick came at most one claim wait (1 s) before the song was claimed.
        assert time.monotonic() - started >= BOUND_S - 1
        assert worker.process.poll() is None  # alive but hung: what only the probe can see
    finally:
        proxy.close()


def test_a_redis_outage_does_not_fail_the_liveness_probe(live_stack, redis_server):
    proxy = TcpProxy(redis_server)
    port = free_port()
    try:
        LiveWorker(live_stack, REDIS_URL=f"redis://{proxy.address}/0", METRICS_PORT=str(port),
                   STALL_TIMEOUT_S=str(BOUND_S)).wait_ready()
        proxy.cut()  # Redis unreachable: every connection reset, every new one refused
        # Three times the bound, asked often: the loop's retries keep ticking all along.
        deadline = time.monotonic() + 3 * BOUND_S
        while time.monotonic() < deadline:
            assert healthz(port) == (200, "alive\n")
            time.sleep(0.2)
    finally:
        proxy.close()
