#!/usr/bin/env bash
# Install (if needed) and start Debian's PostgreSQL, create a test role and database,
# and print the URL to export as MOMBOT_TEST_POSTGRES_URL. Needs root (apt-get, su).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
    pg_createcluster "$version" main >&2
fi
pg_ctlcluster "$version" main start >&2 2>/dev/null || true
port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
psql_as_postgres() { su postgres -c "psql -p $port -tAc \"$1\""; }
for _ in $(seq 1 30); do psql_as_postgres "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
if [[ "$(psql_as_postgres "SELECT 1 FROM pg_roles WHERE rolname='mombot'")" != "1" ]]; then
    psql_as_postgres "CREATE ROLE mombot LOGIN PASSWORD 'mombot' CREATEDB" >&2
fi
if [[ "$(psql_as_postgres "SELECT 1 FROM pg_database WHERE datname='mombot_test'")" != "1" ]]; then
    psql_as_postgres "CREATE DATABASE mombot_test OWNER mombot" >&2
fi
echo "postgresql+psycopg://mombot:mombot@127.0.0.1:$port/mombot_test"
