#!/usr/bin/env bash
# dag_throughput.sh - scheduling throughput of no-op DAGs: a 10,000-task
# fan-out and a 1,000-task chain, each one weir pipeline file, run with
# `weir run FILE --quiet --workers 2` (whole command: process start, load,
# validation, run, durable state in a fresh WEIR_HOME each time). The same
# DAGs run on two peers in the same invocation: GNU make -j2 (`true` per
# target) and Celery (Redis broker and result backend, 2 prefork worker
# processes). A measurement, never an assertion.
#
# usage: bash tests/bench/dag_throughput.sh   (after bash scripts/build.sh)
# env:   RUNS (default 5)  FAN_N (10000)  CHAIN_N (1000)
#        CELERY_FAN_N (default FAN_N)  PEERS (default "make celery")
#        PY (default /usr/bin/python3: Debian's, which has python3-celery)
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
bench_init

RUNS=${RUNS:-5}
FAN_N=${FAN_N:-10000}
CHAIN_N=${CHAIN_N:-1000}
CELERY_FAN_N=${CELERY_FAN_N:-$FAN_N}
PEERS=${PEERS:-make celery}
PY=${PY:-/usr/bin/python3}
T=$BENCH_TMP

echo "== dag_throughput: fan-out $FAN_N tasks, chain $CHAIN_N tasks, $RUNS runs each"
machine_info

# ---------------------------------------------------------------- weir
cat >"$T/fanout.lua" <<EOF
local tasks = {}
for i = 1, $FAN_N do
  tasks["t" .. i] = task { run = function() return nil end }
end
return pipeline { name = "fanout", tasks = tasks }
EOF
cat >"$T/chain.lua" <<EOF
local tasks = {}
tasks.t1 = task { run = function() return nil end }
for i = 2, $CHAIN_N do
  tasks["t" .. i] = task { after = { "t" .. (i - 1) }, run = function() return nil end }
end
return pipeline { name = "chain", tasks = tasks }
EOF

declare -A RES   # RES[key]=median seconds

# run_weir NAME N: RUNS runs, each with a fresh WEIR_HOME; records the
# median wall time of the whole command and of its phases (from the
# timestamps the run wrote to its store).
run_weir() {
  local name=$1 n=$2 i home t0 t1 rc ok phases
  : >"$T/weir-$name.wall"; : >"$T/weir-$name.pre"; : >"$T/weir-$name.engine"
  : >"$T/weir-$name.post"
  for i in $(seq 1 "$RUNS"); do
    home=$T/home-$name-$i
    t0=$(now_ns)
    set +e
    (cd "$T" && WEIR_HOME=$home "$WEIR" run "$name.lua" --quiet --workers 2) \
      >"$T/weir-$name.out" 2>&1
    rc=$?
    set -e
    t1=$(now_ns)
    if [ "$rc" -ne 0 ]; then
      echo "weir $name run $i FAILED (exit $rc):" >&2
      tail -5 "$T/weir-$name.out" >&2
      RES[weir-$name]=nan
      return 0
    fi
    ok=$(sqlite3 "$home/weir.db" "SELECT count(*) FROM task_runs WHERE state = 'success'")
    if [ "$ok" != "$n" ]; then
      echo "weir $name run $i: $ok of $n tasks succeeded; not counted" >&2
      RES[weir-$name]=nan
      return 0
    fi
    # phases in ms: process start -> run created (load, validate, workers,
    # store), created -> finished (engine), finished -> exit
    phases=$(sqlite3 -separator ' ' "$home/weir.db" \
      "SELECT created_at, started_at, finished_at FROM runs")
    read -r created _ finished <<<"$phases"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }' >>"$T/weir-$name.wall"
    awk -v a="$t0" -v c="$created" 'BEGIN { printf "%.6f\n", (c - a / 1e6) / 1e3 }' \
      >>"$T/weir-$name.pre"
    awk -v c="$created" -v f="$finished" 'BEGIN { printf "%.6f\n", (f - c) / 1e3 }' \
      >>"$T/weir-$name.engine"
    awk -v f="$finished" -v b="$t1" 'BEGIN { printf "%.6f\n", (b / 1e6 - f) / 1e3 }' \
      >>"$T/weir-$name.post"
    rm -rf "$home"
  done
  RES[weir-$name]=$(median <"$T/weir-$name.wall")
  RES[weir-$name-pre]=$(median <"$T/weir-$name.pre")
  RES[weir-$name-engine]=$(median <"$T/weir-$name.engine")
  RES[weir-$name-post]=$(median <"$T/weir-$name.post")
  echo "weir $name: runs(s) = $(paste -sd' ' "$T/weir-$name.wall")"
}

run_weir fanout "$FAN_N"
run_weir chain "$CHAIN_N"

# ---------------------------------------------------------------- make
have_peer() { case " $PEERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if have_peer make; then
  bench_ensure_pkgs make
  {
    printf '.PHONY: all'
    for i in $(seq 1 "$FAN_N"); do printf ' t%d' "$i"; done
    printf '\nall:'
    for i in $(seq 1 "$FAN_N"); do printf ' t%d' "$i"; done
    printf '\n'
    for i in $(seq 1 "$FAN_N"); do printf 't%d:\n\t@true\n' "$i"; done
  } >"$T/fanout.mk"
  {
    printf '.PHONY: all'
    for i in $(seq 1 "$CHAIN_N"); do printf ' t%d' "$i"; done
    printf '\nall: t%d\nt1:\n\t@true\n' "$CHAIN_N"
    for i in $(seq 2 "$CHAIN_N"); do printf 't%d: t%d\n\t@true\n' "$i" $((i - 1)); done
  } >"$T/chain.mk"
  for name in fanout chain; do
    : >"$T/make-$name.wall"
    for i in $(seq 1 "$RUNS"); do
      t0=$(now_ns)
      (cd "$T" && make -r -j2 -s -f "$name.mk" all)
      t1=$(now_ns)
      awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }' >>"$T/make-$name.wall"
    done
    RES[make-$name]=$(median <"$T/make-$name.wall")
    echo "make $name: runs(s) = $(paste -sd' ' "$T/make-$name.wall")"
  done
fi

# ---------------------------------------------------------------- celery
celery_note=""
if have_peer celery; then
  if ! bench_ensure_pkgs python3-celery python3-redis redis-server; then
    celery_note="not measured: apt-get install python3-celery python3-redis redis-server failed"
  elif ! "$PY" -c 'import celery, redis' 2>/dev/null; then
    celery_note="not measured: $PY cannot import celery and redis"
  fi
fi
if have_peer celery && [ -z "$celery_note" ]; then
  mkdir -p "$T/celery" "$T/redis"
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$T/redis" --save '' \
    --appendonly no --daemonize no --logfile "$T/redis/redis.log" &
  redis_pid=$!
  BENCH_PIDS+=("$redis_pid")
  for i in $(seq 1 100); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ]; then break; fi
    sleep 0.1
  done
  cat >"$T/celery/app.py" <<'EOF'
import os
from celery import Celery

port = os.environ["BENCH_REDIS_PORT"]
app = Celery("app", broker="redis://127.0.0.1:%s/0" % port,
             backend="redis://127.0.0.1:%s/1" % port)
app.conf.update(task_serializer="json", result_serializer="json",
                accept_content=["json"], broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)


@app.task
def noop(*args):
    return None
EOF
  cat >"$T/celery/drive.py" <<'EOF'
# drive.py RUNS FAN_N CHAIN_N: prints "<dag> <n> <seconds>" per run, time
# from the first submit to the last result received (client in-process).
import sys
import time

from celery import chain, group

from app import noop

runs, fan_n, chain_n = (int(a) for a in sys.argv[1:4])
noop.delay().get(timeout=120)          # the worker is up and consuming
for _ in range(runs):
    t0 = time.perf_counter()
    group(noop.si() for _ in range(fan_n)).apply_async().get(timeout=1200)
    print("fanout", fan_n, time.perf_counter() - t0, flush=True)
for _ in range(runs):
    t0 = time.perf_counter()
    chain(noop.si() for _ in range(chain_n)).apply_async().get(timeout=1200)
    print("chain", chain_n, time.perf_counter() - t0, flush=True)
for _ in range(runs):
    t0 = time.perf_counter()
    for _ in range(chain_n):
        noop.delay().get(timeout=120)
    print("sequential", chain_n, time.perf_counter() - t0, flush=True)
EOF
  export BENCH_REDIS_PORT=$port
  # setsid: the worker and its prefork children are one process group
  (cd "$T/celery" && exec setsid "$PY" -m celery -A app worker -c 2 --pool=prefork \
    --loglevel=WARNING --without-gossip --without-mingle --without-heartbeat) \
    >"$T/celery/worker.log" 2>&1 &
  worker_pid=$!
  BENCH_PGIDS+=("$worker_pid")
  # in the background + wait, so a signal reaches the trap at once
  (cd "$T/celery" && exec setsid timeout 3600 "$PY" drive.py "$RUNS" "$CELERY_FAN_N" \
    "$CHAIN_N") >"$T/celery/results.txt" 2>"$T/celery/drive.err" &
  drive_pid=$!
  BENCH_PGIDS+=("$drive_pid")
  set +e
  wait "$drive_pid"
  rc=$?
  set -e
  # stop the worker (warm shutdown), then redis
  kill -TERM -- "-$worker_pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 0.1; done
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || kill -TERM "$redis_pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
  if [ "$rc" -ne 0 ]; then
    celery_note="failed (exit $rc): $(tail -1 "$T/celery/drive.err")"
    echo "celery driver failed:" >&2
    tail -20 "$T/celery/drive.err" >&2
    tail -20 "$T/celery/worker.log" >&2
  fi
  for name in fanout chain sequential; do
    awk -v d="$name" '$1 == d { print $3 }' "$T/celery/results.txt" >"$T/celery-$name.wall"
    if [ -s "$T/celery-$name.wall" ]; then
      RES[celery-$name]=$(median <"$T/celery-$name.wall")
      echo "celery $name: runs(s) = $(paste -sd' ' "$T/celery-$name.wall")"
    fi
  done
fi

# ---------------------------------------------------------------- report
row() { # row LABEL N SECONDS  -> "| label | n | s | tasks/s |"
  printf '| %-44s | %6s | %9s | %10s |\n' "$1" "$2" "$3" "$(div "$2" "$3" 0)"
}
echo
echo "medians of $RUNS runs (wall time of the whole weir/make command; Celery:"
echo "first submit to last result, in the client, worker already running)"
echo
printf '| %-44s | %6s | %9s | %10s |\n' "system / DAG" "tasks" "median s" "tasks/s"
echo "|----------------------------------------------|--------|-----------|------------|"
row "weir fan-out (weir run, --workers 2)" "$FAN_N" "${RES[weir-fanout]}"
row "weir chain (weir run, --workers 2)" "$CHAIN_N" "${RES[weir-chain]}"
if have_peer make; then
  row "GNU make -j2 fan-out (true per target)" "$FAN_N" "${RES[make-fanout]}"
  row "GNU make -j2 chain (true per target)" "$CHAIN_N" "${RES[make-chain]}"
fi
if have_peer celery; then
  if [ -n "${RES[celery-fanout]:-}" ]; then
    row "Celery group, 2 prefork workers" "$CELERY_FAN_N" "${RES[celery-fanout]}"
  fi
  if [ -n "${RES[celery-chain]:-}" ]; then
    row "Celery chain, 2 prefork workers" "$CHAIN_N" "${RES[celery-chain]}"
  fi
  if [ -n "${RES[celery-sequential]:-}" ]; then
    row "Celery sequential delay().get()" "$CHAIN_N" "${RES[celery-sequential]}"
  fi
  if [ -n "$celery_note" ]; then echo "Celery: $celery_note"; fi
fi

echo
echo "weir phases (medians, s): start->run created (process start, load, validate,"
echo "workers, store) / engine (created->finished) / finished->exit"
for name in fanout chain; do
  printf '  %-7s %s / %s / %s\n' "$name" "${RES[weir-$name-pre]:-nan}" \
    "${RES[weir-$name-engine]:-nan}" "${RES[weir-$name-post]:-nan}"
done

ratio() { # ratio WEIR_N WEIR_S PEER_N PEER_S: weir tasks/s / peer tasks/s
  awk -v wn="$1" -v ws="$2" -v pn="$3" -v ps="$4" 'BEGIN {
    if (ws + 0 == 0 || ps + 0 == 0 || pn + 0 == 0) { print "nan"; exit }
    printf "%.2f\n", (wn / ws) / (pn / ps) }'
}
echo
echo "ratio weir/peer (weir tasks/s / peer tasks/s; > 1 means weir is faster)"
if have_peer make; then
  echo "  vs make   fan-out $(ratio "$FAN_N" "${RES[weir-fanout]}" "$FAN_N" "${RES[make-fanout]}")" \
       " chain $(ratio "$CHAIN_N" "${RES[weir-chain]}" "$CHAIN_N" "${RES[make-chain]}")"
fi
if have_peer celery && [ -n "${RES[celery-fanout]:-}" ]; then
  echo "  vs celery fan-out $(ratio "$FAN_N" "${RES[weir-fanout]}" "$CELERY_FAN_N" "${RES[celery-fanout]}")" \
       " chain $(ratio "$CHAIN_N" "${RES[weir-chain]}" "$CHAIN_N" "${RES[celery-chain]:-0}")" \
       " (sequential $(ratio "$CHAIN_N" "${RES[weir-chain]}" "$CHAIN_N" "${RES[celery-sequential]:-0}"))"
fi
echo
echo "design targets: fan-out >= 10000 tasks/s, chain >= 5000 tasks/s (weir)"
load_now
