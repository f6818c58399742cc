#!/usr/bin/env bash
# Installs (first time) the venv of the ADBC Flight SQL driver and prints its python.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv/flight"
if ! "$venv/bin/python" -c 'import adbc_driver_flightsql.dbapi, pyarrow' 2>/dev/null; then
  echo "installing adbc-driver-flightsql into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/flight/requirements.txt" >&2 \
    || { echo "tests/flight/tools.sh: pip install failed" >&2; exit 1; }
fi
echo "$venv/bin/python"
