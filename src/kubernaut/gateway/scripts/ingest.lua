#!lua
-- One webhook in one call: rate-limit the source once, then dedup and storm bookkeeping for each signal,
-- in order. The shebang makes Redis refuse the whole call up front when the master cannot take writes
-- (min-replicas-to-write), so a refused call has written nothing.
--
-- ARGV (encoded, and the reply decoded, by kubernaut/gateway/ingest_protocol.py):
--  1 prefix  2 nonce  3 source  4 rate-limit mode (0 off, 1 enforce, 2 shadow)
--  5 emission interval (us)  6 burst  7 dedup TTL (s)  8 storms on (1/0)
--  9 rate threshold  10 rate window (ms)  11 pattern threshold  12 pattern window (ms)
--  13 storm inactivity (ms)  14 storm max window (ms)
--  15 count a webhook of duplicates only here (1/0; 0: it goes to PostgreSQL, which counts them)
--  16 number of signals
--  then per signal: status (f|r), fingerprint, name, namespace, resource
--
-- Dedup entry prefix..'dd:'..fingerprint holds the RemediationRequest id once PostgreSQL has it, or a
-- pending marker until then: 'p:<nonce>:<i>:<period>' (own request, period below) or
-- 'q:<nonce>:<i>:<start>:<type>' (storm member); <i> is the signal's index, so a fingerprint re-opened later in the same webhook gets a marker
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
local count_here = ARGV[15] == '1'
local n = tonumber(ARGV[16])
local BASE, FIELDS = 16, 5
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

-- Storm bookkeeping, one hash per (namespace, name) group, read once per call and written back once
-- after the loop (every signal of a call shares `now`): 'rate' the times of the newest rate_threshold + 1
-- new signals; 'pattern' the newest pattern_threshold + 1 resources, each with the time it was last seen;
-- 'start', 'type', 'seen' the storm window (open while seen within `inactivity` and started within
-- `max_window`); 'exp' when the key expires. Keeping only the newest threshold + 1 entries changes no
-- decision: "more than threshold within the window" holds for them exactly when it holds for all.
local groups, touched = {}, {}
local function fmt(number) return string.format('%.0f', number) end

local function load_group(name, namespace)
  local key = prefix .. 'storm:' .. #namespace .. ':' .. namespace .. ':' .. name
  local g = groups[key]
  if g then return g end
  local h = redis.call('HMGET', key, 'start', 'type', 'seen', 'rate', 'pattern', 'exp')
  g = {key = key, rate = {}, rate_in = 0, pattern = {}, pattern_in = 0, exp = tonumber(h[6])}
  -- A hash written before 'seen' existed lived only `inactivity` past its last join: it is still open.
  local seen = tonumber(h[3]) or now
  if h[1] and now - seen <= inactivity then g.start, g.kind = tonumber(h[1]), h[2] end
  for at in string.gmatch(h[4] or '', '%d+') do
    at = tonumber(at)
    g.rate[#g.rate + 1] = at
    if at > now - rate_window then g.rate_in = g.rate_in + 1 end
  end
  local text, pos = h[5] or '', 1
  while pos <= #text do
    local _, stop, at, len = string.find(text, '^(%d+) (%d+) ', pos)
    local resource = string.sub(text, stop + 1, stop + tonumber(len))
    g.pattern[resource] = tonumber(at)
    if tonumber(at) > now - pattern_window then g.pattern_in = g.pattern_in + 1 end
    pos = stop + tonumber(len) + 1
  end
  groups[key] = g
  touched[#touched + 1] = g
  return g
end

local function storm_window(name, namespace, resource)
  local g = load_group(name, namespace)
  g.rate[#g.rate + 1] = now
  g.rate_in = g.rate_in + 1
  local last = g.pattern[resource]
  if not (last and last > now - pattern_window) then g.pattern_in = g.pattern_in + 1 end
  g.pattern[resource] = now
  if not (g.start and now - g.start < max_window) then
    if g.pattern_in > pattern_threshold then
      g.kind = 'pattern'
    elseif g.rate_in > rate_threshold then
      g.kind = 'rate'
    else
      return nil
    end
    g.start, g.opened = now, true
  end
  g.joined = true
  return fmt(g.start) .. ':' .. g.kind
end

local function save_groups()
  local keep_for = math.max(rate_window, pattern_window, inactivity)
  for _, g in ipairs(touched) do
    table.sort(g.rate)
    local rate = {}
    for j = math.max(1, #g.rate - rate_threshold), #g.rate do rate[#rate + 1] = fmt(g.rate[j]) end
    local seen = {}
    for resource, at in pairs(g.pattern) do seen[#seen + 1] = {at, resource} end
    table.sort(seen, function(a, b) return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2]) end)
    local pattern = {}
    for j = 1, math.min(#seen, pattern_threshold + 1) do
      pattern[j] = fmt(seen[j][1]) .. ' ' .. #seen[j][2] .. ' ' .. seen[j][2]
    end
    local fields = {'rate', table.concat(rate, ' '), 'pattern', table.concat(pattern)}
    if g.opened then
      for _, v in ipairs({'start', fmt(g.start), 'type', g.kind}) do fields[#fields + 1] = v end
    end
    if g.joined then
      fields[#fields + 1], fields[#fields + 2] = 'seen', fmt(now)
    end
    -- The key is only garbage collection (every read checks times), so its TTL is renewed only when
    -- less than keep_for is left.
    local renew = not g.exp or g.exp - now < keep_for
    if renew then
      fields[#fields + 1], fields[#fields + 2] = 'exp', fmt(now + 2 * keep_for)
    end
    redis.call('HSET', g.key, unpack(fields))
    if renew then redis.call('PEXPIRE', g.key, 2 * keep_for) end
    if g.joined then redis.call('ZADD', prefix .. 'storms', now + inactivity, g.key) end
  end
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
      local window = storms and storm_window(ARGV[b + 3], ARGV[b + 4], ARGV[b + 5])
      local code, marker = 1, 'p:' .. nonce .. ':' .. i .. ':' .. period
      if window then code, marker = 2, 'q:' .. nonce .. ':' .. i .. ':' .. window end
      redis.call('SET', dd, marker, 'EX', dedup_ttl)
      push(code, marker)
      decided = false
    end
  end
end
save_groups()
if not count_here then decided = false end
if not decided then out[#out + 1] = order() end
if decided and #duplicates > 0 then
  local counts = counts_hash(prefix, now, nonce)
  -- One HINCRBY per request (a storm's members are duplicates of one request), in first-seen order.
  local per_id, ids = {}, {}
  for _, id in ipairs(duplicates) do
    if not per_id[id] then ids[#ids + 1], per_id[id] = id, 0 end
    per_id[id] = per_id[id] + 1
  end
  for _, id in ipairs(ids) do redis.call('HINCRBY', counts, id, per_id[id]) end
  name_counts(counts, nonce, now)
  redis.call('SET', ran_key, table.concat(duplicates, ','), 'EX', RAN_TTL)
end
return out
