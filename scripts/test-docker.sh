#!/usr/bin/env bash
# `make test-docker`: the compose stack, proven on a real Docker engine, as a user runs it.
#   1. an engine (scripts/docker-engine.sh: started, and installed, only when none answers);
#   2. the official images, or labelled local stand-ins where no registry answers
#      (scripts/docker-standins.sh);
#   3. `docker compose build`: every project image from source (Dockerfile);
#   4. `docker compose up -d`: the default topology, on free host ports;
#   5. README.md's tutorial against the published ports (tests/tests/docker/, `--ignored`);
#   6. whatever happened: `docker compose down -v`, then a check that no container, network or
#      volume of the project is left, and the engine stopped if step 1 started it.
# Compose: `docker compose` (v2; scripts/docker-engine.sh installs it where the CLI lacks it),
# else Debian's `docker-compose` (1.29); DOCKER_COMPOSE="docker-compose" (or "docker compose")
# chooses (scripts/docker-project.sh). The fault tests prefer 1.29: make test runs both.
# Each phase prints its time; the run's log and the containers' logs (on failure) go to
# RUN_DIR (default .run/test-docker).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
run_dir=${RUN_DIR:-$here/.run/test-docker}
project=${COMPOSE_PROJECT_NAME:-oauth2-docker-tutorial}
script=test-docker.sh
# The project's images under a tag of this run's own: another checkout's stack on the same
# engine (its `local` tag) is neither used nor replaced.
export OAUTH2_IMAGE_TAG=${OAUTH2_IMAGE_TAG:-$project}
cd "$here"
# shellcheck source=scripts/docker-project.sh
. "$here/scripts/docker-project.sh"

phase_started=$SECONDS
phase() {
  echo "    ($((SECONDS - phase_started)) s)"
  phase_started=$SECONDS
  echo "==> $*"
}

echo "==> a Docker engine"
start_engine_and_compose

phase "the official images (local stand-ins where no registry answers)"
"$here/scripts/docker-standins.sh"

phase "docker compose build: the project's images from source"
build_images
docker images --filter "reference=oauth2-envoy/*:$OAUTH2_IMAGE_TAG" --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | sed 's/^/    /'

phase "docker compose up -d (free host ports)"
export_free_ports OAUTH2_HTTP_PORT OAUTH2_HTTPS_PORT OAUTH2_ADMIN_PORT OAUTH2_STEP_ON_PORT OAUTH2_SHOE_FLY_PORT
echo "    Envoy :$OAUTH2_HTTP_PORT (HTTPS :$OAUTH2_HTTPS_PORT), admin API :$OAUTH2_ADMIN_PORT, Step On :$OAUTH2_STEP_ON_PORT, Shoe Fly Shoe :$OAUTH2_SHOE_FLY_PORT"
# up -d returns once every container is started, the health-gated ones after their
# dependencies are healthy (each health check has its own bound); the test waits for the rest.
compose up -d 2>&1 | sed 's/^/    /'

phase "README.md's tutorial against the published ports"
cargo test -q -p e2e --test docker -- --ignored --test-threads 1

phase "done"
