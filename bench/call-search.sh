#!/usr/bin/env bash
# A search by caller over days of calls, answered from the call records:
# generate the SIP rows, compact and build the records, then search cold and
# warm. Each step is its own process. With LOCALSTACK_ENDPOINT set
# (tests/localstack/start.sh), the same search through the query function's
# router over LocalStack S3, the `calls` table copied there (the search reads
# nothing else when the records cover its range). Figures go to
# docs/PERFORMANCE.md.
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
  if [ -n "${LOCALSTACK_ENDPOINT:-}" ]; then
    "$bin" emit "$hours" "$per_hour" "$work/queries.json"
    cargo bench -q -p functions --bench query_s3 -- "$dir" "$work/queries.json" "${RUNS:-7}" calls
  fi
  rm -rf "$dir"
done
