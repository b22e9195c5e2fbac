-- wrk script for Kubernaut's benchmarks: POST bodies from a file, one per line, round-robin per thread.
-- "@@N@@" in a body becomes a token unique to the request (salt, thread, counter), so a body can stand
-- for a never-seen alert on every request. done() prints the figures as one JSON line for the harness.
-- Arguments after "--": BODY_FILE [INTERVAL_MS [SALT]]; INTERVAL_MS > 0 paces this thread to one request
-- per interval on a monotonic clock: the average rate is exact, and a thread that fell behind does not
-- burst to catch up (requests are never sent faster than the schedule).

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } kubernaut_timespec;
int clock_gettime(int clk_id, kubernaut_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("kubernaut_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

local bodies, unique = {}, {}
local next_body, counter, salt = 1, 0, "0000"

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line > 0 then
      bodies[#bodies + 1] = line
      unique[#bodies] = line:find("@@N@@", 1, true) ~= nil
    end
  end
  f:close()
  assert(#bodies > 0, "no bodies in " .. args[1])
  local interval = tonumber(args[2] or "0")
  if interval > 0 then
    -- Defined only when pacing: wrk runs every request through a timer once delay() exists.
    local next_at = now_ms()
    function delay()
      local now = now_ms()
      if next_at < now then
        next_at = now
      end
      local wait = next_at - now
      next_at = next_at + interval
      return math.floor(wait)
    end
  end
  salt = args[3] or salt
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  next_body = tid % #bodies + 1
end

function request()
  local body = bodies[next_body]
  if unique[next_body] then
    counter = counter + 1
    body = (body:gsub("@@N@@", string.format("%s%02x%06x", salt, tid % 256, counter % 16777216)))
  end
  next_body = next_body % #bodies + 1
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local pct = {}
  for _, p in ipairs({ 50, 75, 90, 99, 99.9 }) do
    pct[#pct + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'KUBERNAUT_WRK {"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":{%s}}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(pct, ",")
  ))
end
