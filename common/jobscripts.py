"""The Lua scripts behind every job transition; each runs atomically inside Redis.

Every script names its ARGV in locals on its first line; KEYS are listed above it. Keys come
from common/keys.py through the caller, never built here.
"""

# Shared functions, prepended to the scripts that end jobs.
_HELPERS = """
local function owe_callback(job, outbox, id)
  local callback = redis.call('HGET', job, 'callback')
  if callback and callback ~= '' then redis.call('RPUSH', outbox, id) end
end

-- Count an ended job by outcome, `failed:<reason>` the reason being the error's first word;
-- render jobs as `render:<outcome>`, so the plain outcomes count songs.
local function count_finished(finished, job, status, err)
  local outcome = status
  if status == 'failed' then outcome = 'failed:' .. (string.match(err, '^[%w_]+') or 'unknown') end
  if redis.call('HGET', job, 'kind') == 'render' then outcome = 'render:' .. outcome end
  redis.call('HINCRBY', finished, outcome, 1)
end

-- End a job: its final status, its count, the song's expiry clock, and the callback it owes
-- (a cancel, asked for by the client itself, owes none). `meta` = {expiry, finished counts}.
local function conclude(job, meta, outbox, id, status, err, now)
  redis.call('HSET', job, 'status', status, 'error', err, 'updated', now, 'finished', now)
  redis.call('HDEL', job, 'token')
  redis.call('ZADD', meta[1], now, redis.call('HGET', job, 'song'))
  count_finished(meta[2], job, status, err)
  if status ~= 'cancelled' then owe_callback(job, outbox, id) end
end

-- A separation waiting for its render job ends as that job did, with its tracks.
local function settle(sep, sep_id, render, status, err, meta, outbox, now)
  local complete = '0'
  if status == 'done' then
    complete = '1'
    redis.call('HSET', sep, 'progress', 1)
  end
  redis.call('HSET', sep, 'tracks', redis.call('HGET', render, 'tracks') or '[]',
             'complete', complete)
  redis.call('HDEL', sep, 'awaiting')
  conclude(sep, meta, outbox, sep_id, status, err, now)
end

-- `params`: a parametrised operation's canonical JSON (common/operations.py), else nil or ''.
local function create_render(job, queue, song_set, id, song, model, rendition, parent, now,
                             params)
  redis.call('DEL', job)
  redis.call('HSET', job, 'kind', 'render', 'status', 'queued', 'song', song, 'model', model,
             'rendition', rendition, 'parent', parent, 'created', now, 'updated', now,
             'attempts', 0, 'deaths', 0, 'progress', 0, 'error', '', 'cancel', '0')
  if params and params ~= '' then redis.call('HSET', job, 'params', params) end
  redis.call('RPUSH', queue, id)
  redis.call('SADD', song_set, id)
end

-- Queue an operation's render job of a separated song, unless it is stored or on its way. A
-- render that failed for the song's own reason would fail again: say so instead; only one whose
-- workers kept dying is worth another try. None while the render queue holds `max_queue` jobs
-- or the song has `max_renditions` render jobs (0: no limit); the studio operations (`studio`,
-- a set of their names), made for every model's stems, neither count nor are counted.
local function request_render(job, queue, song_set, id, song, model, rendition, parent, now,
                              params, max_queue, max_renditions, studio)
  local status = redis.call('HGET', job, 'status')
  if status == 'done' and redis.call('HGET', job, 'complete') == '1' then return 'stored' end
  if status == 'queued' or status == 'processing' then return status end
  if status == 'failed' and string.sub(redis.call('HGET', job, 'error') or '', 1, 11)
      ~= 'worker_lost' then
    return 'failed'
  end
  max_queue, max_renditions = tonumber(max_queue), tonumber(max_renditions)
  if max_queue > 0 and redis.call('LLEN', queue) >= max_queue then return 'full' end
  if not status and max_renditions > 0 and not studio[rendition] then
    local renders = 0
    for _, member in ipairs(redis.call('SMEMBERS', song_set)) do
      local op = string.match(member, '^[^:]+:[^:]+:([^:]+)$')
      if op and not studio[op] then renders = renders + 1 end
    end
    if renders >= max_renditions then return 'too_many' end
  end
  create_render(job, queue, song_set, id, song, model, rendition, parent, now, params)
  return 'enqueued'
end

-- The studio operations of stems just stored (common/operations.py STUDIO), each asked for as
-- above: their job keys are KEYS[first_key] on, their ids ARGV[first_arg] on. Those refused
-- (a full queue) are left to the status read, which asks for them again.
local function queue_studio(first_key, first_arg, queue, song_set, song, model, parent, now,
                            max_queue)
  local studio = {}
  for i = first_arg, #ARGV do studio[string.match(ARGV[i], '[^:]+$')] = true end
  for i = 0, #ARGV - first_arg do
    local id = ARGV[first_arg + i]
    request_render(KEYS[first_key + i], queue, song_set, id, song, model,
                   string.match(id, '[^:]+$'), parent, now, '', max_queue, 0, studio)
  end
end
"""

# KEYS: job, queue, song's job set, expiry, song's deletion counter, song's owners.
# `seen_status`/`seen_complete` are what the caller read when it decided (Job.may_resubmit)
# that the song may be queued, `seen_deletions` what it read before it looked for the upload;
# if the record changed since, nothing is written; if a deletion is under way or happened
# since, the upload it found may be gone: 'deleting'. `owner`: a key id, or empty.
ENQUEUE_SEPARATION = """
local id, song, model, rendition, input, callback, now, max_queue, store_seconds,
      seen_status, seen_complete, seen_deletions, owner = unpack(ARGV)
local deletions = redis.call('GET', KEYS[5]) or '0'
if deletions ~= seen_deletions or tonumber(deletions) % 2 == 1 then return 'deleting' end
local status = redis.call('HGET', KEYS[1], 'status') or ''
if status ~= seen_status or (redis.call('HGET', KEYS[1], 'complete') or '') ~= seen_complete then
  return 'changed'
end
if redis.call('LLEN', KEYS[2]) >= tonumber(max_queue) then return 'full' end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'kind', 'separate', 'status', 'queued', 'song', song, 'model', model,
           'rendition', rendition, 'input', input, 'callback', callback, 'created', now,
           'updated', now, 'attempts', 0, 'deaths', 0, 'progress', 0, 'error', '',
           'cancel', '0', 'timings', cjson.encode({store_input = tonumber(store_seconds)}))
redis.call('RPUSH', KEYS[2], id)
redis.call('SADD', KEYS[3], id)
redis.call('ZREM', KEYS[4], song)
if owner ~= '' then redis.call('SADD', KEYS[6], owner) end
if status ~= '' then return 'retried' end
return 'enqueued'
"""

# KEYS: render job, render queue, song's job set, separation job.
# A new render job is refused while the render queue holds `max_queue` jobs, or once the song
# has `max_renditions` render jobs (of every model; its studio operations, named in `studio`,
# aside); 0 sets no such limit.
REQUEST_RENDITION = _HELPERS + """
local id, song, model, rendition, sep_id, now, params, max_queue, max_renditions,
      studio_names = unpack(ARGV)
local studio = {}
for name in string.gmatch(studio_names, '[^,]+') do studio[name] = true end
-- The lossless stems exist once the separation is done or waits for a render job.
local sep_status = redis.call('HGET', KEYS[4], 'status')
local awaiting = redis.call('HGET', KEYS[4], 'awaiting')
if not (sep_status == 'done' or (sep_status == 'processing' and awaiting)) then
  return 'not_separated'
end
return request_render(KEYS[1], KEYS[2], KEYS[3], id, song, model, rendition, sep_id, now, params,
                      max_queue, max_renditions, studio)
"""

# KEYS: job, processing list, in-flight list.
# Run twice with the same token (a reply lost, the call retried), it answers 'started' again;
# a job that another attempt holds, or that ended, is dropped from this worker's list.
START = """
local id, token, worker, now = unpack(ARGV)
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'processing' and redis.call('HGET', KEYS[1], 'token') == token then
  return 'started'
end
if status ~= 'queued' then
  redis.call('LREM', KEYS[2], 0, id)
  return status or 'missing'
end
redis.call('HSET', KEYS[1], 'status', 'processing', 'token', token, 'worker', worker,
           'started', now, 'updated', now, 'progress', 0)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('RPUSH', KEYS[3], id)
return 'started'
"""

# KEYS: job. Records progress if the token is current; says whether to stop.
PROGRESS = """
local token, progress, now = unpack(ARGV)
if redis.call('HGET', KEYS[1], 'token') ~= token then return 'stale' end
redis.call('HSET', KEYS[1], 'progress', progress, 'updated', now)
if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 'cancel' end
return 'ok'
"""

# KEYS: job, processing list, outbox, in-flight list, expiry, finished counts,
# parent separation (render jobs), render queue, song's job set, then the job keys of the
# studio operations to queue once done (an ensemble's stems job; ARGV from 9 on their ids).
FINISH = _HELPERS + """
local id, token, status, err, now, tracks, timings, max_queue = unpack(ARGV)
local meta = {KEYS[5], KEYS[6]}
redis.call('LREM', KEYS[2], 0, id)
if redis.call('HGET', KEYS[1], 'token') ~= token then return 0 end
redis.call('LREM', KEYS[4], 1, id)
local complete = '0'
if status == 'done' then
  complete = '1'
  redis.call('HSET', KEYS[1], 'progress', 1)
end
redis.call('HSET', KEYS[1], 'tracks', tracks, 'timings', timings, 'complete', complete)
conclude(KEYS[1], meta, KEYS[3], id, status, err, now)
local parent = redis.call('HGET', KEYS[1], 'parent')
if parent and redis.call('HGET', KEYS[7], 'awaiting') == id
   and redis.call('HGET', KEYS[7], 'status') == 'processing' then
  settle(KEYS[7], parent, KEYS[1], status, err, meta, KEYS[3], now)
end
if status == 'done' then
  queue_studio(10, 9, KEYS[8], KEYS[9], redis.call('HGET', KEYS[1], 'song'),
               redis.call('HGET', KEYS[1], 'model'), parent or '', now, max_queue)
end
return 1
"""

# KEYS: separation job, processing list, in-flight list, render job, render queue,
# song's job set, expiry, finished counts, outbox, then the studio operations' job keys.
# The separation's stems are stored: its claim ends and the render job it waits for is queued
# (or, stored already, ends it at once), then its studio operations (ARGV from 10 on their ids)
# while the render queue is shorter than `max_queue`. A cancel asked meanwhile ends it as
# cancelled instead.
HAND_OFF = _HELPERS + """
local id, token, now, render_id, song, model, rendition, timings, max_queue = unpack(ARGV)
local meta = {KEYS[7], KEYS[8]}
redis.call('LREM', KEYS[2], 0, id)
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('HGET', KEYS[1], 'token') ~= token then return 'stale' end
redis.call('LREM', KEYS[3], 1, id)
redis.call('HSET', KEYS[1], 'timings', timings, 'updated', now)
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  conclude(KEYS[1], meta, KEYS[9], id, 'cancelled', '', now)
  return 'cancelled'
end
redis.call('HSET', KEYS[1], 'awaiting', render_id)
redis.call('HDEL', KEYS[1], 'token')
local outcome = 'rendering'
local status = redis.call('HGET', KEYS[4], 'status')
if status == 'done' and redis.call('HGET', KEYS[4], 'complete') == '1' then
  settle(KEYS[1], id, KEYS[4], 'done', '', meta, KEYS[9], now)
  outcome = 'done'
elseif status ~= 'queued' and status ~= 'processing' then
  create_render(KEYS[4], KEYS[5], KEYS[6], render_id, song, model, rendition, id, now)
end
queue_studio(10, 10, KEYS[5], KEYS[6], song, model, id, now, max_queue)
return outcome
"""

# KEYS: job, processing list, queue, in-flight list. Puts the job back at the head.
HAND_BACK = """
local id, token, now = unpack(ARGV)
redis.call('LREM', KEYS[2], 0, id)
if redis.call('HGET', KEYS[1], 'token') ~= token then return 0 end
redis.call('LREM', KEYS[4], 1, id)
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated', now, 'progress', 0)
redis.call('HDEL', KEYS[1], 'token')
redis.call('LPUSH', KEYS[3], id)
return 1
"""

# KEYS: job, dead worker's processing list, queue, dead worker's outbox, in-flight list,
# expiry, finished counts, parent separation (render jobs).
# Removing the entry first makes two reapers safe: only the one whose LREM removed it acts.
REQUEUE_ORPHAN = _HELPERS + """
local id, dead_worker, max_deaths, now = unpack(ARGV)
local meta = {KEYS[6], KEYS[7]}
if redis.call('LREM', KEYS[2], 0, id) == 0 then return 'gone' end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' then
  redis.call('LPUSH', KEYS[3], id)
  return 'requeued'
end
if status ~= 'processing' or redis.call('HGET', KEYS[1], 'worker') ~= dead_worker
   or redis.call('HGET', KEYS[1], 'awaiting') then
  return 'ignored'
end
local deaths = redis.call('HINCRBY', KEYS[1], 'deaths', 1)
redis.call('HDEL', KEYS[1], 'token')
redis.call('LREM', KEYS[5], 1, id)
if deaths < tonumber(max_deaths) then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'updated', now, 'progress', 0)
  redis.call('LPUSH', KEYS[3], id)
  return 'requeued'
end
local doing = 'separating'
if redis.call('HGET', KEYS[1], 'kind') == 'render' then doing = 'rendering' end
local err = 'worker_lost: a worker died ' .. deaths .. ' times ' .. doing .. ' this song'
conclude(KEYS[1], meta, KEYS[4], id, 'failed', err, now)
local parent = redis.call('HGET', KEYS[1], 'parent')
if parent and redis.call('HGET', KEYS[8], 'awaiting') == id then
  settle(KEYS[8], parent, KEYS[1], 'failed', err, meta, KEYS[4], now)
end
return 'failed'
"""

# KEYS: job, queue, expiry, finished counts.
# A queued job leaves its queue; a running one is told to stop.
CANCEL = _HELPERS + """
local id, now = unpack(ARGV)
local meta = {KEYS[3], KEYS[4]}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'cancelled' then return 'cancelled' end
if status == 'queued' then
  redis.call('LREM', KEYS[2], 0, id)
  redis.call('HSET', KEYS[1], 'cancel', '1')
  conclude(KEYS[1], meta, '', id, 'cancelled', '', now)
  return 'cancelled'
end
if status == 'processing' and not redis.call('HGET', KEYS[1], 'awaiting') then
  redis.call('HSET', KEYS[1], 'cancel', '1', 'updated', now)
  return 'stopping'
end
return 'finished'
"""

# KEYS: job, outbox. Records what became of a callback (unless the job was deleted meanwhile)
# and strikes it from the worker's outbox.
CALLBACK_SENT = """
local id, outcome = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'callback_status', outcome)
end
redis.call('LREM', KEYS[2], 1, id)
return 1
"""
