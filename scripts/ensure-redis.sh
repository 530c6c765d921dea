#!/usr/bin/env bash
# Makes sure `redis-server` is available: installs Debian's package when it is missing.
# Sourced or run by scripts/quickstart.sh, scripts/test.sh and .ci/run.
set -euo pipefail

if [ -n "${REDIS_SERVER_BIN:-}" ] && [ -x "${REDIS_SERVER_BIN}" ]; then
  exit 0
fi
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi

echo "redis-server is not installed; installing it (Debian package redis-server)..." >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: no apt-get here. Install Redis 7 yourself (e.g. 'brew install redis') or set REDIS_SERVER_BIN." >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "error: installing redis-server needs root; run 'apt-get install -y redis-server' as root." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The package may try to start a system service; the tests start their own servers, so a
# failure to start that service is not an error here.
$SUDO apt-get install -y -qq redis-server >/dev/null || $SUDO apt-get install -y redis-server
command -v redis-server >/dev/null 2>&1 || {
  echo "error: redis-server is still missing after the install" >&2
  exit 1
}
echo "installed $(redis-server --version)" >&2
