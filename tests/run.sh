#!/usr/bin/env bash
# The test command (README): sets up .venv with the project and its test
# extras, installs the official Vercel CLI (for the emulator compatibility
# test) under .cache/, then runs pytest. Servers (PostgreSQL, moto, the Vercel
# emulator) are started by the test fixtures themselves.
# Extra arguments go to pytest, e.g.: bash tests/run.sh tests/unit -q
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,infra,sandbox]'
VERCEL_CLI_VERSION=58.10.0
if [ ! -x .cache/vercel-cli/node_modules/.bin/vercel ] && command -v npm >/dev/null; then
  npm install --silent --no-audit --no-fund --prefix .cache/vercel-cli -E "vercel@${VERCEL_CLI_VERSION}" >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
