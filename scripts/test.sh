#!/usr/bin/env bash
# The whole test suite: unit, integration (real redis-server, standalone and a 3-master
# cluster started by the testkit), proptests and doctests, with every feature on (the reference
# models and test hooks are behind features). Installs redis-server if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-redis.sh
exec cargo test --workspace --locked --all-features "$@"
