#!/usr/bin/env bash
# What the serverless path costs per month at each rate, measured over
# LocalStack (tests/e2e/benches/cost.rs; figures in docs/COST.md).
#   bench/cost.sh [RATES] [SECS]     defaults: 10,100,1000,10000,50000 and 60
# Starts LocalStack unless LOCALSTACK_ENDPOINT is set, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
rates="${1:-10,100,1000,10000,50000}"
secs="${2:-60}"
if [ -z "${LOCALSTACK_ENDPOINT:-}" ]; then
  trap 'tests/localstack/stop.sh' EXIT
  LOCALSTACK_ENDPOINT="$(tests/localstack/start.sh)"
  export LOCALSTACK_ENDPOINT
fi
cargo bench -p e2e --bench cost -- "$rates" "$secs"
