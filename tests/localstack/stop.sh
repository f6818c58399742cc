#!/usr/bin/env bash
# Stops LocalStack started by start.sh: SIGTERM, 5 s grace, then SIGKILL the group.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
pidfile="$root/.localstack/pid"
[ -f "$pidfile" ] || exit 0
pid="$(cat "$pidfile")"
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
fi
rm -f "$pidfile"
rm -rf /tmp/localstack-s3-storage
