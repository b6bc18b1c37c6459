"""The reliable claim loop any worker process runs, whatever its jobs (no torch here).

Claim a job id from one queue into this worker's processing list, start an attempt with its
own token, work, then finish or hand back; meanwhile a heartbeat says this process lives and
a reaper gives the jobs of dead workers back to their queues. SIGTERM stops claiming, lets
the current job finish within SHUTDOWN_GRACE_S, then hands back what is still held. The
callbacks this worker owes (its jobs, and the separations its render jobs end) are sent from
here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import redis

from common.jobs import JobStatus, JobStore
from common.settings import Settings
from common.storage import Storage, StorageError
from worker import callback
from worker.healthcheck import ID_FILE
from worker.heartbeat import Heartbeat
from worker.reaper import Reaper, requeue_jobs_of

log = logging.getLogger("worker")


class HandBack(Exception):
    """The job must go back to the queue (a dependency is down); it is not the song's fault."""


class Superseded(Exception):
    """The job was given to another attempt, or deleted; drop the result."""


def retry(action, what: str, attempts: int = 6, first_wait: float = 0.5):
    """Run `action`, retrying Redis and object-store outages with exponential backoff."""
    wait = first_wait
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (redis.RedisError, StorageError) as error:
            if attempt == attempts:
                raise
            log.warning("%s failed (%s); retry %d/%d in %.1f s", what, error, attempt,
                        attempts - 1, wait)
            time.sleep(wait)
            wait = min(wait * 2, 10)


class JobLoop:
    """Claims jobs from `queue` one at a time; subclasses say what a job is in `work`."""

    def __init__(self, settings: Settings, client: redis.Redis, queue: str):
        self.settings = settings
        self.worker_id = settings.worker_id
        self.queue = queue
        self.redis = client
        self.jobs = JobStore(client, settings.demucs_model)
        self.storage = Storage(settings)
        self.callbacks = ThreadPoolExecutor(2, thread_name_prefix="callback")
        self.active: dict[str, str] = {}  # job id -> token of every job this worker holds
        self.active_lock = threading.Lock()
        self.delivering: set[str] = set()  # owed callbacks being sent right now
        self.delivering_lock = threading.Lock()
        self.stopping = threading.Event()
        self.heartbeat = Heartbeat(client, self.worker_id, settings.heartbeat_ttl_s)
        self.reaper = Reaper(self.jobs, self.worker_id, settings.max_attempts,
                             settings.reaper_interval_s, on_owed=self.send_owed_callbacks,
                             heartbeat_ttl_s=settings.heartbeat_ttl_s)

    def work(self, job_id: str, token: str) -> None:
        """Do one started job and end it (finish or hand back); raise nothing."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what `work` holds, once the loop has ended."""

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self) -> None:
        retry(self.storage.ensure_buckets, "creating the buckets", attempts=30)
        # Jobs left in our own list were held by an earlier process with this id, now dead.
        retry(lambda: requeue_jobs_of(self.jobs, self.worker_id, self.settings.max_attempts),
              "recovering jobs of a previous run", attempts=30)
        self.heartbeat.start()
        self.reaper.start()
        self.send_owed_callbacks()  # including those of jobs an earlier run was the last of
        ID_FILE.write_text(self.worker_id)  # for the exec probe, `python -m worker.healthcheck`
        log.info("worker %s ready, waiting for jobs in %s", self.worker_id, self.queue)
        while not self.stopping.is_set():
            job_id = self._claim()
            if job_id:
                self._start(job_id)
            else:
                self.requeue_strays()
        self._drain()

    def request_stop(self, signum: int, _frame=None) -> None:
        """SIGTERM: stop claiming, finish what is held within the grace period, then exit."""
        if self.stopping.is_set():
            return
        log.info("signal %d: finishing current jobs within %d s", signum,
                 self.settings.shutdown_grace_s)
        self.stopping.set()
        threading.Thread(target=self._hand_back_after_grace, daemon=True).start()

    def _hand_back_after_grace(self) -> None:
        time.sleep(self.settings.shutdown_grace_s)
        with self.active_lock:
            for job_id, token in list(self.active.items()):
                try:
                    self.jobs.hand_back(job_id, self.worker_id, token)
                    log.warning("job %s: handed back to the queue at shutdown", job_id)
                except redis.RedisError as error:
                    log.error("job %s: could not hand back (%s); the reaper will", job_id, error)
            self.requeue_strays()
        logging.shutdown()
        os._exit(0)

    def requeue_strays(self) -> None:
        """Requeue job ids in our processing list that this process does not hold.

        A claim whose reply was lost (the Redis client retries on a broken connection) leaves
        the job in our list while we live, where no reaper looks; and at shutdown, a job
        claimed but not yet started must go back too.
        """
        try:
            for job_id in self.jobs.claimed_by(self.worker_id):
                if job_id in self.active:
                    continue
                outcome = self.jobs.requeue_orphan(job_id, self.worker_id,
                                                   self.settings.max_attempts)
                if outcome != "gone":  # gone: finished meanwhile
                    log.warning("job %s: claimed but not held by this process; %s", job_id,
                                outcome)
        except redis.RedisError as error:
            log.warning("could not check this worker's claimed jobs (%s)", error)

    def _drain(self) -> None:
        # The reaper first: a job it fails as worker_lost still needs the callback pool.
        self.reaper.stopped.set()
        self.reaper.join(30)
        self.close()
        self.callbacks.shutdown(wait=True)
        self.heartbeat.stop()
        self.storage.close()
        log.info("worker %s stopped", self.worker_id)

    # -- one job ------------------------------------------------------------------------------
    def _claim(self) -> str | None:
        try:
            return self.jobs.claim(self.worker_id, timeout=1, queue=self.queue)
        except redis.RedisError as error:
            log.warning("cannot reach Redis to claim a job (%s); retrying in 2 s", error)
            self.stopping.wait(2)
            return None

    def _start(self, job_id: str) -> None:
        token = uuid.uuid4().hex  # one token for every retry of the start below
        # Under the lock, so that a shutdown hand-back never sees a started job it cannot name.
        with self.active_lock:
            started = retry(lambda: self.jobs.start(job_id, self.worker_id, token),
                            "starting a job", attempts=12)
            if started:
                self.active[job_id] = token
        if started:  # else finished or removed meanwhile: the stale queue entry is dropped
            self.work(job_id, token)

    def finish(self, job_id: str, token: str, status: JobStatus, error: str = "",
               tracks: list[str] | None = None, timings: dict | None = None,
               parent: str = "") -> bool:
        """Record the end of the job; False when this attempt is no longer current."""
        try:
            current = retry(lambda: self.jobs.finish(job_id, self.worker_id, token, status,
                                                     error, tracks, timings, parent=parent),
                            "recording the result", attempts=12)
        finally:
            with self.active_lock:
                self.active.pop(job_id, None)
        if not current:
            log.warning("job %s: result dropped, the job was taken over or deleted", job_id)
            return False
        log.info("job %s: %s%s %s", job_id, status.value, f" ({error})" if error else "",
                 timings or {})
        self.send_owed_callbacks()
        return True

    def hand_back(self, job_id: str, token: str, why: str) -> None:
        """Return the job to the head of its queue (a dependency is down)."""
        log.warning("job %s: handed back to the queue: %s", job_id, why)
        try:
            retry(lambda: self.jobs.hand_back(job_id, self.worker_id, token), "handing back")
        finally:
            with self.active_lock:
                self.active.pop(job_id, None)
        self.stopping.wait(2)  # give the dependency a moment before the next claim

    # -- callbacks ----------------------------------------------------------------------------
    def send_owed_callbacks(self) -> None:
        """Send every callback in this worker's outbox that is not already on its way."""
        try:
            owed = self.jobs.owed_callbacks(self.worker_id)
        except redis.RedisError as error:
            log.warning("could not read the callbacks owed (%s); trying again later", error)
            return
        with self.delivering_lock:
            fresh = [job_id for job_id in owed if job_id not in self.delivering]
            self.delivering.update(fresh)
        for job_id in fresh:
            self.callbacks.submit(self._deliver, job_id)

    def _deliver(self, job_id: str) -> None:
        try:
            job = retry(lambda: self.jobs.get(job_id), "reading the job for its callback")
            outcome = "not sent: the job has no callback"
            if job is not None and job.callback and job.callback.get("url"):
                # Stable across resends of one result, so receivers can drop duplicates.
                delivery_id = f"{job_id}.{job.attempts}.{job.status.value}"
                outcome = callback.send(job.callback["url"], job.callback.get("data"),
                                        delivery_id, self.settings)
                level = logging.INFO if outcome.startswith("delivered") else logging.WARNING
                log.log(level, "job %s: callback %s", job_id, outcome)
            retry(lambda: self.jobs.callback_sent(self.worker_id, job_id, outcome),
                  "recording the callback")
        except redis.RedisError as error:
            log.error("job %s: callback stays owed, Redis unavailable (%s)", job_id, error)
        finally:
            with self.delivering_lock:
                self.delivering.discard(job_id)
