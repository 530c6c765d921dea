#!/usr/bin/env bash
# Counts the instructions redis-server spends per operation of one benchmark scenario, with
# callgrind: unlike timings, the count does not move with the machine's load. Starts its own
# redis-server under valgrind on a free port and runs the scenario without its baseline twice,
# with N and 2N operations (each after a warm-up of a tenth as many): the difference, divided
# by 1.1 N, leaves out the scenario's setup.
#   scripts/server-instructions.sh N SCENARIO [bench options]
#   scripts/server-instructions.sh 2000 retry-lifecycle --concurrency 1 --fails 0
# Needs valgrind (apt-get install valgrind). BENCH=path/to/coordkit-bench measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 N SCENARIO [bench options]" >&2; exit 2; }
n="$1"
shift
[ "$n" -ge 10 ] && [ "$n" -le 25000 ] || { echo "N must be 10 to 25000" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
bench="${BENCH:-target/release/coordkit-bench}"
[ -n "${BENCH:-}" ] || cargo build --release --locked -q -p coordkit-bench
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
  redis-server --port "$port" --save '' --appendonly no >"$dir/redis.log" 2>&1 &
vg=$!
trap 'kill $vg 2>/dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.2; done

# The server's instructions over one run of the scenario.
count() {
  redis-cli -p "$port" flushall >/dev/null
  callgrind_control -z "$vg" >/dev/null
  "$bench" "$@" --redis "redis://127.0.0.1:$port" --no-baseline >"$dir/run.json"
  callgrind_control -d "$vg" >/dev/null
  sleep 1
  grep -h -m1 '^totals:\|^summary:' "$(ls -t "$dir"/cg.out.* | head -1)" | awk '{print $2}'
}
one=$(count "$@" --ops "$n")
two=$(count "$@" --ops $((2 * n)))
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
n, one, two = (int(x) for x in sys.argv[2:])
print(json.dumps({"scenario": d["scenario"], "concurrency": d["concurrency"],
                  "server_instructions_per_op": round((two - one) / (1.1 * n))}))
' "$dir/run.json" "$n" "$one" "$two"
