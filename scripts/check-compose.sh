#!/usr/bin/env bash
# Validates docker-compose.yml as far as a machine without a Docker engine can:
#   1. the compose file itself (`docker-compose config`: syntax, references, volumes);
#   2. the Envoy configuration its `envoy` service renders: the same template and the same
#      render script as `make run`, with the environment compose resolves for that service,
#      the container paths mapped to this checkout, through `envoy --mode validate`.
# Usage: check-compose.sh ENVOY WASM CERT_DIR OUT_DIR
set -euo pipefail
envoy=$1 wasm=$2 certs=$3 out=$4
here="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out"

docker-compose -f "$here/docker-compose.yml" config > "$out/compose.yaml"
echo "    docker-compose config: ok"

# The envoy service's entrypoint and environment, as compose resolved them.
/usr/bin/python3 - "$out/compose.yaml" > "$out/envoy.env" <<'PY'
import shlex, sys, yaml
envoy = yaml.safe_load(open(sys.argv[1]))["services"]["envoy"]
entrypoint = " ".join(envoy.get("entrypoint") or [])
if "scripts/render-envoy-config.sh" not in entrypoint:
    sys.exit("the compose envoy service does not render envoy/envoy.yaml.tmpl with scripts/render-envoy-config.sh")
environment = envoy.get("environment") or {}
if isinstance(environment, list):
    environment = dict(item.split("=", 1) for item in environment)
for name, value in sorted(environment.items()):
    print(f"{name}={shlex.quote(str(value))}")
PY

# Render with compose's environment; only the paths inside the containers become local ones.
(
  set -a
  # shellcheck disable=SC1091
  . "$out/envoy.env"
  TEMPLATE_ROOT="$here" WASM_PATH="$wasm" CERT_DIR="$certs"
  set +a
  "$here/scripts/render-envoy-config.sh"
) > "$out/envoy.yaml"
# The rendered configuration must be compose's, not the local defaults.
for host in upstream token-service; do
  grep -q "address: $host," "$out/envoy.yaml" || { echo "rendered config does not reach '$host'" >&2; exit 1; }
done
"$envoy" --mode validate -c "$out/envoy.yaml" --log-level error
echo "    the compose stack's Envoy configuration: valid"
