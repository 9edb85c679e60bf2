#!/usr/bin/env bash
# pg_etl.sh - PostgreSQL benchmarks (issue 3), against a private server that
# scripts/services.sh starts in the temp dir (fsync off, as for tests):
#
# 1. PG->PG: N rows (id bigint, name text, score float8, at timestamptz,
#    ok bool) copied from bsrc into bdst (TRUNCATEd before each run) by a
#    one-task weir pipeline (query -> map: name upper-cased, score doubled ->
#    into append), next to psql COPY TO STDOUT | psql COPY FROM STDIN (text:
#    peer A; binary: peer B; both without the transform), psycopg2 (named
#    cursor, batches of 10,000, the same transform in Python, written with
#    copy_expert or execute_values; tests/bench/pg_psycopg2.py) and pgloader
#    (loading a CSV export of bsrc; the export is not timed).
# 2. CSV->PG: the CSV export (with header) loaded into dst by
#    ctx.csv(...):into(...) and by psql \copy ... CSV HEADER.
# 3. Memory: peak resident memory (VmHWM, polled every 200 ms) of the
#    worker running the PG->PG task for 0 rows, N rows and BIG_N rows.
# 4. Pooling: QUERIES short parameterised queries through the pool vs
#    connecting per query (tests/bench/pg_pool.lua, a trusted script), and the
#    pooled loop inside a task (wall time from the server's clock_timestamp(),
#    the sandbox has no wall clock finer than os.time's second; os.clock is
#    the worker's CPU time).
#
# Each variant's runs are interleaved (run 1 of every variant, then run 2...)
# so load from other processes spreads over all of them. Medians of RUNS.
# Times are measured, never asserted; every load's row count is checked, and
# the transformed rows' content once per variant.
#
# usage: bash tests/bench/pg_etl.sh   (after bash scripts/build.sh)
# env:   RUNS (3)  N (rows, 1000000)  BIG_N (rows of the memory run,
#        10000000; 0 skips it)  QUERIES (pooling, 1000)
#        PEERS ("psycopg2 pgloader": the optional peers; psql always runs;
#        PEERS= runs none of them)
#        WEIR (build/weir)
# Installs python3-psycopg2 and pgloader with apt-get when missing.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
# under /tmp and world-readable: the server runs as postgres, workers as nobody
TMPDIR=/tmp bench_init
chmod 755 "$BENCH_TMP"

RUNS=${RUNS:-3}
N=${N:-1000000}
BIG_N=${BIG_N:-10000000}
QUERIES=${QUERIES:-1000}
PEERS=${PEERS-psycopg2 pgloader}
T=$BENCH_TMP
W=$T/w                     # the pipelines' folder (weir.yaml, CSV file)
PY=/usr/bin/python3        # Debian's, where python3-psycopg2 installs
export WEIR_HOME=$T/home   # one store for all runs (created by the warm-up)

pg_stop() { if [ -d "$T/pg" ]; then bash "$BENCH_ROOT/scripts/services.sh" stop-pg "$T/pg" || true; fi; }
trap 'pg_stop; bench_cleanup' EXIT

has_peer() { case " $PEERS " in *" $1 "*) return 0 ;; esac; return 1; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }'; }

echo "== pg_etl: PostgreSQL loads and pooling, N=$N, BIG_N=$BIG_N, QUERIES=$QUERIES, $RUNS runs each"
machine_info
for c in psql jq pgrep; do
  command -v "$c" >/dev/null || { echo "bench: $c not found (bash scripts/install-deps.sh)" >&2; exit 2; }
done
pkgs=()
has_peer psycopg2 && pkgs+=(python3-psycopg2)
has_peer pgloader && pkgs+=(pgloader)
if [ ${#pkgs[@]} -gt 0 ]; then bench_ensure_pkgs "${pkgs[@]}"; fi
if has_peer psycopg2 && ! "$PY" -c 'import psycopg2' 2>/dev/null; then
  echo "psycopg2: cannot import in $PY; skipped"; PEERS=${PEERS//psycopg2/}
fi
if has_peer pgloader && ! command -v pgloader >/dev/null; then
  echo "pgloader: not installed; skipped"; PEERS=${PEERS//pgloader/}
fi

# (its pg_ctl may report a failed start on a port race before it retries)
bash "$BENCH_ROOT/scripts/services.sh" start-pg "$T/pg" 2>"$T/pg-start.log" \
  || { cat "$T/pg-start.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$T/pg/env"
export WEIR_TEST_PG_URL WEIR_TEST_PG_PORT WEIR_TEST_PG_PASSWORD
URL=$WEIR_TEST_PG_URL
q() { psql "$URL" -X -q -v ON_ERROR_STOP=1 "$@"; }
qv() { psql "$URL" -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
echo "server:  $(qv 'SHOW server_version'), fsync=$(qv 'SHOW fsync'), shared_buffers=$(qv 'SHOW shared_buffers'), on 127.0.0.1 (TCP; every client uses it)"
echo "psql:    $(psql --version)"
has_peer psycopg2 && echo "psycopg2: $("$PY" -c 'import psycopg2; print(psycopg2.__version__)') ($PY $("$PY" -c 'import sys; print(sys.version.split()[0])'))"
has_peer pgloader && echo "pgloader: $(pgloader --version 2>&1 | head -1)"

# the data: names of 41 characters, doubles with 17 significant digits
gen_sql() { # gen_sql TABLE ROWS
  echo "SET client_min_messages = warning; DROP TABLE IF EXISTS $1;
CREATE TABLE $1 (id bigint, name text, score float8, at timestamptz, ok bool);
INSERT INTO $1 SELECT g, 'customer ' || md5(g::text), (g % 100000)::float8 / 7,
  TIMESTAMPTZ '2026-01-01' + g * interval '1 s', g % 3 = 0 FROM generate_series(1, $2) g;
VACUUM ANALYZE $1;"
}
t0=$(now_ns)
gen_sql bsrc "$N" | q
q -c "CREATE TABLE bdst (LIKE bsrc); CREATE TABLE dst (LIKE bsrc);"
echo "data:    bsrc $N rows, $(qv "SELECT pg_size_pretty(pg_table_size('bsrc'))") (generated in $(secs "$t0" "$(now_ns)") s)"

mkdir -p "$W" "$T/pgloader"
chmod 755 "$W"
q -c "\\copy bsrc TO '$W/bsrc.csv' CSV HEADER"
chmod 644 "$W/bsrc.csv"
echo "csv:     bsrc.csv $(du -h "$W/bsrc.csv" | cut -f1), with header"

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
etl_pipeline() { # etl_pipeline NAME SOURCE_TABLE [MAP]
  local map=${3-':map(function(r) r.name = r.name:upper(); r.score = r.score * 2; return r end)'}
  cat <<EOF
return pipeline {
  name = "$1",
  defaults = { timeout = "30m", memory = "256MB" },
  tasks = {
    copy = task {
      run = function(ctx)
        return ctx.source("wh"):query("SELECT * FROM $2")
          $map
          :into(ctx.sink("wh"), "bdst", { mode = "append" })
      end,
    },
  },
}
EOF
}
etl_pipeline pg_etl bsrc >"$W/p.lua"
etl_pipeline pg_etl_big bbig >"$W/p_big.lua"
# diagnostic: the same copy without the Lua transform
etl_pipeline pg_etl_nomap bsrc "" >"$W/p_nomap.lua"
cat >"$W/csv.lua" <<'EOF'
return pipeline {
  name = "pg_csv",
  defaults = { timeout = "30m", memory = "256MB" },
  tasks = {
    load = task {
      run = function(ctx)
        -- no types: every value a string, converted by the PostgreSQL codec
        return ctx.csv("bsrc.csv"):into(ctx.sink("wh"), "dst", { mode = "append" })
      end,
    },
  },
}
EOF
# warm-up (creates the store) and the 0-row memory baseline: one query,
# then the task waits so the 200 ms poller sees its worker
cat >"$W/idle.lua" <<'EOF'
return pipeline {
  name = "pg_idle",
  defaults = { timeout = "5m", memory = "256MB" },
  tasks = {
    idle = task {
      run = function(ctx) return ctx.source("wh"):rows("SELECT 1 AS one, pg_sleep(0.8)")[1].one end,
    },
  },
}
EOF
cat >"$W/pool.lua" <<EOF
return pipeline {
  name = "pg_pool_task",
  defaults = { timeout = "30m", memory = "256MB" },
  tasks = {
    loop = task {
      run = function(ctx)
        local db = ctx.source("wh")
        -- the server's clock: the sandbox's os.time counts whole seconds
        local function now_ms()
          return tonumber(db:rows("SELECT extract(epoch FROM clock_timestamp()) * 1000 AS ms")[1].ms)
        end
        now_ms()   -- opens the pooled connection (not timed)
        local c0, t0 = os.clock(), now_ms()
        for i = 1, $QUERIES do
          local v = db:rows("SELECT \$1::int + 1 AS v", { i })[1].v
          if v ~= i + 1 then ctx.fail("query " .. i .. " returned " .. tostring(v)) end
        end
        local t1, c1 = now_ms(), os.clock()
        return { queries = $QUERIES, wall_ms = t1 - t0, cpu_ms = (c1 - c0) * 1000 }
      end,
    },
  },
}
EOF
chmod 644 "$W"/*.lua "$W/weir.yaml"

# run_weir FILE: the whole `weir run` command; prints the wall seconds
run_weir() {
  local a b
  a=$(now_ns)
  (cd "$W" && "$WEIR" run "$1" --quiet --workers 1) >>"$T/cmd.log" 2>&1 \
    || { echo "bench: weir run $1 failed" >&2; tail -20 "$T/cmd.log" >&2; return 1; }
  b=$(now_ns)
  secs "$a" "$b"
}
# The last run's show --json.
last_show() { "$WEIR" show last --json; }
# The last run's task duration in seconds (the attempt's own start to end).
last_task_secs() {
  last_show | jq -r '.tasks[0] | def ms: (.[0:19] + "Z" | fromdateiso8601) * 1000 + (.[20:23] | tonumber); ((.finished_at | ms) - (.started_at | ms)) / 1000' | awk '{ printf "%.6f\n", $1 }'
}

# mem_run FILE OUT: runs the pipeline in the background and polls every
# 200 ms the VmHWM of its worker processes (cmdline "__worker ... --parent
# PID"); writes "<max VmHWM kB> <wall s> <Lua heap peak bytes from the store>"
# to OUT. Not in a subshell: the cleanup trap must know the pid.
mem_run() {
  local a b pid max=0 kb w k v _
  a=$(now_ns)
  # env -C execs weir: $! is the supervisor, named by its workers' --parent
  env -C "$W" "$WEIR" run "$1" --quiet --workers 1 >>"$T/cmd.log" 2>&1 &
  pid=$!
  BENCH_PIDS=("$pid")
  while kill -0 "$pid" 2>/dev/null; do
    for w in $(pgrep -f -- "__worker .*--parent $pid( |\$)" || true); do
      kb=0
      while read -r k v _; do
        if [ "$k" = "VmHWM:" ]; then kb=$v; fi
      done 2>/dev/null <"/proc/$w/status" || true
      if [ "$kb" -gt "$max" ]; then max=$kb; fi
    done
    sleep 0.2
  done
  wait "$pid" || { echo "bench: weir run $1 failed" >&2; tail -20 "$T/cmd.log" >&2; exit 1; }
  # shellcheck disable=SC2034  # read by bench_cleanup (lib.sh)
  BENCH_PIDS=()
  b=$(now_ns)
  echo "$max $(secs "$a" "$b") $(last_show | jq -r '.tasks[0].attempt_list[-1].mem_peak')" >"$2"
}

count_is() { # count_is TABLE ROWS WHO
  local got
  got=$(qv "SELECT count(*) FROM $1")
  if [ "$got" != "$2" ]; then echo "bench: $3 loaded $got of $2 rows into $1" >&2; exit 1; fi
}
# the transformed copy equals bsrc with the transform applied (checked once per variant)
check_etl() {
  local bad
  bad=$(qv "SELECT count(*) FROM (SELECT id, upper(name), score * 2, at, ok FROM bsrc
            EXCEPT ALL SELECT * FROM bdst) x")
  if [ "$bad" != 0 ]; then echo "bench: $1: $bad rows of bdst differ from the transform of bsrc" >&2; exit 1; fi
}
check_csv() {
  local bad
  bad=$(qv "SELECT count(*) FROM (SELECT * FROM bsrc EXCEPT ALL SELECT * FROM dst) x")
  if [ "$bad" != 0 ]; then echo "bench: $1: $bad rows of dst differ from bsrc" >&2; exit 1; fi
}

cat >"$T/pgloader/load.pgl" <<EOF
LOAD CSV
  FROM '$W/bsrc.csv' (id, name, score, at, ok)
  INTO postgresql://weir@127.0.0.1:$WEIR_TEST_PG_PORT/postgres?sslmode=disable&tablename=bdst
    (id, name, score, at, ok)
  WITH skip header = 1, fields terminated by ',', fields optionally enclosed by '"'
;
EOF

echo
echo "warm-up: $(run_weir idle.lua) s (weir run of a one-query task; creates the store)"

# -- 1 and 2: loads -----------------------------------------------------------
ETL=(psql_text psql_binary weir weir_nomap)
has_peer psycopg2 && ETL+=(psycopg2_copy psycopg2_values)
has_peer pgloader && ETL+=(pgloader)
CSV=(psql_csv weir_csv)
for v in "${ETL[@]}" "${CSV[@]}" weir-task weir_csv-task; do : >"$T/$v.runs"; done

time_cmd() { # time_cmd CMD...: wall seconds of the command (output to a log)
  local a b
  a=$(now_ns)
  "$@" >>"$T/cmd.log" 2>&1 || { echo "bench: failed: $*" >&2; tail -20 "$T/cmd.log" >&2; exit 1; }
  b=$(now_ns)
  secs "$a" "$b"
}
psql_copy() { # psql_copy FORMAT_OPTION
  psql "$URL" -X -v ON_ERROR_STOP=1 -c "COPY bsrc TO STDOUT $1" \
    | psql "$URL" -X -v ON_ERROR_STOP=1 -c "COPY bdst FROM STDIN $1"
}

for i in $(seq 1 "$RUNS"); do
  for v in "${ETL[@]}"; do
    q -c "TRUNCATE bdst"
    case $v in
      psql_text) s=$(time_cmd psql_copy "") ;;
      psql_binary) s=$(time_cmd psql_copy "(FORMAT binary)") ;;
      weir)
        s=$(run_weir p.lua)
        last_task_secs >>"$T/weir-task.runs" ;;
      weir_nomap) s=$(run_weir p_nomap.lua) ;;
      psycopg2_copy) s=$(time_cmd "$PY" "$BENCH_ROOT/tests/bench/pg_psycopg2.py" copy bsrc bdst) ;;
      psycopg2_values) s=$(time_cmd "$PY" "$BENCH_ROOT/tests/bench/pg_psycopg2.py" values bsrc bdst) ;;
      pgloader)
        s=$(time_cmd env PGPASSWORD="$WEIR_TEST_PG_PASSWORD" pgloader --root-dir "$T/pgloader" \
              --no-ssl-cert-verification "$T/pgloader/load.pgl") ;;
    esac
    echo "$s" >>"$T/$v.runs"
    count_is bdst "$N" "$v"
    if [ "$i" = 1 ]; then
      case $v in weir | psycopg2_*) check_etl "$v" ;; esac
    fi
  done
  for v in "${CSV[@]}"; do
    q -c "TRUNCATE dst"
    case $v in
      psql_csv) s=$(time_cmd psql "$URL" -X -v ON_ERROR_STOP=1 -c "\\copy dst FROM '$W/bsrc.csv' CSV HEADER") ;;
      weir_csv)
        s=$(run_weir csv.lua)
        last_task_secs >>"$T/weir_csv-task.runs" ;;
    esac
    echo "$s" >>"$T/$v.runs"
    count_is dst "$N" "$v"
    if [ "$i" = 1 ]; then check_csv "$v"; fi
  done
done

declare -A MED
echo
echo "raw runs (wall seconds; '-task' = the task's own start to end from weir show --json):"
for v in "${ETL[@]}" weir-task "${CSV[@]}" weir_csv-task; do
  MED[$v]=$(median <"$T/$v.runs")
  printf '  %-16s %s\n' "$v" "$(paste -sd' ' "$T/$v.runs")"
done

label() {
  case $1 in
    psql_text) echo "peer A: psql COPY text | psql COPY" ;;
    psql_binary) echo "peer B: psql COPY binary | psql COPY" ;;
    weir) echo "weir run (whole command)" ;;
    weir-task) echo "weir task (own duration)" ;;
    weir_nomap) echo "weir run, no map (diagnostic)" ;;
    psycopg2_copy) echo "psycopg2 named cursor + copy_expert" ;;
    psycopg2_values) echo "psycopg2 named cursor + execute_values" ;;
    pgloader) echo "pgloader (CSV export -> bdst)" ;;
    psql_csv) echo "psql \\copy CSV HEADER" ;;
    weir_csv) echo "weir run (whole command)" ;;
    weir_csv-task) echo "weir task (own duration)" ;;
  esac
}
echo
echo "### 1. PG -> PG, $N rows, median of $RUNS"
echo
echo "| variant                                | median s | rows/s    | ratio to peer A |"
echo "|----------------------------------------|----------|-----------|-----------------|"
for v in psql_text psql_binary weir weir-task "${ETL[@]:3}"; do
  printf '| %-38s | %8s | %9s | %15s |\n' "$(label "$v")" "${MED[$v]}" \
    "$(div "$N" "${MED[$v]}" 0)" "$(div "${MED[psql_text]}" "${MED[$v]}")"
done
echo
echo "ratio = variant rows/s / peer A rows/s. weir and psycopg2 upper-case name and double"
echo "score on the way; the psql pipes and 'no map' copy as is; pgloader loads the CSV export"
echo "(the export is not timed)."
echo "target: weir / peer A >= 0.7: run $(div "${MED[psql_text]}" "${MED[weir]}")," \
     "task $(div "${MED[psql_text]}" "${MED[weir-task]}")"

echo
echo "### 2. CSV -> PG, $N rows ($(du -h "$W/bsrc.csv" | cut -f1) with header), median of $RUNS"
echo
echo "| variant                                | median s | rows/s    | ratio to psql \\copy |"
echo "|----------------------------------------|----------|-----------|---------------------|"
for v in psql_csv weir_csv weir_csv-task; do
  printf '| %-38s | %8s | %9s | %19s |\n' "$(label "$v")" "${MED[$v]}" \
    "$(div "$N" "${MED[$v]}" 0)" "$(div "${MED[psql_csv]}" "${MED[$v]}")"
done
if has_peer pgloader; then
  printf '| %-38s | %8s | %9s | %19s |\n' "pgloader (runs of table 1)" "${MED[pgloader]}" \
    "$(div "$N" "${MED[pgloader]}" 0)" "$(div "${MED[psql_csv]}" "${MED[pgloader]}")"
fi
echo
echo "target: weir / psql \\copy >= 0.9: run $(div "${MED[psql_csv]}" "${MED[weir_csv]}")," \
     "task $(div "${MED[psql_csv]}" "${MED[weir_csv-task]}")"

# -- 3: memory ------------------------------------------------------------------
echo
echo "### 3. worker peak memory, PG -> PG task (one run each)"
echo
MEM_ROWS=("0 idle.lua" "$N p.lua")
if [ "$BIG_N" -gt 0 ]; then
  t0=$(now_ns)
  gen_sql bbig "$BIG_N" | q
  echo "(bbig: $BIG_N rows, $(qv "SELECT pg_size_pretty(pg_table_size('bbig'))"), generated in $(secs "$t0" "$(now_ns)") s)"
  echo
  MEM_ROWS+=("$BIG_N p_big.lua")
fi
echo "| rows     | worker VmHWM | Lua heap peak | wall s | rows/s    |"
echo "|----------|--------------|---------------|--------|-----------|"
for m in "${MEM_ROWS[@]}"; do
  read -r rows file <<<"$m"
  q -c "TRUNCATE bdst"
  mem_run "$file" "$T/mem.out"
  read -r kb wall lua <"$T/mem.out"
  rate=-
  if [ "$rows" != 0 ]; then rate=$(div "$rows" "$wall" 0); fi
  count_is bdst "$rows" "weir ($file)"
  hwm="$(div "$kb" 1024 1) MB"
  if [ "$kb" = 0 ]; then hwm="n/a"; fi   # the run ended before a poll saw its worker
  printf '| %8s | %12s | %10.1f MB | %6.2f | %9s |\n' "$rows" "$hwm" \
    "$(div "$lua" 1048576 1)" "$wall" "$rate"
done
[ "$BIG_N" -gt 0 ] && q -c "DROP TABLE bbig; TRUNCATE bdst"
echo
echo "VmHWM: the worker's peak resident set (binary, libraries, LuaJIT, libpq, one batch),"
echo "polled every 200 ms; 0 rows = a task that runs one query. Lua heap peak: the attempt's"
echo "mem_peak in the store. wall s: within the 200 ms polling step (the times of tables 1"
echo "and 2 are the exact ones). target: < 64 MB, constant in the row count"

# -- 4: pooling -------------------------------------------------------------------
echo
: >"$T/pooled.runs"; : >"$T/connect.runs"; : >"$T/intask.runs"; : >"$T/intask-cpu.runs"
for i in $(seq 1 "$RUNS"); do
  out=$("$WEIR" script "$BENCH_ROOT/tests/bench/pg_pool.lua" "$QUERIES")
  awk '$1 == "pooled" { print $3 }' <<<"$out" >>"$T/pooled.runs"
  awk '$1 == "connect" { print $3 }' <<<"$out" >>"$T/connect.runs"
  run_weir pool.lua >/dev/null
  o=$(last_show | jq -c '.tasks[0].output')
  jq -r '.wall_ms' <<<"$o" | awk '{ printf "%.3f\n", $1 }' >>"$T/intask.runs"
  jq -r '.cpu_ms' <<<"$o" | awk '{ printf "%.3f\n", $1 }' >>"$T/intask-cpu.runs"
done
echo "raw runs (ms for $QUERIES queries):"
for v in pooled connect intask intask-cpu; do
  MED[$v]=$(median <"$T/$v.runs")
  printf '  %-12s %s\n' "$v" "$(paste -sd' ' "$T/$v.runs")"
done
echo
echo "### 4. pooling: $QUERIES x SELECT \$1::int + 1, median of $RUNS"
echo
echo "| variant                                   | median ms | queries/s | ms/query |"
echo "|-------------------------------------------|-----------|-----------|----------|"
for v in pooled connect intask; do
  case $v in
    pooled) l="pooled (weir script, h:exec)" ;;
    connect) l="connect per query (weir script, h:exec)" ;;
    intask) l="pooled, inside a task (db:rows)" ;;
  esac
  printf '| %-41s | %9s | %9s | %8s |\n' "$l" "${MED[$v]}" \
    "$(div "$(( QUERIES * 1000 ))" "${MED[$v]}" 0)" "$(div "${MED[$v]}" "$QUERIES" 3)"
done
echo
echo "ratio pooled / connect per query: $(div "${MED[connect]}" "${MED[pooled]}" 1)x (target >= 20x);"
echo "in a task: $(div "${MED[connect]}" "${MED[intask]}" 1)x. The in-task wall time comes from the"
echo "server's clock_timestamp(); the worker's CPU time (os.clock) in that loop: ${MED[intask-cpu]} ms."
echo "A new connection costs TCP connect, startup and SCRAM-SHA-256 authentication (services.sh)."
echo
load_now
