"""Helpers shared by the tests that run songs through the stack: submitting, waiting on what
the service records, worker processes and their signals, a second model (servers beside the
stack are in tests/servers.py)."""

from __future__ import annotations

import base64
import io
import os
import signal
import time
from fractions import Fraction
from pathlib import Path

import pytest
import redis
import requests

from common import keys, tracks
from common.jobs import Job, JobStore
from common.redisconn import connect
from common.settings import Settings
from common.storage import Storage, song_object
from scripts.local import stack

STEMS = sorted(tracks.FOUR_STEMS)
MODEL = "demucs_unittest"  # the model the tests' workers load


def mp3_stems(storage, song_hash: str) -> list[str]:
    """The stems whose default mp3 track is stored for a song (rendered from its stems)."""
    return sorted(tracks.parse_track(name).stem
                  for name in storage.names_under(f"{song_hash}/{MODEL}/mp3-320/"))


def lossless_stems(storage, song_hash: str) -> list[str]:
    """The stems stored losslessly for a song by the separation worker."""
    return sorted(tracks.parse_track(name).stem
                  for name in storage.names_under(f"{song_hash}/{MODEL}/stems/"))


def put_song(storage, song_hash: str, data: bytes) -> None:
    """Store `data` as a song's upload `<hash>.mp3`, as the gateway does."""
    storage.put_song_stream(song_hash, "mp3", io.BytesIO(data), len(data))


def get_song(storage, song_hash: str) -> bytes:
    """A song's upload `<hash>.mp3`, whole."""
    response = storage.client.get_object(storage.songs_bucket, song_object(song_hash))
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()
FINAL = ("done", "failed")


def one_fast(cases: list, *fast: object) -> list:
    """`cases` as test parameters, all but those in `fast` marked slow: a numeric check over
    every model and setting takes minutes on a CPU, so `make test-fast` runs a few cases and
    `make test` all of them."""
    return [pytest.param(*(case if isinstance(case, tuple) else (case,)),
                         marks=() if case in fast else pytest.mark.slow) for case in cases]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wait_for(predicate, timeout: float, message: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout} s: {message}")
        time.sleep(interval)


def submit(base_url: str, mp3: bytes, callback: dict | None = None, **kwargs) -> str:
    """POST a song to a running gateway; returns its hash."""
    body = {"mp3": b64(mp3)}
    if callback:
        body["callback"] = callback
    response = requests.post(f"{base_url}/apiv1/separate", json=body, timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()["hash"]


def status(base_url: str, song_hash: str) -> dict:
    response = requests.get(f"{base_url}/apiv1/status/{song_hash}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_status(base_url: str, song_hash: str, wanted=FINAL, timeout: float = 90) -> dict:
    """The song's status JSON once its status is one of `wanted`."""
    last = {}

    def reached():
        last.update(status(base_url, song_hash))
        return last["status"] in wanted and dict(last)

    try:
        return wait_for(reached, timeout, f"song {song_hash} not {wanted}", interval=0.1)
    except AssertionError as error:
        raise AssertionError(f"{error}; last status {last}") from None


def wait_for_job(jobs: JobStore, song_hash: str, predicate, timeout: float = 90,
                 what: str = "") -> Job:
    """The job record once `predicate(job)` holds (read straight from Redis)."""
    last: list[Job | None] = [None]

    def reached():
        last[0] = jobs.get(song_hash)
        return last[0] is not None and predicate(last[0]) and last[0]

    try:
        return wait_for(reached, timeout, what or f"song {song_hash}", interval=0.02)
    except AssertionError as error:
        raise AssertionError(f"{error}; last record {last[0]}") from None


def reaper_passes(client: redis.Redis, count: int = 2, timeout: float = 30) -> None:
    """Return once some worker's reaper made `count` more passes (each forgets a dead worker
    that holds nothing, registered just before it): at least `count - 1` whole passes."""
    for number in range(count):
        ghost = f"ghost-{number}-{time.monotonic_ns()}"
        client.sadd(keys.WORKERS, ghost)
        wait_for(lambda name=ghost: not client.sismember(keys.WORKERS, name), timeout,
                 "no reaper pass", interval=0.02)


def holder(client: redis.Redis, song_hash: str, worker_ids) -> str | None:
    """The worker whose processing list holds the song, if any."""
    for worker_id in worker_ids:
        if song_hash in client.lrange(keys.processing(worker_id), 0, -1):
            return worker_id
    return None


def wait_for_claim(client: redis.Redis, song_hash: str, worker_ids, timeout: float = 60) -> str:
    return wait_for(lambda: holder(client, song_hash, worker_ids), timeout,
                    f"no worker of {list(worker_ids)} claimed {song_hash}", interval=0.01)


# -- processes ------------------------------------------------------------------------------
class LiveWorker:
    """One worker process of a live stack: its process, id and log number."""

    def __init__(self, live_stack, worker_id: str = "", **extra: str):
        self.stack = live_stack
        self.number = len(live_stack.workers) + 1
        self.id = worker_id or f"test-worker-{self.number}"
        self.extra = extra
        self.started = time.time()
        self.process = live_stack.start_worker(**{**extra, "WORKER_ID": self.id})

    def log(self) -> str:
        return self.stack.worker_log(self.number)

    def wait_ready(self, timeout: float = 120) -> LiveWorker:
        """Until this process's first heartbeat: its model is loaded and it claims."""
        def ready():
            assert self.process.poll() is None, self.log()
            redis_url = self.extra.get("REDIS_URL", self.stack.env["REDIS_URL"])
            return stack.worker_ready(redis_url, self.id, self.started)

        wait_for(ready, timeout, f"worker {self.id} never became ready", interval=0.1)
        return self

    def kill(self) -> None:
        stack.kill_group(self.process)

    def restart(self) -> LiveWorker:
        """A new process with the same id (as Kubernetes restarts a container)."""
        return LiveWorker(self.stack, self.id, **self.extra)


def start_workers(live_stack, count: int, **extra: str) -> list[LiveWorker]:
    """Start `count` workers at once, then wait until each is ready."""
    workers = [LiveWorker(live_stack, **extra) for _ in range(count)]
    return [worker.wait_ready() for worker in workers]


def one_of_two_claims(live_stack, redis_client, mp3: bytes, callback: dict | None = None,
                      **extra: str) -> tuple[str, str, LiveWorker, LiveWorker]:
    """Two ready workers and a gateway; submit the song and wait until one claims it.

    Returns (gateway URL, song hash, the worker holding the song, the other one).
    """
    workers = start_workers(live_stack, 2, **extra)
    base_url = live_stack.start_rest()
    song_hash = submit(base_url, mp3, callback)
    holder_id = wait_for_claim(redis_client, song_hash, [w.id for w in workers])
    holding = next(w for w in workers if w.id == holder_id)
    other = next(w for w in workers if w is not holding)
    return base_url, song_hash, holding, other


def stop_process(process, sig: int = signal.SIGSTOP) -> None:
    """SIGSTOP or SIGCONT one process (not its encoder pool)."""
    os.kill(process.pid, sig)


# -- a second model ---------------------------------------------------------------------------
def write_tiny_htdemucs(folder: Path, name: str, seed: int = 0) -> list[str]:
    """`<folder>/<name>.th`: an untrained HTDemucs with six stems, small enough for tests, with
    many one-second segments (progress, and so cancel, at each); returns its stems."""
    import torch  # only for the tests that use it
    from demucs.htdemucs import HTDemucs

    sources = [*tracks.SIX_STEMS]
    kwargs = dict(sources=sources, segment=Fraction(1), channels=4, depth=4, nfft=1024,
                  t_layers=1, bottom_channels=16, dconv_mode=0)
    torch.manual_seed(seed)
    model = HTDemucs(**kwargs).eval()
    torch.save({"klass": HTDemucs, "args": (), "kwargs": kwargs, "state": model.state_dict()},
               folder / f"{name}.th")
    return sources


def fresh_stores(env: dict[str, str]) -> tuple[redis.Redis, Storage]:
    """A module's own stores for a stack started with `env`: its Redis database emptied and its
    buckets made."""
    settings = Settings.from_env(env)
    client = connect(settings)
    client.flushdb()
    storage = Storage(settings)
    storage.ensure_buckets()
    return client, storage
