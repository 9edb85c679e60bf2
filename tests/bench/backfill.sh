#!/usr/bin/env bash
# backfill.sh - weir backfill of a one-task no-op pipeline over N (10,000)
# minutely intervals under weir serve: the time to create the runs (one
# transaction, the answer of POST .../backfill) and the rate at which they
# complete (all success), RUNS (3) times on fresh stores; medians. Peer:
# the no-op task throughput of dag_throughput.sh (docs/performance.md).
# A measurement, never an assertion; run by hand.
#
# usage: bash tests/bench/backfill.sh   (after bash scripts/build.sh)
# env:   RUNS (3)  N (10000)  WORKERS (2)
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
bench_init

RUNS=${RUNS:-3}
N=${N:-10000}
WORKERS=${WORKERS:-2}
T=$BENCH_TMP

echo "== backfill: $N minutely intervals of a one-task no-op pipeline, $RUNS runs"
machine_info

: >"$T/results"
for i in $(seq 1 "$RUNS"); do
  P="$T/p$i"
  mkdir -p "$P/pipelines"
  cat >"$P/weir.yaml" <<YAML
pipelines: [pipelines]
serve:
  max_active_runs: 64
  pipeline_max_active_runs: 64
YAML
  cat >"$P/pipelines/noop.lua" <<'LUA'
return pipeline { name = "noop", schedule = { cron = "* * * * *", catchup = "none" },
  tasks = { t = task { run = function() return 1 end } } }
LUA
  KEY=$(cd "$P" && "$WEIR" keys create bench --role operator 2>/dev/null)
  (cd "$P" && exec "$WEIR" serve --listen 127.0.0.1:0 --workers "$WORKERS") >"$P/serve.log" 2>&1 &
  SPID=$!
  BENCH_PIDS+=("$SPID")
  PORT=""
  for _ in $(seq 1 200); do
    PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$P/serve.log")
    [ -n "$PORT" ] && break
    sleep 0.05
  done
  TO=$(date -u -d "2026-01-01 00:00 UTC + $((N - 1)) minutes" +%Y-%m-%dT%H:%M:%SZ)
  t0=$(now_ns)
  (cd "$P" && WEIR_SERVER="http://127.0.0.1:$PORT" WEIR_TOKEN="$KEY" \
     "$WEIR" backfill noop --from 2026-01-01 --to "$TO") >"$P/backfill.out"
  t1=$(now_ns)
  while [ "$(sqlite3 "$P/.weir/weir.db" \
            "SELECT count(*) FROM runs WHERE status = 'success' AND logical_time IS NOT NULL")" \
          -lt "$N" ]; do
    sleep 0.1
  done
  t2=$(now_ns)
  create_ms=$(div "$((t1 - t0))" 1000000)
  rate=$(awk -v n="$N" -v ns="$((t2 - t0))" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
  echo "run $i: $(cat "$P/backfill.out" | tr -d '\n'); created in $create_ms ms (whole" \
       "weir backfill command), all $N succeeded at $rate runs/s (from the command's start)"
  echo "$create_ms $rate" >>"$T/results"
  kill "$SPID"; wait "$SPID" 2>/dev/null || true
done
echo
echo "median: created in $(cut -d' ' -f1 "$T/results" | median) ms," \
     "$(cut -d' ' -f2 "$T/results" | median) runs/s completed (target >= 1000)"
load_now
