#!/usr/bin/env bash
# template_overhead.sh - what a template costs over the same pipeline
# written by hand: csv_to_table used as a task (`uses =
# "csv_to_table@1"`) next to a one-task pipeline whose run function is the
# template's own code pasted in, loading the same generated CSV (N rows)
# into a new SQLite file each run. Whole `weir run` (definition phase,
# template expansion included) and the task's own time from the store,
# median of RUNS, and the ratios template/hand. A measurement, never an
# assertion.
#
# usage: bash tests/bench/template_overhead.sh   (after bash scripts/build.sh)
# env:   RUNS (default 5)  N (rows, default 1000000)
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
bench_init

RUNS=${RUNS:-5}
N=${N:-1000000}
T=$BENCH_TMP

echo "== template_overhead: csv_to_table as a template vs by hand, $N rows, $RUNS runs each"
machine_info
"$WEIR" script "$BENCH_ROOT/examples/quickstart/make_data.lua" "$T/orders.csv" "$N"
rows=$(( $(wc -l <"$T/orders.csv") - 1 ))

cat >"$T/template.lua" <<'LUA'
return pipeline {
  name = "by_template",
  params = { path = { type = "string" } },
  tasks = {
    load = task { uses = "csv_to_table@1", timeout = "30m",
                  with = { path = "${params.path}", target = "sqlite:out.db", table = "orders" } },
  },
}
LUA
# the template's run function, pasted in (the same code, no expansion)
"$WEIR" script /dev/stdin "$BENCH_ROOT/pipelines/csv_to_table/template.lua" "$T/hand.lua" <<'LUA'
local src = assert(io.open(arg[1])):read("*a")
local body = assert(src:match("\n    load = task {\n(.-\n      end,)\n    },"), "run function not found")
local out = assert(io.open(arg[2], "w"))
out:write('local defaults = { dead_letter = "dead_letters/csv_to_table.jsonl", format = "auto", types = {},\n'
  .. '  target = "sqlite:out.db", table = "orders" }\n'
  .. 'return pipeline {\n  name = "by_hand",\n  params = { path = { type = "string" } },\n'
  .. '  tasks = {\n    load = task { timeout = "30m",\n'
  .. body:gsub("run = function%(ctx%)\n        local p = ctx.params",
               "run = function(ctx)\n        local p = setmetatable({ path = ctx.params.path }, "
               .. "{ __index = defaults })")
  .. '\n    },\n  },\n}\n')
out:close()
LUA

declare -A RES
for kind in template hand; do
  : >"$T/$kind.wall"; : >"$T/$kind.task"
  for i in $(seq 1 "$RUNS"); do
    home=$T/home-$kind-$i
    rm -f "$T/out.db"
    t0=$(now_ns)
    (cd "$T" && WEIR_HOME=$home "$WEIR" run "$kind.lua" --quiet --param path=orders.csv)
    t1=$(now_ns)
    got=$(sqlite3 "$T/out.db" "SELECT count(*) FROM orders")
    if [ "$got" != "$rows" ]; then echo "$kind loaded $got of $rows rows" >&2; exit 1; fi
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }' >>"$T/$kind.wall"
    sqlite3 "$home/weir.db" \
      "SELECT printf('%.6f', (finished_at - started_at) / 1000.0) FROM task_runs" >>"$T/$kind.task"
    rm -rf "$home"
  done
  RES[$kind]=$(median <"$T/$kind.wall")
  RES[$kind-task]=$(median <"$T/$kind.task")
  echo "$kind: runs(s) = $(paste -sd' ' "$T/$kind.wall"); task(s) = $(paste -sd' ' "$T/$kind.task")"
done

echo
echo "| pipeline | rows | weir run s (median) | task s (median) |"
echo "|---|---|---|---|"
for kind in template hand; do
  printf '| %s | %s | %s | %s |\n' "$kind" "$rows" "${RES[$kind]}" "${RES[$kind-task]}"
done
echo
echo "ratio template/hand: run $(div "${RES[template]}" "${RES[hand]}"), task $(div "${RES[template-task]}" "${RES[hand-task]}")"
