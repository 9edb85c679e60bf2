#!/usr/bin/env bash
# README command 1: install, build, and run the quickstart pipeline on the
# embedded defaults (SQLite metadata in examples/quickstart/.weir, local
# files). Builds only the weir binary (no tests, no benchmarks); the
# package installation and build output go to build/quickstart.log, and
# only what a new user needs is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
LOG="$PWD/build/quickstart.log"
: >"$LOG"
step() {
  printf '%s... ' "$1"
  shift
  if "$@" >>"$LOG" 2>&1; then
    echo "done"
  else
    echo "failed; the full log is $LOG:"
    tail -n 20 "$LOG"
    exit 1
  fi
}
step "installing packages" bash scripts/install-deps.sh
step "configuring" cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
step "building weir" cmake --build build --target weir -j"$(nproc)"
WEIR="$PWD/build/weir"
cd examples/quickstart
export WEIR_HOME="$PWD/.weir"
"$WEIR" validate pipeline.lua
"$WEIR" run pipeline.lua
echo
echo "results:"
echo "  SQLite table orders:        examples/quickstart/out/quickstart.db"
echo "  revenue by country (JSONL): examples/quickstart/out/revenue_by_country.jsonl"
echo "  rejected rows:              examples/quickstart/out/bad_rows.jsonl"
echo "  run history:                cd examples/quickstart && $WEIR runs"
echo "  build log:                  build/quickstart.log"
