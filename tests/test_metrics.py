"""/metrics of the gateway (under gunicorn, several processes) and of a worker, scraped after a
real job and read with prometheus_client's own parser."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from common import keys
from common.jobs import JobStatus
from scripts.local.stack import free_port
from tests.helpers import submit, wait_for, wait_for_status
from worker.runtime.metrics import WorkerMetrics


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text page."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith(
        "text/plain"), response.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of a sample over every series that has these labels."""
    return sum(value for (sample, series), value in samples.items()
               if sample == name and labels.items() <= dict(series).items())


def test_gateway_and_worker_metrics_after_a_job(live_stack, redis_client, short_mp3):
    # Summed over gunicorn's processes in the folder that start_rest and gunicorn.conf.py's
    # on_starting set up, as the Deployment's emptyDir in the images.
    base_url = live_stack.start_rest()
    port, render_port = free_port(), free_port()
    live_stack.start_render(METRICS_PORT=str(render_port))  # the one render worker
    live_stack.start_worker(METRICS_PORT=str(port))
    song_hash = submit(base_url, short_mp3)
    assert wait_for_status(base_url, song_hash)["status"] == "done"
    for _ in range(6):  # spread over gunicorn's processes; the sum must see every one
        assert requests.get(f"{base_url}/apiv1/status/{song_hash}", timeout=10).ok
    # The first status of a separated song queues its analysis, waveform peaks and seek index:
    # let the render worker finish them, so that every queue reads empty below.
    wait_for(lambda: not redis_client.llen(keys.RENDER_QUEUE)
             and not redis_client.llen(keys.inflight(keys.RENDER_QUEUE)), 120,
             "the analysis and peaks were not rendered")

    gateway = scrape(f"{base_url}/metrics")
    requests_total = "micro_demucs_http_requests_total"
    assert total(gateway, requests_total, route="/apiv1/separate", method="POST",
                 status="200") == 1
    statuses = total(gateway, requests_total, route="/apiv1/status/<songhash>", status="200")
    assert statuses >= 7  # the wait's polls and the six above
    assert total(gateway, "micro_demucs_http_request_duration_seconds_count",
                 route="/apiv1/status/<songhash>") == statuses
    assert gateway[("micro_demucs_redis_up", ())] == 1
    for queue in (keys.QUEUE, keys.RENDER_QUEUE):
        assert gateway[("micro_demucs_queue_length", (("queue", queue),))] == 0
        assert gateway[("micro_demucs_jobs_in_flight", (("queue", queue),))] == 0
    assert gateway[("micro_demucs_jobs_finished_total",
                    (("outcome", "done"), ("reason", "")))] >= 1

    worker = scrape(f"http://127.0.0.1:{port}/metrics")
    model = (("model", "demucs_unittest"),)
    assert worker[("micro_demucs_worker_separation_seconds_count", model)] == 1
    assert worker[("micro_demucs_worker_realtime_factor_count", model)] == 1
    assert worker[("micro_demucs_worker_realtime_factor_sum", model)] > 0
    assert worker[("micro_demucs_worker_model_load_seconds", model)] > 0
    assert worker[("micro_demucs_worker_busy", ())] == 0
    assert worker[("micro_demucs_worker_batch_size", ())] >= 1
    assert worker[("micro_demucs_worker_jobs_total", (("outcome", "separated"),))] == 1
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).text == "alive\n"
    renderer = scrape(f"http://127.0.0.1:{render_port}/metrics")
    # The rendition, then the analysis, the waveform peaks and the playback's seek index.
    assert renderer[("micro_demucs_worker_jobs_total", (("outcome", "done"),))] == 4
    assert renderer[("micro_demucs_worker_busy", ())] == 0


def test_gateway_metrics_count_failures_by_reason_and_survive_a_redis_outage(
        make_client, jobs, redis_client):
    client = make_client()
    jobs.enqueue("f" * 64, None, 100)
    job_id = jobs.claim("w1", 1)
    jobs.finish(job_id, "w1", jobs.start(job_id, "w1"), JobStatus.FAILED,
                "decode_failed: not audio")
    client.get("/apiv1/nothing-here")
    page = client.get("/metrics")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(page.text) for s in f.samples}
    assert samples[("micro_demucs_jobs_finished_total",
                    (("outcome", "failed"), ("reason", "decode_failed")))] == 1
    assert samples[("micro_demucs_http_requests_total",
                    (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1

    down = make_client(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0").get("/metrics")
    assert down.status_code == 200
    assert "micro_demucs_redis_up 0.0" in down.text
    assert "micro_demucs_queue_length" not in down.text


def test_worker_metrics_server_answers_health_and_a_busy_port_is_not_fatal():
    metrics = WorkerMetrics()
    port = metrics.serve(free_port(), host="127.0.0.1")
    try:
        with metrics.working():
            busy = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "micro_demucs_worker_busy 1.0" in busy
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).ok
        second = WorkerMetrics()
        assert second.serve(port, host="127.0.0.1") == 0  # in use: logged, the worker goes on
        assert WorkerMetrics().serve(0) == 0  # METRICS_PORT=0 serves nothing
    finally:
        metrics.close()
    wait_for(lambda: not _answers(port), 5, "the metrics server still answers")


def _answers(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    except requests.ConnectionError:
        return False
    return True
