#!/usr/bin/env bash
# Installs (first time) the SAM/cfn-lint/cargo-lambda venv and prints its bin directory.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv/sam"
if [ ! -x "$venv/bin/sam" ] || [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$venv/bin/cargo-lambda" ]; then
  echo "installing aws-sam-cli, cfn-lint, cargo-lambda into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/infra/requirements.txt" >&2 \
    || { echo "tests/infra/tools.sh: pip install failed" >&2; exit 1; }
fi
echo "$venv/bin"
