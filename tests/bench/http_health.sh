#!/usr/bin/env bash
# http_health.sh - GET /health of the HTTP primitive (runtime/http.c:
# answered in libmicrohttpd's thread, never by Lua) next to nginx serving
# a 15-byte static file on the same machine in the same run: wrk, 2
# threads, 64 connections, DURATION (10 s) per run, RUNS (3) runs each,
# alternating. Prints each run's requests/s and p99 latency, the medians
# and weir/nginx ratios. A measurement, never an assertion; run by hand
# only (installs wrk and nginx with apt-get if missing).
#
# usage: bash tests/bench/http_health.sh   (after bash scripts/build.sh)
# env:   RUNS (3)  DURATION (10s)  THREADS (weir's libmicrohttpd threads, 1 as in weir serve)
set -euo pipefail
# shellcheck source=tests/bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
bench_init
bench_ensure_pkgs wrk nginx

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-1}
T=$BENCH_TMP

echo "== http_health: GET /health, wrk -t2 -c64 -d$DURATION, $RUNS runs each"
machine_info
echo "wrk: $(wrk --version 2>&1 | head -1)"
echo "nginx: $(nginx -v 2>&1)"

# weir: a server with no routes; its Lua loop only waits (/health never
# reaches it)
cat >"$T/serve.lua" <<LUA
local srv = assert(require("weir.http").new({ port = 0, threads = $THREADS,
                                              max_connections = 4096,
                                              max_per_address = 4096 }))
local f = io.open("$T/weir.port", "w"); f:write(srv:port()); f:close()
while true do
  srv:wait(1000)
  local r = srv:next()
  while r do srv:respond(r.id, 404, nil, ""); r = srv:next() end
end
LUA
"$WEIR" script "$T/serve.lua" >"$T/weir.log" 2>&1 &
BENCH_PIDS+=($!)

# nginx: 2 workers (the machine's cores as wrk's peer), a static file
mkdir -p "$T/www" "$T/nginx"
printf '{"status":"ok"}' >"$T/www/health"
NGINX_PORT=$(free_port)
cat >"$T/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $T/nginx;
  proxy_temp_path $T/nginx;
  fastcgi_temp_path $T/nginx;
  uwsgi_temp_path $T/nginx;
  scgi_temp_path $T/nginx;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location = /health { root $T/www; default_type application/json; }
  }
}
CONF
nginx -c "$T/nginx/nginx.conf" -p "$T/nginx" >/dev/null 2>&1 &
BENCH_PIDS+=($!)

for _ in $(seq 1 100); do [ -s "$T/weir.port" ] && break; sleep 0.05; done
WEIR_URL="http://127.0.0.1:$(cat "$T/weir.port")/health"
NGINX_URL="http://127.0.0.1:$NGINX_PORT/health"
curl -fsS "$WEIR_URL" >/dev/null
for _ in $(seq 1 100); do curl -fsS "$NGINX_URL" >/dev/null 2>&1 && break; sleep 0.05; done

# one wrk run: "REQ_PER_S P99_MS"
measure() {
  wrk -t2 -c64 -d"$DURATION" --latency "$1" >"$T/wrk.out"
  local rps p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$T/wrk.out")
  p99=$(awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
        print v }' "$T/wrk.out")
  echo "$rps $p99"
}

: >"$T/weir.runs"; : >"$T/nginx.runs"
for i in $(seq 1 "$RUNS"); do
  w=$(measure "$WEIR_URL"); echo "run $i weir:  $w (req/s, p99 ms)"; echo "$w" >>"$T/weir.runs"
  n=$(measure "$NGINX_URL"); echo "run $i nginx: $n (req/s, p99 ms)"; echo "$n" >>"$T/nginx.runs"
done

W_RPS=$(cut -d' ' -f1 "$T/weir.runs" | median); W_P99=$(cut -d' ' -f2 "$T/weir.runs" | median)
N_RPS=$(cut -d' ' -f1 "$T/nginx.runs" | median); N_P99=$(cut -d' ' -f2 "$T/nginx.runs" | median)
echo
printf '%-8s %12s %10s\n' "" "req/s" "p99 ms"
printf '%-8s %12s %10s\n' weir "$W_RPS" "$W_P99" nginx "$N_RPS" "$N_P99"
awk -v w="$W_RPS" -v n="$N_RPS" -v wp="$W_P99" -v np="$N_P99" 'BEGIN {
  printf "ratio weir/nginx: throughput %.2fx (target >= 0.5), p99 %.2fx (target <= 2)\n", w / n, wp / np }'
load_now
