-- wrk script for Kubernaut's benchmarks: POST bodies from a file, one per line, round-robin per thread.
-- "@@N@@" in a body becomes a token unique to the request (salt, thread, counter), so a body can stand
-- for a never-seen alert on every request. done() prints the figures as one JSON line for the harness.
-- Arguments after "--": BODY_FILE [DELAY_MS [SALT]]; DELAY_MS > 0 paces each connection.

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
  local delay_ms = tonumber(args[2] or "0")
  if delay_ms > 0 then
    -- Defined only when pacing: wrk runs every request through a timer once delay() exists.
    function delay()
      return delay_ms
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
