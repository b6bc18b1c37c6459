"""Render operations a client asks for by name: waveform peaks, song analysis and mix export.

Each is a render job (common/operations.py) made once from the song's lossless stems and kept
beside its tracks. Asked for before it is stored, it is queued and answered 202 with Location
and Retry-After; the client asks again. A mix is posted (a write: keys and rate limits as for
any write), then fetched at the Location its answer gives.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, request

from common import mixes, operations
from common.jobs import Job, JobStatus, RenditionResult, render_id
from common.storage import NotFound, rendition_object
from rest import access
from rest import context as ctx
from rest.downloads import separated
from rest.errors import ApiError, stored_or_404
from rest.options import model_param, stems_of
from rest.ranges import stream_stored
from rest.validate import json_object, song_hash_param

log = logging.getLogger("rest")
studio = Blueprint("studio", __name__)

RETRY_S = 2


class Pending(Exception):
    """An operation being made: answered 202 with Location and Retry-After."""

    def __init__(self, body: dict, location: str):
        super().__init__(body["operation"])
        self.body, self.location = body, location


@studio.errorhandler(Pending)
def pending(waiting: Pending):
    """202 saying what is being made, where to find it and when to ask again."""
    return waiting.body, 202, {"Retry-After": str(RETRY_S), "Location": waiting.location}


def _start(song_hash: str, model: str, op: str, params: str, render: Job | None
           ) -> RenditionResult:
    """Ask for the operation to be made, within the gateway's render limits: a write when it
    starts a render job, HEAD never; a full render queue or a song at its most render jobs is
    refused by the app (RenditionRefused: 503, 409)."""
    if request.method == "HEAD":
        raise ApiError(404, f"{op} of song {song_hash} is not made yet; GET starts making it "
                            "(HEAD never does)")
    starts = render is None or render.status not in (JobStatus.QUEUED, JobStatus.PROCESSING)
    if starts and request.method == "GET":  # a POST is counted as a write already
        access.count_write()
    return ctx.jobs().request_rendition(song_hash, model, op, params)


def stored_files(song_hash: str, model: str, op: str, location: str, params: str = "") -> list[str]:
    """The files of an operation once stored; queued (202) before, 404 before separation."""
    job = separated(song_hash, model)
    render = ctx.jobs().get(render_id(song_hash, model, op))
    if render is not None and render.status is JobStatus.DONE:
        return render.tracks
    result = _start(song_hash, model, op, params, render)
    if result is RenditionResult.NOT_SEPARATED:
        raise ApiError(404, f"song {song_hash} is not separated yet (status {job.status.value})",
                       status=job.status.value, progress=job.progress)
    if result is RenditionResult.FAILED:
        reason = render.error if render is not None else "unknown"
        raise ApiError(500, f"making {op} of song {song_hash} failed ({reason}); "
                            "tell the operator", operation=op, reason=reason)
    if result is not RenditionResult.STORED:
        log.info("song %s: %s of %s %s", song_hash, op, model, result.value)
        raise Pending({"hash": song_hash, "model": model, "operation": op,
                       "status": result.value, "url": location,
                       "reason": f"Being made; ask again in {RETRY_S} s"}, location)
    render = ctx.jobs().get(render_id(song_hash, model, op))
    return render.tracks if render is not None else []


def stream(song_hash: str, model: str, op: str, name: str, mime: str, filename: str = ""):
    """One stored file of an operation, whole or by byte range (as an attachment when
    `filename` is given)."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else {}
    with stored_or_404(name, song_hash):
        return stream_stored(ctx.storage(), rendition_object(song_hash, model, op, name), mime,
                             request.headers.get("Range"), headers)


def _query(model: str) -> str:
    return f"?model={model}"


@studio.get("/apiv1/peaks/<songhash>")
def peaks_index(songhash: str):
    """The song's waveform peaks: per stem (and the mix) the zoom levels stored, with URLs."""
    song_hash = song_hash_param(songhash)
    model = model_param(request.args.get("model"), ctx.settings())
    here = f"/apiv1/peaks/{song_hash}"
    names = stored_files(song_hash, model, operations.PEAKS, here + _query(model))
    levels: dict[str, list[dict]] = {}
    for name in names:  # `<stem>.<samples per peak>.dat`
        stem, spp, _ = name.split(".")
        levels.setdefault(stem, []).append(
            {"samples_per_peak": int(spp), "url": f"{here}/{name}{_query(model)}"})
    return {"hash": song_hash, "model": model, "format": "audiowaveform-dat-v1-8bit",
            "stems": levels}


@studio.get("/apiv1/peaks/<songhash>/<name>")
def peaks_file(songhash: str, name: str):
    """One peaks file (audiowaveform's binary .dat, 8-bit)."""
    song_hash = song_hash_param(songhash)
    model = model_param(request.args.get("model"), ctx.settings())
    names = stored_files(song_hash, model, operations.PEAKS,
                         f"/apiv1/peaks/{song_hash}/{name}{_query(model)}")
    if name not in names:
        raise ApiError(404, f"song {song_hash} has no peaks file {name!r}; it has "
                            f"{', '.join(names)}", files=names)
    return stream(song_hash, model, operations.PEAKS, name, "application/octet-stream")


def analysis_of(song_hash: str, model: str) -> dict:
    """The song's analysis (tempo, key, loudness of the mix and each stem); 202 while made."""
    here = f"/apiv1/analysis/{song_hash}{_query(model)}"
    names = stored_files(song_hash, model, operations.ANALYSIS, here)
    if "analysis.json" not in names:
        raise ApiError(404, f"the analysis of song {song_hash} was removed")
    with stored_or_404("the analysis", song_hash):
        return json.loads(ctx.storage().get_output(
            rendition_object(song_hash, model, operations.ANALYSIS, "analysis.json")))


@studio.get("/apiv1/analysis/<songhash>")
def analysis(songhash: str):
    """Tempo (BPM), key and integrated loudness (LUFS) of the mix and of each stem."""
    song_hash = song_hash_param(songhash)
    model = model_param(request.args.get("model"), ctx.settings())
    return {"hash": song_hash, "model": model, **analysis_of(song_hash, model)}


@studio.post("/apiv1/mix/<songhash>")
def mix(songhash: str):
    """Queue the mix a JSON body describes; 202 with the Location to fetch it from."""
    song_hash = song_hash_param(songhash)
    body = json_object(request, '{"mute": ["vocals"], "format": "wav"}')
    model = model_param(body.get("model"), ctx.settings())
    try:
        params = mixes.mix_params(body, stems_of(model, ctx.jobs()),
                                  ctx.settings().mp3_bitrate)
    except mixes.MixError as error:
        raise ApiError(400, str(error)) from None
    op = mixes.mix_id(params)
    location = f"/apiv1/mix/{song_hash}/{op}{_query(model)}"
    stored_files(song_hash, model, op, location, operations.canonical_params(params))
    return ({"hash": song_hash, "model": model, "operation": op, "status": "stored",
             "params": params, "url": location}, 200, {"Location": location})


@studio.get("/apiv1/mix/<songhash>/<op>")
def mix_file(songhash: str, op: str):
    """A posted mix: the file once made, 202 while it is made."""
    song_hash = song_hash_param(songhash)
    model = model_param(request.args.get("model"), ctx.settings())
    try:
        kind = operations.parse_operation(op).kind
    except operations.OperationError:
        kind = ""
    render = ctx.jobs().get(render_id(song_hash, model, op)) if kind == operations.MIX else None
    if render is None:
        raise ApiError(404, f"no mix {op!r} of song {song_hash} with model {model}; POST "
                            f"/apiv1/mix/{song_hash} to make one")
    location = f"/apiv1/mix/{song_hash}/{op}{_query(model)}"
    names = stored_files(song_hash, model, op, location, operations.canonical_params(render.params))
    name = mixes.mix_name(render.params)
    if name not in names:
        raise ApiError(404, f"mix {op} of song {song_hash} was removed; POST it again")
    return stream(song_hash, model, op, name, mixes.mime(render.params),
                  f"{song_hash}-{op}.{name.rsplit('.', 1)[1]}")


def status_analysis(job: Job) -> dict | None:
    """What a separation's status says of its analysis: the figures once made; before, where
    its render job stands. None before the separation is done."""
    if job.status is not JobStatus.DONE:
        return None
    model = job.model or ctx.settings().default_model
    analysis = ctx.jobs().get(render_id(job.song_hash, model, operations.ANALYSIS))
    if analysis is not None and analysis.status is JobStatus.DONE:
        try:
            return json.loads(ctx.storage().get_output(rendition_object(
                job.song_hash, model, operations.ANALYSIS, "analysis.json")))
        except NotFound:
            return None
    # The hand-off queued the studio operations unless the render queue was full then, or the
    # song was separated before it did: ask for them here (asking again finds them).
    results = {op: ctx.jobs().request_rendition(job.song_hash, model, op)
               for op in operations.STUDIO}
    return {"status": results[operations.ANALYSIS].value}
