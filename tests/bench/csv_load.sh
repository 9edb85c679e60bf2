#!/usr/bin/env bash
# csv_load.sh - CSV -> SQLite load rate: a one-task weir pipeline doing
# ctx.csv(path):into(ctx.sqlite("out.db"), "orders", { mode = "append" })
# next to `sqlite3 DB ".import --csv FILE orders"` on the same file: the
# quickstart's data/orders.csv (5,000 rows) and a generated file with the
# same columns (default 1,000,000 rows, examples/quickstart/make_data.lua OUT N). Every
# run loads into a new database file. Median of RUNS. A measurement, never
# an assertion.
#
# usage: bash tests/bench/csv_load.sh   (after bash scripts/build.sh)
# env:   RUNS (default 5)  BIG_N (rows of the generated file, 1000000)
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
bench_init

RUNS=${RUNS:-5}
BIG_N=${BIG_N:-1000000}
T=$BENCH_TMP

echo "== csv_load: CSV -> SQLite, $RUNS runs each"
machine_info
if ! command -v sqlite3 >/dev/null; then
  echo "bench: sqlite3 not found (bash scripts/install-deps.sh installs it)" >&2
  exit 2
fi
echo "sqlite3: $(sqlite3 -version | cut -d' ' -f1-2)"

mkdir -p "$T/small" "$T/big"
cp "$BENCH_ROOT/examples/quickstart/data/orders.csv" "$T/small/orders.csv"
"$WEIR" script "$BENCH_ROOT/examples/quickstart/make_data.lua" "$T/big/orders.csv" "$BIG_N"

for d in small big; do
  cat >"$T/$d/load.lua" <<'EOF'
return pipeline {
  name = "csv_load",
  defaults = { timeout = "30m" },
  tasks = {
    load = task {
      run = function(ctx)
        local r = ctx.csv("orders.csv"):into(ctx.sqlite("out.db"), "orders", { mode = "append" })
        return { rows = r.rows }
      end,
    },
  },
}
EOF
done

declare -A RES ROWS
for d in small big; do
  dir=$T/$d
  rows=$(( $(wc -l <"$dir/orders.csv") - 1 ))
  ROWS[$d]=$rows
  : >"$T/weir-$d.wall"; : >"$T/weir-$d.task"; : >"$T/sqlite-$d.wall"
  for i in $(seq 1 "$RUNS"); do
    # weir: the whole command, and the task's own time from the store
    rm -f "$dir/out.db" "$dir/out.db-journal"
    home=$T/home-$d-$i
    t0=$(now_ns)
    (cd "$dir" && WEIR_HOME=$home "$WEIR" run load.lua --quiet --workers 2)
    t1=$(now_ns)
    got=$(sqlite3 "$dir/out.db" "SELECT count(*) FROM orders")
    if [ "$got" != "$rows" ]; then echo "weir loaded $got of $rows rows" >&2; exit 1; fi
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }' >>"$T/weir-$d.wall"
    sqlite3 "$home/weir.db" \
      "SELECT printf('%.6f', (finished_at - started_at) / 1000.0) FROM task_runs" \
      >>"$T/weir-$d.task"
    rm -rf "$home" "$dir/out.db"
    # sqlite3 .import (CLI defaults: rollback journal, synchronous FULL,
    # one transaction; the new table's columns are TEXT, as weir's here)
    rm -f "$dir/imp.db"
    t0=$(now_ns)
    (cd "$dir" && sqlite3 imp.db ".import --csv orders.csv orders")
    t1=$(now_ns)
    got=$(sqlite3 "$dir/imp.db" "SELECT count(*) FROM orders")
    if [ "$got" != "$rows" ]; then echo "sqlite3 imported $got of $rows rows" >&2; exit 1; fi
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }' >>"$T/sqlite-$d.wall"
    rm -f "$dir/imp.db"
  done
  RES[weir-$d]=$(median <"$T/weir-$d.wall")
  RES[weir-$d-task]=$(median <"$T/weir-$d.task")
  RES[sqlite-$d]=$(median <"$T/sqlite-$d.wall")
  echo "$d ($rows rows): weir runs(s) = $(paste -sd' ' "$T/weir-$d.wall")"
  echo "$d ($rows rows): weir task(s) = $(paste -sd' ' "$T/weir-$d.task")"
  echo "$d ($rows rows): sqlite3 runs(s) = $(paste -sd' ' "$T/sqlite-$d.wall")"
done

echo
echo "medians of $RUNS runs; rows/s = rows / median wall time"
echo
echo "| file                  |    rows | weir run s | weir rows/s | weir task s | task rows/s | sqlite3 .import s | sqlite3 rows/s | ratio weir/sqlite3 (run) | (task) |"
echo "|-----------------------|---------|------------|-------------|-------------|-------------|-------------------|----------------|--------------------------|--------|"
for d in small big; do
  r=${ROWS[$d]}
  printf '| %-21s | %7s | %10s | %11s | %11s | %11s | %17s | %14s | %24s | %6s |\n' \
    "$([ "$d" = small ] && echo "quickstart orders.csv" || echo "generated orders.csv")" "$r" \
    "${RES[weir-$d]}" "$(div "$r" "${RES[weir-$d]}" 0)" \
    "${RES[weir-$d-task]}" "$(div "$r" "${RES[weir-$d-task]}" 0)" \
    "${RES[sqlite-$d]}" "$(div "$r" "${RES[sqlite-$d]}" 0)" \
    "$(div "${RES[sqlite-$d]}" "${RES[weir-$d]}")" "$(div "${RES[sqlite-$d]}" "${RES[weir-$d-task]}")"
done
echo
echo "ratio = weir rows/s / sqlite3 rows/s (> 1: weir faster). 'task' = the task's own"
echo "time from the store, without weir's process start, load and bookkeeping."
echo "design target: CSV->SQLite next to sqlite3 .import"
load_now
