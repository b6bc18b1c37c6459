"""Job records and every transition of them, each one atomic in Redis (docs/jobs.md).

A job moves queued -> processing -> done | failed | cancelled. A separation job (`H`, or
`H:<model>` for a model other than the default) ends its claim by queueing the render job
(`H:<model>:<rendition>`) of the rendition its submitter asked for, and ends with it. The
gateway's transitions are here; the workers' are in common/claims.py.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis

from common import jobscripts, keys, operations, songscripts
from common.claims import Claims
from common.records import (
    CancelResult,
    EnqueueResult,
    Job,
    JobStatus,
    Kind,
    RenditionResult,
    render_id,
    separation_id,
)
from common.redisconn import TextReads

__all__ = ["CancelResult", "EnqueueResult", "Job", "JobStatus", "JobStore", "Kind",
           "RenditionRefused", "RenditionResult", "render_id", "separation_id"]


class RenditionRefused(Exception):
    """No new render job: the render queue is full (QUEUE_FULL) or the song has its most
    renditions (TOO_MANY)."""

    def __init__(self, result: RenditionResult, song_hash: str):
        super().__init__(f"{result.value}: {song_hash}")
        self.result, self.song_hash = result, song_hash


class JobStore(Claims):
    """All reads and writes of job records, queues, processing lists and the models served."""

    def __init__(self, client: redis.Redis, default_model: str, *, max_render_queue: int = 0,
                 max_renditions: int = 0):
        """`max_render_queue`, `max_renditions`: limits on the render jobs `request_rendition`
        makes (0: none); the first also on the studio operations queued with new stems."""
        self.redis = client
        self.max_render_queue, self.max_renditions = max_render_queue, max_renditions
        self.text = TextReads(client)
        self.default_model = default_model
        script = client.register_script
        self._enqueue = script(jobscripts.ENQUEUE_SEPARATION)
        self._add_owner = script(songscripts.ADD_OWNER)
        self._finish_deletion = script(songscripts.FINISH_DELETION)
        self._request_rendition = script(jobscripts.REQUEST_RENDITION)
        self._cancel = script(jobscripts.CANCEL)
        self._delete_song = script(songscripts.DELETE_SONG)
        self._remove_track = script(songscripts.REMOVE_TRACK)
        self._register()

    # -- records ----------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        """The record of one job (a song hash names the default model's separation)."""
        raw = self.text.hash(keys.job(job_id))
        return Job.from_redis(job_id, raw) if raw else None

    def separation_id(self, song_hash: str, model: str = "") -> str:
        """The id of a song's separation with `model` (the default one unless named)."""
        return separation_id(song_hash, model or self.default_model, self.default_model)

    def separation(self, song_hash: str, model: str = "") -> Job | None:
        """The separation job of a song with a model (the default one unless named)."""
        return self.get(self.separation_id(song_hash, model))

    def song_jobs(self, song_hash: str) -> list[Job]:
        """Every job of a song, all models and renditions, separations first."""
        ids = sorted(self.text.members(keys.song(song_hash)), key=lambda i: (i.count(":"), i))
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(keys.job(job_id))
        records = zip(ids, pipe.execute(), strict=True)
        return [Job.from_redis(job_id, raw) for job_id, raw in records if raw]

    # -- separations ------------------------------------------------------------------------
    def queue_for(self, model: str = "") -> str:
        """The queue of a model's separations (`toWorker` for the default model)."""
        return keys.separation_queue(model or self.default_model, self.default_model)

    def enqueue(self, song_hash: str, callback: dict[str, Any] | None, max_queue: int,
                store_seconds: float = 0.0, *, model: str = "", rendition: str = "",
                input_object: str = "", deletions: str = "0", owner: str = "") -> EnqueueResult:
        """Create the record and append to the model's queue in one step, unless the song is
        there already (Job.may_resubmit decides). Empty `rendition`/`input_object`: the
        worker's defaults (every stem as mp3 at MP3_BITRATE; `<hash>.mp3`). `deletions`: the
        song's deletion counter as read before its upload was looked for (DELETING if it
        changed); `owner`: the id of the submitting key, recorded with the job."""
        model = model or self.default_model
        job_id = self.separation_id(song_hash, model)
        while True:
            raw = self.text.hash(keys.job(job_id))
            if raw and not (job := Job.from_redis(job_id, raw)).may_resubmit():
                return EnqueueResult.already(job.status)
            result = self._enqueue(
                keys=[keys.job(job_id), self.queue_for(model), keys.song(song_hash), keys.EXPIRY,
                      keys.deletions(song_hash), keys.owners(song_hash)],
                args=[job_id, song_hash, model, rendition, input_object,
                      json.dumps(callback) if callback else "", time.time(), max_queue,
                      round(store_seconds, 4), raw.get("status", ""), raw.get("complete", ""),
                      deletions, owner])
            if result != "changed":  # changed: another call got in first; decide again
                return EnqueueResult(result)

    # -- owners -----------------------------------------------------------------------------
    def add_owner(self, song_hash: str, owner: str) -> None:
        """Record one more key that submitted the song (unless the song is gone)."""
        self._add_owner(keys=[keys.song(song_hash), keys.owners(song_hash)], args=[owner])

    def owners(self, song_hash: str) -> set[str]:
        """The ids of the keys that submitted the song (none when keys were off)."""
        return self.text.members(keys.owners(song_hash))

    def owned(self, owner: str, song_hashes: list[str]) -> list[str]:
        """Those of `song_hashes` that `owner` submitted, in their order."""
        pipe = self.redis.pipeline(transaction=False)
        for song_hash in song_hashes:
            pipe.sismember(keys.owners(song_hash), owner)
        return [song for song, mine in zip(song_hashes, pipe.execute(), strict=True) if mine]

    def cancel(self, song_hash: str, model: str = "") -> CancelResult:
        """Cancel a song's separation: a queued one leaves its queue, a running one stops at
        its next segment; FINISHED when it (or its separation) ended already."""
        job_id = self.separation_id(song_hash, model)
        outcome = self._cancel(
            keys=[keys.job(job_id), self.queue_for(model), keys.EXPIRY, keys.FINISHED],
            args=[job_id, time.time()])
        return CancelResult(outcome)

    # -- renditions -------------------------------------------------------------------------
    def request_rendition(self, song_hash: str, model: str, rendition: str,
                          params: str = "") -> RenditionResult:
        """Queue the render job of a rendition, or of any render operation (common/operations.py;
        `params` its canonical JSON), unless it is stored or on its way; a new one only while
        the render queue is shorter than `max_render_queue` and the song has fewer than
        `max_renditions` render jobs, its studio operations aside (else RenditionRefused)."""
        model = model or self.default_model
        render = render_id(song_hash, model, rendition)
        separation = self.separation_id(song_hash, model)
        result = RenditionResult(self._request_rendition(
            keys=[keys.job(render), keys.RENDER_QUEUE, keys.song(song_hash), keys.job(separation)],
            args=[render, song_hash, model, rendition, separation, time.time(), params,
                  self.max_render_queue, self.max_renditions, ",".join(operations.STUDIO)]))
        if result in (RenditionResult.QUEUE_FULL, RenditionResult.TOO_MANY):
            raise RenditionRefused(result, song_hash)
        return result

    def remove_track(self, job_id: str, track: str) -> None:
        """Strike a track from a job's list; the job is no longer complete."""
        self._remove_track(keys=[keys.job(job_id)], args=[track])

    # -- deletion and expiry ----------------------------------------------------------------
    def delete_song(self, song_hash: str) -> list[str]:
        """Remove every job record and the owners of a song (each running attempt thereby
        loses its token); returns their ids. Submissions of the song are refused (DELETING)
        until the caller has removed its objects and called `deleted`."""
        while True:
            ids = sorted(self.text.members(keys.song(song_hash)))
            job_keys = [key for job_id in ids for key in (
                keys.job(job_id), keys.queue_of(job_id), keys.inflight(keys.queue_of(job_id)))]
            if self._delete_song(keys=[keys.song(song_hash), keys.EXPIRY,
                                       keys.deletions(song_hash), keys.owners(song_hash),
                                       *job_keys],
                                 args=[song_hash, *ids]) >= 0:
                return ids

    def deletions(self, song_hash: str) -> str:
        """The song's deletion counter, to hand to `enqueue` (odd: a deletion under way)."""
        return self.text.value(keys.deletions(song_hash)) or "0"

    def deleted(self, song_hash: str) -> None:
        """The song's objects are gone: it may be submitted again."""
        self._finish_deletion(keys=[keys.deletions(song_hash)])

    def expired_songs(self, ended_before: float, limit: int = 100) -> list[str]:
        """Songs whose newest job ended before `ended_before` (a Unix time), oldest first."""
        songs = self.redis.zrangebyscore(keys.EXPIRY, "-inf", ended_before, start=0, num=limit)
        return cast("list[str]", songs)

    def sweep_later(self, song_hash: str) -> None:
        """Leave a song for the next sweep, whatever RESULT_TTL_HOURS (its delete failed)."""
        self.redis.zadd(keys.EXPIRY, {song_hash: 0})

    # -- models and queues ------------------------------------------------------------------
    def register_model(self, model: str, stems: list[str]) -> None:
        """Record the stems a model gives (each separation worker does at start)."""
        self.redis.hset(keys.MODELS, model, json.dumps(stems))

    def models(self) -> dict[str, list[str]]:
        """Stems of each model a worker registered."""
        registered = self.text.hash(keys.MODELS)
        return {model: json.loads(stems) for model, stems in registered.items()}

    def queued(self, queue: str = keys.QUEUE) -> list[str]:
        """Job ids waiting in a queue, oldest first."""
        return self.text.items(queue)

    def queued_songs(self, model: str = "") -> list[str]:
        """Hashes of the songs waiting in a model's queue, oldest first."""
        return [job_id.partition(":")[0] for job_id in self.queued(self.queue_for(model))]

    def place(self, job_id: str) -> tuple[int, int] | None:
        """(1-based place, length) of a job in its queue; None when it is not waiting there."""
        queue = keys.queue_of(job_id)
        pipe = self.redis.pipeline()  # one round trip, both read at the same moment
        pipe.lpos(queue, job_id)
        pipe.llen(queue)
        index, length = pipe.execute()
        return None if index is None else (index + 1, length)

    def queue_length(self, queue: str = keys.QUEUE) -> int:
        """How many jobs wait in a queue."""
        return self.redis.llen(queue)

    def finished_counts(self) -> dict[str, int]:
        """Jobs ended so far, by outcome: `done`, `cancelled`, `failed:<reason>`; render jobs
        as `render:<outcome>`."""
        return {k: int(v) for k, v in self.text.hash(keys.FINISHED).items()}

    def in_flight(self, queue: str = keys.QUEUE) -> list[str]:
        """Job ids being worked on (one entry per running attempt), as the autoscaler counts."""
        return self.text.items(keys.inflight(queue))
