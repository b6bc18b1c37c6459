"""rest/gunicorn.conf.py: settings gunicorn knows, bound from PORT and WEB_CONCURRENCY."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from gunicorn.config import KNOWN_SETTINGS

CONF = Path(__file__).resolve().parent.parent / "rest" / "gunicorn.conf.py"


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, object]:
    """Settings the file defines, with only these variables set."""
    for name in ("PORT", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    values = runpy.run_path(str(CONF))
    return {k: v for k, v in values.items()
            if not k.startswith("_") and not callable(v) and k != "os"}


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load(monkeypatch)
    assert conf["bind"] == "0.0.0.0:5000" and conf["workers"] == 2
    assert conf["worker_class"] == "gevent" and conf["worker_connections"] >= 100
    assert conf["timeout"] == 120 and conf["accesslog"] == "-" and conf["worker_tmp_dir"] == "/tmp"


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load(monkeypatch, PORT="8080", WEB_CONCURRENCY="5")["bind"] == "0.0.0.0:8080"
    assert load(monkeypatch, WEB_CONCURRENCY="5")["workers"] == 5
    assert load(monkeypatch, PORT="127.0.0.1:9000")["bind"] == "127.0.0.1:9000"


def test_every_name_is_a_gunicorn_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    known = {setting.name for setting in KNOWN_SETTINGS}
    assert set(load(monkeypatch)) <= known


def test_metrics_hooks_start_clean_and_forget_dead_processes(monkeypatch, tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"stale")
    (folder / "gauge_livesum_7.db").write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    hooks = runpy.run_path(str(CONF))
    hooks["on_starting"](None)
    assert folder.is_dir() and not list(folder.iterdir())
    (folder / "gauge_livesum_7.db").write_bytes(b"")

    class Worker:
        pid = 7

    hooks["child_exit"](None, Worker())
    assert not (folder / "gauge_livesum_7.db").exists()
