-- wrk script for Kubernaut's read benchmarks: GET paths from a key file, lines "CUM<TAB>PATH" where CUM is
-- the cumulative probability up to and including that path (the last is 1), written by keymix.py.
-- Arguments after "--": KEY_FILE MODE [INTERVAL_MS [SALT [START]]]
--   MODE "draw": every request draws a path with the file's probabilities (inverse CDF, binary search),
--                from a random sequence seeded by SALT and the thread;
--   MODE "walk": the (single) thread requests the paths in file order from line START, wrapping around;
--                done() reports the line it would have sent next, so a later run can continue there.
-- Every answer's X-Cache header (l1, l2, l3, or none) is counted; done() adds the counts to the figures.

dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "wrk_common.lua")

local paths, cum = {}, {}
mode, position = "draw", 1
cache_l1, cache_l2, cache_l3, cache_none = 0, 0, 0, 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    local c, path = line:match("^([^\t]+)\t(.+)$")
    if c then
      cum[#cum + 1] = tonumber(c)
      paths[#paths + 1] = path
    end
  end
  f:close()
  assert(#paths > 0, "no paths in " .. args[1])
  mode = args[2] or mode
  assert(mode == "draw" or mode == "walk", "MODE must be draw or walk")
  pace(tonumber(args[3] or "0"))
  math.randomseed(tonumber(args[4] or "0", 16) * 256 + tid + 1)
  -- wrk calls request() once before the run to check it (never sent): start one line early, so that call
  -- takes a line the previous run already sent (the last line on the first run; the walk wraps to it).
  position = tonumber(args[5] or "1") - 1
  wrk.method = "GET"
end

local function draw()
  local u = math.random()
  local lo, hi = 1, #cum
  while lo < hi do -- the first line whose cumulative probability exceeds u
    local mid = math.floor((lo + hi) / 2)
    if cum[mid] > u then
      hi = mid
    else
      lo = mid + 1
    end
  end
  return paths[lo]
end

function request()
  local path
  if mode == "walk" then
    path = paths[(position - 1) % #paths + 1]
    position = position + 1
  else
    path = draw()
  end
  return wrk.format(nil, path)
end

function response(status, headers, body)
  local tier = headers["x-cache"] or headers["X-Cache"]
  if tier == "l1" then
    cache_l1 = cache_l1 + 1
  elseif tier == "l2" then
    cache_l2 = cache_l2 + 1
  elseif tier == "l3" then
    cache_l3 = cache_l3 + 1
  else
    cache_none = cache_none + 1
  end
end

function done(summary, latency, requests)
  local n = { l1 = 0, l2 = 0, l3 = 0, none = 0 }
  for _, t in ipairs(threads) do
    for tier in pairs(n) do
      n[tier] = n[tier] + t:get("cache_" .. tier)
    end
  end
  local walked = ""
  if threads[1]:get("mode") == "walk" then
    walked = string.format(',"position":%d', threads[1]:get("position"))
  end
  report(summary, latency, string.format(
    ',"x_cache":{"l1":%d,"l2":%d,"l3":%d,"none":%d}%s', n.l1, n.l2, n.l3, n.none, walked
  ))
end
