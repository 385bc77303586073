-- One fixed request, over and over: BENCH_METHOD (GET) BENCH_PATH, with a Bearer token
-- (BENCH_ACCESS) unless BENCH_NO_AUTH=1, and a JSON body BENCH_BODY if given. Used for
-- the staff user list (verify and /users/me take many users' tokens: tokens.lua). The
-- request is built once, so the load generator spends as little CPU as possible.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.path = os.getenv("BENCH_PATH") or "/"
if os.getenv("BENCH_NO_AUTH") ~= "1" then
  wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_ACCESS") or "")
end
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

function init(args)
  common_init(counting)
end
