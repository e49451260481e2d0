#!/usr/bin/env bash
# One-shot setup for docker-compose.yaml's airflow-init service (runs as root, then exits 0):
#   1. folders for logs, export state and the simple auth manager's password file, owned by AIRFLOW_UID
#   2. airflow db migrate
#   3. pool omnisend_api with OMNISEND_POOL_SLOTS slots (the exports that may run at once per brand)
#   4. the UI login (simple auth manager): _AIRFLOW_WWW_USER_USERNAME / _AIRFLOW_WWW_USER_PASSWORD
# Safe to re-run: every step is idempotent.
set -euo pipefail

if [[ -z "${AIRFLOW_UID:-}" ]]; then
  echo "WARNING: AIRFLOW_UID is not set; files will belong to uid 50000." >&2
  echo "On Linux put AIRFLOW_UID=\$(id -u) in .env (see .env.example)." >&2
fi
uid="${AIRFLOW_UID:-50000}"
pool_slots="${OMNISEND_POOL_SLOTS:-2}"
if ! [[ "${pool_slots}" =~ ^[1-9][0-9]*$ ]]; then
  echo "OMNISEND_POOL_SLOTS must be a positive integer, got '${pool_slots}'" >&2
  exit 1
fi
passwords_file="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?set in docker-compose.yaml}"

mkdir -p /opt/airflow/logs /opt/airflow/dags /opt/airflow/omnisend_state /opt/airflow/omnisend_runs /opt/airflow/lake \
  "$(dirname "${passwords_file}")"

echo "Airflow $(airflow version)"
airflow db migrate

airflow pools set omnisend_api "${pool_slots}" \
  "Omnisend exports running at once per brand; each gets the connection's requests_per_minute / slots"

# The simple auth manager keeps {"user": "password"} in this file and only generates passwords for users
# missing from it, so writing ours here gives a known login instead of a random one in the api-server log.
python - "${passwords_file}" <<'PY'
import json
import os
import sys
from pathlib import Path

path = Path(sys.argv[1])
passwords = json.loads(path.read_text() or "{}") if path.exists() else {}
user = os.environ.get("_AIRFLOW_WWW_USER_USERNAME") or "airflow"
passwords[user] = os.environ.get("_AIRFLOW_WWW_USER_PASSWORD") or "airflow"
path.write_text(json.dumps(passwords) + "\n")
path.chmod(0o600)
print(f"UI login: user {user!r} (password from _AIRFLOW_WWW_USER_PASSWORD, default 'airflow')")
PY

chown -R "${uid}:0" /opt/airflow/logs /opt/airflow/omnisend_state /opt/airflow/omnisend_runs "$(dirname "${passwords_file}")"
# The lake may be your real data: only take over its top folder when it is empty (Docker just created it).
if [[ -z "$(ls -A /opt/airflow/lake)" ]]; then
  chown "${uid}:0" /opt/airflow/lake
fi
echo "airflow-init done: pool omnisend_api has ${pool_slots} slot(s)"
