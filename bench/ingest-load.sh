#!/usr/bin/env bash
# Sustained-ingest check for docs/PERFORMANCE.md: `hepop serve` (release) on a
# temporary lake, `hepop send` at RATE msgs/s for SECS seconds over UDP, then
# compares what was sent with the server's counters and the stored rows.
# With QUERIES=n, n clients run CPU-heavy queries back to back the whole time
# (a three-way self cross join, a 10^11-row generate_series, a payload LIKE
# scan, a GROUP BY), and their answers' statuses and times are printed.
# With PROBE=1, one client asks the default query (the last 10 minutes'
# newest 100 SIP messages) twice a second, and its median and p95 times are
# printed: what a user waits for while ingest runs.
#   bench/ingest-load.sh [rate=50000] [secs=60]
#   QUERIES=4 bench/ingest-load.sh 50000 60
#   PROBE=1 bench/ingest-load.sh 50000 60
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-50000}"; secs="${2:-60}"
cargo build --release -q -p hepop
bin=target/release/hepop
dir="$(mktemp -d)"
trap 'kill $srv 2>/dev/null || true; rm -rf "$dir"' EXIT
$bin serve --host 127.0.0.1 --hep-port 0 --http-port 0 --data "$dir/lake" --stats-every-secs 10 --compact-every-secs 0 ${SERVE_ARGS:-} \
  > "$dir/out" 2> "$dir/err" &
srv=$!
for _ in $(seq 50); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
hep=$(grep -o 'hep_udp=[^ ]*' "$dir/out" | cut -d= -f2)
http=$(grep -o 'http=[^ ]*' "$dir/out" | cut -d= -f2)
queries="${QUERIES:-0}"
hostile=(
  "SELECT count(*) AS n FROM hep_1 a, hep_1 b, hep_1 c WHERE a.time > now() - interval '1 hour' AND b.time > now() - interval '1 hour' AND c.time > now() - interval '1 hour'"
  "SELECT count(*) AS n FROM generate_series(1, 100000000000)"
  "SELECT count(*) AS n FROM hep_1 WHERE time > now() - interval '1 hour' AND payload LIKE '%zz%'"
  "SELECT method, count(*) AS n FROM hep_1 WHERE time > now() - interval '1 hour' GROUP BY method ORDER BY 2 DESC"
)
# QUERY_MIX picks which of the four each client runs, in turn (default: all four).
read -r -a mix <<< "${QUERY_MIX:-0 1 2 3}"
loops=()
for i in $(seq 0 $((queries - 1))); do
  ( while [ ! -e "$dir/stop" ]; do
      curl -s -G -o /dev/null -w '%{http_code} %{time_total}\n' --data-urlencode "q=${hostile[mix[i % ${#mix[@]}]]}" "http://$http/query" >> "$dir/q$i"
    done ) &
  loops+=($!)
done
probe=""
if [ -n "${PROBE:-}" ]; then
  ( while [ ! -e "$dir/stop" ]; do
      curl -s -G -o /dev/null -w '%{http_code} %{time_total}\n' \
        --data-urlencode "q=SELECT time, src_ip, dst_ip, payload FROM hep_1 ORDER BY time DESC LIMIT 100" \
        "http://$http/query" >> "$dir/probe"
      sleep 0.5
    done ) &
  probe=$!
fi
start=$(date +%s.%N)
$bin send --to "$hep" --rate "$rate" --duration "$secs" --traffic all 2> "$dir/send"
touch "$dir/stop"
# Each client finishes the query it is in (at most the query timeout).
for p in "${loops[@]}" $probe; do wait "$p" || true; done
sent=$(tr '\r' '\n' < "$dir/send" | grep -o 'sent [0-9]*' | tail -1 | cut -d' ' -f2)
sleep 12   # one flush interval
metrics=$(curl -s "http://$http/metrics")
m() { echo "$metrics" | awk -v k="hepop_$1_total" '$1 == k { print $2 }'; }
rss=$(ps -o rss= -p $srv)
kill -TERM $srv; wait $srv || true
rows=$($bin query --data "$dir/lake" "SELECT (SELECT count(*) FROM hep_1 WHERE time > now() - interval '1 hour') + (SELECT count(*) FROM hep_5 WHERE time > now() - interval '1 hour') + (SELECT count(*) FROM hep_100 WHERE time > now() - interval '1 hour') AS n" | grep -o '[0-9]*' | head -1)
echo "rate=$rate/s secs=$secs sent=$sent received=$(m received) decoded=$(m decoded) written=$(m written) dropped=$(m dropped) invalid=$(m invalid) rows_in_lake=$rows server_rss_kb=$rss"
tr '\r' '\n' < "$dir/send" | tail -1
if [ "$queries" -gt 0 ]; then
  cat "$dir"/q* | awk '{ n[$1]++; if ($2 > max) max = $2 } END { printf "queries answered:"; for (s in n) printf " %s=%d", s, n[s]; printf " slowest=%.1fs\n", max }'
fi
if [ -n "$probe" ]; then
  grep '^200' "$dir/probe" | awk '{ print $2 * 1000 }' | sort -n | awk '{ v[NR] = $1 } END { printf "default query while ingesting: %d answers, median %.1f ms, p95 %.1f ms, max %.1f ms\n", NR, v[int((NR + 1) / 2)], v[int(NR * 0.95 + 0.5)], v[NR] }'
fi
[ "$sent" = "$rows" ] && echo "OK: nothing lost" || { echo "LOST: $((sent - rows))"; exit 1; }
