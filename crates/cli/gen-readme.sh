#!/usr/bin/env bash
# Rewrites the help section at the end of README.md (everything after the line starting with
# "The help of every") with the help of every command as the binary prints it;
# tests/cli/usage.rs checks that README.md holds each. Run after changing a command:
#   cargo build -p coordkit-cli && bash crates/cli/gen-readme.sh [path/to/coordkit]
set -euo pipefail
cd "$(dirname "$0")"
bin="${1:-${CARGO_TARGET_DIR:-../../target}/debug/coordkit}"
help() {
  printf '### `coordkit %s--help`\n\n```text\n' "${1:+$1 }"
  # shellcheck disable=SC2086
  env -u COORDKIT_NAMESPACE -u COORDKIT_AGENT_REGISTRY -u COLUMNS "$bin" $1 --help
  printf '```\n\n'
}
# The subcommands listed under "Commands:" in a help text (all but `help`).
subcommands() {
  # shellcheck disable=SC2086
  env -u COORDKIT_NAMESPACE -u COORDKIT_AGENT_REGISTRY -u COLUMNS "$bin" $1 --help |
    awk '/^Commands:/ {on = 1; next} on && /^$/ {on = 0} on && /^  [a-z]/ {print $1}' |
    grep -v '^help$' || true
}
# Every command, depth first: the program, each group, each subcommand.
walk() {
  help "$1"
  for sub in $(subcommands "$1"); do
    walk "${1:+$1 }$sub"
  done
}
walk "" > help.md.tmp
python3 - <<'PY'
readme = open("README.md").read()
marker = "The help of every"
start = readme.index(marker)
head = readme[: readme.index("\n\n", start) + 2]
helps = open("help.md.tmp").read().rstrip("\n") + "\n"
open("README.md", "w").write(head + helps)
PY
rm help.md.tmp
