#!/usr/bin/env bash
# A search by caller over days of calls, answered from the call records:
# generate the SIP rows, compact and build the records, then search cold and
# warm. Each step is its own process. Figures go to docs/PERFORMANCE.md.
#   bench/call-search.sh [HOURSxMSGS_PER_HOUR ...]   default: 24x1000000 168x100000
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p web --bench call_search --no-run >/dev/null 2>&1
bin="$(ls -t target/release/deps/call_search-* | grep -v '\.d$' | head -1)"
work="${WORK_DIR:-$(mktemp -d)}"
trap 'rm -rf "$work"' EXIT
for shape in "${@:-24x1000000 168x100000}"; do
  hours="${shape%x*}" per_hour="${shape#*x}"
  dir="$work/lake-$shape"
  echo "== $hours hours of $per_hour SIP messages an hour"
  "$bin" generate "$dir" "$hours" "$per_hour"
  "$bin" build "$dir" "$hours"
  "$bin" search "$dir" "$hours" "$per_hour"
  rm -rf "$dir"
done
