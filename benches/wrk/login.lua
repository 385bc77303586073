-- POST /auth/login as a random seeded user (user_1 .. user_BENCH_USERS, all with the
-- password BENCH_PASSWORD; every tenth one is inactive, so those are skipped).
--
-- With BENCH_HONOUR_RETRY_AFTER=1 the clients behave as the API asks: after a 503 the next
-- request waits Retry-After seconds. wrk calls delay() once before each next request of the
-- connection that got a response, so a queue of the delays owed gives as many delayed
-- requests as there were 503s (which connection waits may be shuffled within a thread).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

local users = tonumber(os.getenv("BENCH_USERS"))
local password = os.getenv("BENCH_PASSWORD")
local honour = os.getenv("BENCH_HONOUR_RETRY_AFTER") == "1"
local owed = {}

function init(args)
  common_init(counting or honour)
end

function request()
  local i = math.random(1, users)
  if i % 10 == 0 then i = i - 1 end
  return wrk.format("POST", "/auth/login", json_headers,
    '{"username":"user_' .. i .. '","password":"' .. password .. '"}')
end

if honour then
  function response(status, headers, body)
    observe(status, headers, body)
    if status == 503 then
      local seconds = 1
      for name, value in pairs(headers) do
        if string.lower(name) == "retry-after" then seconds = tonumber(value) or 1 end
      end
      table.insert(owed, seconds * 1000)
      bump("backed_off_ms", seconds * 1000)
    end
  end

  function delay()
    if #owed > 0 then return table.remove(owed, 1) end
    return 0
  end
end
