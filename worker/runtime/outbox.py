"""The callbacks a worker owes: its outbox in Redis, sent from a small pool of threads.

A job's end and the entry in its worker's outbox are written by one script, so a callback is
owed exactly when a job ended; a dead worker's outbox is adopted by a reaper. Each callback is
struck from the outbox once sent (or given up), with what became of it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import redis

from common.jobs import JobStore
from common.settings import Settings
from worker.runtime import callback
from worker.runtime.errors import internal_error
from worker.runtime.retry import retry

log = logging.getLogger("worker")


class Outbox:
    """Sends every callback this worker owes, each once at a time."""

    def __init__(self, jobs: JobStore, worker_id: str, settings: Settings):
        self.jobs, self.worker_id, self.settings = jobs, worker_id, settings
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="callback")
        self.delivering: set[str] = set()  # owed callbacks being sent right now
        self.lock = threading.Lock()

    def send_owed(self) -> None:
        """Send every callback in this worker's outbox that is not already on its way."""
        try:
            owed = self.jobs.owed_callbacks(self.worker_id)
        except redis.RedisError as error:
            log.warning("could not read the callbacks owed (%s); trying again later", error)
            return
        with self.lock:
            fresh = [job_id for job_id in owed if job_id not in self.delivering]
            self.delivering.update(fresh)
        for job_id in fresh:
            self.pool.submit(self._deliver, job_id)

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
                log.log(level, "song %s: callback %s", job_id, outcome)
            retry(lambda: self.jobs.callback_sent(self.worker_id, job_id, outcome),
                  "recording the callback")
        except redis.RedisError as error:
            log.error("song %s: callback stays owed, Redis unavailable (%s)", job_id, error)
        except Exception as error:  # a bug, in this thread: logged and struck, never silent
            outcome = f"failed: {internal_error(job_id, error)}"
            try:
                self.jobs.callback_sent(self.worker_id, job_id, outcome)
            except redis.RedisError:
                pass  # stays owed; the next pass meets the same bug and logs it again
        finally:
            with self.lock:
                self.delivering.discard(job_id)

    def close(self) -> None:
        """Wait for the callbacks on their way."""
        self.pool.shutdown(wait=True)
