#!/usr/bin/env bash
# README command 2: install, build and run every test: C units, busted
# specs, end-to-end CLI tests (ctest), luacheck, and the whole ctest suite
# again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

echo "== luacheck"
luacheck -q lua tests scripts examples rockspec pipelines

# Real PostgreSQL and Redis for tests/integration (throwaway data, free ports,
# stopped on exit whatever happens).
SVC=$(mktemp -d /tmp/weir-services-XXXXXX)
chmod 755 "$SVC"
trap 'bash scripts/services.sh stop "$SVC"; rm -rf "$SVC"' EXIT
echo "== start PostgreSQL and Redis"
bash scripts/services.sh start "$SVC"
# shellcheck disable=SC1091
. "$SVC/env"

echo "== build (-Werror) and test"
BUILD_DIR=build bash scripts/build.sh -DWEIR_WERROR=ON -DWEIR_SANITIZE=OFF
(cd build && ctest --output-on-failure -j2)

echo "== build with ASan+UBSan and test"
BUILD_DIR=build-asan bash scripts/build.sh -DWEIR_WERROR=ON -DWEIR_SANITIZE=ON
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions="$PWD/tests/lsan.supp"
(cd build-asan && ctest --output-on-failure -j2)
