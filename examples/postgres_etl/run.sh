#!/usr/bin/env bash
# Run examples/postgres_etl against a throwaway local PostgreSQL: starts one
# (scripts/services.sh: temp data folder, free port, random password), runs
# the pipeline twice (the second run upserts the same rows: nothing doubles),
# prints the results, and stops the server.
#   bash examples/postgres_etl/run.sh        (after scripts/build.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
weir=${WEIR:-$root/build/weir}
[ -x "$weir" ] || { echo "run.sh: build first: bash scripts/build.sh" >&2; exit 1; }
svc=$(mktemp -d /tmp/weir-example-pg-XXXXXX)
chmod 755 "$svc"
trap 'bash "$root/scripts/services.sh" stop "$svc"; rm -rf "$svc"' EXIT
bash "$root/scripts/services.sh" start-pg "$svc"
# shellcheck disable=SC1091
. "$svc/env"
export PGPORT=$WEIR_TEST_PG_PORT PGPASSWORD=$WEIR_TEST_PG_PASSWORD
export WEIR_HOME="$svc/weir-home"
cd "$here"
"$weir" health
"$weir" run pipeline.lua
"$weir" run pipeline.lua --quiet
psql -h 127.0.0.1 -U weir -d postgres -c \
  "SELECT count(*) AS orders_clean, (SELECT count(*) FROM analytics.daily) AS days FROM analytics.orders_clean"
psql -h 127.0.0.1 -U weir -d postgres -c "SELECT * FROM analytics.daily ORDER BY day LIMIT 5"
