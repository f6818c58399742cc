#!/usr/bin/env bash
# Compaction of one hour of N messages, each step its own process so the
# peak RSS printed is the compactor's alone. Figures go to docs/PERFORMANCE.md.
#   bench/compaction.sh [messages ...]      default: 1000000 10000000 20000000
#   MEMORY_MB=512 bench/compaction.sh       the compaction memory budget
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p lake --bench compaction --no-run >/dev/null 2>&1
bin="$(ls -t target/release/deps/compaction-* | grep -v '\.d$' | head -1)"
work="${WORK_DIR:-$(mktemp -d)}"
trap 'rm -rf "$work"' EXIT
for n in "${@:-1000000 10000000 20000000}"; do
  for m in $n; do
    dir="$work/lake-$m"
    echo "== $m messages"
    "$bin" generate "$dir" "$m"
    du -sm "$dir" | awk '{print "on disk before: " $1 " MB"}'
    "$bin" compact "$dir" "${MEMORY_MB:-512}"
    du -sm "$dir" | awk '{print "on disk after: " $1 " MB"}'
    rm -rf "$dir"
  done
done
