-- Shared by Kubernaut's wrk scripts (post.lua, get.lua), loaded with dofile: thread bookkeeping, pacing on a
-- monotonic clock, and done()'s figures as one JSON line for the harness.

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

threads = {}

function setup(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

-- INTERVAL_MS > 0 paces this thread to one request per interval: the average rate is exact, and a thread
-- that fell behind does not burst to catch up (requests are never sent faster than the schedule).
function pace(interval)
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
end

-- The figures line; EXTRA is more JSON members, each starting with a comma ("" for none).
function report(summary, latency, extra)
  local pct = {}
  for _, p in ipairs({ 50, 75, 90, 99, 99.9 }) do
    pct[#pct + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
  end
  local e = summary.errors
  io.write(string.format(
    'KUBERNAUT_WRK {"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":{%s}}%s}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(pct, ","), extra
  ))
end
