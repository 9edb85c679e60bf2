#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis servers on 127.0.0.1 for tests, benchmarks
# and examples: a fresh data folder, a free port, a random password, run as
# an unprivileged user when called as root.
#
#   services.sh start DIR        both servers; writes DIR/env (export lines)
#   services.sh stop DIR         stop what start started
#   services.sh start-pg DIR     PostgreSQL only (DIR/env gets the PG lines)
#   services.sh restart-pg DIR   stop and start it again on the same port
#   services.sh stop-pg DIR
#   services.sh start-redis DIR  Redis only
#   services.sh stop-redis DIR
#
# DIR/env defines WEIR_TEST_PG_URL (postgres://weir:PASSWORD@127.0.0.1:PORT/
# postgres), WEIR_TEST_PG_PORT, WEIR_TEST_PG_PASSWORD, WEIR_TEST_PG_DATA,
# WEIR_TEST_PG_BIN, WEIR_TEST_REDIS_URL (redis://:PASSWORD@127.0.0.1:PORT/0),
# WEIR_TEST_REDIS_PORT and WEIR_TEST_REDIS_PASSWORD.
set -euo pipefail

cmd=${1:?usage: services.sh start|stop|start-pg|restart-pg|stop-pg|start-redis|stop-redis DIR}
dir=${2:?usage: services.sh $cmd DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# The user servers run as: themselves unless we are root.
run_as() {
  local user=$1; shift
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}
server_user() {
  if [ "$(id -u)" -ne 0 ]; then id -un; return; fi
  if id -u "$1" >/dev/null 2>&1; then echo "$1"; else echo nobody; fi
}

# A TCP port nobody listens on (probed; the start retries on a race).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 30000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "services.sh: no free port found" >&2
  return 1
}
secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
set_env() { # set_env KEY VALUE: replace KEY's line in DIR/env
  touch "$dir/env"
  grep -v "^export $1=" "$dir/env" > "$dir/env.tmp" || true
  printf 'export %s=%q\n' "$1" "$2" >> "$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
}
pg_bin() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1; }

start_pg() {
  local bin user pw port data
  bin=$(pg_bin)
  [ -x "$bin/initdb" ] || { echo "services.sh: PostgreSQL server not installed (scripts/install-deps.sh)" >&2; return 1; }
  user=$(server_user postgres)
  data="$dir/pg"
  pw=$(secret)
  rm -rf "$data"; mkdir -p "$data"
  printf '%s\n' "$pw" > "$dir/pg.pw"
  chmod 700 "$data"; chmod 600 "$dir/pg.pw"
  if [ "$(id -u)" -eq 0 ]; then chown "$user" "$data" "$dir/pg.pw" "$dir"; fi
  run_as "$user" "$bin/initdb" -D "$data" -U weir --pwfile="$dir/pg.pw" -A scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/pg.initdb.log" 2>&1 \
    || { cat "$dir/pg.initdb.log" >&2; return 1; }
  rm -f "$dir/pg.pw"
  cat >> "$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 128MB
max_wal_size = 2GB
log_min_messages = warning
EOF
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    if run_as "$user" "$bin/pg_ctl" -D "$data" -l "$dir/pg.log" -o "-p $port" -w -t 30 start >/dev/null; then
      set_env WEIR_TEST_PG_URL "postgres://weir:$pw@127.0.0.1:$port/postgres"
      set_env WEIR_TEST_PG_PORT "$port"
      set_env WEIR_TEST_PG_PASSWORD "$pw"
      set_env WEIR_TEST_PG_DATA "$data"
      set_env WEIR_TEST_PG_BIN "$bin"
      echo "$port" > "$dir/pg.port"
      return 0
    fi
  done
  cat "$dir/pg.log" >&2
  return 1
}

pg_ctl() {
  local bin user
  bin=$(pg_bin); user=$(server_user postgres)
  [ -d "$dir/pg" ] || return 0
  run_as "$user" "$bin/pg_ctl" -D "$dir/pg" "$@"
}

start_redis() {
  local user pw port
  command -v redis-server >/dev/null || { echo "services.sh: redis-server not installed (scripts/install-deps.sh)" >&2; return 1; }
  user=$(server_user redis)
  pw=$(secret)
  mkdir -p "$dir/redis"
  if [ "$(id -u)" -eq 0 ]; then chown "$user" "$dir/redis"; fi
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    # the password goes in through a config file, not the command line
    (umask 077; printf 'requirepass %s\n' "$pw" > "$dir/redis/redis.conf")
    if [ "$(id -u)" -eq 0 ]; then chown "$user" "$dir/redis/redis.conf"; fi
    run_as "$user" redis-server "$dir/redis/redis.conf" --port "$port" --bind 127.0.0.1 \
      --dir "$dir/redis" --save "" --appendonly no --daemonize yes \
      --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" || true
    for _ in $(seq 1 50); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        set_env WEIR_TEST_REDIS_URL "redis://:$pw@127.0.0.1:$port/0"
        set_env WEIR_TEST_REDIS_PORT "$port"
        set_env WEIR_TEST_REDIS_PASSWORD "$pw"
        return 0
      fi
      sleep 0.1
    done
  done
  cat "$dir/redis/redis.log" >&2 || true
  return 1
}

stop_redis() {
  local pid
  [ -f "$dir/redis/redis.pid" ] || return 0
  pid=$(cat "$dir/redis/redis.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/redis/redis.pid"
}

case "$cmd" in
  start) start_pg; start_redis ;;
  stop) stop_redis; pg_ctl -m immediate stop >/dev/null 2>&1 || true ;;
  start-pg) start_pg ;;
  restart-pg)
    pg_ctl -m immediate stop >/dev/null 2>&1 || true
    pg_ctl -l "$dir/pg.log" -o "-p $(cat "$dir/pg.port")" -w -t 30 start >/dev/null ;;
  stop-pg) pg_ctl -m immediate stop >/dev/null 2>&1 || true ;;
  start-redis) start_redis ;;
  stop-redis) stop_redis ;;
  *) echo "services.sh: unknown command $cmd" >&2; exit 2 ;;
esac
