#!/usr/bin/env bash
# checks.sh - data-quality checks on PostgreSQL (issue 14, docs/quality.md):
# N rows loaded into a table by a weir pipeline, then six typical checks
# (row_count, not_null, unique, accepted_values, range, freshness) run on it
# by a task that declares them, on a private server that scripts/services.sh
# starts in the temp dir (fsync off, as for tests).
#
# Printed per run: the load task's time and the check task's time (both from
# `weir show --json`: attempt started_at .. finished_at, so process start is
# left out), the table's sequential scans during the check run (from
# pg_stat_user_tables, read after the run's connections closed), and, next
# to them, the same six checks as one hand-written aggregate query in psql.
# Medians of RUNS. Times are measured, never asserted; the checks must pass.
#
# usage: bash tests/bench/checks.sh   (after bash scripts/build.sh)
# env:   RUNS (3)  N (rows, 1000000)  WEIR (build/weir)
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
# under /tmp and world-readable: the server runs as postgres, workers as nobody
TMPDIR=/tmp bench_init
chmod 755 "$BENCH_TMP"

RUNS=${RUNS:-3}
N=${N:-1000000}
T=$BENCH_TMP
W=$T/w
export WEIR_HOME=$T/home

pg_stop() { if [ -d "$T/pg" ]; then bash "$BENCH_ROOT/scripts/services.sh" stop-pg "$T/pg" || true; fi; }
trap 'pg_stop; bench_cleanup' EXIT

echo "== checks: six checks on a PostgreSQL table of N=$N rows, $RUNS runs"
machine_info
for c in psql jq; do
  command -v "$c" >/dev/null || { echo "bench: $c not found (bash scripts/install-deps.sh)" >&2; exit 2; }
done
bash "$BENCH_ROOT/scripts/services.sh" start-pg "$T/pg" 2>"$T/pg-start.log" \
  || { cat "$T/pg-start.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$T/pg/env"
export WEIR_TEST_PG_URL WEIR_TEST_PG_PORT WEIR_TEST_PG_PASSWORD
URL=$WEIR_TEST_PG_URL
qv() { psql "$URL" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
echo "server:  $(qv 'SHOW server_version'), fsync=$(qv 'SHOW fsync'), shared_buffers=$(qv 'SHOW shared_buffers')"

mkdir -p "$W"
chmod 755 "$W"
cat >"$W/weir.yaml" <<'EOF'
connections:
  wh:
    type: postgres
    host: 127.0.0.1
    port: "${env:WEIR_TEST_PG_PORT}"
    user: weir
    password: "${env:WEIR_TEST_PG_PASSWORD}"
    database: postgres
    sslmode: disable
EOF
# the load: N generated rows through a weir stream into a new table
cat >"$W/load.lua" <<EOF
return pipeline {
  name = "checks_load",
  defaults = { timeout = "30m", memory = "256MB" },
  tasks = {
    load = task { run = function(ctx)
      return ctx.source("wh"):query([[
          SELECT g AS id, 'user' || g || '@example.org' AS email,
                 (ARRAY['DE','FR','IT','ES'])[1 + g % 4] AS country,
                 (g % 100000)::numeric / 7 AS amount,
                 now() - g * interval '1 s' AS updated_at
          FROM generate_series(1, \$1) g]], { $N })
        :into(ctx.sink("wh"), "bench_orders", { mode = "replace" })
    end },
  },
}
EOF
cat >"$W/check.lua" <<'EOF'
return pipeline {
  name = "checks_run",
  defaults = { timeout = "30m", memory = "256MB" },
  tasks = {
    check = task {
      run = function() return "checked" end,
      checks = {
        { "row_count", min = 1, dataset = { connection = "wh", table = "bench_orders" } },
        { "not_null", column = "email", dataset = { connection = "wh", table = "bench_orders" } },
        { "unique", column = "id", dataset = { connection = "wh", table = "bench_orders" } },
        { "accepted_values", column = "country", values = { "DE", "FR", "IT", "ES" },
          dataset = { connection = "wh", table = "bench_orders" } },
        { "range", column = "amount", min = 0, max = 1e6,
          dataset = { connection = "wh", table = "bench_orders" } },
        { "freshness", column = "updated_at", max_age = "1d",
          dataset = { connection = "wh", table = "bench_orders" } },
      },
    },
  },
}
EOF
HAND="SELECT count(*), count(*) FILTER (WHERE email IS NULL), count(id) - count(DISTINCT id),
  count(*) FILTER (WHERE country NOT IN ('DE','FR','IT','ES')),
  count(*) FILTER (WHERE amount < 0 OR amount > 1e6), max(updated_at) FROM bench_orders"

# task seconds of TASK in the last run: attempt finished_at - started_at (ms)
task_secs() {
  (cd "$W" && "$WEIR" show last --json) \
    | jq -r --arg t "$1" '.tasks[] | select(.task == $t) | .attempt_list[-1]
        | def ms: (.[0:19] + "Z" | fromdateiso8601) * 1000 + (.[20:23] | tonumber);
          (((.finished_at | ms) - (.started_at | ms)) / 1000)'
}
seq_scans() { qv "SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relname = 'bench_orders'"; }

loads=() checks=() hands=()
for r in $(seq 1 "$RUNS"); do
  (cd "$W" && "$WEIR" run load.lua --quiet) >"$T/load.log" 2>&1 || { cat "$T/load.log" >&2; exit 1; }
  rows=$(qv "SELECT count(*) FROM bench_orders")
  [ "$rows" = "$N" ] || { echo "bench: loaded $rows rows, expected $N" >&2; exit 1; }
  qv "VACUUM ANALYZE bench_orders" >/dev/null
  l=$(task_secs load)
  sleep 1   # the statistics of the load's connections are flushed
  before=$(seq_scans)
  (cd "$W" && "$WEIR" run check.lua --quiet) >"$T/check.log" 2>&1 || { cat "$T/check.log" >&2; exit 1; }
  c=$(task_secs check)
  sleep 1
  after=$(seq_scans)
  t0=$(now_ns)
  qv "$HAND" >/dev/null
  h=$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }')
  echo "run $r: load ${l} s, six checks ${c} s ($((after - before)) sequential scan(s) of the table), psql hand-written query ${h} s (psql start included)"
  loads+=("$l") checks+=("$c") hands+=("$h")
done
echo
echo "median of $RUNS, N=$N rows"
printf '  %-44s %10s s\n' "load (weir pipeline, PG -> PG)" "$(printf '%s\n' "${loads[@]}" | median)"
printf '  %-44s %10s s\n' "six checks (a task declaring them)" "$(printf '%s\n' "${checks[@]}" | median)"
printf '  %-44s %10s s\n' "the same six as one psql query (psql start incl.)" "$(printf '%s\n' "${hands[@]}" | median)"
load_now
