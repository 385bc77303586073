#!/usr/bin/env bash
# Fuzz every target in fuzz/ for SECONDS each (default 300) and print a table of target,
# runs and outcome: the long form of CI's short run (.ci/fuzz), which does the work.
#
# Usage: benches/fuzz.sh [SECONDS]
set -euo pipefail
exec "$(dirname "$0")/../.ci/fuzz" "${1:-300}"
