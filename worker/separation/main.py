"""The separation worker: claim a song from its model's queue, separate it into lossless
stems in the store, and end the claim by queueing the render job its submitter asked for.

Encoding is not done here: render workers (`python -m worker.render`) make every rendition
from the lossless stems, so the model never waits for an encoder. Run with `python -m worker`.
"""

from __future__ import annotations

import logging
import sys
import time
from functools import partial

import redis

from common import ensemble_jobs, keys, modelinfo, tracks
from common.jobs import JobStatus, render_id
from common.settings import Settings
from common.storage import StorageError, song_object
from worker.runtime.errors import HandBack, ModelLoadError
from worker.runtime.loop import Attempt, ClaimLoop
from worker.runtime.metrics import WorkerMetrics
from worker.runtime.retry import retry
from worker.runtime.serve import serve, start
from worker.separation.lossless import separate_to_store
from worker.separation.registration import count_speed, model_facts
from worker.separation.separator import Separator

log = logging.getLogger("worker")
EXIT_MODEL_UNAVAILABLE = 3
SEPARATION_SHARE = 0.9  # of a song's progress; its render job makes the rest


class Worker(ClaimLoop):
    """Separates the songs of one model (DEMUCS_MODEL) with its loaded Separator."""

    def __init__(self, settings: Settings, separator: Separator, client: redis.Redis,
                 metrics: WorkerMetrics | None = None):
        self.model = settings.demucs_model
        super().__init__(settings, client,
                         keys.separation_queue(self.model, settings.default_model), metrics)
        self.separator = separator
        self.default_rendition = tracks.default_rendition(settings.mp3_bitrate).id

    def prepare(self) -> None:
        """Register the model's stems, so the gateway offers exactly those."""
        if self.model not in self.settings.demucs_models:
            log.warning("DEMUCS_MODEL=%s is not in DEMUCS_MODELS (%s): no song will be queued "
                        "for it", self.model, ",".join(self.settings.demucs_models))
        # Stems, family, sample rate, chunk and size, and that this worker serves the model.
        modelinfo.register(self.redis, self.model, self.worker_id, model_facts(self.separator))

    def work(self, attempt: Attempt) -> None:
        """Separate the song into lossless stems in the store, then hand off to its render job."""
        job = attempt.job
        if job.model and job.model != self.model:
            # The services disagree on DEFAULT_MODEL: its own model's worker takes it back.
            log.error("song %s: a job of model %s claimed from %s by a worker of model %s; "
                      "handed back (check DEFAULT_MODEL)", job.id, job.model, self.queue,
                      self.model)
            raise HandBack(f"a job of model {job.model}")
        log.info("song %s: separating (attempt %d)", job.id, job.attempts)
        timings = separate_to_store(
            self.separator, self.storage, job.song, job.input or song_object(job.song),
            self.model, max_seconds=self.settings.max_duration_s,
            progress=self.progress_reporter(attempt, SEPARATION_SHARE))
        attempt.timings.update(timings)
        self.metrics.separated(self.model, timings["separate"], timings["audio_seconds"])
        count_speed(self.redis, self.model, self.separator.device, timings)
        self._hand_off(attempt)

    def _hand_off(self, attempt: Attempt) -> None:
        """End the claim by queueing the render job; remove the stems if nobody wants them."""
        job = attempt.job
        render = render_id(job.song, self.model, job.rendition or self.default_rendition)
        outcome = retry(lambda: self.jobs.hand_off(job.id, self.worker_id, attempt.token,
                                                   job.song, render, attempt.timings),
                        "handing the stems to the render job", attempts=12)
        log.info("song %s: separated, %s %s", job.id, outcome, attempt.timings)
        self.metrics.jobs.labels("separated").inc()
        if outcome in ("cancelled", "missing"):
            # Cancelled meanwhile, or deleted (its objects removed before ours were stored).
            self._remove_stems(job.song)
        elif outcome == "stale":
            log.warning("song %s: result dropped, another worker took the job over", job.id)
        self._move_ensembles(job.song)
        self.outbox.send_owed()

    def finish(self, attempt: Attempt, status: JobStatus, error: str = "",
               tracks: list[str] | None = None) -> bool:
        """End the job; the song's ensembles waiting on a failed or cancelled one fail now."""
        current = super().finish(attempt, status, error, tracks)
        if self._move_ensembles(attempt.job.song):
            self.outbox.send_owed()  # a failed ensemble's callback
        return current

    def _move_ensembles(self, song_hash: str) -> int:
        """Queue the song's ensembles whose members have all finished, fail those with a
        failed member; how many moved."""
        return retry(lambda: ensemble_jobs.release(
            self.redis, song_hash, self.settings.default_model, keys.outbox(self.worker_id)),
            "moving the song's ensembles on")

    def _remove_stems(self, song_hash: str) -> None:
        try:
            for stem in self.separator.sources:
                retry(partial(self.storage.remove_lossless, song_hash, self.model, stem),
                      f"removing the {stem} stem")
        except StorageError as error:
            log.error("song %s: stems of a cancelled or deleted job left in the store (%s)",
                      song_hash, error)


def main() -> int:
    """`python -m worker`: load the model, then separate songs until SIGTERM."""
    if (started := start("worker")) is None:
        return 2
    settings, client, metrics = started  # metrics served before the model loads
    loading = time.monotonic()
    try:
        separator = Separator(settings)
    except ModelLoadError as error:
        log.critical("%s", error)
        return EXIT_MODEL_UNAVAILABLE
    metrics.loaded(settings.demucs_model, time.monotonic() - loading, separator.batched.batch)
    serve(Worker(settings, separator, client, metrics), settings.shutdown_grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
