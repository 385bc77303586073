#!/usr/bin/env bash
# A quick local measurement of refresh, verify and GET /users/me with wrk against a
# release build on a fresh SQLite database. Usage: benches/quick.sh [seconds] [connections]
# (the full benchmark suite with PostgreSQL, login, mixed load and RSS comes separately).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-10}
conns=${2:-32}
bin=${LATCHKEY_BIN:-$here/../target/release/latchkey}
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
base=http://127.0.0.1:$port

cd "$work"
LATCHKEY_SERVER__BIND=127.0.0.1:$port LATCHKEY_SERVER__PUBLIC_URL=$base \
LATCHKEY_ACCOUNTS__REQUIRE_EMAIL_VERIFICATION=false LATCHKEY_PASSWORD__BCRYPT_COST=4 \
LATCHKEY_THROTTLE__ENABLED=false RUST_LOG=warn "$bin" serve &
pid=$!
for _ in $(seq 100); do curl -fs "$base/readyz" >/dev/null 2>&1 && break; sleep 0.05; done

# One user, one login per connection: each is its own refresh-token family.
curl -fs "$base/auth/register" -H 'content-type: application/json' \
  -d '{"username":"bench","email":"bench@example.com","password":"correct horse battery","password_confirm":"correct horse battery"}' > reg.json
for _ in $(seq $((conns * 2))); do
  curl -fs "$base/auth/login" -H 'content-type: application/json' \
    -d '{"username":"bench","password":"correct horse battery"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])'
done > tokens.txt
access=$(python3 -c 'import json; print(json.load(open("reg.json"))["access_token"])')

run() { # name script
  local out
  out=$(BENCH_TOKENS=$work/tokens.txt BENCH_ACCESS=$access BENCH_THREADS=2 \
    wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$here/$2" "$base")
  printf '%-10s %10s req/s  p50 %8s  p99 %8s  non-2xx %s\n' "$1" \
    "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" \
    "$(awk '/Non-2xx/ {print $5}' <<<"$out" | grep . || echo 0)"
}
echo "latchkey quick bench: ${secs}s each, $conns connections, SQLite, release build"
run refresh refresh.lua
run verify verify.lua
run me me.lua
printf 'server RSS after load: %s KiB\n' "$(awk '/VmRSS/ {print $2}' /proc/$pid/status)"
printf 'server peak RSS (HWM): %s KiB\n' "$(awk '/VmHWM/ {print $2}' /proc/$pid/status)"
