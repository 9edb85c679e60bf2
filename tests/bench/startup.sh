#!/usr/bin/env bash
# startup.sh - (1) `weir run` of a one-task pipeline, process start to
# exit, median of 30 runs (hyperfine when installed, else a date loop),
# with a fresh WEIR_HOME per run (store created and migrated) and with a
# warm one (store already there); (2) resident memory while a run waits:
# VmRSS of the supervisor (the `weir run` process) and of its
# `weir __worker` children, read from /proc while the only task
# busy-waits 2 s. A measurement, never an assertion.
#
# usage: bash tests/bench/startup.sh   (after bash scripts/build.sh)
# env:   N (runs, default 30)  RSS_RUNS (default 5)  NO_HYPERFINE=1
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
bench_init

N=${N:-30}
RSS_RUNS=${RSS_RUNS:-5}
T=$BENCH_TMP

echo "== startup: one-task weir run x $N, idle RSS x $RSS_RUNS"
machine_info

cat >"$T/one.lua" <<'EOF'
return pipeline {
  name = "one",
  tasks = { only = task { run = function() return nil end } },
}
EOF
cat >"$T/idle.lua" <<'EOF'
return pipeline {
  name = "idle",
  defaults = { timeout = "1m" },
  tasks = {
    wait = task {
      run = function()
        local t0 = os.clock()
        while os.clock() - t0 < 2 do end
        return nil
      end,
    },
  },
}
EOF

cd "$T"
CMD=("$WEIR" run "$T/one.lua" --quiet --workers 2)

# the command must succeed before it is timed
WEIR_HOME=$T/check "${CMD[@]}"
rm -rf "$T/check"

declare -A MED
if command -v hyperfine >/dev/null && [ -z "${NO_HYPERFINE:-}" ]; then
  tool="hyperfine $(hyperfine --version | awk '{ print $2 }'), --shell=none, --warmup 3"
  WEIR_HOME=$T/fresh hyperfine -N --warmup 3 --runs "$N" --prepare "rm -rf $T/fresh" \
    --export-csv "$T/fresh.csv" --style basic "${CMD[*]}" >"$T/fresh.txt"
  WEIR_HOME=$T/warm hyperfine -N --warmup 3 --runs "$N" \
    --export-csv "$T/warm.csv" --style basic "${CMD[*]}" >"$T/warm.txt"
  for k in fresh warm; do
    # command,mean,stddev,median,user,system,min,max (seconds)
    MED[$k]=$(awk -F, 'NR == 2 { printf "%.2f", $4 * 1000 }' "$T/$k.csv")
    MED[$k-min]=$(awk -F, 'NR == 2 { printf "%.2f", $7 * 1000 }' "$T/$k.csv")
    MED[$k-max]=$(awk -F, 'NR == 2 { printf "%.2f", $8 * 1000 }' "$T/$k.csv")
    MED[$k-user]=$(awk -F, 'NR == 2 { printf "%.2f", $5 * 1000 }' "$T/$k.csv")
    MED[$k-sys]=$(awk -F, 'NR == 2 { printf "%.2f", $6 * 1000 }' "$T/$k.csv")
  done
else
  tool="bash loop with date +%s%N (hyperfine not installed), 3 warm-up runs"
  for k in fresh warm; do
    : >"$T/$k.ms"
    for i in $(seq 1 $((N + 3))); do
      if [ "$k" = fresh ]; then rm -rf "$T/fresh"; fi
      t0=$(now_ns)
      WEIR_HOME=$T/$k "${CMD[@]}"
      t1=$(now_ns)
      if [ "$i" -gt 3 ]; then
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e6 }' >>"$T/$k.ms"
      fi
    done
    MED[$k]=$(median <"$T/$k.ms")
    MED[$k-min]=$(sort -g "$T/$k.ms" | head -1)
    MED[$k-max]=$(sort -g "$T/$k.ms" | tail -1)
    MED[$k-user]=-; MED[$k-sys]=-
  done
fi

# ---------------------------------------------------------------- RSS
kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
children() { # pids whose parent is $1
  local f st ppid
  if [ -r "/proc/$1/task/$1/children" ]; then
    tr ' ' '\n' <"/proc/$1/task/$1/children" | grep . || true
    return 0
  fi
  for f in /proc/[0-9]*/stat; do
    st=$(cat "$f" 2>/dev/null) || continue
    st=${st##*) }              # after "pid (comm) ": state ppid ...
    read -r _ ppid _ <<<"$st"
    if [ "$ppid" = "$1" ]; then f=${f#/proc/}; echo "${f%/stat}"; fi
  done
}
: >"$T/sup.rss"; : >"$T/sup.anon"; : >"$T/busy.rss"; : >"$T/idle.rss"
: >"$T/busy.anon"; : >"$T/idle.anon"
for i in $(seq 1 "$RSS_RUNS"); do
  (WEIR_HOME=$T/rss-$i exec "$WEIR" run "$T/idle.lua" --quiet --workers 2) &
  pid=$!
  BENCH_PIDS+=("$pid")
  sleep 1
  sup=$(kb "$pid" VmRSS); sup_anon=$(kb "$pid" RssAnon)
  busy=""; busy_ticks=-1; idle=""
  for c in $(children "$pid"); do
    ticks=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$c/stat" 2>/dev/null || echo 0)
    if [ "$ticks" -gt "$busy_ticks" ]; then
      [ -n "$busy" ] && idle=$busy
      busy=$c; busy_ticks=$ticks
    else
      idle=$c
    fi
  done
  echo "$sup" >>"$T/sup.rss"; echo "$sup_anon" >>"$T/sup.anon"
  if [ -n "$busy" ]; then
    kb "$busy" VmRSS >>"$T/busy.rss"; kb "$busy" RssAnon >>"$T/busy.anon"
  fi
  if [ -n "$idle" ]; then
    kb "$idle" VmRSS >>"$T/idle.rss"; kb "$idle" RssAnon >>"$T/idle.anon"
  fi
  # bounded wait: the task takes 2 s of CPU
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  wait "$pid" || echo "idle run $i exited with $?" >&2
done
mb() { median <"$1" | awk '{ if ($1 == "nan") print "nan"; else printf "%.1f", $1 / 1024 }'; }

echo
echo "one-task \`weir run --quiet --workers 2\`, process start to exit ($tool)"
echo
echo "| store            | median ms | min ms | max ms | user ms | sys ms |"
echo "|------------------|-----------|--------|--------|---------|--------|"
for k in fresh warm; do
  printf '| %-16s | %9s | %6s | %6s | %7s | %6s |\n' \
    "$([ "$k" = fresh ] && echo 'fresh WEIR_HOME' || echo 'existing store')" \
    "${MED[$k]}" "${MED[$k-min]}" "${MED[$k-max]}" "${MED[$k-user]}" "${MED[$k-sys]}"
done
echo
echo "resident memory while the only task busy-waits (median of $RSS_RUNS runs, read at ~1 s)"
echo
echo "| process                          | VmRSS MB | RssAnon MB |"
echo "|----------------------------------|----------|------------|"
printf '| %-32s | %8s | %10s |\n' "supervisor (weir run)" "$(mb "$T/sup.rss")" "$(mb "$T/sup.anon")"
printf '| %-32s | %8s | %10s |\n' "worker running the task" "$(mb "$T/busy.rss")" "$(mb "$T/busy.anon")"
printf '| %-32s | %8s | %10s |\n' "idle worker" "$(mb "$T/idle.rss")" "$(mb "$T/idle.anon")"
echo
echo "design targets: one-task weir run <= 30 ms; idle supervisor RSS <= 15 MB"
load_now
