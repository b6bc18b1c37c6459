"""The job record of a song and every transition of it, each one atomic in Redis.

A song moves queued -> processing -> done | failed. Each claim gets an attempt token; only
the holder of the current token may report progress, finish the job or hand it back, so a
worker that was presumed dead and comes back cannot overwrite the result of its successor.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

import redis

from common import keys


class JobStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class EnqueueResult(StrEnum):
    ENQUEUED = "enqueued"
    RETRIED = "retried"
    QUEUE_FULL = "full"
    ALREADY_QUEUED = "queued"
    ALREADY_PROCESSING = "processing"
    ALREADY_DONE = "done"


@dataclass(frozen=True)
class Job:
    """One song's record as stored in the hash `job:<hash>`."""

    song_hash: str
    status: JobStatus
    progress: float = 0.0
    error: str = ""
    attempts: int = 0
    lost: int = 0
    worker: str = ""
    token: str = ""
    callback: dict | None = None
    callback_status: str = ""
    tracks: list[str] = field(default_factory=list)
    complete: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0

    @classmethod
    def from_redis(cls, song_hash: str, raw: dict[str, str]) -> Job:
        return cls(
            song_hash=song_hash,
            status=JobStatus(raw["status"]),
            progress=float(raw.get("progress") or 0),
            error=raw.get("error", ""),
            attempts=int(raw.get("attempts") or 0),
            lost=int(raw.get("lost") or 0),
            worker=raw.get("worker", ""),
            token=raw.get("token", ""),
            callback=json.loads(raw["callback"]) if raw.get("callback") else None,
            callback_status=raw.get("callback_status", ""),
            tracks=json.loads(raw.get("tracks") or "[]"),
            complete=raw.get("complete") == "1",
            timings=json.loads(raw.get("timings") or "{}"),
            created=float(raw.get("created") or 0),
            updated=float(raw.get("updated") or 0),
        )


# KEYS: job, queue. ARGV: hash, callback json, now, max queue length, seconds spent storing.
_ENQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'processing' then return status end
if status == 'done' and redis.call('HGET', KEYS[1], 'complete') == '1' then return status end
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[4]) then return 'full' end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'callback', ARGV[2], 'created', ARGV[3],
           'updated', ARGV[3], 'attempts', 0, 'lost', 0, 'progress', 0, 'error', '',
           'timings', cjson.encode({store_input = tonumber(ARGV[5])}))
redis.call('RPUSH', KEYS[2], ARGV[1])
if status then return 'retried' end
return 'enqueued'
"""

# KEYS: job, processing list, in-flight list. ARGV: hash, token, worker, now.
# Run twice with the same token (a reply lost, the call retried), it answers 'started' again;
# a job that another attempt holds, or that ended, is dropped from this worker's list.
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'processing' and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  return 'started'
end
if status ~= 'queued' then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  return status or 'missing'
end
redis.call('HSET', KEYS[1], 'status', 'processing', 'token', ARGV[2], 'worker', ARGV[3],
           'started', ARGV[4], 'updated', ARGV[4], 'progress', 0)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('RPUSH', KEYS[3], ARGV[1])
return 'started'
"""

# KEYS: job. ARGV: token, field, value, now. Writes one field if the token is current.
_SET_IF_CURRENT = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3], 'updated', ARGV[4])
return 1
"""

# Lua: count an ended job by outcome (`failed:<reason>`, the reason being the error's first word).
_COUNT_FINISHED = """
local function count_finished(finished, status, error)
  local outcome = status
  if status == 'failed' then
    outcome = 'failed:' .. (string.match(error, '^[%w_]+') or 'unknown')
  end
  redis.call('HINCRBY', finished, outcome, 1)
end
"""

# Lua: queue the job's callback, if it has one, in the given outbox (the same step that ends it).
_OWE_CALLBACK = """
local function owe_callback(job, outbox, hash)
  local callback = redis.call('HGET', job, 'callback')
  if callback and callback ~= '' then redis.call('RPUSH', outbox, hash) end
end
"""

# KEYS: job, processing list, outbox, in-flight list, finished counts.
# ARGV: hash, token, status, error, now, tracks, timings.
_FINISH = _OWE_CALLBACK + _COUNT_FINISHED + """
redis.call('LREM', KEYS[2], 0, ARGV[1])
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then return 0 end
redis.call('LREM', KEYS[4], 1, ARGV[1])
local complete = '0'
if ARGV[3] == 'done' then complete = '1' end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'error', ARGV[4], 'updated', ARGV[5],
           'finished', ARGV[5], 'tracks', ARGV[6], 'timings', ARGV[7], 'complete', complete)
if ARGV[3] == 'done' then redis.call('HSET', KEYS[1], 'progress', 1) end
count_finished(KEYS[5], ARGV[3], ARGV[4])
owe_callback(KEYS[1], KEYS[3], ARGV[1])
return 1
"""

# KEYS: job, processing list, queue, in-flight list. ARGV: hash, token, now.
# Puts the job back at the head.
_HAND_BACK = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  return 0
end
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('LREM', KEYS[4], 1, ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated', ARGV[3], 'progress', 0)
redis.call('HDEL', KEYS[1], 'token')
redis.call('LPUSH', KEYS[3], ARGV[1])
return 1
"""

# KEYS: job, dead worker's processing list, queue, dead worker's outbox, in-flight list,
# finished counts.
# ARGV: hash, dead worker, max lost, now.
# Removing the entry first makes two reapers safe: only the one whose LREM removed it acts.
_REQUEUE_ORPHAN = _OWE_CALLBACK + _COUNT_FINISHED + """
if redis.call('LREM', KEYS[2], 0, ARGV[1]) == 0 then return 'gone' end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  redis.call('LPUSH', KEYS[3], ARGV[1])
  return 'requeued'
end
if status ~= 'processing' or redis.call('HGET', KEYS[1], 'worker') ~= ARGV[2] then
  return 'ignored'
end
local lost = redis.call('HINCRBY', KEYS[1], 'lost', 1)
redis.call('HDEL', KEYS[1], 'token')
redis.call('LREM', KEYS[5], 1, ARGV[1])
if lost >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'updated', ARGV[4], 'finished', ARGV[4],
             'error', 'worker_lost: a worker died ' .. lost .. ' times separating this song')
  count_finished(KEYS[6], 'failed', 'worker_lost')
  owe_callback(KEYS[1], KEYS[4], ARGV[1])
  return 'failed'
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated', ARGV[4], 'progress', 0)
redis.call('LPUSH', KEYS[3], ARGV[1])
return 'requeued'
"""

# KEYS: job. ARGV: track name. Marks a done job incomplete once one of its stems is removed.
_REMOVE_TRACK = """
local tracks = redis.call('HGET', KEYS[1], 'tracks')
if not tracks then return 0 end
local kept = {}
for _, name in ipairs(cjson.decode(tracks)) do
  if name ~= ARGV[1] then table.insert(kept, name) end
end
redis.call('HSET', KEYS[1], 'tracks', cjson.encode(kept), 'complete', '0')
if #kept == 0 then redis.call('HSET', KEYS[1], 'tracks', '[]') end
return 1
"""


class JobStore:
    """All reads and writes of job records, the queue and the processing lists."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._enqueue = client.register_script(_ENQUEUE)
        self._start = client.register_script(_START)
        self._set_if_current = client.register_script(_SET_IF_CURRENT)
        self._finish = client.register_script(_FINISH)
        self._hand_back = client.register_script(_HAND_BACK)
        self._requeue_orphan = client.register_script(_REQUEUE_ORPHAN)
        self._remove_track = client.register_script(_REMOVE_TRACK)

    # -- the REST side ----------------------------------------------------------------
    def get(self, song_hash: str) -> Job | None:
        raw = self.redis.hgetall(keys.job(song_hash))
        return Job.from_redis(song_hash, raw) if raw else None

    def enqueue(self, song_hash: str, callback: dict | None, max_queue: int,
                store_seconds: float = 0.0) -> EnqueueResult:
        """Create the record and append to the queue in one step, unless already there."""
        result = self._enqueue(
            keys=[keys.job(song_hash), keys.QUEUE],
            args=[song_hash, json.dumps(callback) if callback else "", time.time(), max_queue,
                  round(store_seconds, 4)],
        )
        return EnqueueResult(result)

    def queued(self) -> list[str]:
        """Hashes waiting, oldest first."""
        return self.redis.lrange(keys.QUEUE, 0, -1)

    def queue_length(self) -> int:
        return self.redis.llen(keys.QUEUE)

    def finished_counts(self) -> dict[str, int]:
        """Jobs ended so far, by outcome: `done`, `cancelled`, `failed:<reason>`."""
        return {k: int(v) for k, v in self.redis.hgetall(keys.FINISHED).items()}

    def in_flight(self) -> list[str]:
        """Hashes being worked on (one entry per running attempt), as the autoscaler counts."""
        return self.redis.lrange(keys.inflight(keys.QUEUE), 0, -1)

    def remove_track(self, song_hash: str, track: str) -> None:
        self._remove_track(keys=[keys.job(song_hash)], args=[track])

    # -- the worker side --------------------------------------------------------------
    def claim(self, worker_id: str, timeout: float) -> str | None:
        """Move the oldest hash into this worker's processing list; None after `timeout` s."""
        return self.redis.blmove(keys.QUEUE, keys.processing(worker_id), timeout, "LEFT", "RIGHT")

    def start(self, song_hash: str, worker_id: str, token: str | None = None) -> str | None:
        """Begin an attempt on a claimed hash; returns its token, or None if not startable.

        Pass the same `token` when retrying, so that a call whose reply was lost is not
        mistaken for a job held by someone else.
        """
        token = token or uuid.uuid4().hex
        status = self._start(keys=[keys.job(song_hash), keys.processing(worker_id),
                                   keys.inflight(keys.QUEUE)],
                             args=[song_hash, token, worker_id, time.time()])
        return token if status == "started" else None

    def is_current(self, song_hash: str, token: str) -> bool:
        """Whether `token` is still the job's current attempt."""
        return self.redis.hget(keys.job(song_hash), "token") == token

    def set_progress(self, song_hash: str, token: str, progress: float) -> bool:
        return bool(self._set_if_current(keys=[keys.job(song_hash)],
                                         args=[token, "progress", round(progress, 4), time.time()]))

    def owed_callbacks(self, worker_id: str) -> list[str]:
        """Songs whose callback this worker owes (it, or a dead worker it adopted, ended them)."""
        return self.redis.lrange(keys.outbox(worker_id), 0, -1)

    def callback_sent(self, worker_id: str, song_hash: str, outcome: str) -> None:
        """Record what became of a callback and strike it from the worker's outbox."""
        pipe = self.redis.pipeline()
        pipe.hset(keys.job(song_hash), "callback_status", outcome)
        pipe.lrem(keys.outbox(worker_id), 1, song_hash)
        pipe.execute()

    def adopt_callbacks(self, dead_worker: str, worker_id: str) -> list[str]:
        """Move a dead worker's owed callbacks to this worker's outbox, one atomic move each."""
        adopted = []
        while song_hash := self.redis.lmove(keys.outbox(dead_worker), keys.outbox(worker_id)):
            adopted.append(song_hash)
        return adopted

    def finish(self, song_hash: str, worker_id: str, token: str, status: JobStatus,
               error: str = "", tracks: list[str] | None = None,
               timings: dict[str, float] | None = None) -> bool:
        """Write the final status; False when this attempt is no longer the current one."""
        return bool(self._finish(
            keys=[keys.job(song_hash), keys.processing(worker_id), keys.outbox(worker_id),
                  keys.inflight(keys.QUEUE), keys.FINISHED],
            args=[song_hash, token, status.value, error, time.time(),
                  json.dumps(tracks or []), json.dumps(timings or {})],
        ))

    def hand_back(self, song_hash: str, worker_id: str, token: str) -> bool:
        """Return a job to the head of the queue without counting an attempt against it."""
        return bool(self._hand_back(
            keys=[keys.job(song_hash), keys.processing(worker_id), keys.QUEUE,
                  keys.inflight(keys.QUEUE)],
            args=[song_hash, token, time.time()],
        ))

    def requeue_orphan(self, song_hash: str, dead_worker: str, max_lost: int) -> str:
        """Take a job from a dead worker: requeue it, or fail it after `max_lost` deaths."""
        return self._requeue_orphan(
            keys=[keys.job(song_hash), keys.processing(dead_worker), keys.QUEUE,
                  keys.outbox(dead_worker), keys.inflight(keys.QUEUE), keys.FINISHED],
            args=[song_hash, dead_worker, max_lost, time.time()],
        )

    def claimed_by(self, worker_id: str) -> list[str]:
        return self.redis.lrange(keys.processing(worker_id), 0, -1)
