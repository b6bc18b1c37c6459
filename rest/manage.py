"""Managing songs: the models offered, cancelling a separation, deleting a song."""

from __future__ import annotations

import logging

from flask import Blueprint, request

from common import ensemble_jobs
from common.jobs import CancelResult
from common.songs import delete_song
from rest import context as ctx
from rest.errors import ApiError
from rest.options import model_param, models
from rest.validate import song_hash_param

log = logging.getLogger("rest")
manage = Blueprint("manage", __name__)


@manage.get("/apiv1/models")
def list_models():
    """The models this deployment serves, their stems, and which one is the default."""
    return {"models": models(ctx.settings(), ctx.jobs())}


@manage.post("/apiv1/cancel/<songhash>")
def cancel(songhash: str):
    """Cancel a song's separation; 404 when unknown, 409 when it has finished."""
    song_hash = song_hash_param(songhash)
    model = model_param(request.args.get("model"), ctx.settings())
    result = ctx.jobs().cancel(song_hash, model)
    if result is CancelResult.MISSING:
        raise ApiError(404, f"no song with hash {song_hash} for model {model}")
    if result is CancelResult.FINISHED:
        job = ctx.jobs().separation(song_hash, model)
        stage = ("its tracks are being made from its stems" if job and job.awaiting
                 else f"it is {job.status.value}" if job else "it ended")
        raise ApiError(409, f"song {song_hash} has finished separating with {model} ({stage}); "
                            "delete it instead", status=job.status.value if job else None)
    log.info("song %s (%s): cancel %s", song_hash, model, result.value)
    if result is CancelResult.CANCELLED:  # its ensembles go to the render worker to fail now
        ensemble_jobs.release(ctx.jobs().redis, song_hash, ctx.settings().default_model)
    reason = ("Song cancelled" if result is CancelResult.CANCELLED
              else "Song stops at its next segment")
    return {"hash": song_hash, "model": model, "reason": reason, "status": result.value}


@manage.delete("/apiv1/song/<songhash>")
def delete(songhash: str):
    """Remove every job record and stored object of a song; 404 when there was none."""
    song_hash = song_hash_param(songhash)
    # A store outage after the records went answers 503 and leaves the objects to the sweep.
    deleted = delete_song(ctx.jobs(), ctx.storage(), song_hash)
    if deleted == (0, 0):
        raise ApiError(404, f"no song with hash {song_hash}")
    log.info("song %s: deleted (%d jobs, %d objects)", song_hash, *deleted)
    return {"hash": song_hash, "reason": "Song deleted", **deleted._asdict()}
