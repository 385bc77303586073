-- POST /auth/register (email verification off: 201 with a token pair). Every request names
-- a new user: BENCH_RUN (unique per run) + thread number + a counter.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local run = os.getenv("BENCH_RUN") or "x"
local password = os.getenv("BENCH_PASSWORD")
local n = 0

function init(args)
  common_init(counting)
end

function request()
  n = n + 1
  local name = "r" .. run .. "t" .. tid .. "n" .. n
  return wrk.format("POST", "/auth/register", json_headers,
    '{"username":"' .. name .. '","email":"' .. name .. '@example.com","password":"'
    .. password .. '","password_confirm":"' .. password .. '"}')
end
