#!/usr/bin/env bash
# A Docker engine for the compose stack's tests (`make test-docker`, the cluster fault tests),
# started only when none answers, as scripts/pg.sh does for PostgreSQL.
#
#   scripts/docker-engine.sh start DIR   make sure an engine answers: when none does, install
#                                        Debian's docker.io (and docker-compose) if missing,
#                                        and Compose v2 (`docker compose`) where it is missing,
#                                        start dockerd as root (its log and pid under DIR) and
#                                        wait for it, at most DOCKER_ENGINE_TIMEOUT s (60);
#                                        records in DIR/started that this call started it
#   scripts/docker-engine.sh stop DIR    stop the engine only when `start DIR` started it
#   scripts/docker-engine.sh status      exit 0 when an engine answers
#
# Each caller passes its own DIR, so an engine somebody else runs is never stopped. The engine
# needs root (network namespaces, bridges, iptables, mounts); without root `start` fails loudly:
# a test that needs containers must not pass by skipping them.
set -euo pipefail

die() { echo "docker-engine.sh: $*" >&2; exit 1; }
say() { echo "$*" >&2; }

timeout_s=${DOCKER_ENGINE_TIMEOUT:-60}

answers() { docker info >/dev/null 2>&1; }

# Debian's packages: dockerd 20.10, containerd, runc, and Compose v1.29 (docker-compose). The
# docker CLI comes with docker.io when none is installed.
install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  [ ${#missing[@]} -eq 0 ] && return 0
  say "==> installing ${missing[*]} (Debian packages) for the Docker engine"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# Compose v2 (`docker compose`), where the CLI has no compose plugin: Debian's own build of it
# (trixie's docker-compose 2.26, a static binary), pinned by its SHA-256 and fetched from the
# Debian mirror the machine already uses; only the CLI plugin is unpacked, into the CLI's
# plugin folder, so Debian's `docker-compose` 1.29 stays installed beside it.
COMPOSE_V2_DEB=${COMPOSE_V2_DEB:-http://deb.debian.org/debian/pool/main/d/docker-compose/docker-compose_2.26.1-4_amd64.deb}
COMPOSE_V2_SHA256=${COMPOSE_V2_SHA256:-47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea}
COMPOSE_V2_PLUGINS=${COMPOSE_V2_PLUGINS:-/usr/local/lib/docker/cli-plugins}

install_compose_v2() {
  docker compose version >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { say "    no 'docker compose' (Compose v2) and installing it needs root: 'docker-compose' only"; return 0; }
  [ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] || { say "    no 'docker compose' (Compose v2) package pinned for this architecture: 'docker-compose' only"; return 0; }
  say "==> installing Compose v2 ('docker compose': Debian's docker-compose 2.26 CLI plugin) into $COMPOSE_V2_PLUGINS"
  local tmp
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/compose.deb" "$COMPOSE_V2_DEB" || { rm -rf "$tmp"; die "cannot download $COMPOSE_V2_DEB"; }
  echo "$COMPOSE_V2_SHA256  $tmp/compose.deb" | sha256sum -c --quiet - >/dev/null \
    || { rm -rf "$tmp"; die "$COMPOSE_V2_DEB does not have the pinned SHA-256"; }
  dpkg-deb -x "$tmp/compose.deb" "$tmp/root"
  install -D -m 0755 "$tmp/root/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_V2_PLUGINS/docker-compose"
  rm -rf "$tmp"
  docker compose version >/dev/null 2>&1 || die "'docker compose' does not answer after installing $COMPOSE_V2_PLUGINS/docker-compose"
}

# The bridge's MTU: the host's uplink's, so that containers' TLS to the package registries is
# not broken by packets larger than the path takes (here eth0 has 1400, Docker assumes 1500).
uplink_mtu() {
  local dev
  dev=$(ip route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1); exit}')
  [ -n "$dev" ] && cat "/sys/class/net/$dev/mtu" 2>/dev/null || echo 1500
}

start() {
  local dir="$1"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if answers; then
    say "    a Docker engine already answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null)); using it"
    rm -f "$dir/started"
    install_compose_v2
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "no Docker engine answers and starting one needs root (run as root, or start dockerd yourself)"
  install_packages
  install_compose_v2
  # Where an init system runs, installing docker.io may have started the engine itself: it is
  # this run's doing all the same, so `stop` stops it.
  if answers && [ -s /var/run/docker.pid ]; then
    cat /var/run/docker.pid >"$dir/started"
    say "    dockerd started by the docker.io package (pid $(cat "$dir/started"))"
    return 0
  fi
  local mtu
  mtu=$(uplink_mtu)
  say "==> starting dockerd (bridge MTU $mtu; log in $dir/dockerd.log)"
  # setsid: the engine outlives the make recipe's shell, and a ^C to the tests does not reach it.
  setsid dockerd --mtu "$mtu" --pidfile "$dir/dockerd.pid" >"$dir/dockerd.log" 2>&1 </dev/null &
  local pid=$! deadline=$((SECONDS + timeout_s))
  echo "$pid" >"$dir/started"
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$dir/started"
      die "dockerd exited before it answered; its log ends with:
$(tail -n 15 "$dir/dockerd.log")"
    fi
    if [ $SECONDS -ge $deadline ]; then
      kill "$pid" 2>/dev/null || true
      rm -f "$dir/started"
      die "dockerd did not answer within ${timeout_s} s; its log ends with:
$(tail -n 15 "$dir/dockerd.log")"
    fi
    sleep 0.5
  done
  say "    dockerd $(docker version -f '{{.Server.Version}}') answers (pid $pid)"
}

stop() {
  local dir="$1" pid
  [ -f "$dir/started" ] || return 0
  pid=$(cat "$dir/started")
  rm -f "$dir/started"
  kill -0 "$pid" 2>/dev/null || return 0
  say "==> stopping the dockerd this harness started (pid $pid)"
  kill -TERM "$pid"
  # dockerd stops its containers (10 s each at most) and its containerd before it exits.
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { kill -KILL "$pid" 2>/dev/null || true; die "dockerd (pid $pid) did not stop within 60 s; killed"; }
    sleep 0.2
  done
}

case "${1:-}" in
  start) [ $# -eq 2 ] || die "usage: docker-engine.sh start DIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: docker-engine.sh stop DIR"; stop "$2" ;;
  status) answers ;;
  *) die "usage: docker-engine.sh start DIR | stop DIR | status" ;;
esac
