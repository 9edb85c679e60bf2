#!/usr/bin/env bash
# sandbox.sh - the cost of one sandboxed task attempt (fresh Lua state,
# trusted modules from embedded bytecode, task closure rebuilt in a new
# sandbox, a no-op run, result encoded, state closed), with the state built
# for each attempt and, as workers do, restored from a snapshot: runs
# build/bench_sandbox (tests/bench/bench_sandbox.c) 3 times and prints the
# median of each statistic over the 3 runs. A measurement, never an
# assertion.
#
# usage: bash tests/bench/sandbox.sh   (after bash scripts/build.sh)
# env:   REPEATS (default 3)  ITER (attempts per run, default 20000)
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
bench_init

REPEATS=${REPEATS:-3}
ITER=${ITER:-20000}
BENCH=${BENCH_SANDBOX:-$(dirname "$WEIR")/bench_sandbox}
T=$BENCH_TMP
if [ ! -x "$BENCH" ]; then
  echo "bench: $BENCH not found; run: bash scripts/build.sh" >&2
  exit 2
fi

echo "== sandbox: $BENCH $ITER, $REPEATS runs"
machine_info

: >"$T/out"
for i in $(seq 1 "$REPEATS"); do
  "$BENCH" "$ITER" | tee -a "$T/out"
  : "$i"
done
# sandbox attempt (built): n=20000 median 61.1 us mean 62.1 us p90 62.9 us p99 85.9 us
# sandbox attempt (restored): n=20000 median 22.4 us ...
stat() {
  grep "($1)" "$T/out" |
    awk -v k="$2" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' | median
}
echo
echo "| statistic (us)  | state built per attempt | snapshot restored (workers) |"
echo "|-----------------|-------------------------|-----------------------------|"
for k in median mean p90 p99; do
  printf '| %-15s | %23s | %27s |\n' "$k" "$(stat built "$k")" "$(stat restored "$k")"
done
echo
echo "design target: one sandbox median <= 100 us"
load_now
