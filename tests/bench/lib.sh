# shellcheck shell=bash
# Helpers shared by the benchmark scripts in tests/bench (sourced, not run).
# Measurements only: nothing here asserts on time.

# The repository root (tests/bench/..), absolute.
BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# WEIR=/path/to/weir measures another build (e.g. one made from a clean
# checkout while the working tree's build/ is being rebuilt).
WEIR=${WEIR:-$BENCH_ROOT/build/weir}
BENCH_TMP=""
BENCH_PGIDS=()   # process groups started with setsid (killed on exit)
BENCH_PIDS=()    # plain background pids (killed on exit)

bench_cleanup() {
  local p i
  for p in "${BENCH_PGIDS[@]}"; do
    kill -TERM -- "-$p" 2>/dev/null || true
  done
  for p in "${BENCH_PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  # give them up to 5 s to exit, then SIGKILL what is left
  for i in $(seq 1 50); do
    local alive=0
    for p in "${BENCH_PGIDS[@]}" "${BENCH_PIDS[@]}"; do
      if kill -0 "$p" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
    : "$i"
  done
  for p in "${BENCH_PGIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  for p in "${BENCH_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ]; then rm -rf "$BENCH_TMP"; fi
}

# Common start: checks the build, makes the temp dir, installs the trap.
bench_init() {
  if [ ! -x "$WEIR" ]; then
    echo "bench: $WEIR not found; run: bash scripts/build.sh" >&2
    exit 2
  fi
  BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Install Debian packages that are missing (peers only), guarded by dpkg.
bench_ensure_pkgs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "bench: installing ${missing[*]}" >&2
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    $sudo apt-get update -q >&2 || return 1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2
}

# Median of the numbers on stdin (one per line); mean of the two middle
# values when the count is even. Prints "nan" for no input.
median() {
  sort -g | awk '{ v[NR] = $1 }
    END {
      if (NR == 0) { print "nan"; exit }
      if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2]
      else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

now_ns() { date +%s%N; }

# div A B [DIGITS]: A / B as a decimal (awk), "nan" when B is 0 or not a number.
div() {
  awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN {
    if (b + 0 == 0) { print "nan"; exit }
    printf "%.*f\n", d, a / b }'
}

# The machine, for the record.
machine_info() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  echo "date:    $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "machine: nproc=$(nproc), CPU: ${cpu:-unknown}, $(uname -sr)," \
       "RAM $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min load average at start)"
  echo "weir:    $WEIR: $("$WEIR" version 2>/dev/null || echo '?')" \
       "(repo HEAD $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
}

# The load average now (other processes on the machine skew the numbers).
load_now() { echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min)"; }

# A free TCP port on 127.0.0.1 (bounded search from a random start).
free_port() {
  local port i
  for i in $(seq 1 200); do
    port=$(( 20000 + (RANDOM * 7 + i) % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}
