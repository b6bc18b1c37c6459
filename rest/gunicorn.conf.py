"""Gunicorn settings for the REST gateway; PORT and WEB_CONCURRENCY come from the environment."""

import os


def _bind(port: str) -> str:
    """Accept PORT as a bare port number or as a full host:port."""
    return port if ":" in port else f"0.0.0.0:{port}"


bind = _bind(os.environ.get("PORT", "0.0.0.0:5000"))
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# One greenlet per connection: a client that trickles its body (or its headers) holds a
# greenlet, not one of a few threads, so the probes keep answering. The app bounds each body
# read in time (BODY_TIMEOUT_S); a buffering ingress in front is still recommended.
worker_class = "gevent"
worker_connections = 1000
# Uploads are up to ~134 MB of base64; give slow clients time without hanging forever.
timeout = 120
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
# Access lines without the value of a credential sent in a query string (rest/accesslog.py).
logger_class = "rest.accesslog.RedactingLogger"
# The root filesystem is read-only; /tmp is the writable scratch volume (no /dev/shm there).
worker_tmp_dir = "/tmp"


def on_starting(server) -> None:
    """Start /metrics from zero: the processes' counter files of a previous run are stale."""
    import shutil  # here, not at the top: every top-level name must be a gunicorn setting

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)


def child_exit(server, worker) -> None:
    """A process that exits leaves its counters to the sum, not its live gauges."""
    from prometheus_client import multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    """gunicorn's own error answers as JSON, and no Server header (rest/gunicorn_answers.py)."""
    from rest import gunicorn_answers

    gunicorn_answers.apply()
