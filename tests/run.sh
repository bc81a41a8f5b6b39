#!/usr/bin/env bash
# The test command (README): sets up .venv with the project and its test extras,
# the official Vercel CLI for the emulator check, then runs pytest.
# Extra arguments go to pytest, e.g.: bash tests/run.sh tests/unit -q
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,infra,sandbox]'
exec .venv/bin/python -m pytest "$@"
