"""Give the jobs of dead workers back to their queues, take over the callbacks they owed, and
delete the songs that expired.

Every worker runs a reaper. A worker is dead when its heartbeat key has expired, so a job
is back in the queue at most HEARTBEAT_TTL_S + REAPER_INTERVAL_S seconds after its worker
died. A lock keeps reapers from working at once, and each requeue is itself atomic
(the entry is removed from the dead worker's list by the same script that requeues it),
so even two reapers cannot put a job back twice. Before a job goes back, the multipart uploads
its dead attempt left open are aborted: their parts would otherwise fill the store, invisible,
until a lifecycle rule ends them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis

from common import ensemble_jobs, keys
from common.jobs import JobStore
from common.redisconn import TextReads
from common.storage import Storage, StorageError, job_prefix
from worker.runtime.heartbeat import forget, is_alive, members

log = logging.getLogger("worker")


def requeue_jobs_of(jobs: JobStore, worker_id: str, max_deaths: int,
                    storage: Storage | None = None) -> dict[str, str]:
    """Requeue (or fail as poison) every job a dead worker held, its open uploads aborted
    first; returns job id -> outcome."""
    outcomes = {}
    for job_id in jobs.claimed_by(worker_id):
        if storage is not None:  # before the requeue: a new attempt's uploads are not touched
            abort_uploads_of(storage, job_id, jobs.default_model)
        outcome = jobs.requeue_orphan(job_id, worker_id, max_deaths)
        if outcome != "gone":
            outcomes[job_id] = outcome
            log.warning("song %s: worker %s died holding it; %s", job_id, worker_id, outcome)
        if outcome == "failed":  # its song's ensembles waiting on it fail too, owing as it does
            ensemble_jobs.release(jobs.redis, job_id.partition(":")[0], jobs.default_model,
                                  keys.outbox(worker_id))
    return outcomes


def abort_uploads_of(storage: Storage, job_id: str, default_model: str) -> int:
    """Abort the multipart uploads open where job `job_id` writes; how many (0 on failure)."""
    song, model, rendition = (job_id.split(":") + ["", ""])[:3]
    try:
        aborted = storage.abort_uploads(job_prefix(song, model or default_model, rendition))
    except StorageError as error:  # the next attempt aborts them before its own uploads
        log.warning("song %s: open uploads of a dead attempt not aborted (%s)", job_id, error)
        return 0
    if aborted:
        log.warning("song %s: %d open upload(s) of a dead attempt aborted", job_id, aborted)
    return aborted


def reap_once(jobs: JobStore, self_id: str, max_deaths: int, lock_ttl_s: int = 30,
              sweep: Callable[[], object] | None = None,
              storage: Storage | None = None) -> dict[str, str]:
    """One pass over all registered workers (and `sweep`, under the same lock); returns what
    was done to which job. With `storage`, dead attempts' open uploads are aborted."""
    client = jobs.redis
    lock = uuid.uuid4().hex
    if not client.set(keys.REAPER_LOCK, lock, nx=True, ex=lock_ttl_s):
        return {}
    outcomes: dict[str, str] = {}
    try:
        for worker_id in members(client):
            if worker_id == self_id or is_alive(client, worker_id):
                continue
            outcomes.update(requeue_jobs_of(jobs, worker_id, max_deaths, storage))
            for job_id in jobs.adopt_callbacks(worker_id, self_id):
                log.warning("song %s: worker %s died owing its callback; sending it",
                            job_id, worker_id)
            if not jobs.claimed_by(worker_id) and not jobs.owed_callbacks(worker_id):
                forget(client, worker_id)
        if sweep is not None:
            sweep()
    finally:
        if TextReads(client).value(keys.REAPER_LOCK) == lock:
            client.delete(keys.REAPER_LOCK)
    return outcomes


class Reaper(threading.Thread):
    """Every `interval_s`, one reaping pass; then `on_owed`, to send the callbacks now owed."""

    def __init__(self, jobs: JobStore, self_id: str, max_deaths: int, interval_s: int,
                 on_owed: Callable[[], None] | None = None, heartbeat_ttl_s: int = 0,
                 sweep: Callable[[], object] | None = None, storage: Storage | None = None):
        super().__init__(name="reaper", daemon=True)
        self.jobs, self.self_id, self.max_deaths = jobs, self_id, max_deaths
        self.sweep, self.storage = sweep, storage
        self.interval_s = interval_s
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.on_owed = on_owed  # called after each pass, to send the callbacks now owed
        self.stopped = threading.Event()

    def run(self) -> None:
        quiet_until, cut_off = 0.0, False
        while not self.stopped.wait(self.interval_s):
            try:
                if cut_off:
                    # Nobody could beat while Redis was away: a heartbeat that expired
                    # meanwhile says nothing until its worker has had one TTL to beat again.
                    self.jobs.redis.ping()
                    quiet_until, cut_off = time.monotonic() + self.heartbeat_ttl_s, False
                if time.monotonic() < quiet_until:
                    continue
                reap_once(self.jobs, self.self_id, self.max_deaths, sweep=self.sweep,
                          storage=self.storage)
            except redis.RedisError as error:
                cut_off = True
                log.warning("reaper skipped a pass (Redis unavailable: %s)", error)
                continue
            if self.on_owed:
                self.on_owed()
