-- POST /auth/token/refresh with rotation: every refresh token is presented exactly once.
-- Thread k of n owns lines k, k+n, ... of BENCH_TOKENS (live refresh tokens, one family
-- each); a request takes a token from the pool and its response puts the successor back.
-- A token whose response failed is lost; if the pool runs dry a request goes out with
-- no token (a 400, counted as an error) and `starved` says how often.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local pool = {}

function init(args)
  local total = tonumber(os.getenv("BENCH_THREADS") or "1")
  local i = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if line ~= "" then
      if i % total == (tid - 1) then table.insert(pool, line) end
      i = i + 1
    end
  end
  extra.pool_start = #pool
  common_init(true)
end

function request()
  local token = table.remove(pool)
  if not token then
    bump("starved")
    token = ""
  end
  return wrk.format("POST", "/auth/token/refresh", json_headers,
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  observe(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then table.insert(pool, token) end
end
