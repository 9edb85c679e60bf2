#!/usr/bin/env bash
# serve.sh - weir serve as a service: authenticated triggers of a one-task
# no-op pipeline (each recorded in the SQLite store before the answer)
# with wrk, 2 threads, CONNS connections (64 and 16: with a closed loop of
# C connections the mean latency is C / throughput), DURATION (10 s) per
# run, RUNS (3) runs each; then the rate at which those runs finish; then the resident memory
# of an idle server (supervisor alone, and with its workers) next to an
# idle redis-server's. A measurement, never an assertion; run by hand only
# (installs wrk with apt-get if missing).
#
# usage: bash tests/bench/serve.sh   (after bash scripts/build.sh)
# env:   RUNS (3)  DURATION (10s)  WORKERS (2)  CONNS ("64 16")
#        ONLY_RSS=1: only the memory part (a fresh server, and one that
#        served 1,000 triggers), no throughput runs
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
bench_init
bench_ensure_pkgs wrk

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WORKERS=${WORKERS:-2}
CONNS=${CONNS:-64 16}
T=$BENCH_TMP

echo "== serve: POST /api/v1/pipelines/noop/runs, wrk -t2 -c($CONNS) -d$DURATION, $RUNS runs each"
machine_info
echo "wrk: $(wrk --version 2>&1 | head -1)"

mkdir -p "$T/p/pipelines"
cat >"$T/p/weir.yaml" <<YAML
pipelines: [pipelines]
serve:
  max_active_runs: 64
  max_connections_per_address: 256
  pipeline_max_active_runs: 64
  rate_limit:
    per_address: { rate: 1000000, burst: 1000000 }
    per_principal: { rate: 1000000, burst: 1000000 }
YAML
cat >"$T/p/pipelines/noop.lua" <<'LUA'
return pipeline { name = "noop", tasks = { t = task { run = function() return 1 end } } }
LUA
KEY=$(cd "$T/p" && "$WEIR" keys create bench --role operator 2>/dev/null)

start_serve() {
  : >"$T/serve.log"
  (cd "$T/p" && exec "$WEIR" serve --listen 127.0.0.1:0 --workers "$WORKERS") \
    >"$T/serve.log" 2>&1 &
  SERVE_PID=$!
  BENCH_PIDS+=("$SERVE_PID")
  for _ in $(seq 1 200); do
    PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/serve.log")
    [ -n "$PORT" ] && break
    sleep 0.05
  done
  BASE="http://127.0.0.1:$PORT"
}
start_serve

cat >"$T/trigger.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"params":{}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA

count_runs() {
  sqlite3 "$T/p/.weir/weir.db" "SELECT count(*) FROM runs WHERE status $1"
}

: >"$T/summary"
[ -n "${ONLY_RSS:-}" ] && CONNS=""
for c in $CONNS; do
: >"$T/rps.runs"
for i in $(seq 1 "$RUNS"); do
  before=$(count_runs "IS NOT NULL")
  wrk -t2 -c"$c" -d"$DURATION" --latency -s "$T/trigger.lua" \
    "$BASE/api/v1/pipelines/noop/runs" >"$T/wrk.out"
  non2xx=$(awk '/Non-2xx/ { print $NF }' "$T/wrk.out")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$T/wrk.out")
  p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
        print v }' "$T/wrk.out")
  # every accepted trigger is a run in the store
  accepted=$(( $(count_runs "IS NOT NULL") - before ))
  # then the rate at which the runs finish once the triggers stop
  t0=$(now_ns)
  left=$(count_runs "IN ('queued', 'running')")
  while [ "$(count_runs "IN ('queued', 'running')")" -gt 0 ]; do sleep 0.2; done
  t1=$(now_ns)
  fin=$(awk -v n="$left" -v ns="$((t1 - t0))" 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
  echo "c=$c run $i: $rps req/s, p99 $p99 ms, $accepted runs recorded, non-2xx ${non2xx:-0};" \
       "$left were still to run and finished at $fin runs/s"
  echo "$rps $p99 $fin" >>"$T/rps.runs"
done
echo "c=$c median: $(cut -d' ' -f1 "$T/rps.runs" | median) triggers/s (target >= 2000)," \
     "p99 $(cut -d' ' -f2 "$T/rps.runs" | median) ms (target <= 20)," \
     "finishing $(cut -d' ' -f3 "$T/rps.runs" | median) runs/s" >>"$T/summary"
done
echo
cat "$T/summary"

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# idle memory after work: 1,000 triggers (API key), their runs done, 3 s
for _ in $(seq 1 1000); do
  curl -s -o /dev/null -X POST -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{}' "$BASE/api/v1/pipelines/noop/runs"
done
while [ "$(count_runs "IN ('queued', 'running')")" -gt 0 ]; do sleep 0.2; done
sleep 3
worked=$(rss_kb "$SERVE_PID")
# idle memory: a fresh server, 3 s after start
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true
start_serve
sleep 3
sup=$(rss_kb "$SERVE_PID")
tree=$sup
for c in $(pgrep -P "$SERVE_PID"); do tree=$((tree + $(rss_kb "$c"))); done
RPORT=$(free_port)
redis-server --port "$RPORT" --save '' --appendonly no --daemonize no >/dev/null 2>&1 &
RPID=$!
BENCH_PIDS+=("$RPID")
sleep 2
redis=$(rss_kb "$RPID")
echo "idle RSS: supervisor $(mb "$sup") MB (target <= 12), with workers $(mb "$tree") MB;" \
     "after 1,000 triggers $(mb "$worked") MB; redis-server $(mb "$redis") MB"
load_now
