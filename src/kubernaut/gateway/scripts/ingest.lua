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
--  then per signal: status (f|r), fingerprint, name, namespace, resource, the alert's start (ms, 0: none)
--
-- Dedup entry prefix..'dd:'..fingerprint holds the RemediationRequest id once PostgreSQL has it, or a
-- pending marker until then: 'p:<nonce>:<i>:<period>' (own request, period below) or
-- 'q:<nonce>:<i>:<start>:<type>' (storm member); <i> is the signal's index, so a fingerprint re-opened later in the same webhook gets a marker
-- of its own and a bind meant for the request closed before it cannot land on it.
-- 'k:<nonce>:<i>:<start>:<type>:<id>' is a storm member this script joined to its bound storm <id>
-- (below): a repeat is a duplicate of that storm unless the call that joined it was voided.
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
-- 3 resolved (request id or ''), 4 joined to a bound storm here (its request id); then, when any
-- signal goes to PostgreSQL, the seq of the first signal (signal i has seq + i), and when a resolution
-- must wait for count batches, their ids ('a,b').
--
-- Duplicates are added to the count accumulator only when the whole webhook is decided here (every
-- signal a duplicate or a join): a webhook that also goes to PostgreSQL counts its duplicates in that
-- transaction, so a webhook refused after this script ran (PostgreSQL down) has counted nothing.
--
-- Bound storms. Once a storm's request is committed, the gateway binds its id to the storm window
-- (the group hash's 'bound' = '<start>:<id>', bind.lua). A new member of a bound window, in a webhook
-- decided here, is joined here: its occurrence is counted like a duplicate's and its member row waits in
-- the count accumulator for the flusher, which writes it with the counts (voided calls' members left
-- out): 'j:<nonce>' = '<received us>', then per member ' <id> <alert start ms> <fingerprint> <resource
-- length> <resource>'.
-- A resolution of the group unbinds the window for good ('<start>:-:<id>|<batch ids>'): later members go
-- to PostgreSQL; and the resolution waits until the batches holding members joined here then (counted
-- by their '_joins' field) are written, so PostgreSQL has every member before deciding to close a storm.
local prefix, nonce, source = ARGV[1], ARGV[2], ARGV[3]
local rl_mode, rl_interval, rl_burst = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local dedup_ttl = tonumber(ARGV[7])
local storms = ARGV[8] == '1'
local rate_threshold, rate_window = tonumber(ARGV[9]), tonumber(ARGV[10])
local pattern_threshold, pattern_window = tonumber(ARGV[11]), tonumber(ARGV[12])
local inactivity, max_window = tonumber(ARGV[13]), tonumber(ARGV[14])
local count_here = ARGV[15] == '1'
local n = tonumber(ARGV[16])
local BASE, FIELDS = 16, 6
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
    for joined, id in string.gmatch(ran, '(%+?)(%d+)') do
      again[#again + 1] = joined == '+' and 4 or 0
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
local function group_key(name, namespace) return prefix .. 'storm:' .. #namespace .. ':' .. namespace .. ':' .. name end

local function load_group(name, namespace)
  local key = group_key(name, namespace)
  local g = groups[key]
  if g then return g end
  local h = redis.call('HMGET', key, 'start', 'type', 'seen', 'rate', 'pattern', 'exp', 'bound')
  g = {key = key, rate = {}, rate_in = 0, pattern = {}, pattern_in = 0, exp = tonumber(h[6]), bound = h[7]}
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
  return fmt(g.start) .. ':' .. g.kind, g
end

-- The request id bound to group g's current window, if any (never one whose window was unbound).
local function bound_id(g)
  local start, id = string.match(g.bound or '', '^(%d+):(%d+)$')
  if id and start == fmt(g.start) then return id end
  return nil
end

-- The count batches holding members joined here ('_joins' > 0): the accumulating hash's and those not yet
-- acknowledged (take_counts.lua).
local with_joins
local function batches_with_joins()
  if with_joins then return with_joins end
  local ids, counts = {}, prefix .. 'counts'
  local h = redis.call('HMGET', counts, '_batch', '_joins')
  if h[1] and tonumber(h[2] or 0) > 0 then ids[#ids + 1] = h[1] end
  local taken = {}
  for _, who in ipairs(redis.call('ZRANGEBYSCORE', prefix .. 'flushers', '-inf', '+inf')) do
    taken[#taken + 1] = redis.call('GET', prefix .. 'countbatch:' .. who)
  end
  for _, id in ipairs(redis.call('LRANGE', prefix .. 'countbatches:orphaned', 0, -1)) do taken[#taken + 1] = id end
  for _, id in ipairs(taken) do
    if id and tonumber(redis.call('HGET', counts .. ':' .. id, '_joins') or 0) > 0 then ids[#ids + 1] = id end
  end
  with_joins = table.concat(ids, ',')
  return with_joins
end

-- A resolution in a group: unbind its window for good, and name the batches to wait for while members
-- joined here may not all be in PostgreSQL: those holding joins when the window was unbound, or, when
-- the group's hash is gone (no signal of the group for a while), any holding joins now.
local waits = {}
local function unbind(name, namespace)
  local key = group_key(name, namespace)
  local h = redis.call('HMGET', key, 'start', 'seen', 'bound')
  if not h[1] then
    local batches = batches_with_joins()
    if batches ~= '' then waits[#waits + 1] = batches end
    return
  end
  local bound = h[3] or ''
  local start, id = string.match(bound, '^(%d+):(%d+)$')
  if id then
    local batches = batches_with_joins()
    redis.call('HSET', key, 'bound', start .. ':-:' .. id .. '|' .. batches)
    if batches ~= '' then waits[#waits + 1] = batches end
    return
  end
  local unbound = string.match(bound, '^%d+:%-:%d+|(.+)$')
  if unbound then waits[#waits + 1] = unbound end
  local open = now - (tonumber(h[2]) or 0) <= inactivity and now - tonumber(h[1]) < max_window
  if open and not string.find(bound, '^' .. h[1] .. ':') then redis.call('HSET', key, 'bound', h[1] .. ':-') end
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

-- A member joined here before, 'k:<nonce>:<i>:<start>:<type>:<id>': a duplicate of its storm, unless
-- the call that joined it was voided (then it is new again). Once that call's record is gone, nothing can
-- void it any more: the entry becomes the plain id.
local function joined_here(dd, v)
  local joiner, id = string.match(v, '^k:([^:]+):.*:(%d+)$')
  local ran_by = redis.call('GET', prefix .. 'ran:' .. joiner)
  if ran_by == 'void' then return nil end
  if not ran_by then redis.call('SET', dd, id, 'KEEPTTL') end
  return id
end

-- duplicates: request ids counted if the webhook is decided here, one per occurrence; ran_list: what the
-- 'ran:<nonce>' record lists, per counted signal ('<id>', or '+<id>' for a join); joins: new members of
-- bound storms, joined here if the webhook is decided here (join_of: by their marker).
local duplicates, ran_list, joins, join_of = {}, {}, {}, {}
local decided = true
for i = 0, n - 1 do
  local b = BASE + i * FIELDS
  local fp = ARGV[b + 2]
  local dd = prefix .. 'dd:' .. fp
  if ARGV[b + 1] == 'r' then
    local tomb = 'r:' .. string.format('%.0f', order() + i)
    local v = redis.call('SET', dd, tomb, 'EX', dedup_ttl, 'GET')
    push(3, (v and v:find('^%d')) and v or '')
    if storms then unbind(ARGV[b + 3], ARGV[b + 4]) end
    decided = false
  else
    local v = redis.call('GETEX', dd, 'EX', dedup_ttl)
    if v and not join_of[v] and v:sub(1, 2) == 'k:' then v = joined_here(dd, v) end
    local prefix2 = v and v:sub(1, 2)
    if v and v:find('^%d') then
      duplicates[#duplicates + 1] = v
      ran_list[#ran_list + 1] = v
      push(0, v)
    elseif v and join_of[v] then  -- again in this call, after its join
      local j = join_of[v]
      duplicates[#duplicates + 1] = j.id
      ran_list[#ran_list + 1] = j.id
      j.repeats[#j.repeats + 1] = #out + 1
      push(2, v)
    elseif v and prefix2 ~= 'r:' then
      push(prefix2 == 'p:' and 1 or 2, v)
      decided = false
    else
      local period = v and v:sub(3) or '0'
      local window, g
      if storms then window, g = storm_window(ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]) end
      local code, marker = 1, 'p:' .. nonce .. ':' .. i .. ':' .. period
      local id = window and count_here and bound_id(g)
      if window then code, marker = 2, 'q:' .. nonce .. ':' .. i .. ':' .. window end
      if id then
        local plain = marker
        marker = 'k' .. plain:sub(2) .. ':' .. id
        local j = {slot = #out + 1, id = id, fp = fp, marker = marker, plain = plain, b = b, repeats = {}}
        joins[#joins + 1], join_of[marker] = j, j
        duplicates[#duplicates + 1] = id
        ran_list[#ran_list + 1] = '+' .. id
      else
        decided = false
      end
      redis.call('SET', dd, marker, 'EX', dedup_ttl)
      push(code, marker)
    end
  end
end
save_groups()
if not count_here then decided = false end
if not decided then
  -- The webhook goes to PostgreSQL: its storm members join there, under plain storm markers.
  for _, j in ipairs(joins) do
    local dd = prefix .. 'dd:' .. j.fp
    if redis.call('GET', dd) == j.marker then redis.call('SET', dd, j.plain, 'KEEPTTL') end
    out[j.slot + 1] = j.plain
    for _, slot in ipairs(j.repeats) do out[slot + 1] = j.plain end
  end
  out[#out + 1] = order()
  if #waits > 0 then out[#out + 1] = table.concat(waits, ',') end
elseif #duplicates > 0 then
  local counts = counts_hash(prefix, now, nonce)
  local members = {fmt(now_us)}
  for _, j in ipairs(joins) do
    out[j.slot], out[j.slot + 1] = 4, j.id
    for _, slot in ipairs(j.repeats) do out[slot], out[slot + 1] = 0, j.id end
    local resource = ARGV[j.b + 5]
    members[#members + 1] = j.id .. ' ' .. ARGV[j.b + 6] .. ' ' .. j.fp .. ' ' .. #resource .. ' ' .. resource
  end
  if #joins > 0 then
    redis.call('HSET', counts, 'j:' .. nonce, table.concat(members, ' '))
    redis.call('HINCRBY', counts, '_joins', #joins)
  end
  -- One HINCRBY per request (a storm's members are duplicates of one request), in first-seen order.
  local per_id, ids = {}, {}
  for _, id in ipairs(duplicates) do
    if not per_id[id] then ids[#ids + 1], per_id[id] = id, 0 end
    per_id[id] = per_id[id] + 1
  end
  for _, id in ipairs(ids) do redis.call('HINCRBY', counts, id, per_id[id]) end
  name_counts(counts, nonce, now)
  redis.call('SET', ran_key, table.concat(ran_list, ','), 'EX', RAN_TTL)
end
return out
