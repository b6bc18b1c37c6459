"""The render worker: claims render jobs from `toRender`, makes each rendition from the
song's lossless stems in its own process pool, and stores its tracks. It loads no model.

Run with `python -m worker.render` (see worker/render/__main__.py).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from contextlib import closing

import redis

from common import keys, tracks
from common.jobs import Job, JobStatus
from common.logship import setup_logging
from common.redisconn import connect
from common.settings import Settings
from common.storage import NotFound, StorageError, rendition_object
from worker.errors import InputMissing, JobFailed
from worker.jobloop import HandBack, JobLoop, Superseded, retry
from worker.render.pool import Renderer

log = logging.getLogger("worker")


class RenderWorker(JobLoop):
    """Claims render jobs one at a time; the tracks of each are encoded in parallel."""

    def __init__(self, settings: Settings, client: redis.Redis):
        super().__init__(settings, client, keys.RENDER_QUEUE)
        self.renderer = Renderer(settings.render_processes)

    def close(self) -> None:
        self.renderer.close()

    def work(self, job_id: str, token: str) -> None:
        job = retry(lambda: self.jobs.get(job_id), "reading the job", attempts=12)
        if job is None:  # deleted since it started: only our processing list to clear
            self.finish(job_id, token, JobStatus.FAILED)
            return
        log.info("job %s: rendering (attempt %d)", job_id, job.attempts)
        timings: dict[str, float] = {"queue_wait": round(time.time() - job.created, 3)}
        stored: list[str] = []  # objects this attempt wrote
        status, error, names = JobStatus.FAILED, "", []
        try:
            names = self._render(job, token, timings, stored)
            status = JobStatus.DONE
        except JobFailed as failure:
            error = str(failure)
        except Superseded:
            error = "superseded"
        except HandBack as why:  # what it stored stays for the next attempt to overwrite
            self.hand_back(job_id, token, str(why))
            return
        ended = self.finish(job_id, token, status, error, names, timings, job.parent)
        if status is not JobStatus.DONE or not ended:
            self._remove(job, stored)

    def _render(self, job: Job, token: str, timings: dict, stored: list[str]) -> list[str]:
        """Fetch the lossless stems, render and store every track; the tracks' names."""
        rendition = tracks.parse_rendition(job.rendition)
        started = time.monotonic()
        stems = {stem: self._lossless(job, stem) for stem in self._stems(job.model)}
        timings["fetch"] = round(time.monotonic() - started, 3)
        started = encoded = time.monotonic()
        names = rendition.track_names(list(stems))
        # Each track is stored as soon as it is encoded, while the others still encode.
        with closing(self.renderer.render(stems, rendition)) as rendered:
            for name, data in rendered:
                encoded = time.monotonic()
                self._store(job, token, rendition.id, name, data, stored)
                try:
                    self.jobs.set_progress(job.id, token, len(stored) / len(names))
                except redis.RedisError:
                    pass  # progress is advisory; the claim and the result are what matter
        # render: until the last track was encoded; store: the upload after that.
        timings["render"] = round(encoded - started, 3)
        timings["store"] = round(time.monotonic() - encoded, 3)
        return names

    def _store(self, job: Job, token: str, rendition: str, track: str, data: bytes,
               stored: list[str]) -> None:
        # An attempt presumed dead must not write beside its successor, nor a deleted job
        # leave tracks behind: stop at once.
        if not retry(lambda: self.jobs.is_current(job.id, token), "checking the job"):
            raise Superseded
        name = rendition_object(job.song, job.model, rendition, track)
        stored.append(name)  # before the upload: an upload cut short may still have landed
        try:
            retry(lambda: self.storage.put_output(name, data, tracks.parse_track(track).mime),
                  f"storing {track}")
        except StorageError as error:
            raise HandBack(f"object store unavailable: {error}") from None

    def _stems(self, model: str) -> list[str]:
        """The model's stems in its own order: as its workers registered them, else known."""
        registered = retry(lambda: self.redis.hget(keys.MODELS, model), "reading the models")
        stems = json.loads(registered) if registered else list(tracks.known_stems(model))
        if not stems:
            raise InputMissing(f"no worker has registered the stems of model {model!r}")
        return stems

    def _lossless(self, job: Job, stem: str) -> bytes:
        try:
            return retry(lambda: self.storage.get_lossless(job.song, job.model, stem),
                         f"fetching the {stem} stem", attempts=4)
        except NotFound:
            raise InputMissing(f"the lossless {stem} stem of model {job.model} is no longer "
                               "stored; submit the song again") from None
        except StorageError as error:
            raise HandBack(f"object store unavailable: {error}") from None

    def _remove(self, job: Job, stored: list[str]) -> None:
        """Remove the tracks this attempt stored, unless another attempt holds the job now
        (it writes the same tracks, and may have written them already)."""
        try:
            current = retry(lambda: self.jobs.get(job.id), "reading the job")
            if stored and (current is None or not current.token):
                retry(lambda: self.storage.remove_output(stored), "removing tracks")
                log.warning("job %s: removed the %d tracks of an unfinished rendition", job.id,
                            len(stored))
        except (redis.RedisError, StorageError) as error:
            log.error("job %s: tracks of an unfinished rendition left behind (%s)", job.id,
                      error)


def main() -> int:
    settings = Settings.for_service("render")
    if settings is None:
        return 2
    client = connect(settings, socket_timeout=10)
    setup_logging(settings, "render", client)
    worker = RenderWorker(settings, client)
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
