"""Gunicorn settings for the REST gateway; PORT and WEB_CONCURRENCY come from the environment."""

import os


def _bind(port: str) -> str:
    """Accept PORT as a bare port number or as a full host:port."""
    return port if ":" in port else f"0.0.0.0:{port}"


bind = _bind(os.environ.get("PORT", "0.0.0.0:5000"))
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = 4
# Uploads are up to ~134 MB of base64; give slow clients time without hanging forever.
timeout = 120
graceful_timeout = 30
accesslog = "-"
errorlog = "-"
# The root filesystem is read-only; /tmp is the writable scratch volume (no /dev/shm there).
worker_tmp_dir = "/tmp"
