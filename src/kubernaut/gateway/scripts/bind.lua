#!lua
-- After PostgreSQL committed: replace pending dedup markers by the request id, unless the entry changed
-- meanwhile (resolved, expired, or re-opened under a new marker for a new request).
-- ARGV: prefix, then (fingerprint, expected marker, request id) triples.
local prefix = ARGV[1]
for i = 2, #ARGV, 3 do
  local dd = prefix .. 'dd:' .. ARGV[i]
  if redis.call('GET', dd) == ARGV[i + 1] then
    redis.call('SET', dd, ARGV[i + 2], 'KEEPTTL')
  end
end
return 0
