#!/usr/bin/env bash
# The test command (README): sets up .venv with the project and its test
# extras, installs the official Vercel CLI (for the emulator compatibility
# test) under .cache/, then runs pytest on several workers (pytest-xdist).
# Servers (PostgreSQL, moto, the Vercel emulator) are started by the test
# fixtures themselves, one set per worker.
#
#   bash tests/run.sh              everything (CI runs this)
#   bash tests/run.sh --fast       the inner loop: leaves out the tests marked slow
#   bash tests/run.sh tests/db -x  extra arguments go to pytest
#
# Workers: ROLLBACK_TEST_WORKERS=N, else twice the CPU count (at least 2, at most 8): most
# tests wait on a server or a subprocess, so even 2 cores gain from 4 workers.
#
# The whole run has two phases: every test but the operator-role check, on the workers, each
# worker recording the AWS calls the CLI made (tests/aws_calls.py); then the operator-role check
# (tests/infra_program/test_operator_role_vs_cli.py), which checks the calls of all workers together.
# A run that selects tests itself (paths, -k, -m) is one phase; that check, if selected, then
# runs the AWS tests again itself.
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

fast=0
selects=0
args=()
for arg in "$@"; do
  case "$arg" in
    --fast) fast=1; continue ;;
    -k|-k*|-m|-m*|--deselect|--deselect=*|--lf|--last-failed|--ff) selects=1 ;;
    -*) ;;
    *) [ -e "${arg%%::*}" ] && selects=1 ;;
  esac
  args+=("$arg")
done

cores=$(.venv/bin/python -c 'import os; print(len(os.sched_getaffinity(0)))')
workers=${ROLLBACK_TEST_WORKERS:-$(( cores * 2 ))}
[ "$workers" -lt 2 ] && workers=2
[ "$workers" -gt 8 ] && workers=8
xdist=(-n "$workers" --dist loadgroup)
[ "$workers" = 0 ] && xdist=()

marks=()
[ "$fast" = 1 ] && marks=(-m "not slow")
if [ "$selects" = 1 ]; then
  exec .venv/bin/python -m pytest "${xdist[@]}" "${marks[@]}" "${args[@]}"
fi

calls=$(mktemp -d "${TMPDIR:-/tmp}/rollback-aws-calls.XXXXXX")
trap 'rm -rf "$calls"' EXIT
status=0
if [ "$fast" = 1 ]; then
  # The operator-role check needs every AWS test's calls: it belongs to the full run.
  .venv/bin/python -m pytest "${xdist[@]}" -m "not slow and not after_aws_tests" "${args[@]}" || status=$?
  exit "$status"
fi
ROLLBACK_AWS_CALLS_DIR="$calls" .venv/bin/python -m pytest "${xdist[@]}" -m "not after_aws_tests" "${args[@]}" \
  || status=$?
echo "== the operator role against the AWS calls of every worker =="
second=0
ROLLBACK_AWS_CALLS_FROM="$calls" .venv/bin/python -m pytest -p no:xdist -m after_aws_tests "${args[@]}" \
  tests/infra_program/test_operator_role_vs_cli.py || second=$?
[ "$status" = 0 ] && status=$second
exit "$status"
