# Sourced by run-stack.sh (`make run`) and run-cluster.sh (`make run-cluster`): what both stacks
# do the same way. The demo upstream, the tutorial's services, Envoy, and stopping it all.
# The caller starts its token-service(s) with `start`; the tutorial's admin calls go to :8001.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="${RUN_DIR:-$root/.run}"
envoy="${ENVOY:-$root/.venv/bin/envoy}"

pids=()
declare -A pid_of
cleanups=()
stop() {
  trap - INT TERM EXIT
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for cleanup in "${cleanups[@]}"; do eval "$cleanup" || true; done
}
trap stop INT TERM EXIT

# Runs one more command when everything else has stopped (a quoted shell command).
on_stop() { cleanups+=("$1"); }

# Runs a command in the background with every output line prefixed by its name. `$!` is the
# command itself (not a subshell around a pipeline), so `stop` ends exactly it.
start() {
  local name="$1"; shift
  "$@" > >(sed -u "s/^/[$name] /") 2>&1 &
  pids+=("$!")
  pid_of[$name]=$!
}

# Waits until URL answers 2xx, for at most 30 s; gives up at once when the process started as
# NAME has exited.
wait_for() {
  local url="$1" name="$2"
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    kill -0 "${pid_of[$name]}" 2>/dev/null || { echo "error: $name exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "error: $name did not start ($url)" >&2
  exit 1
}

# The certificate first: the demo's servers pin it to call the gateway over HTTPS.
start_upstream() {
  "$root/scripts/make-cert.sh" "$run_dir/certs"
  echo "==> starting the demo upstream: Step On API and authorization page (:3000), partners echo (:3001), Shoe Fly Shoe (:5000)"
  # :3001 is the second route's upstream (/stepon-partners): an echo with no user data.
  start upstream "$root/target/release/demo-upstream" --listen 127.0.0.1:3000 \
    --partners-listen 127.0.0.1:3001 --client-listen 127.0.0.1:5000 \
    --gateway-ca "$run_dir/certs/cert.pem"
  wait_for http://127.0.0.1:3000/ready upstream
  wait_for http://127.0.0.1:3001/ready upstream
}

# The tutorial's service, through the admin API on :8001.
create_services() {
  echo "==> making sure service 'step-on' exists (no plugin yet: the tutorial continues at step 3)"
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8001/services --data name=step-on)
  case "$status" in
    201) echo "    created service step-on" ;;
    409) echo "    service step-on already exists" ;;
    *) echo "error: creating service step-on answered $status" >&2; exit 1 ;;
  esac
  # A second service on the same listener (route /stepon-partners, named in its route metadata),
  # with no plugin yet: its requests pass until one is added (docs/envoy.md: "Many services").
  # They go to the partners echo (:3001), never to Step On's API: an unprotected route passes a
  # client's X-Authenticated-Userid untouched.
  curl -s -o /dev/null -X POST http://127.0.0.1:8001/services --data name=step-on-partners || true
}

# Renders the Envoy configuration to $1 (TOKEN_SERVICE_ENDPOINTS, POLL_INTERVAL_MS and the
# other variables of render-envoy-config.sh come from the environment) and starts Envoy on it.
start_envoy() {
  local config="$1"
  CERT_DIR="$run_dir/certs" "$root/scripts/render-envoy-config.sh" > "$config"
  echo "==> starting Envoy (HTTP :8000, HTTPS :8443, admin 127.0.0.1:9901) with the oauth2 filter"
  start envoy "$envoy" -c "$config" --disable-hot-restart -l warning
  wait_for http://127.0.0.1:9901/ready envoy
}

ready() {
  cat <<'MSG'
==> ready. Try:
      curl -i http://localhost:8000/stepon/stepcounts -H 'mock-logged-in-as: clark'
    then follow the tutorial in README.md from step 3; after step 4 the browser path starts at
      http://localhost:5000/   (Shoe Fly Shoe; Step On's page is http://localhost:3000/authorize)
    Ctrl-C stops everything.
MSG
}
