#!lua
-- Hand the duplicate counts accumulated since the last call to one gateway instance as a *batch* with an
-- id, for flushing. PostgreSQL records each applied batch id in the transaction that adds its counts, so
-- flushing one batch twice adds it once. A batch stays the instance's own (same id, same counts) until a
-- later call acknowledges exactly that id: an acknowledgement that names an older batch (its reply was
-- lost and the call repeated) deletes nothing. Batches of instances silent for longer than ARGV[5] ms
-- (crashed mid-flush), and a leaving instance's unacknowledged batch, are queued whole, id included, for
-- the next instance without a batch: PostgreSQL then skips them if they were applied already.
-- Also trims the open-storm index and reports its size.
-- ARGV: prefix, instance id, id of the batch acknowledged ('' none), id for a new batch (unique, from the
-- caller), stale after (ms), leave ('1' at shutdown), acknowledge only ('1': take nothing; a resolution
-- may be waiting for the batch to be gone, ingest.lua), joins storm members in Redis ('1', else '').
-- 'joiners' names the instances that join storm members in Redis and read what that writes (bind.lua
-- binds no storm while a live flusher is not among them: an older release, during a rolling update).
-- Reply: {open storm windows, batch id ('' none), {request id, count, ...}}.
-- The accumulating hash carries its id in field '_batch' and its birth time in '_born' (set by ingest.lua
-- when it starts the hash, which also sets aside a hash too old to be a live one).
local prefix, instance, ack, fresh = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local counts, flushers, storms = prefix .. 'counts', prefix .. 'flushers', prefix .. 'storms'
local orphans = prefix .. 'countbatches:orphaned'
local function owner(who) return prefix .. 'countbatch:' .. who end
local function batch(id) return prefix .. 'counts:' .. id end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local joiners = prefix .. 'joiners'
if ARGV[8] == '1' and ARGV[6] ~= '1' then
  redis.call('HSET', joiners, instance, '1')
else
  redis.call('HDEL', joiners, instance)
end

local current = redis.call('GET', owner(instance))
if current and current == ack then
  redis.call('DEL', batch(current), owner(instance))
  current = false
end
if ARGV[7] == '1' then
  redis.call('ZADD', flushers, now, instance)
  return {0, '', {}}
end
if ARGV[6] == '1' then
  if current then
    redis.call('RPUSH', orphans, current)
    redis.call('DEL', owner(instance))
  end
  redis.call('ZREM', flushers, instance)
  return {0, '', {}}
end
for _, other in ipairs(redis.call('ZRANGEBYSCORE', flushers, '-inf', now - tonumber(ARGV[5]))) do
  if other ~= instance then
    local theirs = redis.call('GET', owner(other))
    if theirs then
      redis.call('RPUSH', orphans, theirs)
      redis.call('DEL', owner(other))
    end
    redis.call('ZREM', flushers, other)
    redis.call('HDEL', joiners, other)
  end
end
if not current then
  current = redis.call('LPOP', orphans)
  if not current and redis.call('EXISTS', counts) == 1 then
    -- The id the ingest script gave the hash when it began; ARGV[4] for one begun without.
    current = redis.call('HGET', counts, '_batch') or fresh
    redis.call('RENAME', counts, batch(current))
    redis.call('HDEL', batch(current), '_batch', '_born')
  end
  if current then redis.call('SET', owner(instance), current) end
end
redis.call('ZADD', flushers, now, instance)
redis.call('ZREMRANGEBYSCORE', storms, '-inf', now)
if not current then return {redis.call('ZCARD', storms), '', {}} end
return {redis.call('ZCARD', storms), current, redis.call('HGETALL', batch(current))}
