"""The worker's side of a job: claim, start, progress, end, hand back, and the reapers' requeue.

Each claim gets an attempt token; only the holder of the current token may report progress,
end the job or hand it back, so a worker that was presumed dead and comes back cannot
overwrite the result of its successor, and a worker whose job was deleted learns it.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import cast

import redis

from common import jobscripts, keys, operations
from common.records import JobStatus, parse_render_id, render_id, song_of
from common.redisconn import TextReads


class Claims:
    """Transitions a worker makes; mixed into JobStore, which holds `redis` and the scripts."""

    redis: redis.Redis
    text: TextReads
    max_render_queue: int

    def _register(self) -> None:
        script = self.redis.register_script
        self._start = script(jobscripts.START)
        self._progress = script(jobscripts.PROGRESS)
        self._finish = script(jobscripts.FINISH)
        self._hand_off = script(jobscripts.HAND_OFF)
        self._hand_back = script(jobscripts.HAND_BACK)
        self._requeue_orphan = script(jobscripts.REQUEUE_ORPHAN)
        self._callback_sent = script(jobscripts.CALLBACK_SENT)

    def claim(self, worker_id: str, timeout: int, queue: str = keys.QUEUE) -> str | None:
        """Move the oldest job id of `queue` into this worker's list; None after `timeout` s."""
        claimed = self.redis.blmove(queue, keys.processing(worker_id), timeout, "LEFT", "RIGHT")
        return cast("str | None", claimed)

    def start(self, job_id: str, worker_id: str, token: str | None = None) -> str | None:
        """Begin an attempt on a claimed job; returns its token, or None if not startable.

        Pass the same `token` when retrying, so that a call whose reply was lost is not
        mistaken for a job held by someone else.
        """
        token = token or uuid.uuid4().hex
        in_flight = keys.inflight(keys.queue_of(job_id))
        status = self._start(keys=[keys.job(job_id), keys.processing(worker_id), in_flight],
                             args=[job_id, token, worker_id, time.time()])
        return token if status == "started" else None

    def is_current(self, job_id: str, token: str) -> bool:
        """Whether `token` is still the job's current attempt."""
        return self.text.field(keys.job(job_id), "token") == token

    def set_progress(self, job_id: str, token: str, progress: float) -> str:
        """Record progress: 'ok', 'cancel' (stop: a cancel was asked) or 'stale' (stop: the
        attempt is no longer current, or the job was deleted)."""
        return str(self._progress(keys=[keys.job(job_id)],
                                  args=[token, round(progress, 4), time.time()]))

    def finish(self, job_id: str, worker_id: str, token: str, status: JobStatus,
               error: str = "", tracks: list[str] | None = None,
               timings: dict[str, float] | None = None, parent: str = "") -> bool:
        """Write the final status (and a waiting separation's, for a render job `parent`);
        False when this attempt is no longer the current one. An ensemble's stems job, done,
        queues the studio operations of those stems in the same step."""
        studio = self._studio(*parse_render_id(job_id)[:2]) if _makes_stems(job_id) else []
        return bool(self._finish(
            keys=[keys.job(job_id), keys.processing(worker_id), keys.outbox(worker_id),
                  keys.inflight(keys.queue_of(job_id)), keys.EXPIRY, keys.FINISHED,
                  keys.job(parent or job_id), keys.RENDER_QUEUE, keys.song(song_of(job_id)),
                  *map(keys.job, studio)],
            args=[job_id, token, status.value, error, time.time(),
                  json.dumps(tracks or []), json.dumps(timings or {}), self.max_render_queue,
                  *studio],
        ))

    def hand_off(self, job_id: str, worker_id: str, token: str, song_hash: str, render: str,
                 timings: dict[str, float]) -> str:
        """End a separation's claim once its stems are stored, queueing its render job and,
        while the render queue is shorter than `max_render_queue`, its studio operations.

        Returns 'rendering' (queued or already under way), 'done' (that rendition was stored
        already), 'cancelled' (a cancel came first: remove the stems), 'stale' (another
        attempt holds the job) or 'missing' (the song was deleted: remove the stems).
        """
        in_flight = keys.inflight(keys.queue_of(job_id))
        song, model, rendition = parse_render_id(render)
        studio = self._studio(song, model)
        return str(self._hand_off(
            keys=[keys.job(job_id), keys.processing(worker_id), in_flight, keys.job(render),
                  keys.RENDER_QUEUE, keys.song(song_hash), keys.EXPIRY, keys.FINISHED,
                  keys.outbox(worker_id), *map(keys.job, studio)],
            args=[job_id, token, time.time(), render, song, model, rendition,
                  json.dumps(timings), self.max_render_queue, *studio]))

    @staticmethod
    def _studio(song_hash: str, model: str) -> list[str]:
        """The render job ids of the studio operations of a song's stems made by `model`."""
        return [render_id(song_hash, model, op) for op in operations.STUDIO]

    def hand_back(self, job_id: str, worker_id: str, token: str) -> bool:
        """Return a job to the head of its queue, its attempt counted but no death."""
        queue = keys.queue_of(job_id)
        return bool(self._hand_back(
            keys=[keys.job(job_id), keys.processing(worker_id), queue, keys.inflight(queue)],
            args=[job_id, token, time.time()],
        ))

    def requeue_orphan(self, job_id: str, dead_worker: str, max_deaths: int) -> str:
        """Take a job from a dead worker: requeue it, or fail it after `max_deaths` deaths."""
        queue = keys.queue_of(job_id)
        parent = self.text.field(keys.job(job_id), "parent") or job_id
        return str(self._requeue_orphan(
            keys=[keys.job(job_id), keys.processing(dead_worker), queue,
                  keys.outbox(dead_worker), keys.inflight(queue), keys.EXPIRY, keys.FINISHED,
                  keys.job(parent)],
            args=[job_id, dead_worker, max_deaths, time.time()],
        ))

    def claimed_by(self, worker_id: str) -> list[str]:
        """Job ids in a worker's processing list."""
        return self.text.items(keys.processing(worker_id))

    # -- callbacks owed ---------------------------------------------------------------------
    def owed_callbacks(self, worker_id: str) -> list[str]:
        """Jobs whose callback this worker owes (it, or a dead worker it adopted, ended them)."""
        return self.text.items(keys.outbox(worker_id))

    def callback_sent(self, worker_id: str, job_id: str, outcome: str) -> None:
        """Record what became of a callback and strike it from the worker's outbox."""
        self._callback_sent(keys=[keys.job(job_id), keys.outbox(worker_id)],
                            args=[job_id, outcome])

    def adopt_callbacks(self, dead_worker: str, worker_id: str) -> list[str]:
        """Move a dead worker's owed callbacks to this worker's outbox, one atomic move each."""
        adopted: list[str] = []
        while job_id := self.redis.lmove(keys.outbox(dead_worker), keys.outbox(worker_id)):
            adopted.append(cast(str, job_id))
        return adopted


def _makes_stems(job_id: str) -> bool:
    """Whether a job is an ensemble's stems job (`H:<ensemble>:stems`)."""
    return job_id.count(":") == 2 and parse_render_id(job_id)[2] == operations.STEMS
