-- wrk: GET /users/me with one access token (BENCH_ACCESS).
local headers = {["Authorization"] = "Bearer " .. os.getenv("BENCH_ACCESS")}
request = function()
  return wrk.format("GET", "/users/me", headers)
end
