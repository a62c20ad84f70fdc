#!/usr/bin/env bash
# A throwaway PostgreSQL server for `make run-cluster`, the tests and the benchmark.
#
#   scripts/pg.sh start DIR [PORT]   initialise DIR/data (once) and start a server on PORT
#                                    (default: a free port); prints its URL on stdout:
#                                    postgres://oauth2@127.0.0.1:PORT/oauth2
#   scripts/pg.sh stop DIR           stop the server whose data is under DIR
#   scripts/pg.sh createdb DIR NAME  one more database on that server (prints its URL)
#
# Debian's `postgresql` package is installed when missing. `initdb` refuses to run as root, so
# as root the server runs as the `postgres` user (`runuser`), owning DIR. Trust authentication
# on 127.0.0.1 only: this server is for one machine's tests and demos, never for production.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$bin" ]; then
    echo "==> installing PostgreSQL (Debian package postgresql)" >&2
    local apt=apt-get; [ "$(id -u)" = 0 ] || apt="sudo apt-get"
    $apt update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $apt install -y -q postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  echo "$bin"
}

# Runs a command as the server's owner: `postgres` when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
  local dir="$1" port="${2:-}" bin
  bin=$(pg_bin)
  [ -n "$port" ] || port=$(free_port)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    # The server must reach its data directory: every parent needs search permission.
    local d="$dir"; while [ "$d" != "/" ]; do d=$(dirname "$d"); chmod o+x "$d" 2>/dev/null || true; done
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
      || die "initdb failed: $(tail -5 "$dir/initdb.log")"
  fi
  # fsync stays on: the service's durability claims are measured against a real commit.
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB" >/dev/null \
    || die "the server did not start: $(tail -5 "$dir/server.log")"
  echo "$port" >"$dir/port"
  local psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -q -d postgres)
  if [ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'oauth2'")" != 1 ]; then
    "${psql[@]}" -c "CREATE ROLE oauth2 LOGIN"
  fi
  if [ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'oauth2'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE oauth2 OWNER oauth2"
  fi
  echo "postgres://oauth2@127.0.0.1:$port/oauth2"
}

stop() {
  local dir="$1" bin
  [ -f "$dir/data/postmaster.pid" ] || return 0
  bin=$(pg_bin)
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
}

createdb() {
  local dir="$1" name="$2" bin port
  bin=$(pg_bin)
  port=$(cat "$dir/port")
  "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -q -d postgres \
    -c "CREATE DATABASE \"$name\" OWNER oauth2"
  echo "postgres://oauth2@127.0.0.1:$port/$name"
}

case "${1:-}" in
  start) [ $# -ge 2 ] || die "usage: pg.sh start DIR [PORT]"; start "$2" "${3:-}" ;;
  stop) [ $# -eq 2 ] || die "usage: pg.sh stop DIR"; stop "$2" ;;
  createdb) [ $# -eq 3 ] || die "usage: pg.sh createdb DIR NAME"; createdb "$2" "$3" ;;
  *) die "usage: pg.sh start DIR [PORT] | stop DIR | createdb DIR NAME" ;;
esac
