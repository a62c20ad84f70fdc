#!/usr/bin/env bash
# Property-based test of the admin API against its own OpenAPI description: starts a
# token-service on free loopback ports with a fresh database, runs schemathesis for a bounded
# time and stops the service. Fails on any 5xx or any answer that its description does not
# allow (status, content type, body schema).
#   scripts/schemathesis.sh TOKEN_SERVICE_BIN ST_BIN [SECONDS]
set -euo pipefail

BIN=$(realpath "${1:?token-service binary}")
ST=$(realpath "${2:?schemathesis (st) binary}")
SECONDS_BUDGET=${3:-60}
# Requests go to plain HTTP on loopback; a CA bundle set for the machine plays no part.
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE

WORK=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ADMIN_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
ADMIN=http://127.0.0.1:$ADMIN_PORT

"$BIN" --database "$WORK/schemathesis.db" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --gateway-listen "127.0.0.1:$GATEWAY_PORT" \
    >"$WORK/token-service.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "$ADMIN/status" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/token-service.log"; exit 1; }
    sleep 0.1
done

echo "    token-service admin API on $ADMIN; schemathesis for up to $SECONDS_BUDGET s"
# Seeds a service and a consumer so that generated requests also reach existing entities.
curl -fsS -o /dev/null -d name=step-on "$ADMIN/services"
curl -fsS -o /dev/null -d username=clark "$ADMIN/consumers"

# One worker: with several, Python 3.11's ast.parse (hypothesis describes its filters with it)
# can fail with "AST constructor recursion depth mismatch", a run error unrelated to the API.
start=$(date +%s)
status=0
# schemathesis and hypothesis keep state in the working directory: the temporary one.
cd "$WORK"
"$ST" run "$ADMIN/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-time "$SECONDS_BUDGET" --max-examples 50 --seed 1 \
    --workers 1 --request-timeout 5 \
    --generation-database none --no-color \
    --report junit --report-dir "${ST_REPORT_DIR:-$WORK/report}" || status=$?
echo "    schemathesis took $(($(date +%s) - start)) s"
if [ "$status" -ne 0 ] && grep -q -i "panic\|error" "$WORK/token-service.log"; then
    echo "    token-service log (errors):"
    grep -i "panic\|error" "$WORK/token-service.log" | tail -n 20
fi
exit "$status"
