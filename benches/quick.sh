#!/usr/bin/env bash
# A quick local look at refresh, verify and GET /users/me on SQLite (release build, wrk,
# 32 connections): a thin wrapper over the full suite, benches/bench.py (which also covers
# PostgreSQL, register, login, the staff user list, mixed load, RSS and start-up; see
# benches/README.md). Usage: benches/quick.sh [seconds] [connections]
set -euo pipefail
exec python3 "$(dirname "$0")/bench.py" --backends sqlite --only refresh,verify,me \
  --users 1000 --bound skip --duration "${1:-10}" --connections "${2:-32}"
