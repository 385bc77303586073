-- wrk: verify one access token (BENCH_ACCESS) over and over.
local body = '{"token":"' .. os.getenv("BENCH_ACCESS") .. '"}'
request = function()
  return wrk.format("POST", "/auth/token/verify", {["Content-Type"] = "application/json"}, body)
end
