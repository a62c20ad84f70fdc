#!/usr/bin/env bash
# `make test-docker-faults`: the cluster fault tests (tests/tests/docker_faults/) across real
# container hosts, on the compose profile `cluster` (three token-service replicas, PostgreSQL,
# Envoy, each its own container and address).
#   1. an engine (scripts/docker-engine.sh: started, and installed, only when none answers);
#   2. the images: stand-ins where no registry answers, then `docker compose build` (cached
#      layers when `make test-docker` built them just before: seconds);
#   3. `docker compose --profile cluster up -d envoy-cluster` on free host ports;
#   4. the fault tests, one at a time, within FAULTS_TIMEOUT s (300): each undoes its fault
#      whatever happens, and prints what it measured (`measured:` lines);
#   5. whatever happened (failure, timeout, Ctrl-C): `docker compose down -v`, then a check
#      that no container, network or volume of the project is left, and the engine stopped if
#      step 1 started it.
# Compose: Debian's docker-compose 1.29 where installed, else `docker compose` (v2);
# DOCKER_COMPOSE overrides (scripts/docker-project.sh). Logs go to RUN_DIR.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
run_dir=${RUN_DIR:-$here/.run/test-docker-faults}
project=${COMPOSE_PROJECT_NAME:-oauth2-docker-faults}
script=test-docker-faults.sh
compose_args=(--profile cluster)
# The tutorial (test-docker) runs on Compose v2, these on Debian's docker-compose 1.29 where
# both are installed: every `make test` proves both spellings, build, up and down -v.
compose_preference=v1
down_timeout=5
# The project's images under a tag of this project's own (as test-docker does): a stack of
# another checkout on the same engine never runs these, nor these its.
export OAUTH2_IMAGE_TAG=${OAUTH2_IMAGE_TAG:-$project}
timeout_s=${FAULTS_TIMEOUT:-300}
cd "$here"
# shellcheck source=scripts/docker-project.sh
. "$here/scripts/docker-project.sh"

echo "==> the cluster fault tests: a Docker engine"
start_engine_and_compose

echo "==> the images (stand-ins where no registry answers; docker compose build, cached layers)"
"$here/scripts/docker-standins.sh"
build_images

# The test binary before the stack: its compile time is not the stack's idle time.
cargo test -q -p e2e --test docker-faults --no-run >"$run_dir/compile.log" 2>&1 \
  || { tail -n 30 "$run_dir/compile.log" >&2; die "the fault tests do not compile (log: $run_dir/compile.log)"; }

echo "==> docker compose --profile cluster up -d envoy-cluster (free host ports)"
export_free_ports OAUTH2_HTTP_PORT OAUTH2_HTTPS_PORT OAUTH2_ADMIN_PORT OAUTH2_ADMIN_PORT_2 OAUTH2_ADMIN_PORT_3 \
  OAUTH2_STEP_ON_PORT OAUTH2_SHOE_FLY_PORT
up_started=$SECONDS
compose up -d envoy-cluster 2>&1 | sed 's/^/    /'
echo "    up in $((SECONDS - up_started)) s"

echo "==> the faults (at most ${timeout_s} s)"
tests_started=$SECONDS
OAUTH2_COMPOSE_PROJECT=$project timeout --signal INT --kill-after 10 "$timeout_s" \
  cargo test -q -p e2e --test docker-faults -- --ignored --test-threads 1 --nocapture
echo "    the fault tests: $((SECONDS - tests_started)) s"
