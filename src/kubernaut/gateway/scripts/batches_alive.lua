#!lua
-- How many of the named count batches are still in Redis: accumulating, or taken and not yet
-- acknowledged as written to PostgreSQL (take_counts.lua). A resolution that unbound a storm waits
-- for none (ingest.lua, "Bound storms").
-- ARGV: prefix, batch ids.
local prefix = ARGV[1]
local current = redis.call('HGET', prefix .. 'counts', '_batch')
local alive = 0
for i = 2, #ARGV do
  if ARGV[i] == current or redis.call('EXISTS', prefix .. 'counts:' .. ARGV[i]) == 1 then alive = alive + 1 end
end
return alive
