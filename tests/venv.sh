#!/usr/bin/env bash
# tests/venv.sh NAME MODULES: installs (first time) .venv/NAME from
# tests/NAME/requirements.txt unless python there imports MODULES
# (comma-separated), and prints its python.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
name="$1" modules="$2"
venv="$root/.venv/$name"
if ! "$venv/bin/python" -c "import $modules" 2>/dev/null; then
  echo "installing tests/$name/requirements.txt into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/$name/requirements.txt" >&2 \
    || { echo "tests/venv.sh: pip install of tests/$name/requirements.txt failed" >&2; exit 1; }
fi
echo "$venv/bin/python"
