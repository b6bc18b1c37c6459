"""Downloads: one track of any rendition, or a whole rendition as a zip, both streamed.

A rendition that is not stored yet, of a song whose stems are, is queued for rendering and
answered 202 with Retry-After; the client asks again. Starting one is work: it counts as a
write against the caller's rate limit, the render queue and each song's renditions are capped,
and HEAD never starts one.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from common import ensemble_jobs, tracks
from common.jobs import Job, JobStatus, Kind, RenditionResult, render_id
from common.storage import rendition_object
from common.tracks import Rendition, Track, TrackError
from rest import access
from rest import context as ctx
from rest.errors import ApiError, stored_or_404
from rest.options import model_param, rendition_of, stems_of
from rest.ranges import stream_stored
from rest.validate import song_hash_param, track_param
from rest.zipstream import stream_zip

log = logging.getLogger("rest")
downloads = Blueprint("downloads", __name__)

RENDER_RETRY_S = 2


class RenditionPending(Exception):
    """A rendition being made: answered 202 with Retry-After, not as an error."""

    def __init__(self, song_hash: str, model: str, rendition: Rendition,
                 result: RenditionResult):
        super().__init__(rendition.id)
        self.body = {"hash": song_hash, "model": model, "rendition": rendition.id,
                     "status": result.value,
                     "reason": f"Rendition being made; ask again in {RENDER_RETRY_S} s"}


@downloads.errorhandler(RenditionPending)
def rendition_pending(pending: RenditionPending):
    """202 with what is being made and when to ask again."""
    return pending.body, 202, {"Retry-After": str(RENDER_RETRY_S)}


def separated(song_hash: str, model: str):
    """The song's separation with `model`; 404 saying what to do when there is none."""
    job = ctx.jobs().separation(song_hash, model)
    if job is not None and job.status is JobStatus.QUEUED and job.awaiting:
        # An ensemble waiting for its members: one may have failed since (the render worker
        # queues it when a member's tracks are made; a failure is seen here).
        ensemble_jobs.release(ctx.jobs().redis, song_hash, ctx.settings().default_model)
    if job is None:
        raise ApiError(404, f"no song with hash {song_hash} for model {model}; submit it to "
                            "/apiv1/separate")
    return job


def track_rendition(track: Track, model: str) -> Rendition:
    """The rendition a track name and the query's bits/bitrate ask for; 404 for a track
    that no rendition of the model has."""
    stems = stems_of(model, ctx.jobs())
    if not track.without and track.stem not in stems:
        names = [tracks.track_name(stem, track.ext) for stem in stems]
        raise ApiError(404, f"model {model} makes no track {track.name}; its tracks are "
                            f"{', '.join(names)}", tracks=names)
    fields = {"format": track.ext, "bits": request.args.get("bits"),
              "bitrate": request.args.get("bitrate"),
              "two_stems": track.stem if track.without else ""}
    return rendition_of(fields, ctx.settings(), stems)


def _start_rendition(song_hash: str, model: str, rendition: Rendition,
                     render: Job | None) -> RenditionResult:
    """Ask for the rendition to be made, counted as a write when a render job would start."""
    if request.method == "HEAD":
        raise ApiError(404, f"rendition {rendition.id} of song {song_hash} is not made yet; "
                            "GET starts making it (HEAD never does)")
    if render is None or render.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
        access.count_write()
    return ctx.jobs().request_rendition(song_hash, model, rendition.id)


def stored_tracks(song_hash: str, model: str, rendition: Rendition) -> list[str]:
    """The tracks of a rendition, once stored; 202 while it is made, 404 before separation."""
    job = separated(song_hash, model)
    render = ctx.jobs().get(render_id(song_hash, model, rendition.id))
    if render is not None and render.status is JobStatus.DONE:
        return render.tracks  # a removed track stays removed, as it always did
    result = _start_rendition(song_hash, model, rendition, render)
    if result is RenditionResult.NOT_SEPARATED:
        raise ApiError(404, f"song {song_hash} is not separated yet (status {job.status.value})",
                       status=job.status.value, progress=job.progress)
    if result is RenditionResult.FAILED:
        reason = render.error if render is not None else "unknown"
        raise ApiError(500, f"making the {rendition.id} tracks of song {song_hash} failed "
                            f"({reason}); ask for another format, or tell the operator",
                       rendition=rendition.id, reason=reason)
    if result is not RenditionResult.STORED:
        log.info("song %s: rendition %s of %s %s", song_hash, rendition.id, model, result.value)
        raise RenditionPending(song_hash, model, rendition, result)
    render = ctx.jobs().get(render_id(song_hash, model, rendition.id))
    return render.tracks if render is not None else []


def _attachment(filename: str, size: int | None = None) -> dict:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if size is not None:
        headers["Content-Length"] = str(size)
    return headers


@downloads.get("/apiv1/track/<songhash>/<track>")
def track(songhash: str, track: str):
    """One track, streamed from the store; 202 while its rendition is being made."""
    song_hash, name = song_hash_param(songhash), track_param(track)
    model = model_param(request.args.get("model"), ctx.settings())
    wanted = tracks.parse_track(name)
    rendition = track_rendition(wanted, model)
    stored = stored_tracks(song_hash, model, rendition)
    if wanted.name not in stored:
        raise ApiError(404, f"song {song_hash} has no track {wanted.name} in {rendition.id}; "
                            f"it has {', '.join(stored) or 'none left'}", tracks=stored)
    # By byte range when asked: a player starts a long track anywhere.
    with stored_or_404(f"track {wanted.name}", song_hash):
        return stream_stored(ctx.storage(), rendition_object(song_hash, model, rendition.id,
                                                             wanted.name),
                             wanted.mime, request.headers.get("Range"),
                             _attachment(f"{song_hash}-{wanted.name}"))


@downloads.get("/apiv1/zip/<songhash>")
def zip_of_tracks(songhash: str):
    """Every stored track of a rendition as one zip, streamed as it is built."""
    song_hash = song_hash_param(songhash)
    model = model_param(request.args.get("model"), ctx.settings())
    rendition = rendition_of(request.args, ctx.settings(), stems_of(model, ctx.jobs()))
    names = stored_tracks(song_hash, model, rendition)
    if not names:
        raise ApiError(404, f"song {song_hash} has no tracks left in {rendition.id}")
    storage = ctx.storage()
    objects = [(name, rendition_object(song_hash, model, rendition.id, name)) for name in names]
    # Every size is read before the answer starts, so a missing track is a 404, not a cut zip;
    # each track is opened only when its turn comes.
    with stored_or_404("a track", song_hash):
        entries = [(name, storage.output_size(obj),
                    lambda obj=obj: storage.stream_output(obj)[1]) for name, obj in objects]
    return Response(stream_zip(entries), mimetype="application/zip",
                    headers=_attachment(f"{song_hash}-{model}-{rendition.id}.zip"))


def ready_tracks(song_hash: str) -> list[dict]:
    """Every track of the song that can be downloaded now, with its model and format."""
    ready = []
    for job in ctx.jobs().song_jobs(song_hash):
        if job.kind is not Kind.RENDER or job.status is not JobStatus.DONE:
            continue
        try:
            rendition = tracks.parse_rendition(job.rendition)
        except TrackError:
            continue
        quality = rendition.quality_param
        query = f"?model={job.model}&{quality}={rendition.quality}"
        ready += [{"track": name, "model": job.model, "format": rendition.format,
                   quality: rendition.quality, "rendition": rendition.id,
                   "url": f"/apiv1/track/{song_hash}/{name}{query}"} for name in job.tracks]
    return ready

