#!/usr/bin/env bash
# PostgreSQL and Redis for the CeleryExecutor tests: install Debian's packages when missing (as root),
# and start them when they do not answer on their default local ports. Idempotent; never stops or
# reconfigures a server that already runs. Tests that find neither start throwaway instances
# (airflow_provider_omnisend/testing/services.py), so a failure here is a warning, not an error.
set -uo pipefail

root=0; [[ $(id -u) == 0 ]] && root=1
have() { command -v "$1" >/dev/null 2>&1; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

missing=()
have redis-server || missing+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
if ((${#missing[@]})); then
  if ((root)) && have apt-get; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "warning: could not install ${missing[*]}; the CeleryExecutor tests will fail" >&2
  else
    echo "warning: ${missing[*]} missing (install as root: apt-get install ${missing[*]})" >&2
  fi
fi

if [[ -z ${OMNISEND_TEST_REDIS_URL:-} ]] && ! answers 6379 && have redis-server; then
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no >/dev/null \
    || echo "warning: could not start redis-server" >&2
fi

if [[ -z ${OMNISEND_TEST_POSTGRES_URL:-} ]] && ! answers 5432 && ((root)); then
  if have pg_lsclusters && [[ -n $(pg_lsclusters -h 2>/dev/null) ]]; then
    read -r ver name _ < <(pg_lsclusters -h | head -1)
    pg_ctlcluster "$ver" "$name" start || echo "warning: could not start PostgreSQL $ver/$name" >&2
  elif have service; then
    service postgresql start >/dev/null || echo "warning: could not start PostgreSQL" >&2
  fi
  # The tests connect as postgres over TCP without a password (a throwaway local server, as CI's).
  for _ in $(seq 30); do answers 5432 && break; sleep 1; done
  hba=$(runuser -u postgres -- psql -tAc 'SHOW hba_file' 2>/dev/null || true)
  if [[ -n $hba ]] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba" && runuser -u postgres -- psql -qc 'SELECT pg_reload_conf()' >/dev/null
  fi
fi
true
