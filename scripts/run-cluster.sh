#!/usr/bin/env bash
# `make run`'s stack with three token-service replicas sharing one PostgreSQL: a throwaway
# server (scripts/pg.sh, data in .run/cluster/pg), replicas with the gateway API on :8080,
# :8081, :8082 and the admin API on :8001, :8002, :8003 (any of them, the same data), the demo
# upstream and Envoy as in `make run`, Envoy balancing over the three replicas (health checks on
# /status, outlier detection) and polling every 500 ms. Ctrl-C stops everything, PostgreSQL too.
# Called by `make run-cluster`.
set -euo pipefail
# shellcheck source=stack-common.sh
. "$(dirname "$0")/stack-common.sh"
cluster_dir="$run_dir/cluster"
mkdir -p "$cluster_dir"

on_stop "$(printf '%q ' "$root/scripts/pg.sh" stop "$cluster_dir/pg")"
echo "==> starting PostgreSQL (data in $cluster_dir/pg)"
database=$("$root/scripts/pg.sh" start "$cluster_dir/pg")
echo "    $database"

# The replicas' gateway listeners, as Envoy's config lists them (the Makefile's
# CLUSTER_ENDPOINTS); replica N's admin API listens on 127.0.0.1:800N.
IFS=, read -ra endpoints <<<"${CLUSTER_ENDPOINTS:-127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082}"
for i in "${!endpoints[@]}"; do
  admin=127.0.0.1:$((8001 + i))
  echo "==> starting token-service-$((i + 1)) (gateway ${endpoints[i]}, admin API $admin)"
  start "token-service-$((i + 1))" "$root/target/release/token-service" --database "$database" \
    --gateway-listen "${endpoints[i]}" --admin-listen "$admin"
done
start_upstream
for i in "${!endpoints[@]}"; do
  wait_for "http://127.0.0.1:$((8001 + i))/status" "token-service-$((i + 1))"
done
create_services
TOKEN_SERVICE_ENDPOINTS=$(IFS=,; echo "${endpoints[*]}") POLL_INTERVAL_MS=500 \
  start_envoy "$cluster_dir/envoy.yaml"
ready
wait
