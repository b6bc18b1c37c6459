"""POST /apiv1/ensemble/<hash>: a song's stems made from several models' (common/ensembles.py).

The answer names the ensemble, a pseudo-model: the status, track, zip and studio routes take
it as `?model=<name>`. Members that have not separated the song are queued first; the
ensemble's stems are made once they all have, and it fails as soon as one of them fails. An
optional `callback` ({"url", "data"}, as a submission's) is sent when it ends.
"""

from __future__ import annotations

import logging

from flask import Blueprint, request

from common import ensemble_jobs, ensembles
from common.jobs import EnqueueResult, Job
from common.storage import song_object
from rest import context as ctx
from rest.errors import ApiError, unavailable
from rest.options import stems_of
from rest.validate import callback_field, json_object, song_hash_param

log = logging.getLogger("rest")
ensemble = Blueprint("ensemble", __name__)  # POST: a write, guarded as every write (access.py)


def _upload(song_hash: str) -> str:
    """The song's upload in the songs bucket, as its first separation recorded it."""
    for job in ctx.jobs().song_jobs(song_hash):
        if job.kind.value == "separate" and not job.model.startswith(ensembles.PREFIX):
            return job.input or song_object(song_hash)
    raise ApiError(404, f"no song with hash {song_hash}; submit it to /apiv1/separate first")


def _separate_members(song_hash: str, spec: ensembles.Spec) -> dict[str, str]:
    """Queue each member that has not separated the song (or failed to); each one's status."""
    settings, jobs = ctx.settings(), ctx.jobs()
    upload, statuses = "", {}
    for member in spec.members:
        job: Job | None = jobs.separation(song_hash, member)
        if job is not None and not job.may_resubmit():
            statuses[member] = job.status.value
            continue
        upload = upload or _upload(song_hash)
        result = jobs.enqueue(song_hash, None, settings.max_queue_length, model=member,
                              input_object=upload)
        if result is EnqueueResult.QUEUE_FULL:
            raise unavailable(f"the queue of {member} is full; retry later")
        statuses[member] = "queued"
    return statuses


@ensemble.post("/apiv1/ensemble/<songhash>")
def make_ensemble(songhash: str):
    """Ask for the song's ensemble; 202 with its model name, to follow with ?model=<name>."""
    song_hash = song_hash_param(songhash)
    body = json_object(request, '{"algorithm": "avg", "members": ["htdemucs", "htdemucs_ft"]}')
    settings, jobs = ctx.settings(), ctx.jobs()
    try:
        spec = ensembles.parse(body)
        stems = ensembles.stems_of(spec, list(settings.demucs_models),
                                   lambda member: stems_of(member, jobs))
    except ensembles.StemsUnknown as error:  # a worker of it is on its way
        raise unavailable(str(error)) from None
    except ensembles.EnsembleError as error:
        raise ApiError(400, str(error), models=list(settings.demucs_models)) from None
    callback = callback_field(body.get("callback"), settings.callback_allow_private,
                              settings.max_callback_data_kb)
    _upload(song_hash)  # a song this service has, before anything is written
    members = _separate_members(song_hash, spec)
    ensemble_jobs.save(jobs.redis, spec, stems)
    outcome = ensemble_jobs.create(jobs.redis, song_hash, spec, stems, settings.default_model,
                                   callback)
    ensemble_jobs.release(jobs.redis, song_hash, settings.default_model)
    log.info("song %s: ensemble %s (%s of %s): %s", song_hash, spec.name, spec.algorithm,
             ",".join(spec.members), outcome)
    query = f"?model={spec.name}"
    return {"hash": song_hash, "model": spec.name, "status": outcome,
            "reason": "Ensemble queued; its stems are made once every member has separated "
                      "the song", "algorithm": spec.algorithm, "members": members,
            "picks": spec.picks, "stems": stems,
            "status_url": f"/apiv1/status/{song_hash}{query}"}, 202
