#!/usr/bin/env bash
# Throwaway Redis and PostgreSQL servers for the store tests (CTest fixture
# "services"; see tests/CMakeLists.txt).
#
#   tests/services.sh start DIR [redis] [pg]   start them (default: both), wait until they answer
#   tests/services.sh stop DIR                 stop what `start DIR` started, remove DIR
#   tests/services.sh env DIR                  print the test URLs as export lines
#
# Loopback only (127.0.0.1), on ports of their own: RESIL_TEST_REDIS_PORT
# (default 16379) and RESIL_TEST_PG_PORT (default 15432); other binaries
# with RESIL_TEST_REDIS_SERVER (default redis-server on PATH) and
# RESIL_TEST_PG_BINDIR (default the newest /usr/lib/postgresql/*/bin, or
# pg_ctl's directory on PATH). Data in DIR, no
# persistence for Redis, a fresh cluster with trust authentication (for
# this local test only) and a database resil_test for PostgreSQL. As root,
# PostgreSQL runs as the `postgres` user (it refuses to run as root).
#
# Idempotent: `start` first stops whatever an earlier `start DIR` left
# running; `stop` stops only what DIR's pid files name, never by name.
# A server that is not installed is not an error: start says why, writes
# DIR/redis.skip or DIR/pg.skip, and the tests skip. With
# RESIL_TEST_REQUIRE_SERVICES=1 a missing server fails instead.
set -uo pipefail

cmd=${1:-}
dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: services.sh start|stop|env DIR [redis] [pg]" >&2
  exit 64
fi
case "$dir" in /*) ;; *) dir=$PWD/$dir ;; esac
shift 2
redis_port=${RESIL_TEST_REDIS_PORT:-16379}
pg_port=${RESIL_TEST_PG_PORT:-15432}
redis_server=${RESIL_TEST_REDIS_SERVER:-redis-server}
wait_s=20

say() { echo "services: $*"; }

# ---- helpers ------------------------------------------------------------------

# Whether pid $1 runs (an exited process waiting to be reaped, a zombie,
# does not: a container's init may reap late).
alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# The pid in FILE if that process is alive and runs PROGRAM (so a reused pid
# is never signalled).
live_pid() {
  local file=$1 program=$2 pid
  [ -f "$file" ] || return 1
  pid=$(head -n1 "$file" 2>/dev/null | tr -dc '0-9')
  [ -n "$pid" ] && alive "$pid" || return 1
  grep -q "$program" "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

# Wait up to $2 seconds for pid $1 to exit.
wait_exit() {
  local pid=$1 i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  return 1
}

redis_ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = "PONG" ]
  else
    # bash's /dev/tcp, bounded by read -t.
    local line
    { exec 3<>"/dev/tcp/127.0.0.1/$redis_port"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 1 line <&3
    exec 3>&-
    [ "${line%$'\r'}" = "+PONG" ]
  fi
}

# PostgreSQL's binaries: the newest /usr/lib/postgresql/*/bin (Debian), or
# pg_ctl on PATH.
pg_bindir() {
  local d
  if [ -n "${RESIL_TEST_PG_BINDIR:-}" ]; then
    [ -x "$RESIL_TEST_PG_BINDIR/pg_ctl" ] && [ -x "$RESIL_TEST_PG_BINDIR/initdb" ] || return 1
    echo "$RESIL_TEST_PG_BINDIR"
    return 0
  fi
  d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then
    echo "$d"
  elif command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
  else
    return 1
  fi
}

# Run as the PostgreSQL owner: `postgres` when we are root, else ourselves.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u postgres -- "$@"
    else
      su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

# Where the cluster lives: DIR/pg, or a directory under /tmp when the
# postgres user cannot reach DIR (recorded in DIR/pg.dir).
pg_home() {
  if [ -f "$dir/pg.dir" ]; then cat "$dir/pg.dir"; else echo "$dir/pg"; fi
}

skip() { # NAME REASON
  say "$1: SKIPPED: $2"
  echo "$2" >"$dir/$1.skip"
  if [ "${RESIL_TEST_REQUIRE_SERVICES:-0}" = 1 ]; then
    say "RESIL_TEST_REQUIRE_SERVICES=1: a missing server is an error"
    exit 1
  fi
}

# ---- redis ------------------------------------------------------------------------

stop_redis() {
  local pid
  if pid=$(live_pid "$dir/redis/redis.pid" redis-server); then
    kill -TERM "$pid" 2>/dev/null
    wait_exit "$pid" 10 || kill -KILL "$pid" 2>/dev/null
    wait_exit "$pid" 5
    say "redis: stopped (pid $pid)"
  fi
}

start_redis() {
  if ! command -v "$redis_server" >/dev/null 2>&1; then
    skip redis "$redis_server is not installed (apt-get install redis-server; scripts/deps.sh does it)"
    return 0
  fi
  if redis_ping; then
    say "redis: something already answers on 127.0.0.1:$redis_port (not ours); set RESIL_TEST_REDIS_PORT"
    return 1
  fi
  mkdir -p "$dir/redis"
  if ! "$redis_server" --port "$redis_port" --bind 127.0.0.1 --protected-mode yes \
      --save '' --appendonly no --dir "$dir/redis" --daemonize yes \
      --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/redis.log"; then
    say "redis: redis-server would not start"
    return 1
  fi
  local i
  for ((i = 0; i < wait_s * 10; i++)); do
    if redis_ping && live_pid "$dir/redis/redis.pid" redis-server >/dev/null; then
      say "redis: running on 127.0.0.1:$redis_port (pid $(cat "$dir/redis/redis.pid" 2>/dev/null), data $dir/redis)"
      touch "$dir/redis.ready"
      return 0
    fi
    sleep 0.1
  done
  say "redis: no answer on 127.0.0.1:$redis_port within ${wait_s}s; its log:"
  tail -n 20 "$dir/redis/redis.log" 2>/dev/null | sed 's/^/  /'
  return 1
}

# ---- postgresql ----------------------------------------------------------------------

stop_pg() {
  local home pid bindir
  home=$(pg_home)
  if pid=$(live_pid "$home/data/postmaster.pid" postgres); then
    if bindir=$(pg_bindir); then
      as_pg "$bindir/pg_ctl" -D "$home/data" -m fast -w -t 20 stop >/dev/null 2>&1
    fi
    if alive "$pid"; then
      kill -INT "$pid" 2>/dev/null # fast shutdown
      wait_exit "$pid" 10 || kill -KILL "$pid" 2>/dev/null
      wait_exit "$pid" 5
    fi
    say "postgres: stopped (pid $pid)"
  fi
}

start_pg() {
  local bindir home
  if ! bindir=$(pg_bindir); then
    skip pg "PostgreSQL server binaries not found (${RESIL_TEST_PG_BINDIR:-/usr/lib/postgresql/*/bin}; apt-get install postgresql; scripts/deps.sh does it)"
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    skip pg "running as root and there is no 'postgres' user to run PostgreSQL as"
    return 0
  fi
  if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -t 2; then
    say "postgres: something already answers on 127.0.0.1:$pg_port (not ours); set RESIL_TEST_PG_PORT"
    return 1
  fi
  home=$dir/pg
  mkdir -p "$home"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$home"
    if ! as_pg test -w "$home"; then
      # DIR is not reachable by postgres (a private parent directory).
      home=$(mktemp -d /tmp/resil-pg.XXXXXX) || return 1
      chown postgres: "$home"
      echo "$home" >"$dir/pg.dir"
    fi
  fi
  if ! as_pg "$bindir/initdb" -D "$home/data" -U postgres -A trust -E UTF8 --locale=C \
      --no-sync >"$home/initdb.log" 2>&1; then
    say "postgres: initdb failed; its log:"
    tail -n 20 "$home/initdb.log" | sed 's/^/  /'
    return 1
  fi
  # No Unix socket (the tests use TCP on loopback; no path-length limits).
  if ! as_pg "$bindir/pg_ctl" -D "$home/data" -l "$home/postgres.log" -w -t "$wait_s" \
      -o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=''" \
      start >/dev/null 2>&1; then
    say "postgres: did not start on 127.0.0.1:$pg_port within ${wait_s}s; its log:"
    tail -n 20 "$home/postgres.log" 2>/dev/null | sed 's/^/  /'
    return 1
  fi
  local i ready=0
  for ((i = 0; i < wait_s * 10; i++)); do
    if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres; then
      ready=1
      break
    fi
    sleep 0.1
  done
  if [ $ready = 0 ]; then
    say "postgres: no answer on 127.0.0.1:$pg_port within ${wait_s}s"
    return 1
  fi
  if ! "$bindir/psql" -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres \
      -c "CREATE DATABASE resil_test" >/dev/null 2>"$home/createdb.log"; then
    say "postgres: cannot create the database resil_test: $(head -n1 "$home/createdb.log")"
    return 1
  fi
  say "postgres: running on 127.0.0.1:$pg_port (pid $(head -n1 "$home/data/postmaster.pid"), data $home/data)"
  touch "$dir/pg.ready"
}

# ---- commands -------------------------------------------------------------------------

print_env() {
  echo "export RESIL_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/0"
  echo "export RESIL_TEST_PG_URL=postgres://postgres@127.0.0.1:$pg_port/resil_test"
}

case "$cmd" in
  start)
    which=("$@")
    [ ${#which[@]} -eq 0 ] && which=(redis pg)
    mkdir -p "$dir"
    # Whatever an earlier start in DIR left behind (an interrupted run).
    stop_redis
    stop_pg
    if [ -f "$dir/pg.dir" ]; then rm -rf "$(cat "$dir/pg.dir")" "$dir/pg.dir"; fi
    rm -rf "$dir/redis" "$dir/pg" "$dir"/*.skip "$dir"/*.ready
    rc=0
    for w in "${which[@]}"; do
      case "$w" in
        redis) start_redis || rc=1 ;;
        pg) start_pg || rc=1 ;;
        *) echo "services.sh: unknown service '$w' (redis, pg)" >&2; rc=64 ;;
      esac
    done
    if [ $rc -ne 0 ]; then
      say "start failed; stopping what did start"
      stop_redis
      stop_pg
      exit $rc
    fi
    print_env >"$dir/env"
    ran="" skipped=""
    for w in "${which[@]}"; do
      if [ -f "$dir/$w.ready" ]; then ran="$ran $w"; else skipped="$skipped $w"; fi
    done
    say "running:${ran:- none}${skipped:+; skipped (their tests will skip):$skipped}"
    ;;
  stop)
    [ -d "$dir" ] || exit 0
    stop_redis
    stop_pg
    if [ -f "$dir/pg.dir" ]; then rm -rf "$(cat "$dir/pg.dir")"; fi
    rm -rf "$dir"
    ;;
  env)
    print_env
    ;;
  *)
    echo "services.sh: unknown command '$cmd' (start, stop, env)" >&2
    exit 64
    ;;
esac
exit 0
