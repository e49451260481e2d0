#!/usr/bin/env bash
# One command, fresh machine: set up, start the local Omnisend emulator, and run the example DAG end to end
# (airflow dags test) on embedded defaults: SQLite, the shipped sample lake (a Customer Insights CDM export
# with two segments, some rows invalid on purpose) copied to .demo/lake, and the emulator.
# Prints the per-segment summary, where the rejects went, and what the emulator received.
#
#   scripts/demo.sh --ui [--port N]   instead: the same emulator and sample lake in the real Airflow
#                                     (api-server, scheduler, dag-processor, triggerer on SQLite); prints
#                                     the UI's URL and login and runs until Ctrl-C, which stops them all
#                                     (python -m airflow_provider_omnisend.testing.ui_demo)
set -euo pipefail
cd "$(dirname "$0")/.."
ui=0
case "${1:-}" in
  --ui) ui=1; shift ;;
  "") ;;
  *) echo "usage: bash scripts/demo.sh            run the example DAG once and print what it did" >&2
     echo "       bash scripts/demo.sh --ui [--port N]   the example DAG in the Airflow UI until Ctrl-C" >&2
     exit 2 ;;
esac
bash scripts/setup.sh
ROOT=$PWD
DEMO=$ROOT/.demo
rm -rf "$DEMO"
mkdir -p "$DEMO"
if [[ $ui == 1 ]]; then
  exec "$ROOT/.venv/bin/python" -m airflow_provider_omnisend.testing.ui_demo --root "$DEMO" "$@"
fi
cp -r examples/lake "$DEMO/lake"

export AIRFLOW_HOME=$DEMO/airflow
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__LOGGING__LOGGING_LEVEL=INFO
PY=$ROOT/.venv/bin/python
AIRFLOW=$ROOT/.venv/bin/airflow

PORT=$($PY -c 'from airflow_provider_omnisend.testing.servers import free_port; print(free_port())')
$PY -m airflow_provider_omnisend.testing.emulator --host 127.0.0.1 --port "$PORT" --api-key demo-key \
  > "$DEMO/emulator.log" 2>&1 &
EMULATOR_PID=$!
trap 'kill $EMULATOR_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/_emulator/health" >/dev/null && break
  sleep 0.1
done

export AIRFLOW_CONN_OMNISEND_DEFAULT="{\"conn_type\": \"omnisend\", \"host\": \"http://127.0.0.1:$PORT/api\", \"password\": \"demo-key\", \"extra\": {\"api_version\": \"2026-03-15\", \"privacy_acknowledged\": true, \"requests_per_minute\": 300}}"
export OMNISEND_LAKE_PATH=file://$DEMO/lake/CustomerInsights_demo/OmnisendExport
export OMNISEND_SEGMENTS='["HighValueCustomers", "NewsletterFans"]'
export OMNISEND_STATE_PATH=$DEMO/state
export OMNISEND_POOL_SLOTS=2
export OMNISEND_DEFERRABLE=${OMNISEND_DEFERRABLE:-true}

$AIRFLOW db migrate > "$DEMO/db-migrate.log" 2>&1
$AIRFLOW pools set omnisend_api 2 "Omnisend exports running at once per brand" > /dev/null
echo "Running the example DAG (logs: $DEMO/dags-test.log) ..."
if ! $AIRFLOW dags test omnisend_segment_export > "$DEMO/dags-test.log" 2>&1; then
  tail -n 60 "$DEMO/dags-test.log"
  echo "The DAG run failed; full log: $DEMO/dags-test.log" >&2
  exit 1
fi
# The summary task logs the per-segment table line by line; show it without the log prefix and suffix,
# then what the emulator holds.
awk '/Omnisend export summary/ {on=1; print ""} on && !/loc=omnisend_segment_export\.py:/ {exit}
     on {gsub(/\033\[[0-9;]*m/, ""); sub(/^[^ ]+ \[[a-z ]+\] /, ""); sub(/ +\[[^]]*\] loc=.*$/, ""); print}' \
  "$DEMO/dags-test.log"
$PY - "$PORT" <<'PY'
import sys, requests
base = f"http://127.0.0.1:{sys.argv[1]}"
state = requests.get(f"{base}/_emulator/state", timeout=10).json()
contacts = requests.get(f"{base}/_emulator/contacts", params={"limit": 3}, timeout=10).json()
print("\nThe Omnisend emulator received:")
print(f"  contacts stored:        {state['contacts']}")
print(f"  requests:               {state['requests']}")
print(f"  429 responses:          {state['responses_429']}")
print(f"  welcome messages sent:  {state['welcome_messages']}")
print(f"  busiest window (of 400):{state['max_in_window']['default']:>5}")
for c in contacts["contacts"]:
    print(f"  e.g. {c.get('firstName')} {c.get('lastName')}, {c.get('city')} {c.get('countryCode')}, tags {c.get('tags')}")
PY
