"""The Lua scripts that change a song as a whole, each atomic inside Redis: its owners, its
deletion, the removal of one of its tracks (common/jobscripts.py holds the job transitions).

Every script names its ARGV in locals on its first line; KEYS are listed above it. Keys come
from common/keys.py through the caller, never built here.
"""

# KEYS: song's job set, song's owners. A second submitter of a song it holds becomes an owner
# (it has the bytes); a song deleted meanwhile gets none.
ADD_OWNER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('SADD', KEYS[2], ARGV[1])
"""

# KEYS: song's job set, expiry, deletion counter, owners, then for each job: its record, its
# queue, its in-flight list. ARGV: the song, then the ids the caller listed; if the set changed
# since, nothing is done. The counter is left odd (a deletion under way) until FINISH_DELETION,
# or for a day if that never comes (a store outage: the workers' sweep then deletes it again).
DELETE_SONG = """
local song = ARGV[1]
local count = #ARGV - 1
if redis.call('SCARD', KEYS[1]) ~= count then return -1 end
for i = 1, count do
  if redis.call('SISMEMBER', KEYS[1], ARGV[i + 1]) == 0 then return -1 end
end
for i = 1, count do
  local base = 4 + (i - 1) * 3
  redis.call('LREM', KEYS[base + 2], 0, ARGV[i + 1])
  redis.call('LREM', KEYS[base + 3], 0, ARGV[i + 1])
  redis.call('DEL', KEYS[base + 1])
end
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('ZREM', KEYS[2], song)
if redis.call('INCR', KEYS[3]) % 2 == 0 then redis.call('INCR', KEYS[3]) end
redis.call('EXPIRE', KEYS[3], 86400)
return count
"""

# KEYS: deletion counter. The song's objects are gone: submissions may store it again. The
# counter lives a day, far longer than any submission between its two reads of it.
FINISH_DELETION = """
if tonumber(redis.call('GET', KEYS[1]) or '0') % 2 == 1 then redis.call('INCR', KEYS[1]) end
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""

# KEYS: job. Marks a done job incomplete once one of its tracks is removed.
REMOVE_TRACK = """
local track = ARGV[1]
local tracks = redis.call('HGET', KEYS[1], 'tracks')
if not tracks then return 0 end
local kept = {}
for _, name in ipairs(cjson.decode(tracks)) do
  if name ~= track then table.insert(kept, name) end
end
redis.call('HSET', KEYS[1], 'tracks', cjson.encode(kept), 'complete', '0')
if #kept == 0 then redis.call('HSET', KEYS[1], 'tracks', '[]') end
return 1
"""
