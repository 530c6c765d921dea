#!/usr/bin/env bash
# The main example, the fleet demo (every primitive at work). Uses REDIS_URL when set; otherwise starts a throwaway redis-server
# (installing redis-server first if it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${REDIS_URL:-}" ]; then
  bash scripts/ensure-redis.sh
fi
exec cargo run --quiet --locked --example fleet -- "$@"
