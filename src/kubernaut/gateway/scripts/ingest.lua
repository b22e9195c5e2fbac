#!lua
-- One webhook in one call: rate-limit the source once, then dedup and storm bookkeeping for each signal,
-- in order. The shebang makes Redis refuse the whole call up front when the master cannot take writes
-- (min-replicas-to-write), so a refused call has written nothing.
--
-- ARGV (layout mirrored by kubernaut/gateway/redis_state.py, IngestArgs):
--  1 prefix  2 nonce  3 source  4 rate-limit mode (0 off, 1 enforce, 2 shadow)
--  5 emission interval (us)  6 burst  7 dedup TTL (s)  8 storms on (1/0)
--  9 rate threshold  10 rate window (ms)  11 pattern threshold  12 pattern window (ms)
--  13 storm inactivity (ms)  14 storm max window (ms)  15 number of signals
--  then per signal: status (f|r), fingerprint, name, namespace, resource
--
-- Dedup entry prefix..'dd:'..fingerprint holds the RemediationRequest id once PostgreSQL has it, or a
-- pending marker until then: 'p:<nonce>:<i>' (own request) or 'q:<nonce>:<i>:<start>:<type>' (storm
-- member); <i> is the signal's index, so a fingerprint re-opened later in the same webhook gets a marker
-- of its own and a bind meant for the request closed before it cannot land on it.
-- Pending entries send the signal to PostgreSQL again, whose unique index decides created vs duplicate;
-- the marker is returned so that whichever webhook gets the id first binds it (bind.lua).
--
-- A resolution leaves a tombstone 'r:<seq>' in the dedup entry (for the dedup TTL) instead of deleting
-- it: <seq> is the resolution's place in this master's order of calls ('seq' key: a clock in us that
-- never goes back, one tick per signal). A firing that opens a request after it carries that seq as
-- the request's period in its marker ('p:<nonce>:<i>:<period>'), so PostgreSQL can apply a resolution
-- and a firing of one fingerprint committed by two gateway processes in either order with the outcome
-- of this order (store/migrations/070_request_periods.sql).
--
-- Reply: {limited (0, 1 limited, 2 would be limited in shadow mode), retry-after (ms)} then per signal
-- {code, value}: 0 duplicate (request id), 1 own request (marker), 2 storm member (marker),
-- 3 resolved (request id or ''), then, when any signal goes to PostgreSQL, the seq of the first
-- signal (signal i has seq + i).
--
-- Duplicates are added to the count accumulator only when the whole webhook is decided here (every
-- signal a duplicate): a webhook that also goes to PostgreSQL counts its duplicates in that
-- transaction, so a webhook refused after this script ran (PostgreSQL down) has counted nothing.
local prefix, nonce, source = ARGV[1], ARGV[2], ARGV[3]
local rl_mode, rl_interval, rl_burst = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local dedup_ttl = tonumber(ARGV[7])
local storms = ARGV[8] == '1'
local rate_threshold, rate_window = tonumber(ARGV[9]), tonumber(ARGV[10])
local pattern_threshold, pattern_window = tonumber(ARGV[11]), tonumber(ARGV[12])
local inactivity, max_window = tonumber(ARGV[13]), tonumber(ARGV[14])
local n = tonumber(ARGV[15])
local BASE, FIELDS = 15, 5
-- A call whose reply was lost can still run (a hung master resumes) or run twice (a retry). A counting
-- run records what it counted under 'ran:<nonce>' for RAN_TTL seconds: a second run answers the same
-- without counting again, and void.lua (the gateway gave up and answered 503) takes the counts back.
-- 'void' there means the gateway gave up before this call ran: then it changes nothing.
local RAN_TTL = 60
local ran_key = prefix .. 'ran:' .. nonce
local ran = redis.call('GET', ran_key)
if ran then
  local again = {0, 0}
  if ran ~= 'void' then
    for id in string.gmatch(ran, '%d+') do
      again[#again + 1] = 0
      again[#again + 1] = id
    end
  end
  return again
end

local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)

local out = {0, 0}
local function push(code, value)
  out[#out + 1] = code
  out[#out + 1] = value
end

-- GCRA: one request costs one emission interval; up to `burst` requests may arrive at once.
if rl_mode > 0 then
  local key = prefix .. 'rl:' .. source
  local tat = tonumber(redis.call('GET', key)) or now_us
  if tat < now_us then tat = now_us end
  local new_tat = tat + rl_interval
  local allow_at = new_tat - rl_interval * rl_burst
  if now_us < allow_at then
    local wait_ms = math.ceil((allow_at - now_us) / 1000)
    if rl_mode == 1 then return {1, wait_ms} end
    out[1], out[2] = 2, wait_ms
  else
    redis.call('SET', key, string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now_us) / 1000))
  end
end

-- Sliding windows per (namespace, name): the newest signals and the most recently seen resources, each
-- trimmed to threshold + 1 entries, which is all "more than threshold within the window" needs.
local function storm_window(name, namespace, resource, i)
  local group = #namespace .. ':' .. namespace .. ':' .. name
  local rk, pk, sk = prefix .. 'rate:' .. group, prefix .. 'pattern:' .. group, prefix .. 'storm:' .. group
  redis.call('ZADD', rk, now, nonce .. ':' .. i)
  redis.call('ZREMRANGEBYRANK', rk, 0, -(rate_threshold + 2))
  redis.call('PEXPIRE', rk, rate_window)
  redis.call('ZADD', pk, now, resource)
  redis.call('ZREMRANGEBYRANK', pk, 0, -(pattern_threshold + 2))
  redis.call('PEXPIRE', pk, pattern_window)
  local open = redis.call('HMGET', sk, 'start', 'type')
  local window
  if open[1] and now - tonumber(open[1]) < max_window then
    window = open[1] .. ':' .. open[2]
  else
    local kind
    if redis.call('ZCOUNT', pk, '(' .. (now - pattern_window), '+inf') > pattern_threshold then
      kind = 'pattern'
    elseif redis.call('ZCOUNT', rk, '(' .. (now - rate_window), '+inf') > rate_threshold then
      kind = 'rate'
    else
      return nil
    end
    redis.call('HSET', sk, 'start', now, 'type', kind)
    window = now .. ':' .. kind
  end
  redis.call('PEXPIRE', sk, inactivity)
  redis.call('ZADD', prefix .. 'storms', now + inactivity, sk)
  return window
end

-- The order of this call's signals among all calls of this master: read (and advanced by n) only when
-- a signal goes to PostgreSQL. TIME keeps it near wall-clock time after a failover to a replica whose
-- copy of the key is behind.
local seq
local function order()
  if not seq then
    local last = tonumber(redis.call('GET', prefix .. 'seq')) or 0
    seq = math.max(now_us, last + 1)
    redis.call('SET', prefix .. 'seq', string.format('%.0f', seq + n - 1))
  end
  return seq
end

local duplicates, decided = {}, true
for i = 0, n - 1 do
  local b = BASE + i * FIELDS
  local dd = prefix .. 'dd:' .. ARGV[b + 2]
  if ARGV[b + 1] == 'r' then
    local tomb = 'r:' .. string.format('%.0f', order() + i)
    local v = redis.call('SET', dd, tomb, 'EX', dedup_ttl, 'GET')
    push(3, (v and v:find('^%d')) and v or '')
    decided = false
  else
    local v = redis.call('GETEX', dd, 'EX', dedup_ttl)
    if v and v:find('^%d') then
      duplicates[#duplicates + 1] = v
      push(0, v)
    elseif v and v:sub(1, 2) ~= 'r:' then
      push(v:sub(1, 2) == 'p:' and 1 or 2, v)
      decided = false
    else
      local period = v and v:sub(3) or '0'
      local window = storms and storm_window(ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], i)
      local code, marker = 1, 'p:' .. nonce .. ':' .. i .. ':' .. period
      if window then code, marker = 2, 'q:' .. nonce .. ':' .. i .. ':' .. window end
      redis.call('SET', dd, marker, 'EX', dedup_ttl)
      push(code, marker)
      decided = false
    end
  end
end
if not decided then out[#out + 1] = order() end
if decided and #duplicates > 0 then
  for _, id in ipairs(duplicates) do redis.call('HINCRBY', prefix .. 'counts', id, 1) end
  -- The counts hash is born with its batch id (take_counts.lua), so that a copy resurrected from an old
  -- snapshot after every node died is known to PostgreSQL if it was applied: lost, never counted twice.
  redis.call('HSETNX', prefix .. 'counts', '_batch', nonce)
  redis.call('SET', ran_key, table.concat(duplicates, ','), 'EX', RAN_TTL)
end
return out
