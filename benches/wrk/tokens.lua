-- BENCH_METHOD (GET) BENCH_PATH with many users' access tokens, one per request in turn:
-- BENCH_TOKENS names a file of access tokens, one a line. With BENCH_TOKEN_IN_BODY=1 the
-- token goes in a JSON body {"token": …} (POST /auth/token/verify), otherwise in the
-- Authorization header (GET /users/me). Every request is built once in init(), so the
-- load generator's cost per request does not depend on how many tokens there are; the
-- threads start at different places in the list.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local requests = {}
local nxt = 1

function init(args)
  local method = os.getenv("BENCH_METHOD") or "GET"
  local path = os.getenv("BENCH_PATH")
  local in_body = os.getenv("BENCH_TOKEN_IN_BODY") == "1"
  for token in io.lines(os.getenv("BENCH_TOKENS")) do
    if token ~= "" then
      if in_body then
        table.insert(requests, wrk.format(method, path, json_headers, '{"token":"' .. token .. '"}'))
      else
        table.insert(requests, wrk.format(method, path, {["Authorization"] = "Bearer " .. token}))
      end
    end
  end
  nxt = 1 + ((tid - 1) * 7919) % #requests
  common_init(counting)
end

function request()
  local r = requests[nxt]
  nxt = nxt % #requests + 1
  return r
end
