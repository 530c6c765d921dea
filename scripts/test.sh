#!/usr/bin/env bash
# The whole test suite: unit, integration (real redis-server, standalone and a 3-master
# cluster started by the testkit), proptests (cargo-nextest, .config/nextest.toml), then the
# doctests (cargo test --doc: nextest does not run them), with every feature on (the reference
# models and test hooks are behind features). Installs redis-server and cargo-nextest if
# missing. Arguments go to nextest, e.g. `scripts/test.sh -p coordkit-retry-queue`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-redis.sh
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest is not installed; installing it (cargo install cargo-nextest --locked)..." >&2
  cargo install cargo-nextest --locked
fi
cargo nextest run --workspace --locked --all-features "$@"
echo "== doctests"
cargo test --workspace --locked --all-features --doc
