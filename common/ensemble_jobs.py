"""An ensemble's records in Redis: its spec, a song's ensemble separation and its stems job,
and the moves that start the stems job once every member has finished, or fail the ensemble
as soon as one member has failed (common/ensembles.py).

`release` is called wherever a separation may have ended: the separation worker at each end
and hand-off, the render worker at each end, the reaper when it fails a job, the gateway on a
cancel and on each status read of a waiting ensemble (the fallback). Each move is one script
guarded by the removal of the stems job from the song's waiting set, so two callers, or a call
retried, move it once."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from common import jobscripts, keys, operations
from common.ensembles import Spec, from_params, params
from common.records import Job, JobStatus, render_id, separation_id
from common.redisconn import TextReads

# KEYS: ensemble separation, stems job, the song's waiting set, song's job set, expiry.
# A separation queued, running or done stays (answered with its status); a failed or
# cancelled one, or none, is made anew, waiting for its members.
_CREATE = """
local sep_id, stems_id, song, model, params, now, callback = unpack(ARGV)
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'processing' or status == 'done' then return status end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'kind', 'separate', 'status', 'queued', 'song', song,
           'model', model, 'rendition', '', 'input', '', 'awaiting', stems_id, 'created', now,
           'callback', callback,
           'updated', now, 'attempts', 0, 'deaths', 0, 'progress', 0, 'error', '', 'cancel', '0')
redis.call('HSET', KEYS[2], 'kind', 'render', 'status', 'queued', 'song', song,
           'model', model, 'rendition', 'stems', 'parent', sep_id, 'params', params,
           'created', now, 'updated', now, 'attempts', 0, 'deaths', 0, 'progress', 0,
           'error', '', 'cancel', '0')
redis.call('SADD', KEYS[3], stems_id)
redis.call('SADD', KEYS[4], sep_id, stems_id)
redis.call('ZREM', KEYS[5], song)
if status then return 'retried' end
return 'enqueued'
"""

# KEYS: the song's waiting set, render queue, stems job. Only the caller whose SREM removed
# the entry queues it, so two releasers queue it once.
_RELEASE = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
"""

# KEYS: the song's waiting set, stems job, ensemble separation, the failed member's separation,
# song's job set, expiry, finished counts, outbox. The ensemble fails now, owing its callback;
# its stems job goes, so that only its failed record is left. Nothing is done once the member
# is queued again or under way (asked for anew since it was read as failed).
_FAIL = jobscripts._HELPERS + """
local stems_id, sep_id, err, now = unpack(ARGV)
local member = redis.call('HGET', KEYS[4], 'status')
if member and member ~= 'failed' and member ~= 'cancelled' then return 0 end
if redis.call('SREM', KEYS[1], stems_id) == 0 then return 0 end
if redis.call('HGET', KEYS[2], 'status') ~= 'queued' then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[5], stems_id)
if redis.call('HGET', KEYS[3], 'awaiting') ~= stems_id
   or redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
redis.call('HDEL', KEYS[3], 'awaiting')
conclude(KEYS[3], {KEYS[6], KEYS[7]}, KEYS[8], sep_id, 'failed', err, now)
return 1
"""

# KEYS: ensemble separation. Its stems are stored: it is now waiting for its stems job to
# end, as a separation waits for its render job, so that the job's end settles it.
_ARM = """
if redis.call('HGET', KEYS[1], 'awaiting') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'processing', 'updated', ARGV[2])
return 1
"""


def save(client: redis.Redis, spec: Spec, stems: list[str]) -> None:
    """Write the spec under its name (once; it never changes) and the ensemble's stems beside
    the models' own, so that every route and render job reads them as a model's."""
    pipe = client.pipeline()
    pipe.set(keys.ensemble(spec.name), spec.canonical, nx=True)
    pipe.hset(keys.MODELS, spec.name, json.dumps(stems))
    pipe.execute()


def exists(client: redis.Redis, name: str) -> bool:
    """Whether an ensemble of this name was ever asked for."""
    return name.startswith("ensemble-") and bool(client.exists(keys.ensemble(name)))


def create(client: redis.Redis, song: str, spec: Spec, stems: list[str],
           default_model: str, callback: dict[str, Any] | None = None) -> str:
    """Make the song's ensemble separation (with the `callback` its end owes) and its waiting
    stems job; `enqueued`, `retried`, or the status of the one there already."""
    sep_id = separation_id(song, spec.name, default_model)
    stems_id = render_id(song, spec.name, operations.STEMS)
    return str(client.eval(
        _CREATE, 5, keys.job(sep_id), keys.job(stems_id), keys.ensemble_waiting(song),
        keys.song(song), keys.EXPIRY, sep_id, stems_id, song, spec.name,
        operations.canonical_params(params(spec, stems)), repr(time.time()),
        json.dumps(callback) if callback else ""))


def member_finished(job: Job | None) -> bool:
    """A member separation that will not change on its own: stems stored, failed, or gone."""
    return job is None or job.status in (JobStatus.DONE, JobStatus.FAILED,
                                         JobStatus.CANCELLED) or bool(job.awaiting)


def member_failure(member: str, job: Job | None) -> str | None:
    """Why a member's separation will bring no stems (the ensemble's error after
    `member_failed: `), or None while it may."""
    if job is None:
        return f"{member} has no separation of this song (deleted); ask for the ensemble again"
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        why = f" ({job.error})" if job.error else ""
        return f"{member}'s separation is {job.status.value}{why}"
    return None


def release(client: redis.Redis, song: str, default_model: str, outbox: str = "") -> int:
    """Move on each of the song's waiting stems jobs: once a member has failed, fail its
    ensemble now, its callback owed in `outbox` (a worker's), or, without one (the gateway),
    queue the stems job for the render worker to fail it; else queue it once every member has
    finished. How many moved."""
    reads, moved = TextReads(client), 0
    for stems_id in sorted(reads.members(keys.ensemble_waiting(song))):
        raw = reads.hash(keys.job(stems_id))
        if not raw or raw.get("status") != JobStatus.QUEUED:
            client.srem(keys.ensemble_waiting(song), stems_id)
            continue
        spec, _ = from_params(json.loads(raw["params"]))
        records = {m: reads.hash(keys.job(separation_id(song, m, default_model)))
                   for m in spec.members}
        jobs = {m: Job.from_redis(separation_id(song, m, default_model), record)
                if record else None for m, record in records.items()}
        failed = [(m, why) for m, job in jobs.items() if (why := member_failure(m, job))]
        if failed and outbox:
            moved += _fail(client, song, stems_id, raw["parent"], *failed[0], default_model,
                           outbox)
        elif failed or all(member_finished(job) for job in jobs.values()):
            moved += int(client.eval(_RELEASE, 3, keys.ensemble_waiting(song),
                                     keys.RENDER_QUEUE, keys.job(stems_id), stems_id))
    return moved


def _fail(client: redis.Redis, song: str, stems_id: str, sep_id: str, member: str, why: str,
          default_model: str, outbox: str) -> int:
    """Fail the ensemble of `stems_id` for its member's failure; 1 if this call did."""
    return int(client.eval(
        _FAIL, 8, keys.ensemble_waiting(song), keys.job(stems_id), keys.job(sep_id),
        keys.job(separation_id(song, member, default_model)), keys.song(song), keys.EXPIRY,
        keys.FINISHED, outbox, stems_id, sep_id, f"member_failed: {why}", repr(time.time())))


def arm(client: redis.Redis, separation: str, stems_id: str) -> bool:
    """Mark an ensemble separation as waiting for its stems job's end (done or failed), as the
    render worker does just before ending that job."""
    return bool(client.eval(_ARM, 1, keys.job(separation), stems_id, repr(time.time())))
