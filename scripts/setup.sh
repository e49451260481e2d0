#!/usr/bin/env bash
# Create .venv with the provider and its pinned dependencies (constraints.txt), idempotently.
#   scripts/setup.sh           runtime + demo
#   scripts/setup.sh --test    also test tools: pytest, ruff, Prism and Azurite (npm), chromium for the UI test,
#                              PostgreSQL and Redis for the CeleryExecutor tests (scripts/services.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11+ is required (found $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=24"
extras="azure,delta,emulator"  # emulator: the demo and the tests run the local Omnisend emulator
[[ $want_test == 1 ]] && extras="$extras,test"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[${extras}]"

if [[ $want_test == 1 ]]; then
  if ! command -v npm >/dev/null; then
    echo "npm (Node.js 18+) is required for the contract and lake tests (Prism, Azurite)." >&2
    exit 1
  fi
  if [[ ! -x node_modules/.bin/prism || ! -x node_modules/.bin/azurite-blob ]]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
  bash scripts/services.sh
  if ! command -v chromium >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
        || echo "warning: could not install chromium; the browser test will be skipped" >&2
    else
      echo "warning: chromium not found; the browser test will be skipped" >&2
    fi
  fi
fi
echo "setup: .venv ready ($(.venv/bin/python --version))"
