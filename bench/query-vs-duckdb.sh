#!/usr/bin/env bash
# Query speed for docs/PERFORMANCE.md: one hour of N realistic messages
# (default 10 M) written as `hepop serve` writes them and compacted, then
#  1. the same SQL through `hepop serve`'s /query, through DuckDB (PyPI) on the
#     same Parquet files, and through DuckDB on the Delta tables (the
#     `deltalake` package's Arrow dataset): medians of RUNS (default 7) and the
#     ratios; then the
#     calls endpoints (search, flow, PCAP) on that hour;
#  2. the bytes a warm Call-ID lookup reads in that hour (the request
#     recorder test, lake/tests/it/read_cache.rs, at N messages);
#  3. with LOCALSTACK_ENDPOINT set (tests/localstack/start.sh): the same set
#     through the query function's router over LocalStack S3, cold and warm,
#     and the query function's cold start (release bootstrap).
#   bench/query-vs-duckdb.sh [messages]     WORK_DIR=… keeps the lake for reruns
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000000}"
# DuckDB and the `deltalake` package (DuckDB reads the Delta tables through its Arrow dataset).
py="$(tests/delta/tools.sh)"
cargo build --release -q -p hepop
cargo bench -p lake --bench compaction --no-run >/dev/null 2>&1
gen="$(ls -t target/release/deps/compaction-* | grep -v '\.d$' | head -1)"
work="${WORK_DIR:-$(mktemp -d)}"
server=""
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; [ -n "${WORK_DIR:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
lake="$work/lake"
if [ ! -d "$lake/hep_1" ]; then
  "$gen" generate "$lake" "$n"
  "$gen" compact "$lake" 512
fi
find "$lake/hep_1" -name '*.parquet' -not -path '*/_delta_log/*' | wc -l | awk '{print "hep_1 files: " $1}'
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"

echo "== 1. /query vs DuckDB, local files"
target/release/hepop serve --data "$lake" --hep-port 0 --http-port 0 --compact-every-secs 0 \
  --retention-days 0 > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 1 100); do grep -q '^hepop listening' "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
http="$(grep -o 'http=[0-9.:]*' "$work/serve.out" | cut -d= -f2)"
"$py" bench/query_vs_duckdb.py "$lake" "$http" "${RUNS:-7}"
"$py" bench/query_vs_duckdb.py "$lake" --emit "$work/queries.json"
"$py" bench/calls.py "$work/queries.json" "$http" "${RUNS:-7}"
kill $server; server=""

echo "== 2. bytes a warm Call-ID lookup reads, $n messages"
LOOKUP_HOUR_MESSAGES="$n" cargo test --release -q -p lake --test it \
  read_cache::a_warm_call_id_lookup -- --nocapture 2>&1 | grep -E 'messages:|test result'

if [ -n "${LOCALSTACK_ENDPOINT:-}" ]; then
  echo "== 3. the query function over LocalStack S3"
  cargo bench -q -p functions --bench query_s3 -- "$lake" "$work/queries.json" "${RUNS:-7}" | tee "$work/s3.out"
  bucket="$(grep -o 's3://[^ ]*' "$work/s3.out" | head -1)"
  cargo build --release -q -p functions --bin query
  lookup="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["sql"])' "$work/queries.json")"
  "$py" bench/lambda_cold_start.py target/release/query "$bucket" "$lookup" 5
fi
