"""An ensemble's records in Redis: its spec, a song's ensemble separation and its stems job,
and the moves that start the stems job once every member has finished (common/ensembles.py)."""

from __future__ import annotations

import json
import time

import redis

from common import keys, operations
from common.ensembles import Spec, from_params, params
from common.records import Job, JobStatus, render_id, separation_id
from common.redisconn import TextReads

# KEYS: ensemble separation, stems job, the song's waiting set, song's job set, expiry.
# A separation queued, running or done stays (answered with its status); a failed or
# cancelled one, or none, is made anew, waiting for its members.
_CREATE = """
local sep_id, stems_id, song, model, params, now = unpack(ARGV)
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'processing' or status == 'done' then return status end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'kind', 'separate', 'status', 'queued', 'song', song,
           'model', model, 'rendition', '', 'input', '', 'awaiting', stems_id, 'created', now,
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
           default_model: str) -> str:
    """Make the song's ensemble separation and its waiting stems job; `enqueued`, `retried`,
    or the status of the one there already."""
    sep_id = separation_id(song, spec.name, default_model)
    stems_id = render_id(song, spec.name, operations.STEMS)
    return str(client.eval(
        _CREATE, 5, keys.job(sep_id), keys.job(stems_id), keys.ensemble_waiting(song),
        keys.song(song), keys.EXPIRY, sep_id, stems_id, song, spec.name,
        operations.canonical_params(params(spec, stems)), repr(time.time())))


def member_finished(job: Job | None) -> bool:
    """A member separation that will not change on its own: stems stored, failed, or gone."""
    return job is None or job.status in (JobStatus.DONE, JobStatus.FAILED,
                                         JobStatus.CANCELLED) or bool(job.awaiting)


def release(client: redis.Redis, song: str, default_model: str) -> int:
    """Queue each of the song's waiting stems jobs whose members have all finished; how many."""
    reads, released = TextReads(client), 0
    for stems_id in sorted(reads.members(keys.ensemble_waiting(song))):
        raw = reads.hash(keys.job(stems_id))
        if not raw or raw.get("status") != JobStatus.QUEUED:
            client.srem(keys.ensemble_waiting(song), stems_id)
            continue
        spec, _ = from_params(json.loads(raw["params"]))
        records = {m: reads.hash(keys.job(separation_id(song, m, default_model)))
                   for m in spec.members}
        if all(member_finished(Job.from_redis(member, record) if record else None)
               for member, record in records.items()):
            released += int(client.eval(_RELEASE, 3, keys.ensemble_waiting(song),
                                        keys.RENDER_QUEUE, keys.job(stems_id), stems_id))
    return released


def arm(client: redis.Redis, separation: str, stems_id: str) -> bool:
    """Mark an ensemble separation as waiting for its stems job's end (done or failed), as the
    render worker does just before ending that job."""
    return bool(client.eval(_ARM, 1, keys.job(separation), stems_id, repr(time.time())))
