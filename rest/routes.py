"""The routes of the API, all under /apiv1/, plus the health probes."""

from __future__ import annotations

import logging
import time

import redis
from flask import Blueprint, Response, current_app, request

from common.jobs import EnqueueResult, JobStatus, JobStore
from common.storage import NotFound, Storage, StorageError
from rest import access, openapi
from rest.errors import ApiError, unavailable
from rest.validate import json_object, song_hash_param, submission, track_param

log = logging.getLogger("rest")
api = Blueprint("api", __name__)
# Every route is guarded by rest/access.py: methods other than GET are writes; these are open,
# and this one GET route (the original design's remove) is a write too.
access.install(api, open_endpoints={"api.healthz", "api.readyz", "api.openapi_document"},
               writes_by_get={"api.remove"})

_REASONS = {
    EnqueueResult.ENQUEUED: "Song enqueued for separation",
    EnqueueResult.RETRIED: "Song enqueued for separation again (the previous attempt did "
                           "not complete)",
    EnqueueResult.ALREADY_QUEUED: "Song already queued",
    EnqueueResult.ALREADY_PROCESSING: "Song already being separated",
    EnqueueResult.ALREADY_DONE: "Song already separated",
}


def _settings():
    return current_app.config["SETTINGS"]


def _jobs() -> JobStore:
    return current_app.extensions["jobs"]


def _storage() -> Storage:
    return current_app.extensions["storage"]


@api.post("/apiv1/separate")
def separate():
    settings = _settings()
    song = submission(json_object(request), settings)
    job = _jobs().get(song.song_hash)
    if job is not None and job.status is JobStatus.DONE and job.complete:
        _forget_lost_stems(job)
        job = _jobs().get(song.song_hash)
    if job is not None and not job.may_resubmit():
        return {"hash": song.song_hash, "reason": _REASONS[EnqueueResult.already(job.status)]}
    if _jobs().queue_length() >= settings.max_queue_length:
        raise unavailable(f"the queue is full ({settings.max_queue_length} songs); retry later")
    started = time.monotonic()
    stored_before = _storage().song_exists(song.song_hash)
    if not stored_before:
        _storage().put_song(song.song_hash, song.mp3)
    try:
        result = _jobs().enqueue(song.song_hash, song.callback, settings.max_queue_length,
                                 time.monotonic() - started)
    except redis.RedisError:
        _forget_upload(song.song_hash, stored_before)
        raise
    if result is EnqueueResult.QUEUE_FULL:
        _forget_upload(song.song_hash, stored_before)
        raise unavailable(f"the queue is full ({settings.max_queue_length} songs); retry later")
    log.info("song %s: %s (%.1f s of audio)", song.song_hash, result.value, song.duration_s)
    return {"hash": song.song_hash, "reason": _REASONS[result]}


def _forget_lost_stems(job) -> None:
    """Mark stems missing from the store as removed, so that resubmitting separates again."""
    stored = {f"{name}.mp3" for name in _storage().stems(job.song_hash)}
    for track in set(job.tracks) - stored:
        log.warning("song %s: %s is missing from the object store", job.song_hash, track)
        _jobs().remove_track(job.song_hash, track)


def _forget_upload(song_hash: str, stored_before: bool) -> None:
    """Remove an upload that no job refers to, so a failed submission leaves nothing behind."""
    if stored_before:
        return
    try:
        _storage().remove_song(song_hash)
    except (StorageError, NotFound) as error:
        log.error("song %s: could not remove the orphaned upload: %s", song_hash, error)


@api.get("/apiv1/queue")
def queue():
    # The body is never read: the original client sends `null` as JSON with this GET.
    return {"queue": _jobs().queued()}


def _job_or_404(song_hash: str):
    job = _jobs().get(song_hash)
    if job is None:
        raise ApiError(404, f"no song with hash {song_hash}; submit it to /apiv1/separate")
    return job


@api.get("/apiv1/status/<songhash>")
def status(songhash: str):
    job = _job_or_404(song_hash_param(songhash))
    return {
        "hash": job.song_hash,
        "status": job.status.value,
        "tracks": job.tracks,
        "error": job.error or None,
        "progress": job.progress,
        "attempts": job.attempts,
        "callback": job.callback_status or None,
        "timings": job.timings,
    }


def _done_track(songhash: str, track: str):
    song_hash, name = song_hash_param(songhash), track_param(track)
    job = _job_or_404(song_hash)
    if job.status is not JobStatus.DONE:
        raise ApiError(404, f"song {song_hash} is not separated yet (status {job.status.value})",
                       status=job.status.value, progress=job.progress)
    if name not in job.tracks:
        raise ApiError(404, f"song {song_hash} has no track {name}; it has "
                            f"{', '.join(job.tracks) or 'none left'}", tracks=job.tracks)
    return song_hash, name


@api.get("/apiv1/track/<songhash>/<track>")
def track(songhash: str, track: str):
    song_hash, name = _done_track(songhash, track)
    try:
        size, chunks = _storage().stream_stem(song_hash, name.removesuffix(".mp3"))
    except NotFound:
        raise ApiError(404, f"track {name} of song {song_hash} is missing from the object "
                            "store; resubmit the song") from None
    headers = {"Content-Disposition": f'attachment; filename="{song_hash}-{name}"',
               "Content-Length": str(size)}
    return Response(chunks, mimetype="audio/mpeg", headers=headers)


@api.route("/apiv1/remove/<songhash>/<track>", methods=["GET", "DELETE"])
def remove(songhash: str, track: str):
    # GET is kept for the original clients (REMOVE_REQUIRES_DELETE refuses it); HEAD is refused.
    song_hash, name = _done_track(songhash, track)
    # The object first: if the store fails, the record still names the track and a retry works.
    try:
        _storage().remove_stem(song_hash, name.removesuffix(".mp3"))
    except NotFound:
        pass  # already gone: the record is brought in line below
    _jobs().remove_track(song_hash, name)
    log.info("song %s: removed %s", song_hash, name)
    return {"hash": song_hash, "track": name, "reason": "Track removed"}


@api.get("/apiv1/openapi.json")
def openapi_document():
    return openapi.document()


@api.get("/healthz")
def healthz():
    return {"status": "alive"}


@api.get("/readyz")
def readyz():
    # Anonymous callers learn only whether the gateway is ready; what failed goes to the log.
    problems = {}
    try:
        current_app.extensions["redis"].ping()
    except redis.RedisError as error:
        problems["redis"] = error
    try:
        _storage().ensure_buckets()  # a fresh store gets them here: no one-shot setup job
    except StorageError as error:
        problems["object store"] = error
    if problems:
        log.error("not ready: %s", "; ".join(f"{k}: {v}" for k, v in problems.items()))
        raise unavailable("not ready")
    return {"status": "ready"}
