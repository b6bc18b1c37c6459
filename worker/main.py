"""The worker loop: claim, fetch, decode, separate; then encode, store and report in the background.

While one song's stems are encoded and stored (a second thread, a pool of processes), the
next song is already being separated, so the model never waits for LAME or the object store.
Run with `python -m worker` (see worker/__main__.py).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import redis

from common.jobs import JobStatus, JobStore
from common.logship import setup_logging
from common.redisconn import connect
from common.settings import Settings
from common.storage import NotFound, Storage, StorageError
from worker import callback
from worker.audio import decode
from worker.encode import StemEncoder
from worker.errors import InputMissing, JobFailed, ModelLoadError, TooLong
from worker.healthcheck import ID_FILE
from worker.heartbeat import Heartbeat
from worker.reaper import Reaper, requeue_jobs_of
from worker.separator import Separator

log = logging.getLogger("worker")
EXIT_MODEL_UNAVAILABLE = 3


class HandBack(Exception):
    """The job must go back to the queue (a dependency is down); it is not the song's fault."""


class Superseded(Exception):
    """The job was given to another attempt (this worker was presumed dead); drop the result."""


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


class Worker:
    def __init__(self, settings: Settings, separator: Separator, client: redis.Redis):
        self.settings = settings
        self.worker_id = settings.worker_id
        self.redis = client
        self.jobs = JobStore(self.redis, settings.default_model)
        self.storage = Storage(settings)
        self.separator = separator
        self.encoder = StemEncoder(settings.encode_processes, separator.samplerate,
                                   settings.mp3_bitrate)
        self.finisher = ThreadPoolExecutor(1, thread_name_prefix="finisher")
        self.callbacks = ThreadPoolExecutor(2, thread_name_prefix="callback")
        self.pending: Future | None = None
        self.active: dict[str, str] = {}  # hash -> token of every job this worker holds
        self.active_lock = threading.Lock()
        self.delivering: set[str] = set()  # owed callbacks being sent right now
        self.delivering_lock = threading.Lock()
        self.stopping = threading.Event()
        self.heartbeat = Heartbeat(self.redis, self.worker_id, settings.heartbeat_ttl_s)
        self.reaper = Reaper(self.jobs, self.worker_id, settings.max_deaths,
                             settings.reaper_interval_s, on_owed=self._send_owed_callbacks,
                             heartbeat_ttl_s=settings.heartbeat_ttl_s)

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> None:
        retry(self.storage.ensure_buckets, "creating the buckets", attempts=30)
        # Jobs left in our own list were held by an earlier process with this id, now dead.
        retry(lambda: requeue_jobs_of(self.jobs, self.worker_id, self.settings.max_deaths),
              "recovering jobs of a previous run", attempts=30)
        self.heartbeat.start()
        self.reaper.start()
        # Callbacks an earlier run owed, including those of jobs it was the last chance of.
        self._send_owed_callbacks()
        ID_FILE.write_text(self.worker_id)  # for the exec probe, `python -m worker.healthcheck`
        log.info("worker %s ready, waiting for songs", self.worker_id)
        while not self.stopping.is_set():
            song_hash = self._claim()
            if song_hash:
                self._process(song_hash)
            else:
                self._requeue_strays()
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
            for song_hash, token in list(self.active.items()):
                try:
                    self.jobs.hand_back(song_hash, self.worker_id, token)
                    log.warning("song %s: handed back to the queue at shutdown", song_hash)
                except redis.RedisError as error:
                    log.error("song %s: could not hand back (%s); the reaper will", song_hash,
                              error)
            self._requeue_strays()
        logging.shutdown()
        os._exit(0)

    def _requeue_strays(self) -> None:
        """Requeue hashes in our processing list that this process does not hold.

        A claim whose reply was lost (the Redis client retries on a broken connection) leaves
        the job in our list while we live, where no reaper looks; and at shutdown, a job
        claimed but not yet started must go back too.
        """
        try:
            for song_hash in self.jobs.claimed_by(self.worker_id):
                if song_hash in self.active:
                    continue
                outcome = self.jobs.requeue_orphan(song_hash, self.worker_id,
                                                   self.settings.max_deaths)
                if outcome != "gone":  # gone: finished meanwhile by our own finisher
                    log.warning("song %s: claimed but not held by this process; %s",
                                song_hash, outcome)
        except redis.RedisError as error:
            log.warning("could not check this worker's claimed jobs (%s)", error)

    def _drain(self) -> None:
        # The reaper first: a job it fails as worker_lost still needs the callback pool.
        self.reaper.stopped.set()
        self.reaper.join(30)
        if self.pending is not None:
            self.pending.result()
        self.finisher.shutdown(wait=True)
        self.callbacks.shutdown(wait=True)
        self.heartbeat.stop()
        self.encoder.close()
        self.storage.close()
        log.info("worker %s stopped", self.worker_id)

    # -- one job --------------------------------------------------------------------------
    def _claim(self) -> str | None:
        try:
            return self.jobs.claim(self.worker_id, timeout=1)
        except redis.RedisError as error:
            log.warning("cannot reach Redis to claim a job (%s); retrying in 2 s", error)
            self.stopping.wait(2)
            return None

    def _process(self, song_hash: str) -> None:
        token = uuid.uuid4().hex  # one token for every retry of the start below
        # Under the lock, so that a shutdown hand-back never sees a started job it cannot name.
        with self.active_lock:
            started = retry(lambda: self.jobs.start(song_hash, self.worker_id, token),
                            "starting a job", attempts=12)
            if started:
                self.active[song_hash] = token
        if not started:
            return  # finished or removed meanwhile: the stale queue entry is dropped
        job = retry(lambda: self.jobs.get(song_hash), "reading the job", attempts=12)
        timings = dict(job.timings) if job else {}
        timings["queue_wait"] = round(time.time() - job.created, 3) if job else 0.0
        log.info("song %s: separating (attempt %d)", song_hash, job.attempts if job else 1)
        try:
            stems = self._separate(song_hash, token, timings)
        except JobFailed as error:
            self._finish(song_hash, token, JobStatus.FAILED, str(error), [], timings)
            return
        except HandBack as error:
            self._hand_back(song_hash, token, str(error))
            return
        if self.pending is not None:
            self.pending.result()  # at most one song waits for encoding
        self.pending = self.finisher.submit(self._encode_and_store, song_hash, token, stems,
                                            timings)

    def _separate(self, song_hash: str, token: str, timings: dict) -> dict:
        started = time.monotonic()
        try:
            mp3 = retry(lambda: self.storage.get_song(song_hash), "fetching the song", 4)
        except NotFound:
            raise InputMissing("the uploaded mp3 is no longer in the object store; "
                               "submit the song again") from None
        except StorageError as error:
            raise HandBack(f"object store unavailable: {error}") from None
        timings["fetch"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        wav = decode(mp3, self.separator.samplerate, self.separator.audio_channels)
        duration = wav.shape[-1] / self.separator.samplerate
        if duration > self.settings.max_duration_s:
            raise TooLong(f"the song plays for {duration:.0f} s; the limit is "
                          f"{self.settings.max_duration_s} s")
        timings["decode"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        stems = self.separator.separate(wav, self._progress_reporter(song_hash, token))
        timings["separate"] = round(time.monotonic() - started, 3)
        timings["audio_seconds"] = round(duration, 3)
        return {name: wav.numpy() for name, wav in stems.items()}

    def _progress_reporter(self, song_hash: str, token: str):
        last = [0.0]

        def report(fraction: float) -> None:
            now = time.monotonic()
            if fraction < 1.0 and now - last[0] < 0.25:
                return
            last[0] = now
            try:
                # Separation is 95 % of the work; the rest is encoding and storing.
                self.jobs.set_progress(song_hash, token, 0.95 * fraction)
            except redis.RedisError:
                pass  # progress is advisory; the heartbeat and the result are what matter

        return report

    def _encode_and_store(self, song_hash: str, token: str, stems: dict, timings: dict) -> None:
        try:
            started = last_encoded = time.monotonic()
            # Each stem is stored as soon as it is encoded, while the others still encode.
            for name, data in self.encoder.encode_each(stems):
                last_encoded = time.monotonic()
                # A worker presumed dead must not overwrite the stems of the attempt that
                # replaced it.
                if not retry(lambda: self.jobs.is_current(song_hash, token), "checking the job"):
                    raise Superseded
                retry(lambda n=name, d=data: self.storage.put_stem(song_hash, n, d),
                      f"storing {name}")
            # encode: until the last stem was encoded; store_stems: the upload after that.
            timings["encode"] = round(last_encoded - started, 3)
            timings["store_stems"] = round(time.monotonic() - last_encoded, 3)
        except Superseded:
            self._finish(song_hash, token, JobStatus.FAILED, "superseded", [], timings)
            return
        except JobFailed as error:
            self._finish(song_hash, token, JobStatus.FAILED, str(error), [], timings)
            return
        except StorageError as error:
            self._hand_back(song_hash, token, f"object store unavailable: {error}")
            return
        tracks = [f"{name}.mp3" for name in self.separator.sources]
        self._finish(song_hash, token, JobStatus.DONE, "", tracks, timings)

    def _finish(self, song_hash: str, token: str, status: JobStatus, error: str,
                tracks: list[str], timings: dict) -> None:
        try:
            current = retry(lambda: self.jobs.finish(song_hash, self.worker_id, token, status,
                                                     error, tracks, timings),
                            "recording the result", attempts=12)
        finally:
            with self.active_lock:
                self.active.pop(song_hash, None)
        if not current:
            log.warning("song %s: result dropped, another worker took the job over", song_hash)
            return
        log.info("song %s: %s%s %s", song_hash, status.value, f" ({error})" if error else "",
                 timings)
        self._send_owed_callbacks()

    def _hand_back(self, song_hash: str, token: str, why: str) -> None:
        log.warning("song %s: handed back to the queue: %s", song_hash, why)
        try:
            retry(lambda: self.jobs.hand_back(song_hash, self.worker_id, token), "handing back")
        finally:
            with self.active_lock:
                self.active.pop(song_hash, None)
        self.stopping.wait(2)  # give the dependency a moment before the next claim

    def _send_owed_callbacks(self) -> None:
        """Send every callback in this worker's outbox that is not already on its way."""
        try:
            owed = self.jobs.owed_callbacks(self.worker_id)
        except redis.RedisError as error:
            log.warning("could not read the callbacks owed (%s); trying again later", error)
            return
        with self.delivering_lock:
            fresh = [song_hash for song_hash in owed if song_hash not in self.delivering]
            self.delivering.update(fresh)
        for song_hash in fresh:
            self.callbacks.submit(self._deliver, song_hash)

    def _deliver(self, song_hash: str) -> None:
        try:
            job = retry(lambda: self.jobs.get(song_hash), "reading the job for its callback")
            outcome = "not sent: the job has no callback"
            if job is not None and job.callback and job.callback.get("url"):
                # Stable across resends of one result, so receivers can drop duplicates.
                delivery_id = f"{song_hash}.{job.attempts}.{job.status.value}"
                outcome = callback.send(job.callback["url"], job.callback.get("data"),
                                        delivery_id, self.settings)
                level = logging.INFO if outcome.startswith("delivered") else logging.WARNING
                log.log(level, "song %s: callback %s", song_hash, outcome)
            retry(lambda: self.jobs.callback_sent(self.worker_id, song_hash, outcome),
                  "recording the callback")
        except redis.RedisError as error:
            log.error("song %s: callback stays owed, Redis unavailable (%s)", song_hash, error)
        finally:
            with self.delivering_lock:
                self.delivering.discard(song_hash)


def main() -> int:
    settings = Settings.for_service("worker")
    if settings is None:
        return 2
    client = connect(settings, socket_timeout=10)
    setup_logging(settings, "worker", client)
    try:
        separator = Separator(settings)
    except ModelLoadError as error:
        log.critical("%s", error)
        return EXIT_MODEL_UNAVAILABLE
    worker = Worker(settings, separator, client)
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
