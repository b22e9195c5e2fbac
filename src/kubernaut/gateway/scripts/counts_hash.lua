-- Shared by ingest.lua and void.lua (Script.load puts it after their first line): the hash that
-- accumulates duplicate counts until a flusher takes it (take_counts.lua). It is born with a batch id
-- ('_batch') and a birth time ('_born', ms). PostgreSQL applies a batch id once, so nothing may be added
-- to a hash whose id it may already have applied: a copy resurrected by a failover to a replica that had
-- not received the take that moved it aside (the take itself was flushed), or by a restart from an older
-- snapshot. Flushers take the hash about every second; one older than COUNTS_MAX_AGE_MS (well below
-- Sentinel's down-after, so below the time any failover takes) is such a copy, or one that no flusher
-- took for a while (PostgreSQL down): it is set aside whole as a batch of its own, for the next flusher
-- without one, and counting starts a new hash under a new id.
local COUNTS_MAX_AGE_MS = 2000

local function counts_hash(prefix, now, nonce)
  local counts = prefix .. 'counts'
  local born = tonumber(redis.call('HGET', counts, '_born'))
  if born and born < now - COUNTS_MAX_AGE_MS then
    local id = redis.call('HGET', counts, '_batch') or nonce
    if redis.call('EXISTS', prefix .. 'counts:' .. id) == 1 then id = id .. ':' .. nonce end
    redis.call('RENAME', counts, prefix .. 'counts:' .. id)
    redis.call('HDEL', prefix .. 'counts:' .. id, '_batch', '_born')
    redis.call('RPUSH', prefix .. 'countbatches:orphaned', id)
  end
  return counts
end

-- After adding to the hash: a hash just begun gets its id and birth time.
local function name_counts(counts, nonce, now)
  if redis.call('HSETNX', counts, '_batch', nonce) == 1 then redis.call('HSET', counts, '_born', now) end
end
