#!/usr/bin/env bash
# Starts the whole stack in the foreground: token-service, the demo upstream (Step On API) and
# Envoy with the oauth2 filter. Ctrl-C stops everything. Called by `make run`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
run_dir="${RUN_DIR:-$root/.run}"
envoy="${ENVOY:-$root/.venv/bin/envoy}"
mkdir -p "$run_dir/data"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# Runs a command with every output line prefixed by its name.
start() {
  local name="$1"; shift
  ("$@" 2>&1 | sed -u "s/^/[$name] /") &
  pids+=("$!")
}

wait_for() {
  local url="$1" what="$2"
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "error: $what did not start ($url)" >&2
  exit 1
}

echo "==> starting token-service (gateway :8080, admin API :8001, data in $run_dir/data)"
start token-service "$root/target/release/token-service" --database "$run_dir/data/token-service.db"
# The certificate first: the demo's servers pin it to call the gateway over HTTPS.
"$root/scripts/make-cert.sh" "$run_dir/certs"
echo "==> starting the demo upstream: Step On API and authorization page (:3000), Shoe Fly Shoe (:5000)"
start upstream "$root/target/release/demo-upstream" --listen 127.0.0.1:3000 \
  --client-listen 127.0.0.1:5000 --gateway-ca "$run_dir/certs/cert.pem"
wait_for http://127.0.0.1:8001/status token-service
wait_for http://127.0.0.1:3000/ready "demo upstream"

echo "==> making sure service 'step-on' exists (no plugin yet: the tutorial continues at step 3)"
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8001/services --data name=step-on)
case "$status" in
  201) echo "    created service step-on" ;;
  409) echo "    service step-on already exists" ;;
  *) echo "error: creating service step-on answered $status" >&2; exit 1 ;;
esac
# A second service on the same listener (route /stepon-partners, named in its route metadata),
# with no plugin yet: its requests pass until one is added (README: "Many services").
curl -s -o /dev/null -X POST http://127.0.0.1:8001/services --data name=step-on-partners || true

CERT_DIR="$run_dir/certs" "$root/scripts/render-envoy-config.sh" > "$run_dir/envoy.yaml"
echo "==> starting Envoy (HTTP :8000, HTTPS :8443, admin 127.0.0.1:9901) with the oauth2 filter"
start envoy "$envoy" -c "$run_dir/envoy.yaml" --disable-hot-restart -l warning
wait_for http://127.0.0.1:9901/ready Envoy

cat <<'MSG'
==> ready. Try:
      curl -i http://localhost:8000/stepon/stepcounts -H 'mock-logged-in-as: clark'
    then follow the tutorial in README.md from step 3; after step 4 the browser path starts at
      http://localhost:5000/   (Shoe Fly Shoe; Step On's page is http://localhost:3000/authorize)
    Ctrl-C stops everything.
MSG
wait
