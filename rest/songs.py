"""The song routes: submitting a song, the queue, a song's status, removing a track."""

from __future__ import annotations

import logging
import time

import redis
from flask import Blueprint, request

from common import tracks
from common.jobs import EnqueueResult, JobStatus, RenditionRefused, render_id
from common.storage import NotFound, StorageError, rendition_object, song_object
from rest import access
from rest import context as ctx
from rest.downloads import ready_tracks, separated, track_rendition
from rest.errors import ApiError, unavailable
from rest.options import describe, model_param
from rest.studio import status_analysis
from rest.submission import Submission, read_submission
from rest.upload import upload_slot
from rest.validate import song_hash_param, track_param

log = logging.getLogger("rest")
songs = Blueprint("songs", __name__)
# Every route is guarded by rest/access.py: methods other than GET are writes, and this one GET
# route (the original design's remove) is a write too.
access.declare(writes_by_get={"songs.remove"})

_DELETION_RETRIES = 3  # a deletion that ends while a song is submitted: look at the upload again
_REASONS = {
    EnqueueResult.ENQUEUED: "Song enqueued for separation",
    EnqueueResult.RETRIED: "Song enqueued for separation again (the previous attempt did "
                           "not complete)",
    EnqueueResult.ALREADY_QUEUED: "Song already queued",
    EnqueueResult.ALREADY_PROCESSING: "Song already being separated",
    EnqueueResult.ALREADY_DONE: "Song already separated",
}


def _existing_answer(job) -> EnqueueResult | None:
    if job is None or job.may_resubmit():
        return None
    return EnqueueResult.already(job.status)


@songs.post("/apiv1/separate")
def separate():
    """Accept a song (base64 JSON or multipart) and queue it; `{"hash", "reason"}`."""
    with upload_slot():
        song = read_submission(request, ctx.settings(), ctx.jobs())
        try:
            return _enqueue(song)
        finally:
            song.audio.close()  # the spooled upload's temporary file goes now


def _enqueue(song: Submission) -> dict:
    settings, jobs = ctx.settings(), ctx.jobs()
    owner = access.caller().key_id  # empty without API_KEYS: songs then have no owners
    job = jobs.separation(song.song_hash, song.model)
    if job is not None and job.status is JobStatus.DONE and job.complete:
        _forget_lost_tracks(job)
        job = jobs.separation(song.song_hash, song.model)
    if (known := _existing_answer(job)) is not None:
        if owner:
            jobs.add_owner(song.song_hash, owner)  # it has the bytes: it may manage the song
        return {"hash": song.song_hash, "reason": _REASONS[known]}
    if jobs.queue_length(jobs.queue_for(song.model)) >= settings.max_queue_length:
        raise _queue_full()
    for _ in range(_DELETION_RETRIES):
        result = _store_and_enqueue(song, owner)
        if result is not EnqueueResult.DELETING:
            break
    else:
        raise ApiError(409, f"song {song.song_hash} is being deleted; submit it again in a "
                            "few seconds", headers={"Retry-After": "2"})
    if owner and result not in (EnqueueResult.ENQUEUED, EnqueueResult.RETRIED):
        jobs.add_owner(song.song_hash, owner)  # there already: the script recorded no one
    log.info("song %s (%s, %.1f s of audio, %s, %s): %s", song.song_hash, song.info.format,
             song.info.duration_s, song.model, song.rendition.id, result.value)
    return {"hash": song.song_hash, "reason": _REASONS[result]}


def _queue_full() -> ApiError:
    return unavailable(f"the queue is full ({ctx.settings().max_queue_length} songs); "
                       "retry later")


def _store_and_enqueue(song: Submission, owner: str) -> EnqueueResult:
    """Store the upload unless it is there, then queue the song; DELETING when a deletion of
    the song began or ended meanwhile (the upload found may be gone: look again)."""
    settings, jobs, storage = ctx.settings(), ctx.jobs(), ctx.storage()
    deletions = jobs.deletions(song.song_hash)  # read before the upload is looked for
    if int(deletions) % 2:
        return EnqueueResult.DELETING
    started = time.monotonic()
    stored_before = storage.song_exists(song.song_hash, song.ext)
    if not stored_before:
        song.audio.seek(0)
        storage.put_song_stream(song.song_hash, song.ext, song.audio, song.size)
    try:
        result = jobs.enqueue(song.song_hash, song.callback, settings.max_queue_length,
                              time.monotonic() - started, model=song.model,
                              rendition=song.rendition.id,
                              input_object=song_object(song.song_hash, song.ext),
                              deletions=deletions, owner=owner)
    except redis.RedisError:
        _forget_upload(song.song_hash, song.ext, stored_before)
        raise
    if result is EnqueueResult.QUEUE_FULL:
        _forget_upload(song.song_hash, song.ext, stored_before)
        raise _queue_full()
    return result


def _forget_lost_tracks(job) -> None:
    """Mark tracks missing from the store as removed, so that resubmitting separates again."""
    rendition = job.rendition or ctx.default_rendition().id
    prefix = rendition_object(job.song_hash, job.model or ctx.settings().default_model,
                              rendition, "")
    stored = set(ctx.storage().names_under(prefix))
    for track in set(job.tracks) - stored:
        log.warning("song %s: %s is missing from the object store", job.song_hash, track)
        ctx.jobs().remove_track(job.id, track)


def _forget_upload(song_hash: str, ext: str, stored_before: bool) -> None:
    """Remove an upload that no job refers to, so a failed submission leaves nothing behind."""
    if stored_before:
        return
    try:
        ctx.storage().remove_song(song_hash, ext)
    except (StorageError, NotFound) as error:
        log.error("song %s: could not remove the orphaned upload: %s", song_hash, error)


@songs.get("/apiv1/queue")
def queue():
    """The songs waiting in a model's queue, oldest first, and how many jobs wait and run.

    With API_KEYS set, a caller sees only the songs its key submitted (an admin key all): a
    hash is what reads a song's stems. An open deployment lists every song, as it always did.
    """
    # The body is never read: the original client sends `null` as JSON with this GET.
    # ?model= names another model's queue; without it, the default model's `toWorker`.
    settings, jobs, caller = ctx.settings(), ctx.jobs(), access.caller()
    model = model_param(request.args.get("model"), settings)
    waiting = jobs.queued_songs(model)
    shown = waiting
    if settings.api_keys and not caller.admin:
        shown = jobs.owned(caller.key_id, waiting) if caller.key_id else []
    return {"queue": shown, "length": len(waiting),
            "in_flight": len(jobs.in_flight(jobs.queue_for(model)))}


@songs.get("/apiv1/status/<songhash>")
def status(songhash: str):
    """A song's separation with a model: status, progress, options and the tracks ready."""
    song_hash = song_hash_param(songhash)
    model = model_param(request.args.get("model"), ctx.settings())
    job = separated(song_hash, model)
    answer = {
        "hash": song_hash,
        "status": job.status.value,
        "tracks": job.tracks,
        "error": job.error or None,
        "progress": job.progress,
        "attempts": job.attempts,
        "callback": job.callback_status or None,
        "timings": job.timings,
        "options": describe(model, tracks.parse_rendition(job.rendition) if job.rendition
                            else ctx.default_rendition()),
        "ready": ready_tracks(song_hash),
        "analysis": _analysis(job),
    }
    if job.status is JobStatus.QUEUED and (place := ctx.jobs().place(job.id)):
        answer["position"], answer["queue_length"] = place
    return answer


def _analysis(job) -> dict | None:
    """Tempo, key, loudness; queued once separated. A status read never fails for want of room
    for that render work (a full render queue, a song at its most renditions)."""
    try:
        return status_analysis(job)
    except RenditionRefused as refused:
        return {"status": refused.result.value}


@songs.route("/apiv1/remove/<songhash>/<track>", methods=["GET", "DELETE"])
def remove(songhash: str, track: str):
    """Remove one stored track of a song's rendition; 404 naming the tracks there are."""
    # GET is kept for the original clients (REMOVE_REQUIRES_DELETE refuses it); HEAD is refused.
    song_hash, name = song_hash_param(songhash), track_param(track)
    model = model_param(request.args.get("model"), ctx.settings())
    wanted = tracks.parse_track(name)
    rendition = track_rendition(wanted, model)
    job = separated(song_hash, model)
    render = ctx.jobs().get(render_id(song_hash, model, rendition.id))
    if job.status is not JobStatus.DONE and render is None:
        raise ApiError(404, f"song {song_hash} is not separated yet (status {job.status.value})",
                       status=job.status.value, progress=job.progress)
    if render is None or wanted.name not in render.tracks:
        have = render.tracks if render else []
        raise ApiError(404, f"song {song_hash} has no track {wanted.name}; it has "
                            f"{', '.join(have) or 'none left'}", tracks=have)
    # The object first: if the store fails, the record still lists the track and a retry works.
    try:
        ctx.storage().remove_output([rendition_object(song_hash, model, rendition.id,
                                                      wanted.name)])
    except NotFound:
        pass  # already gone: the record now agrees
    ctx.jobs().remove_track(render.id, wanted.name)
    if job.rendition in ("", rendition.id):
        ctx.jobs().remove_track(job.id, wanted.name)
    log.info("song %s: removed %s of %s %s", song_hash, wanted.name, model, rendition.id)
    return {"hash": song_hash, "track": wanted.name, "reason": "Track removed"}
