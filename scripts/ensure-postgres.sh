#!/usr/bin/env bash
# Start the local PostgreSQL the tests use (127.0.0.1:5432, trust auth) when it is not running.
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "ensure-postgres: installing PostgreSQL (apt-get)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
echo "ensure-postgres: starting cluster $version/main" >&2
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 30); do
    if pg_isready -q -h 127.0.0.1 -p 5432; then
        exit 0
    fi
    sleep 1
done
echo "ensure-postgres: PostgreSQL did not come up on 127.0.0.1:5432" >&2
exit 1
