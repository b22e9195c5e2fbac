#!lua
-- The gateway gave up on an ingest call (no reply in time; it answered 503): take back what that call
-- counted if it ran, and make it change nothing if it runs later (ingest.lua, 'ran:<nonce>'). Running
-- this twice is harmless.
-- ARGV: prefix, nonce of the ingest call, TTL (s). Reply: occurrences taken back.
local prefix = ARGV[1]
local key = prefix .. 'ran:' .. ARGV[2]
local ran = redis.call('GET', key)
local undone = 0
if ran and ran ~= 'void' then
  for id in string.gmatch(ran, '%d+') do
    redis.call('HINCRBY', prefix .. 'counts', id, -1)
    undone = undone + 1
  end
end
redis.call('SET', key, 'void', 'EX', ARGV[3])
return undone
