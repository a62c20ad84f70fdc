# Sourced by scripts/test-docker.sh and scripts/test-docker-faults.sh: one compose project on
# an engine this run may have started, and its removal whatever happens.
# The caller sets, before sourcing: here (the checkout), run_dir, project (the compose project
# name), script (its own name, for messages), and optionally compose_args (an array: e.g.
# `--profile cluster`), compose_preference (`v2` or `v1`, see choose_compose) and
# down_timeout (seconds, default 10).
# It then calls `start_engine_and_compose`; the EXIT trap is set by sourcing this file.

engine_dir=$run_dir/engine
started=$SECONDS
down_timeout=${down_timeout:-10}
[ "${compose_args+set}" = set ] || compose_args=()
mkdir -p "$run_dir"

die() { echo "$script: $*" >&2; exit 1; }

# The Compose to run: DOCKER_COMPOSE ("docker compose" or "docker-compose") when set; else the
# caller's compose_preference, `v2` (`docker compose`, the default) or `v1` (Debian's
# `docker-compose` 1.29), whichever of the two is installed when the preferred one is not.
choose_compose() {
  local v2=(docker compose) v1=(docker-compose)
  if [ -n "${DOCKER_COMPOSE:-}" ]; then
    read -ra compose_cmd <<<"$DOCKER_COMPOSE"
    return 0
  fi
  local has_v2=false has_v1=false
  docker compose version >/dev/null 2>&1 && has_v2=true
  command -v docker-compose >/dev/null && has_v1=true
  if [ "${compose_preference:-v2}" = v1 ] && $has_v1; then
    compose_cmd=("${v1[@]}")
  elif $has_v2; then
    compose_cmd=("${v2[@]}")
  elif $has_v1; then
    compose_cmd=("${v1[@]}")
  else
    die "neither 'docker compose' nor 'docker-compose' is installed"
  fi
}
compose() { "${compose_cmd[@]}" -p "$project" -f "$here/docker-compose.yml" "${compose_args[@]}" "$@"; }

# Exports each named variable as a free host port.
export_free_ports() {
  local variable
  for variable in "$@"; do
    export "$variable=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  done
}

# What the project left behind on the engine: containers, networks, volumes by compose's label.
leftovers() {
  local filter="label=com.docker.compose.project=$project"
  { docker ps -aq --filter "$filter"; docker network ls -q --filter "$filter"; docker volume ls -q --filter "$filter"; } 2>/dev/null
}

# The project's images from source; the legacy builder where BuildKit is not installed
# (Debian's docker.io has no buildx). One service at a time: every image is a target of one
# Dockerfile whose builder stage compiles the workspace, and Compose v2 builds services in
# parallel, which on the legacy builder compiles that stage once per image at the same time
# (534 s against 291 s on a 2-core machine); in turn, each build after the first finds the
# stage in the layer cache.
build_images() {
  if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0; fi
  local services service
  services=$(compose config --services) || die "docker compose config failed"
  : >"$run_dir/build.log"
  for service in $services; do
    compose build "$service" >>"$run_dir/build.log" 2>&1 \
      || { tail -n 40 "$run_dir/build.log" >&2; die "docker compose build $service failed (log: $run_dir/build.log)"; }
  done
}

remove_project() {
  local status=$1
  if [ $status -ne 0 ]; then
    compose ps >"$run_dir/compose-ps.txt" 2>&1 || true
    compose logs --no-color >"$run_dir/compose.log" 2>&1 || true
    echo "    the containers' logs: $run_dir/compose.log (last lines below)" >&2
    tail -n 40 "$run_dir/compose.log" >&2 || true
  fi
  echo "==> docker compose down -v (project $project)"
  compose down -v --remove-orphans --timeout "$down_timeout" >/dev/null 2>&1 || true
  local left
  left=$(leftovers)
  if [ -n "$left" ]; then
    echo "$script: left behind after down -v: $left" >&2
    return 1
  fi
  echo "    no container, network or volume of $project left"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if [ "${compose_cmd+set}" = set ] && docker info >/dev/null 2>&1; then
    remove_project $status || status=1
  fi
  "$here/scripts/docker-engine.sh" stop "$engine_dir" || status=1
  echo "    $script: $((SECONDS - started)) s in all"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# An engine (scripts/docker-engine.sh: started, and installed, only when none answers), the
# compose command, and a clean slate: a run killed before its cleanup left its project behind.
start_engine_and_compose() {
  "$here/scripts/docker-engine.sh" start "$engine_dir"
  choose_compose
  echo "    compose: ${compose_cmd[*]} ($("${compose_cmd[@]}" version --short 2>/dev/null || "${compose_cmd[@]}" version | head -n 1))"
  compose down -v --remove-orphans --timeout "$down_timeout" >/dev/null 2>&1 || true
}
