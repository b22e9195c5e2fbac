#!lua
-- The gateway gave up on an ingest call (no reply in time; it answered 503): take back what that call
-- counted if it ran, and make it change nothing if it runs later (ingest.lua, 'ran:<nonce>'). Running
-- this twice is harmless.
-- The storms it joined members to ('+<id>' in its record) are named to the flusher under 'u:<nonce>' in
-- the count accumulator: it records the call as refused, so that its members are not written, and
-- deletes those it wrote already (gateway/store.py).
-- ARGV: prefix, nonce of the ingest call, TTL (s). Reply: occurrences taken back.
local prefix = ARGV[1]
local key = prefix .. 'ran:' .. ARGV[2]
local ran = redis.call('GET', key)
local undone = 0
if ran and ran ~= 'void' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  -- The ingest call's own nonce may already name a batch (the one that holds what it counted).
  local batch = 'v:' .. ARGV[2]
  local counts = counts_hash(prefix, now, batch)
  local joined, storms = {}, {}
  for join, id in string.gmatch(ran, '(%+?)(%d+)') do
    redis.call('HINCRBY', counts, id, -1)
    undone = undone + 1
    if join == '+' and not storms[id] then storms[id], joined[#joined + 1] = true, id end
  end
  if #joined > 0 then redis.call('HSET', counts, 'u:' .. ARGV[2], table.concat(joined, ',')) end
  name_counts(counts, batch, now)
end
redis.call('SET', key, 'void', 'EX', ARGV[3])
return undone
