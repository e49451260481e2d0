#!/usr/bin/env bash
# Set everything up (venv, pinned deps, Prism, Azurite, chromium) and run the whole test suite:
# ruff, then pytest (unit, integration against real local processes, end-to-end through real Airflow).
# Extra arguments go to pytest, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
# Airflow reads its config at import: give the suite its own home (the tests make their own below it).
export AIRFLOW_HOME="${AIRFLOW_HOME_TESTS:-$(mktemp -d -t omnisend-tests-XXXXXX)}"
exec .venv/bin/pytest "$@"
