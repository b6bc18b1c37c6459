"""`micro-demucs models`: the server's models as a table, or its own JSON with --json; the
gateway served over loopback HTTP from this process, on the real Redis server."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout

import pytest
import requests
from werkzeug.serving import make_server

from client.cli import main
from common import keys, modelinfo
from rest.app import close_app, create_app


@pytest.fixture
def server(make_settings, redis_client) -> Iterator[str]:
    """The gateway on a free loopback port, serving demucs_unittest (default) and htdemucs_ft."""
    app = create_app(make_settings(DEMUCS_MODELS="demucs_unittest,htdemucs_ft",
                                   DEFAULT_MODEL="demucs_unittest"))
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(10)
    close_app(app)


def call(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_models_table_and_json(server: str, redis_client) -> None:
    facts = {"family": "demucs", "stems": ["drums", "bass", "other", "vocals"],
             "sample_rate": 44100, "chunk_s": 7.8, "parameters": 2_500_000}
    modelinfo.register(redis_client, "demucs_unittest", "w1", facts)
    redis_client.set(keys.heartbeat("w1"), "1", ex=30)
    modelinfo.record_speed(redis_client, "demucs_unittest", "cpu", 10.0, 2.5)

    code, out, err = call("models", "--server", server)
    assert code == 0, err
    header, first, second = out.splitlines()
    assert header.split()[:4] == ["model", "family", "stems", "ready"]
    assert first.split() == ["demucs_unittest", "(default)", "demucs", "drums,bass,other,vocals",
                             "yes", "(1)", "2.5", "M", "7.8", "s", "-", "cpu", "0.25", "(1",
                             "jobs)"]
    assert second.split()[:6] == ["htdemucs_ft", "demucs", "drums,bass,other,vocals", "no", "-",
                                  "7.8"]
    assert "vocals 10.79 drums 10.02 bass 12.02 (MUSDB18-HQ, 13 tracks)" in second

    code, out, _ = call("models", "--json", "--server", server)
    assert code == 0
    assert json.loads(out) == requests.get(f"{server}/apiv1/models", timeout=10).json()
