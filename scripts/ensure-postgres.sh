#!/usr/bin/env bash
# Start the machine's PostgreSQL when it is not accepting connections (CI machines, fresh boots).
set -euo pipefail
host=${PGHOST_TEST:-127.0.0.1}
if pg_isready -q -h "$host" -p 5432; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version (cluster main)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
else
  echo "PostgreSQL is not running on $host:5432 and pg_ctlcluster is not available" >&2
  exit 1
fi
for _ in $(seq 1 30); do
  pg_isready -q -h "$host" -p 5432 && exit 0
  sleep 1
done
echo "PostgreSQL did not come up on $host:5432" >&2
exit 1
