#!/usr/bin/env bash
# Side-by-side query speed for docs/PERFORMANCE.md: one hour of N realistic
# messages (default 10 M) written as `hepop serve` writes them, compacted,
# then the same SQL through `hepop serve`'s /query and through DuckDB (PyPI)
# on the same files: medians of RUNS (default 7) and the ratio.
#   bench/query-vs-duckdb.sh [messages]     WORK_DIR=… keeps the lake for reruns
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000000}"
venv=target/bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import duckdb' 2>/dev/null || "$venv/bin/pip" install -q duckdb
cargo build --release -q -p hepop
cargo bench -p lake --bench compaction --no-run >/dev/null 2>&1
gen="$(ls -t target/release/deps/compaction-* | grep -v '\.d$' | head -1)"
work="${WORK_DIR:-$(mktemp -d)}"
[ -n "${WORK_DIR:-}" ] || trap 'rm -rf "$work"; kill $server 2>/dev/null || true' EXIT
lake="$work/lake"
if [ ! -d "$lake/hep_1" ]; then
  "$gen" generate "$lake" "$n"
  "$gen" compact "$lake" 512
fi
find "$lake" -name '*.parquet' -path '*hep_1*' | wc -l | awk '{print "hep_1 files: " $1}'
target/release/hepop serve --data "$lake" --hep-port 0 --http-port 0 --compact-every-secs 0 \
  --retention-days 0 > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 1 100); do grep -q '^hepop listening' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
http="$(grep -o 'http=[0-9.:]*' "$work/serve.out" | cut -d= -f2)"
"$venv/bin/python" bench/query_vs_duckdb.py "$lake" "$http" "${RUNS:-7}"
kill $server
