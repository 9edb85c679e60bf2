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
#
# Both also speak TLS, with certificates made at start by the openssl CLI
# in DIR/tls: a throwaway CA (ca.crt), the servers' certificate for the
# name "localhost" only (so 127.0.0.1 fails a host name check), a client
# certificate for the PostgreSQL role weir_cert (client.crt, client.key;
# pg_hba lets that role in over TLS with its certificate only), and a
# second CA nothing is signed by (other-ca.crt). PostgreSQL takes TLS on
# its one port; Redis on WEIR_TEST_REDISS_PORT. DIR/env adds
# WEIR_TEST_TLS_DIR, WEIR_TEST_PG_CERT_USER and WEIR_TEST_REDISS_PORT.
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
# The throwaway CA and certificates of DIR/tls (once per DIR).
make_certs() {
  local t="$dir/tls"
  [ -f "$t/client.key" ] && return 0
  command -v openssl >/dev/null || { echo "services.sh: openssl not installed (scripts/install-deps.sh)" >&2; return 1; }
  mkdir -p "$t"
  (
    cd "$t"
    umask 077
    for ca in ca other-ca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=weir test $ca" \
        -keyout "$ca.key" -out "$ca.crt" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key \
      -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=weir_cert" -keyout client.key \
      -out client.csr 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -out client.crt 2>/dev/null
    rm -f ./*.csr server.ext ca.srl
    chmod 644 ca.crt other-ca.crt server.crt client.crt
  )
  # the servers read their own key; tests (maybe another user) the rest
  chmod 755 "$t"
  set_env WEIR_TEST_TLS_DIR "$t"
}
# A copy of the server key the server's user owns (they refuse others').
server_key() { # server_key USER NAME
  cp "$dir/tls/server.key" "$dir/tls/$2.key"
  chmod 600 "$dir/tls/$2.key"
  if [ "$(id -u)" -eq 0 ]; then chown "$1" "$dir/tls/$2.key"; fi
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
  make_certs
  server_key "$user" pg-server
  # the role weir_cert logs in over TLS with its client certificate only
  { printf 'hostssl all weir_cert 127.0.0.1/32 cert\n'; cat "$data/pg_hba.conf"; } \
    > "$data/pg_hba.tmp"
  mv "$data/pg_hba.tmp" "$data/pg_hba.conf"
  if [ "$(id -u)" -eq 0 ]; then chown "$user" "$data/pg_hba.conf"; fi
  cat >> "$data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/pg-server.key'
ssl_ca_file = '$dir/tls/ca.crt'
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
      set_env WEIR_TEST_PG_CERT_USER weir_cert
      PGPASSWORD=$pw run_as "$user" "$bin/psql" -qX -h 127.0.0.1 -p "$port" -U weir -d postgres \
        -c 'CREATE ROLE weir_cert LOGIN' >/dev/null
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
  local user pw port tport
  command -v redis-server >/dev/null || { echo "services.sh: redis-server not installed (scripts/install-deps.sh)" >&2; return 1; }
  user=$(server_user redis)
  pw=$(secret)
  mkdir -p "$dir/redis"
  if [ "$(id -u)" -eq 0 ]; then chown "$user" "$dir/redis"; fi
  make_certs
  server_key "$user" redis-server
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    tport=$(free_port)
    # the password goes in through a config file, not the command line
    (umask 077; printf 'requirepass %s\n' "$pw" > "$dir/redis/redis.conf")
    if [ "$(id -u)" -eq 0 ]; then chown "$user" "$dir/redis/redis.conf"; fi
    run_as "$user" redis-server "$dir/redis/redis.conf" --port "$port" --bind 127.0.0.1 \
      --dir "$dir/redis" --save "" --appendonly no --daemonize yes \
      --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log" \
      --tls-port "$tport" --tls-cert-file "$dir/tls/server.crt" \
      --tls-key-file "$dir/tls/redis-server.key" --tls-ca-cert-file "$dir/tls/ca.crt" \
      --tls-auth-clients optional || true
    for _ in $(seq 1 50); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
         && (exec 3<>"/dev/tcp/127.0.0.1/$tport") 2>/dev/null; then
        set_env WEIR_TEST_REDIS_URL "redis://:$pw@127.0.0.1:$port/0"
        set_env WEIR_TEST_REDIS_PORT "$port"
        set_env WEIR_TEST_REDIS_PASSWORD "$pw"
        set_env WEIR_TEST_REDISS_PORT "$tport"
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
