"""Real servers for the whole session: a Redis server and an S3 server on free loopback ports.

Each test gets its own Redis database contents (flushed) and its own pair of buckets, through
factories that clean up after themselves.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest
import redis

from common.jobs import JobStore
from common.settings import Settings
from common.storage import Storage
from rest.app import close_app, create_app
from scripts.local import stack
from scripts.local.make_samples import song_mp3

_bucket_numbers = itertools.count()
SERVER_FIXTURES = {"redis_server", "s3_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `servers` every test that needs the session's servers, through any fixture: the
    fast tier (`make test-fast`) leaves them out without a test file saying so."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """Port of a Redis server (AOF on, like the shipped configuration) for this session."""
    port = stack.free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = stack.start_redis(port, folder, folder / "redis.log")
    yield port
    stack.stop(process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """Port of an S3 server (minio if on PATH, else moto) for this session."""
    port = stack.free_port()
    folder = tmp_path_factory.mktemp("s3")
    process = stack.start_object_store(port, folder / "data", folder / "s3.log")
    yield port
    stack.stop(process)


@pytest.fixture
def service_env(redis_server, s3_server):
    """The environment a service process gets, with buckets of this test's own."""
    number = next(_bucket_numbers)
    return stack.service_env(redis_server, s3_server, SONGS_BUCKET=f"songs-{number}",
                             OUTPUT_BUCKET=f"output-{number}", DEMUCS_MODEL="demucs_unittest")


@pytest.fixture
def make_settings(service_env):
    """Factory of Settings for this test's servers; keyword overrides are env names."""

    def make(**overrides: str) -> Settings:
        return Settings.from_env({**service_env, **overrides})

    return make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def redis_client(settings):
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def jobs(redis_client, settings) -> JobStore:
    return JobStore(redis_client, settings.default_model)


@pytest.fixture
def storage(settings):
    store = Storage(settings)
    store.ensure_buckets()
    yield store
    for bucket in (store.songs_bucket, store.output_bucket):
        for obj in store.client.list_objects(bucket, recursive=True):
            store.client.remove_object(bucket, obj.object_name)
        store.client.remove_bucket(bucket)
    store.close()


@pytest.fixture
def run_worker(make_settings, redis_client, storage):
    """Start in-process separation workers (a thread each): run_worker(**env overrides); all
    are stopped at the end of the test."""
    from common.redisconn import connect
    from worker.separation.main import Worker
    from worker.separation.separator import Separator

    running = []

    def start(**overrides: str) -> Worker:
        settings = make_settings(**overrides)
        worker = Worker(settings, Separator(settings), connect(settings))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        running.append((worker, thread))
        return worker

    yield start
    for worker, thread in running:
        worker.stop()
        thread.join(60)
        worker.redis.close()


@pytest.fixture
def make_client(make_settings, redis_client, storage):
    """Factory of Flask test clients: make_client(**env overrides); connections closed after."""
    apps = []

    def make(**overrides: str):
        apps.append(create_app(make_settings(**overrides)))
        return apps[-1].test_client()

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture(scope="session")
def short_mp3() -> bytes:
    """Three seconds of a synthetic song, 44.1 kHz stereo."""
    return song_mp3(3, seed=7)


@pytest.fixture(scope="session")
def make_mp3():
    """Factory of synthetic mp3s: make_mp3(seconds, seed=..., samplerate=..., channels=...)."""
    return song_mp3


class LiveStack:
    """gunicorn and worker processes started as `make up` starts them, for one test: the
    first separation worker brings a render worker along, which makes every song's tracks."""

    def __init__(self, env: dict, folder: Path):
        self.env = env
        self.folder = folder
        self.rest = None
        self.workers: list = []
        self.renderers: list = []
        self.base_url = ""

    def start_rest(self, **extra: str) -> str:
        port = stack.free_port()
        self.rest = stack.start_rest(port, {**self.env, **extra}, self.folder / "rest.log")
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def start_worker(self, **extra: str):
        """Start one more worker; its log is worker-<n>.log in the test's folder."""
        number = len(self.workers) + 1
        env = {"WORKER_ID": f"test-worker-{number}", **self.env, **extra}
        process = stack.start_worker(env, self.folder / f"worker-{number}.log")
        self.workers.append(process)
        if not self.renderers:
            # Render jobs end songs and send their callbacks: the same settings, its own name.
            shared = {k: v for k, v in extra.items() if k not in ("WORKER_ID", "METRICS_PORT")}
            self.start_render(**shared)
        return process

    def start_render(self, **extra: str):
        """Start one more render worker; its log is render-<n>.log in the test's folder."""
        number = len(self.renderers) + 1
        env = {"WORKER_ID": f"test-render-{number}", "RENDER_PROCESSES": "1", **self.env,
               **extra}
        process = stack.start_render(env, self.folder / f"render-{number}.log")
        self.renderers.append(process)
        return process

    def worker_log(self, number: int = 1) -> str:
        return (self.folder / f"worker-{number}.log").read_text()

    def render_log(self, number: int = 1) -> str:
        """The log of a render worker: the one that ends songs and sends their callbacks."""
        return (self.folder / f"render-{number}.log").read_text()

    def stop(self) -> None:
        for process in [*self.workers, *self.renderers, self.rest]:
            if process is not None and process.poll() is None:
                stack.stop(process, timeout=10)
            elif process is not None:
                process.wait()
        for process in self.renderers:
            stack.kill_group(process)  # leftover render processes


@pytest.fixture
def live_stack(service_env, storage, redis_client, tmp_path):
    """Factory-style fixture: call .start_rest() and .start_worker(); all stopped afterwards."""
    running = LiveStack(
        {**service_env, "HEARTBEAT_TTL_S": "3", "REAPER_INTERVAL_S": "1", "LOG_LEVEL": "INFO"},
        tmp_path)
    yield running
    running.stop()
