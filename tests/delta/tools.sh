#!/usr/bin/env bash
# Installs (first time) the venv of independent Delta readers (deltalake,
# DuckDB, Polars; pytz for DuckDB's zoned timestamps in Python) and prints its python.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv/delta"
if ! "$venv/bin/python" -c 'import deltalake, duckdb, polars, pytz' 2>/dev/null; then
  echo "installing deltalake, duckdb, polars into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/delta/requirements.txt" >&2 \
    || { echo "tests/delta/tools.sh: pip install failed" >&2; exit 1; }
fi
echo "$venv/bin/python"
