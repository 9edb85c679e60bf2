#!/usr/bin/env bash
# README command 1: install, build, and run the quickstart pipeline on the
# embedded defaults (SQLite metadata in examples/quickstart/.weir, local
# files). Prints where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
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
