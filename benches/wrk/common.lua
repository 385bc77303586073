-- Shared by the scenario scripts (loaded with dofile(os.getenv("BENCH_LUA") .. "/common.lua")).
--
-- * numbers the threads (global `tid` in each thread, from 1) and seeds math.random;
-- * with BENCH_STATUS=1, counts responses per status code in a response hook; a 503 is
--   checked for what the API promises (Retry-After and code service_unavailable);
-- * done() prints one line "BENCH_RESULT {json}" that benches/bench.py reads: wrk's
--   summary, latency percentiles (microseconds), status counts and scenario counters.
-- * with BENCH_HARVEST=<file>, keeps the refresh token of every successful response and
--   done() writes them there, one a line (live tokens for the refresh scenario, which then
--   needs fewer logins of its own).
-- A scenario may keep its own counters in the global table `extra` (summed over threads).

json_headers = {["Content-Type"] = "application/json"}
statuses = {}
extra = {}
harvest = {}
local harvest_file = os.getenv("BENCH_HARVEST")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function bump(name, n)
  extra[name] = (extra[name] or 0) + (n or 1)
end

local function count_status(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 then
    local retry_after = false
    for name, _ in pairs(headers) do
      if string.lower(name) == "retry-after" then retry_after = true end
    end
    if retry_after and body and string.find(body, '"service_unavailable"', 1, true) then
      bump("503_as_promised")
    else
      bump("503_unpromised")
    end
  end
end

counting = os.getenv("BENCH_STATUS") == "1"

-- The scenario calls this from its own response hook (or installs it as the hook).
function observe(status, headers, body)
  if counting then count_status(status, headers, body) end
  if harvest_file and status >= 200 and status < 300 then
    local token = body:match('"refresh_token":"([^"]+)"')
    if token then table.insert(harvest, token) end
  end
end

-- Called by each scenario's init(): seeds the generator and leaves `response` nil when no
-- hook is needed, so wrk does not hand headers and bodies to Lua at all.
function common_init(wants_response)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  if wants_response then
    response = response or observe
  else
    response = nil
  end
end

local function encode(value)
  local t = type(value)
  if t == "table" then
    local parts = {}
    for k, v in pairs(value) do
      table.insert(parts, string.format("%q", tostring(k)) .. ":" .. encode(v))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return "null" end
    return string.format("%.17g", value)
  elseif t == "boolean" then
    return tostring(value)
  elseif t == "string" then
    return string.format("%q", value)
  end
  return "null"
end

function done(summary, latency, requests)
  local all_statuses, all_extra = {}, {}
  local out = harvest_file and io.open(harvest_file, "w")
  for _, thread in ipairs(threads) do
    if out then
      for _, token in ipairs(thread:get("harvest") or {}) do out:write(token, "\n") end
    end
    for code, n in pairs(thread:get("statuses") or {}) do
      local key = tostring(code)
      all_statuses[key] = (all_statuses[key] or 0) + n
    end
    for name, n in pairs(thread:get("extra") or {}) do
      all_extra[name] = (all_extra[name] or 0) + n
    end
  end
  if out then out:close() end
  local result = {
    requests = summary.requests,
    duration_us = summary.duration,
    bytes = summary.bytes,
    errors = summary.errors,
    latency_us = {
      min = latency.min, mean = latency.mean, max = latency.max, stdev = latency.stdev,
      p50 = latency:percentile(50), p90 = latency:percentile(90),
      p99 = latency:percentile(99), p999 = latency:percentile(99.9),
    },
    counted = counting,
    statuses = all_statuses,
    extra = all_extra,
  }
  io.write("BENCH_RESULT " .. encode(result) .. "\n")
end
