-- wrk script for Kubernaut's benchmarks: POST bodies from a file, one per line, round-robin per thread.
-- "@@N@@" in a body becomes a token unique to the request (salt, thread, counter), so a body can stand
-- for a never-seen alert on every request. done() prints the figures as one JSON line for the harness.
-- Arguments after "--": BODY_FILE [INTERVAL_MS [SALT]]; INTERVAL_MS > 0 paces each thread (wrk_common.lua).

dofile((debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") or "") .. "wrk_common.lua")

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
  pace(tonumber(args[2] or "0"))
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
  report(summary, latency, "")
end
