#!lua
-- Hand the duplicate counts accumulated since the last call to one gateway instance for flushing.
-- The batch stays under the instance's own key until the next call acknowledges it (mode 1), so a
-- PostgreSQL failure retries the same batch; mode 2 acknowledges and leaves (shutdown). Batches of
-- instances silent for longer than ARGV[4] ms (crashed mid-flush) are merged back for others to flush.
-- Also trims the open-storm index and reports its size.
-- ARGV: prefix, instance id, mode (0 keep, 1 ack, 2 ack and leave), stale after (ms).
-- Reply: {open storm windows, {request id, count, ...}}.
local prefix, instance = ARGV[1], ARGV[2]
local counts, flushers, storms = prefix .. 'counts', prefix .. 'flushers', prefix .. 'storms'
local mine = prefix .. 'counts:' .. instance
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if ARGV[3] ~= '0' then redis.call('DEL', mine) end
if ARGV[3] == '2' then
  redis.call('ZREM', flushers, instance)
  return {0, {}}
end
for _, other in ipairs(redis.call('ZRANGEBYSCORE', flushers, '-inf', now - tonumber(ARGV[4]))) do
  local batch = redis.call('HGETALL', prefix .. 'counts:' .. other)
  for j = 1, #batch, 2 do redis.call('HINCRBY', counts, batch[j], batch[j + 1]) end
  redis.call('DEL', prefix .. 'counts:' .. other)
  redis.call('ZREM', flushers, other)
end
if redis.call('EXISTS', mine) == 0 and redis.call('EXISTS', counts) == 1 then
  redis.call('RENAME', counts, mine)
end
redis.call('ZADD', flushers, now, instance)
redis.call('ZREMRANGEBYSCORE', storms, '-inf', now)
return {redis.call('ZCARD', storms), redis.call('HGETALL', mine)}
