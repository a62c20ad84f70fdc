#!/usr/bin/env bash
# Starts the whole stack in the foreground: token-service, the demo upstream (Step On API) and
# Envoy with the oauth2 filter. Ctrl-C stops everything. Called by `make run`.
set -euo pipefail
# shellcheck source=stack-common.sh
. "$(dirname "$0")/stack-common.sh"
mkdir -p "$run_dir/data"

echo "==> starting token-service (gateway :8080, admin API :8001, data in $run_dir/data)"
start token-service "$root/target/release/token-service" --database "$run_dir/data/token-service.db"
start_upstream
wait_for http://127.0.0.1:8001/status token-service
create_services
start_envoy "$run_dir/envoy.yaml"
ready
wait
