"""The claim loop every worker runs, whatever its jobs: claim from one queue, start an attempt,
run the worker's `work` on it and end it as the outcome says, and around it the heartbeat, the
reaper, the callbacks owed and shutdown.

A separation worker (worker/separation/main.py) claims from its model's queue, a render worker from
`toRender`; each subclasses ClaimLoop with what to do with a job (`work`) and, optionally, how
to remove what an unfinished attempt stored (`discard`). How an exception ends a job is decided
here only (`_handle`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import redis

from common.jobs import Job, JobStatus, JobStore
from common.settings import Settings
from common.songs import sweep_expired
from common.storage import Storage, StorageError
from worker.runtime.errors import (
    Cancelled,
    HandBack,
    JobFailed,
    Superseded,
    internal_error,
    log_cause,
)
from worker.runtime.healthcheck import ID_FILE
from worker.runtime.heartbeat import Heartbeat
from worker.runtime.metrics import WorkerMetrics
from worker.runtime.outbox import Outbox
from worker.runtime.progress import Progress
from worker.runtime.reaper import Reaper, requeue_jobs_of
from worker.runtime.retry import retry

log = logging.getLogger("worker")


@dataclass
class Attempt:
    """One claimed job being worked on: its record as started, its token, its timings."""

    job: Job
    token: str
    timings: dict[str, float] = field(default_factory=dict)
    # Objects this attempt wrote, each named before its upload (one cut short may have landed).
    stored: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.job.id


class ClaimLoop:
    """Claims the jobs of `queue` one at a time and runs each through `work`."""

    def __init__(self, settings: Settings, client: redis.Redis, queue: str,
                 metrics: WorkerMetrics | None = None):
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        self.worker_id = settings.worker_id
        self.queue = queue
        self.redis = client
        # The render queue's cap bounds the studio operations a song's new stems queue.
        self.jobs = JobStore(client, settings.default_model,
                             max_render_queue=settings.max_queue_length)
        self.storage = Storage(settings)
        self.current: Attempt | None = None
        self.current_lock = threading.RLock()  # a signal may hand back from this thread
        self.stopping = threading.Event()
        self.outbox = Outbox(self.jobs, self.worker_id, settings)
        # The loop ticks at each claim poll (every second or two, Redis or not) and at each
        # progress report; this long without a tick (STALL_TIMEOUT_S), it is taken for hung.
        self.stall_s = settings.stall_timeout_s
        self.last_tick = time.monotonic()
        self.heartbeat = Heartbeat(client, self.worker_id, settings.heartbeat_ttl_s,
                                   check=self.unhealthy)
        self.reaper = Reaper(self.jobs, self.worker_id, settings.max_deaths,
                             settings.reaper_interval_s, on_owed=self.outbox.send_owed,
                             heartbeat_ttl_s=settings.heartbeat_ttl_s, sweep=self._sweep,
                             storage=self.storage)

    # -- what a kind of worker provides -----------------------------------------------------
    def prepare(self) -> None:
        """Called once before the first claim (a separation worker registers its model)."""

    def work(self, attempt: Attempt) -> list[str] | None:
        """Do one started job: the names of the tracks it made (the loop ends it done with
        them), or None when it ended its claim itself (a separation hands off)."""
        raise NotImplementedError

    def discard(self, attempt: Attempt) -> None:
        """Remove what an attempt stored (`attempt.stored`) once it ended other than done, or
        its result was dropped; by default nothing is removed."""

    # -- lifecycle --------------------------------------------------------------------------
    def run(self) -> None:
        """Claim and handle jobs until `stop()`; then let the threads around it finish."""
        retry(self.storage.ensure_buckets, "creating the buckets", attempts=30)
        # Jobs left in our own list were held by an earlier process with this id, now dead
        # (a container restarted in its pod): their open uploads are aborted, as a reaper would.
        retry(lambda: requeue_jobs_of(self.jobs, self.worker_id, self.settings.max_deaths,
                                      self.storage),
              "recovering jobs of a previous run", attempts=30)
        retry(self.prepare, "preparing", attempts=30)
        self.heartbeat.start()
        self.reaper.start()
        # Callbacks an earlier run owed, including those of jobs it was the last chance of.
        self.outbox.send_owed()
        # For the exec probe, `python -m worker.runtime.healthcheck`.
        ID_FILE.write_text(self.worker_id)
        log.info("worker %s ready, waiting for songs in %s", self.worker_id, self.queue)
        self.metrics.watch(self.unhealthy)  # /healthz, the liveness probe, fails when stalled
        while not self.stopping.is_set():
            self.last_tick = time.monotonic()
            job_id = self._claim()
            if job_id:
                self._process(job_id)
            else:
                self.requeue_strays()
        self._drain()

    def unhealthy(self) -> str | None:
        """What keeps this worker from working, if anything (the heartbeat asks)."""
        if self.reaper.ident is not None and not self.reaper.is_alive() and not (
                self.reaper.stopped.is_set()):
            return "the reaper thread died"
        stalled = time.monotonic() - self.last_tick
        if stalled > self.stall_s:
            return f"the claim loop has made no progress for {stalled:.0f} s"
        return None

    def stop(self) -> None:
        """Stop claiming; `run` returns once the job in hand has ended."""
        self.stopping.set()

    def hand_back_held(self) -> None:
        """Hand the job in hand (and any claimed, unstarted one) back to its queue, now."""
        with self.current_lock:
            if self.current is not None:
                try:
                    self.jobs.hand_back(self.current.id, self.worker_id, self.current.token)
                    log.warning("song %s: handed back to the queue at shutdown", self.current.id)
                except redis.RedisError as error:
                    log.error("song %s: could not hand back (%s); the reaper will",
                              self.current.id, error)
            self.requeue_strays()

    def requeue_strays(self) -> None:
        """Requeue ids in our processing list that this process does not hold.

        A claim whose reply was lost (the Redis client retries on a broken connection) leaves
        the job in our list while we live, where no reaper looks; and at shutdown, a job
        claimed but not yet started must go back too.
        """
        held = self.current.id if self.current else None
        try:
            for job_id in self.jobs.claimed_by(self.worker_id):
                if job_id == held:
                    continue
                outcome = self.jobs.requeue_orphan(job_id, self.worker_id,
                                                   self.settings.max_deaths)
                if outcome != "gone":  # gone: ended meanwhile by this process
                    log.warning("song %s: claimed but not held by this process; %s",
                                job_id, outcome)
        except redis.RedisError as error:
            log.warning("could not check this worker's claimed jobs (%s)", error)

    def _drain(self) -> None:
        # The reaper first: a job it fails as worker_lost still needs the callback pool.
        self.reaper.stopped.set()
        self.reaper.join(30)
        self.outbox.close()
        self.heartbeat.stop()
        self.close()
        log.info("worker %s stopped", self.worker_id)

    def close(self) -> None:
        """Release what the worker holds (pools, connections); called once it stopped."""
        self.storage.close()

    def _sweep(self) -> None:
        # Without a TTL, only the songs whose delete the store failed (scored 0) are swept.
        ttl_s = self.settings.result_ttl_hours * 3600
        try:
            sweep_expired(self.jobs, self.storage, time.time() - ttl_s if ttl_s else 0)
        except StorageError as error:
            log.warning("expired songs not swept (%s); next pass", error)

    # -- one job ----------------------------------------------------------------------------
    def _claim(self) -> str | None:
        try:
            return self.jobs.claim(self.worker_id, timeout=1, queue=self.queue)
        except redis.RedisError as error:
            log.warning("cannot reach Redis to claim a job (%s); retrying in 2 s", error)
            self.stopping.wait(2)
            return None

    def _process(self, job_id: str) -> None:
        token = uuid.uuid4().hex  # one token for every retry of the start below
        # Under the lock, so that hand_back_held at shutdown never sees a started job it
        # cannot name.
        with self.current_lock:
            if not retry(lambda: self.jobs.start(job_id, self.worker_id, token),
                         "starting a job", attempts=12):
                return  # ended, cancelled or removed meanwhile: the stale entry is dropped
            job = retry(lambda: self.jobs.get(job_id), "reading the job", attempts=12)
            if job is None:
                return  # deleted just after it started; our entry went with it
            self.current = Attempt(job, token, {**job.timings,
                                                "queue_wait": round(time.time() - job.created, 3)})
        try:
            with self.metrics.working():
                self._handle(self.current)
        finally:
            with self.current_lock:
                self.current = None

    def _handle(self, attempt: Attempt) -> None:
        """Run `work` and end the attempt as its outcome says: the one mapping from what it
        raised to how the job ends."""
        status, error, names = JobStatus.FAILED, "", []
        try:
            made = self.work(attempt)
            if made is None:
                return  # the worker ended the claim itself
            status, names = JobStatus.DONE, made
        except Cancelled:
            status = JobStatus.CANCELLED
        except Superseded:
            error = "superseded"  # `finish` drops it: the attempt is no longer current
        except JobFailed as failure:
            log_cause(attempt.id, failure)
            error = str(failure)
        except (HandBack, StorageError) as why:  # what it stored stays, for the next attempt
            self.hand_back(attempt, str(why) if isinstance(why, HandBack)
                           else f"object store unavailable: {why}")
            return
        except Exception as bug:  # a bug: its job fails now with the traceback, the loop goes on
            error = internal_error(attempt.id, bug)
        if not self.finish(attempt, status, error, names) or status is not JobStatus.DONE:
            self.discard(attempt)

    # -- what `work` calls ------------------------------------------------------------------
    def progress_reporter(self, attempt: Attempt, scale: float = 1.0) -> Progress:
        """A progress callback that records `scale * fraction` (at most 4 times a second) and
        raises Cancelled or Superseded when the job should stop."""
        last = [0.0]

        def report(fraction: float) -> None:
            now = self.last_tick = time.monotonic()
            if fraction < 1.0 and now - last[0] < 0.25:
                return
            last[0] = now
            try:
                answer = self.jobs.set_progress(attempt.id, attempt.token, scale * fraction)
            except redis.RedisError:
                return  # progress is advisory; the heartbeat and the result are what matter
            if answer == "cancel":
                raise Cancelled(attempt.id)
            if answer == "stale":
                raise Superseded(attempt.id)

        return report

    def finish(self, attempt: Attempt, status: JobStatus, error: str = "",
               tracks: list[str] | None = None) -> bool:
        """End the attempt; False (and the result dropped) when it is no longer current."""
        current = retry(lambda: self.jobs.finish(attempt.id, self.worker_id, attempt.token,
                                                 status, error, tracks, attempt.timings,
                                                 attempt.job.parent),
                        "recording the result", attempts=12)
        if not current:
            log.warning("song %s: result dropped, another worker took the job over or it was "
                        "deleted", attempt.id)
            return False
        self.metrics.jobs.labels(status.value).inc()
        log.info("song %s: %s%s %s", attempt.id, status.value, f" ({error})" if error else "",
                 attempt.timings)
        self.outbox.send_owed()
        return True

    def hand_back(self, attempt: Attempt, why: str) -> None:
        """Return the job to the head of its queue (a dependency is down), then pause."""
        log.warning("song %s: handed back to the queue: %s", attempt.id, why)
        retry(lambda: self.jobs.hand_back(attempt.id, self.worker_id, attempt.token),
              "handing back")
        self.stopping.wait(2)  # give the dependency a moment before the next claim
