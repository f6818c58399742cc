#!/usr/bin/env bash
# Installs (first time) and starts LocalStack on the host, without Docker:
# S3 and Kinesis on 127.0.0.1:4566. Prints the endpoint when ready.
# Facts behind each setting: ARCHITECTURE.md, "LocalStack".
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="$root/.localstack"
venv="$state/venv"
fsroot="$state/fs"
log="$state/localstack.log"
mkdir -p "$state" "$fsroot"

die() { echo "localstack/start.sh: $*" >&2; exit 1; }

if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
  die "LocalStack already running (pid $(cat "$state/pid")); run stop.sh first"
fi

if curl -fsS -m 2 http://127.0.0.1:4566/_localstack/health >/dev/null 2>&1; then
  die "something already answers on 127.0.0.1:4566 (another LocalStack?); stop it first"
fi

# LocalStack 2026.3 needs Python 3.13 exactly.
py=""
for c in "$HOME"/.pyenv/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13 python3.13; do
  # pyenv shims exist on PATH even when they would refuse to run: try it.
  if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then py="$c"; break; fi
done
[ -n "$py" ] || die "Python 3.13 not found (pyenv 3.13 or python3.13 on PATH is required)"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import localstack' 2>/dev/null; then
  echo "installing localstack-core into $venv" >&2
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check 'localstack-core[runtime]==2026.3.0' -c "$here/constraints.txt" \
    || die "pip install localstack-core failed"
fi
kl="$fsroot/usr/lib/localstack/kinesis-local/0.5.2"
if [ ! -d "$kl/node_modules/kinesis-local" ]; then
  echo "installing kinesis-local (npm)" >&2
  mkdir -p "$kl"
  npm install --silent --no-audit --no-fund --prefix "$kl" kinesis-local@0.5.2 || die "npm install kinesis-local failed"
fi

rm -rf /tmp/localstack-s3-storage
export OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$fsroot" GATEWAY_SERVER=hypercorn GATEWAY_LISTEN=127.0.0.1:4566 \
  SERVICES=s3,kinesis,sqs DNS_ADDRESS=0 SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 KINESIS_LATENCY=0 \
  KINESIS_PERSISTENCE=0 XDG_CACHE_HOME="$state/cache" NODE_OPTIONS="--require $here/node-loopback.js" \
  LOCALSTACK_TELEMETRY_DISABLED=1 DISABLE_CORS_CHECKS=1
setsid "$venv/bin/python" -m localstack.runtime.main >"$log" 2>&1 < /dev/null &
echo $! > "$state/pid"

for _ in $(seq 1 120); do
  if health="$(curl -fsS http://127.0.0.1:4566/_localstack/health 2>/dev/null)" \
     && echo "$health" | grep -Eq '"s3": "(available|running)"' \
     && echo "$health" | grep -Eq '"kinesis": "(available|running)"' \
     && echo "$health" | grep -Eq '"sqs": "(available|running)"'; then
    break
  fi
  kill -0 "$(cat "$state/pid")" 2>/dev/null || { tail -30 "$log" >&2; die "LocalStack exited"; }
  sleep 0.5
done
echo "$health" | grep -Eq '"kinesis": "(available|running)"' || { tail -30 "$log" >&2; die "LocalStack not ready after 60 s"; }

# Kinesis starts its engine (kinesis-local) on the first call: make that call
# here, until it answers, so tests that create streams at once never race it.
for _ in $(seq 1 120); do
  if curl -fsS -m 5 -o /dev/null -X POST http://127.0.0.1:4566/ \
       -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: Kinesis_20131202.ListStreams' \
       -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0' \
       -d '{}' 2>/dev/null; then
    echo "http://127.0.0.1:4566"
    exit 0
  fi
  kill -0 "$(cat "$state/pid")" 2>/dev/null || { tail -30 "$log" >&2; die "LocalStack exited"; }
  sleep 0.5
done
tail -30 "$log" >&2
die "LocalStack's Kinesis did not answer within 60 s"
