#!lua
-- After PostgreSQL committed: replace pending dedup markers by the request id, unless the entry changed
-- meanwhile (resolved, expired, or re-opened under a new marker for a new request); and bind storm
-- requests to their windows (ingest.lua, 'bound'), unless the window changed or a resolution in its
-- group unbound it meanwhile.
-- Storms are bound only while every live flusher (take_counts.lua) joins members in Redis: an instance
-- of an older release, during a rolling update, would not read what that writes.
-- ARGV: prefix, a flusher's stale age (ms), number of storm binds, then (group key, window start, request
-- id) triples, then (fingerprint, expected marker, request id) triples.
local prefix = ARGV[1]
local dd_from = 4 + 3 * tonumber(ARGV[3])
local storms_from = 4
if dd_from > storms_from then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  for _, who in ipairs(redis.call('ZRANGEBYSCORE', prefix .. 'flushers', now - tonumber(ARGV[2]), '+inf')) do
    if not redis.call('HGET', prefix .. 'joiners', who) then storms_from = dd_from end
  end
end
for i = storms_from, dd_from - 1, 3 do
  local key = ARGV[i]
  local h = redis.call('HMGET', key, 'start', 'bound')
  if h[1] == ARGV[i + 1] and not (h[2] and string.find(h[2], '^' .. h[1] .. ':')) then
    redis.call('HSET', key, 'bound', ARGV[i + 1] .. ':' .. ARGV[i + 2])
  end
end
for i = dd_from, #ARGV, 3 do
  local dd = prefix .. 'dd:' .. ARGV[i]
  if redis.call('GET', dd) == ARGV[i + 1] then
    redis.call('SET', dd, ARGV[i + 2], 'KEEPTTL')
  end
end
return 0
