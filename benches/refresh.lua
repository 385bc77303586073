-- wrk: refresh with rotation. Each thread owns a slice of live refresh tokens (one login
-- each, from tokens.txt); a request takes one, its response returns the successor, so no
-- token is ever presented twice.
local pool = {}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("index", threads)
end

function init(args)
  local n, i = 0, 0
  local total = tonumber(os.getenv("BENCH_THREADS") or "2")
  for line in io.lines(os.getenv("BENCH_TOKENS") or "tokens.txt") do
    if i % total == (index - 1) then
      n = n + 1
      pool[n] = line
    end
    i = i + 1
  end
end

request = function()
  local token = table.remove(pool)
  return wrk.format("POST", "/auth/token/refresh", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end

response = function(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then table.insert(pool, token) end
end
