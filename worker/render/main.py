"""The render worker: claims render jobs from `toRender`, makes each rendition from the
song's lossless stems in its own process pool, and stores its tracks. It loads no model.

Finishing a render job also ends the separation waiting for it (docs/jobs.md), so the callback
that separation owes is sent from here. Run with `python -m worker.render`.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from contextlib import closing

import redis

from common import ensemble_jobs, keys, operations, tracks
from common.jobs import Job, JobStatus
from common.settings import Settings
from common.storage import NotFound, StorageError, job_prefix, rendition_object
from worker.render import ensemble
from worker.render import operations as render_operations
from worker.render.pool import Renderer
from worker.runtime.errors import EncodeFailed, InputMissing, Superseded
from worker.runtime.loop import Attempt, ClaimLoop
from worker.runtime.metrics import WorkerMetrics
from worker.runtime.retry import retry
from worker.runtime.serve import serve, start

log = logging.getLogger("worker")


class RenderWorker(ClaimLoop):
    """Claims render jobs one at a time; the tracks of each are encoded in parallel."""

    def __init__(self, settings: Settings, client: redis.Redis,
                 metrics: WorkerMetrics | None = None):
        super().__init__(settings, client, keys.RENDER_QUEUE, metrics)
        self.renderer = Renderer(settings.render_processes)

    def close(self) -> None:
        self.renderer.close()
        super().close()

    def work(self, attempt: Attempt) -> list[str]:
        """Make the job's operation from the song's lossless stems; the names of its files."""
        log.info("job %s: rendering (attempt %d)", attempt.id, attempt.job.attempts)
        return self._render(attempt, attempt.stored)

    def _render(self, attempt: Attempt, stored: list[str]) -> list[str]:
        """Fetch the lossless stems, make the job's operation and store every file it writes;
        the files' names."""
        job, timings = attempt.job, attempt.timings
        model_stems = self._stems(job.model)
        op = self._operation(job.rendition, model_stems)
        handler = render_operations.handler_of(op.kind)
        if handler is None:
            raise EncodeFailed(f"this render worker makes no {op.kind} operation")
        self._abort_leftovers(job, op.id)
        with tempfile.TemporaryDirectory(prefix="render-") as folder:
            started = time.monotonic()
            os.mkdir(stem_folder := os.path.join(folder, "stems"))
            stems = self._fetch_stems(job, op, model_stems, stem_folder)
            timings["fetch"] = round(time.monotonic() - started, 3)
            started = made = time.monotonic()
            work = render_operations.OperationInput(
                job.song, job.model, op, stems, folder, self.renderer,
                self.progress_reporter(attempt), job.params)
            names = []
            # Each file is stored as soon as it is written, while the others are still made.
            with closing(handler(work)) as outputs:
                for name, path, mime in outputs:
                    made = time.monotonic()
                    self._store(attempt, rendition_object(job.song, job.model, op.id, name),
                                path, mime, stored)
                    os.remove(path)
                    names.append(name)
        # render: until the last file was written; store: the upload after that.
        timings["render"] = round(made - started, 3)
        timings["store"] = round(time.monotonic() - made, 3)
        # A rendition's tracks are listed in the model's order, whichever finished first.
        return op.rendition.track_names(model_stems) if op.rendition else names

    @staticmethod
    def _operation(op_id: str, model_stems: list[str]) -> operations.Operation:
        """The job's operation, checked against the model; EncodeFailed if it cannot be made
        (the gateway checks first: a record from elsewhere)."""
        try:
            op = operations.parse_operation(op_id)
            if op.rendition:
                op.rendition.check(model_stems)
        except (operations.OperationError, tracks.TrackError) as error:
            raise EncodeFailed(f"cannot render {op_id!r}: {error}") from None
        return op

    def _abort_leftovers(self, job: Job, op_id: str) -> None:
        """Abort the multipart uploads an earlier attempt of the job left open where it writes
        (one killed mid-upload whose job was retried before a reaper aborted them), before
        this attempt sends its own."""
        prefix = job_prefix(job.song, job.model, op_id)
        if leftovers := retry(lambda: self.storage.abort_uploads(prefix),
                              "aborting an earlier attempt's uploads"):
            log.warning("job %s: %d open upload(s) of an earlier attempt aborted", job.id,
                        leftovers)

    def _store(self, attempt: Attempt, name: str, path: str, mime: str,
               stored: list[str]) -> None:
        # An attempt presumed dead must not write beside its successor, nor a deleted job
        # leave tracks behind: stop at once.
        if not retry(lambda: self.jobs.is_current(attempt.id, attempt.token), "checking the job"):
            raise Superseded(attempt.id)
        stored.append(name)  # before the upload: an upload cut short may still have landed
        retry(lambda: self.storage.put_output_file(name, path, mime), f"storing {name}")

    def _stems(self, model: str) -> list[str]:
        """The model's stems in its own order: as its workers registered them, else known."""
        stems = retry(self.jobs.models, "reading the models").get(model) or list(
            tracks.known_stems(model))
        if not stems:
            raise InputMissing(f"no worker has registered the stems of model {model!r}")
        return stems

    def _fetch_stems(self, job: Job, op: operations.Operation, model_stems: list[str],
                     folder: str) -> dict[str, str]:
        """The lossless stems an operation reads, as files: the model's own by stem, or, for
        an ensemble's stems, its members' as `<member>/<stem>`."""
        if op.kind != operations.STEMS:
            return {stem: self._lossless(job.song, job.model, stem, folder)
                    for stem in model_stems}
        ensemble.check_members(self.jobs, job.song, job.params)
        paths = {}
        for member, stem in ensemble.member_inputs(job.params):
            os.makedirs(member_folder := os.path.join(folder, member), exist_ok=True)
            paths[f"{member}/{stem}"] = self._lossless(job.song, member, stem, member_folder)
        return paths

    def finish(self, attempt: Attempt, status: JobStatus, error: str = "",
               tracks: list[str] | None = None) -> bool:
        """End the job; an ensemble's stems job settles its ensemble, and a song's ensembles
        whose members have all finished now are queued, those with a failed member failed."""
        job = attempt.job
        if job.rendition == operations.STEMS and error != "superseded":
            retry(lambda: ensemble_jobs.arm(self.redis, job.parent, job.id), "arming")
        current = super().finish(attempt, status, error, tracks)
        if retry(lambda: ensemble_jobs.release(self.redis, job.song, self.settings.default_model,
                                               keys.outbox(self.worker_id)),
                 "moving the song's ensembles on"):
            self.outbox.send_owed()  # a failed ensemble's callback
        return current

    def _lossless(self, song: str, model: str, stem: str, folder: str) -> str:
        """Fetch a lossless stem into a file of `folder`; its path."""
        path = os.path.join(folder, tracks.lossless_track(stem))
        try:
            retry(lambda: self.storage.download_lossless(song, model, stem, path),
                  f"fetching the {stem} stem", attempts=4)
        except NotFound:
            raise InputMissing(f"the lossless {stem} stem of model {model} is no longer "
                               "stored; submit the song again") from None
        return path

    def discard(self, attempt: Attempt) -> None:
        """Remove the tracks this attempt stored, unless another attempt holds the job now
        (it writes the same tracks, and may have written them already)."""
        stored = attempt.stored
        try:
            current = retry(lambda: self.jobs.get(attempt.id), "reading the job")
            if stored and (current is None or not current.token):
                retry(lambda: self.storage.remove_output(stored), "removing tracks")
                log.warning("job %s: removed the %d tracks of an unfinished rendition",
                            attempt.id, len(stored))
        except (redis.RedisError, StorageError) as error:
            log.error("job %s: tracks of an unfinished rendition left behind (%s)", attempt.id,
                      error)


def main() -> int:
    """`python -m worker.render`: render tracks from lossless stems until SIGTERM."""
    if (started := start("render")) is None:
        return 2
    settings, client, metrics = started
    serve(RenderWorker(settings, client, metrics), settings.shutdown_grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
