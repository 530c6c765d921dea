#!/usr/bin/env bash
# Runs every benchmark scenario the README's table lists and prints the table's rows
# (markdown). Needs python3 for the formatting. Usage: scripts/bench-table.sh [OPS]
set -euo pipefail
cd "$(dirname "$0")/.."
ops="${1:-30000}"
cargo build --release --locked -q -p coordkit-bench
bench="${CARGO_TARGET_DIR:-target}/release/coordkit-bench"
run() {
  local label="$1"; shift
  "$bench" "$@" | python3 -c '
import json, sys
label = sys.argv[1]
d = json.loads(sys.stdin.read())
def n(x): return "{:,}".format(round(x)) if x is not None else "—"
extra = {k: v for k, v in d.items() if k not in ("scenario","topology","concurrency","ops","errors","elapsed_ms","ops_per_sec","p50_us","p90_us","p99_us","max_us","baseline_ops_per_sec","ratio","ratio_of_totals","redis_version")}
print("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
    label, d["topology"], d["concurrency"], n(d["ops_per_sec"]), n(d.get("p50_us")), n(d.get("p99_us")),
    n(d.get("baseline_ops_per_sec")),
    "{} / {}".format(d["ratio"], d["ratio_of_totals"]) if "ratio" in d else "—",
    ", ".join("{}={}".format(k, v) for k, v in sorted(extra.items()))))
' "$label"
}
for c in 1 50; do run raw-evalsha raw-evalsha --concurrency "$c" --ops "$ops"; done
for s in context-update context-read breaker-acquire breaker-guarded-call metrics-record errors-record errors-record-floor; do
  for c in 1 50; do run "$s" "$s" --concurrency "$c" --ops "$ops"; done
done
for s in metrics-record-batch metrics-aggregate; do
  for c in 1 50; do run "$s" "$s" --concurrency "$c" --ops $((ops / 10)); done
done
run "retry-lifecycle F=0" retry-lifecycle --concurrency 50 --ops "$ops" --fails 0
run "retry-lifecycle F=2" retry-lifecycle --concurrency 50 --ops $((ops / 3)) --fails 2
run "retry-lifecycle F=2 in place off" retry-lifecycle --concurrency 50 --ops $((ops / 3)) --fails 2 --in-place-below-ms 0
run "retry-lifecycle F=2 backoff 0" retry-lifecycle --concurrency 50 --ops $((ops / 3)) --fails 2 --backoff-ms 0
# What two 1 ms backoffs alone allow at the same concurrency (no Redis call).
run "retry-backoff-floor F=2" retry-backoff-floor --concurrency 50 --ops "$ops" --fails 2
# A priority and limits that never bind, against the plain run in the same rounds
# (ratio_to_plain is among the extras).
run "retry-lifecycle F=0 priority+limits" retry-lifecycle --concurrency 50 --ops "$ops" --fails 0 --priority 5 --group-limit
run "retry-lifecycle F=0 priority+leased" retry-lifecycle --concurrency 50 --ops "$ops" --fails 0 --priority 5 --group-limit leased
run "retry-lifecycle F=0 priority+rate" retry-lifecycle --concurrency 50 --ops "$ops" --fails 0 --priority 5 --group-limit rate
run "retry-lifecycle F=2 priority+limits" retry-lifecycle --concurrency 50 --ops $((ops / 3)) --fails 2 --priority 5 --group-limit
# A backlog drained under a rate limit: achieved_ratio and max_starts_in_window are extras.
run "rate-limited 200/s" rate-limited --concurrency 8 --workers 4 --rate 200 --per-ms 1000
run "rate-limited 20/100ms" rate-limited --concurrency 8 --workers 4 --rate 20 --per-ms 100
for s in mesh-request-reply mesh-request-reply-floor mesh-request-reply-stored-floor; do
  for c in 1 50; do run "$s" "$s" --concurrency "$c" --ops "$ops"; done
done
run mesh-dispatch mesh-dispatch --concurrency 50 --ops "$ops"
# Six script calls per lifecycle: ratio_per_call is among the extras.
for c in 1 50; do run workflow-lifecycle workflow-lifecycle --concurrency "$c" --ops $((ops / 6)); done
