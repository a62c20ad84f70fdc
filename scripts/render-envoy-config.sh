#!/usr/bin/env bash
# Renders envoy/envoy.yaml.tmpl to stdout. Ports and paths come from the environment.
# The second route's upstream (SECOND_UPSTREAM_HOST, SECOND_UPSTREAM_PORT) defaults to the demo
# upstream's host on :3001, its partners echo: never Step On's API on :3000.
set -eu
here="${TEMPLATE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}"
# The token-service replicas, `host:port[,host:port...]` (default: the one of make run).
endpoints="${TOKEN_SERVICE_ENDPOINTS:-${TOKEN_SERVICE_HOST:-127.0.0.1}:${TOKEN_SERVICE_PORT:-8080}}"
lb_endpoints=""
IFS=',' read -ra replicas <<<"$endpoints"
for replica in "${replicas[@]}"; do
  lb_endpoints="${lb_endpoints:+$lb_endpoints, }{ endpoint: { address: { socket_address: { address: ${replica%:*}, port_value: ${replica##*:} } } } }"
done
sed -e "s|{{ADMIN_PORT}}|${ENVOY_ADMIN_PORT:-9901}|g" \
    -e "s|{{LISTEN_ADDRESS}}|${ENVOY_LISTEN_ADDRESS:-0.0.0.0}|g" \
    -e "s|{{HTTP_PORT}}|${ENVOY_HTTP_PORT:-8000}|g" \
    -e "s|{{HTTPS_PORT}}|${ENVOY_HTTPS_PORT:-8443}|g" \
    -e "s|{{UPSTREAM_HOST}}|${UPSTREAM_HOST:-127.0.0.1}|g" \
    -e "s|{{UPSTREAM_PORT}}|${UPSTREAM_PORT:-3000}|g" \
    -e "s|{{SECOND_UPSTREAM_HOST}}|${SECOND_UPSTREAM_HOST:-${UPSTREAM_HOST:-127.0.0.1}}|g" \
    -e "s|{{SECOND_UPSTREAM_PORT}}|${SECOND_UPSTREAM_PORT:-3001}|g" \
    -e "s|{{TOKEN_SERVICE_LB_ENDPOINTS}}|[$lb_endpoints]|g" \
    -e "s|{{WASM_PATH}}|${WASM_PATH:-$here/target/wasm32-wasip1/wasm/oauth2_filter.wasm}|g" \
    -e "s|{{SERVICE}}|${SERVICE:-step-on}|g" \
    -e "s|{{ROUTE_PREFIX}}|${ROUTE_PREFIX:-/stepon}|g" \
    -e "s|{{SECOND_SERVICE}}|${SECOND_SERVICE:-step-on-partners}|g" \
    -e "s|{{SECOND_ROUTE_PREFIX}}|${SECOND_ROUTE_PREFIX:-/stepon-partners}|g" \
    -e "s|{{POLL_INTERVAL_MS}}|${POLL_INTERVAL_MS:-1000}|g" \
    -e "s|{{CERT_DIR}}|${CERT_DIR:-$here/envoy/certs}|g" \
    -e "s|{{XFF_NUM_TRUSTED_HOPS}}|${XFF_NUM_TRUSTED_HOPS:-0}|g" \
    -e "s|{{REQUEST_TIMEOUT}}|${REQUEST_TIMEOUT:-60s}|g" \
    -e "s|{{MAX_HEAP_BYTES}}|${MAX_HEAP_BYTES:-1073741824}|g" \
    "$here/envoy/envoy.yaml.tmpl"
