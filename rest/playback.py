"""Playback of a song's lossless stems by byte range: the seek index of each stem (a render
operation, common/flacindex.py) and the stems' FLAC bytes themselves, whole or by range (206).

A player fetches a stem's header once, then the frames of a few seconds at a time where the
index says they start, and decodes each stretch alone: any length plays in bounded memory,
and every request carries the caller's key like any other read.
"""

from __future__ import annotations

import json

from flask import Blueprint, request

from common import operations
from common.flac import LOSSLESS_HEADROOM
from common.storage import NotFound, lossless_object, rendition_object
from rest import context as ctx
from rest.downloads import separated
from rest.errors import ApiError, stored_or_404
from rest.options import model_param, stems_of
from rest.ranges import stream_stored
from rest.studio import Pending, pending, stored_files
from rest.validate import song_hash_param

playback = Blueprint("playback", __name__)
playback.register_error_handler(Pending, pending)  # 202 while the index is made
INDEX = "seekindex.json"


def _query(model: str) -> str:
    return f"?model={model}"


@playback.get("/apiv1/playback/<songhash>")
def playback_index(songhash: str):
    """Each stem's format, length and seek points, with the URL of its FLAC bytes; 202 with
    Location and Retry-After while the index is made."""
    song_hash = song_hash_param(songhash)
    model = model_param(request.args.get("model"), ctx.settings())
    here = f"/apiv1/playback/{song_hash}{_query(model)}"
    if INDEX not in stored_files(song_hash, model, operations.SEEKINDEX, here):
        raise ApiError(404, f"the playback index of song {song_hash} was removed")
    with stored_or_404("the playback index", song_hash):
        stored = json.loads(ctx.storage().get_output(
            rendition_object(song_hash, model, operations.SEEKINDEX, INDEX)))
    stems = {stem: {**index, "url": f"/apiv1/lossless/{song_hash}/{stem}.flac{_query(model)}"}
             for stem, index in stored["stems"].items()}
    return {"hash": song_hash, "model": model, "format": "flac", "gain": LOSSLESS_HEADROOM,
            "stems": stems}


@playback.route("/apiv1/lossless/<songhash>/<stem>.flac", methods=["GET", "HEAD"])
def lossless(songhash: str, stem: str):
    """One lossless stem's FLAC bytes (24-bit, stored divided by the index's `gain`), whole or
    by byte range."""
    song_hash = song_hash_param(songhash)
    model = model_param(request.args.get("model"), ctx.settings())
    stems = stems_of(model, ctx.jobs())
    if stem not in stems:
        raise ApiError(404, f"model {model} has no stem {stem!r}; it has {', '.join(stems)}",
                       stems=stems)
    separated(song_hash, model)
    try:
        return stream_stored(ctx.storage(), lossless_object(song_hash, model, stem),
                             "audio/flac", request.headers.get("Range"))
    except NotFound:
        raise ApiError(404, f"the lossless {stem} of song {song_hash} is not stored (the song "
                            "is not separated yet, or was removed)") from None
