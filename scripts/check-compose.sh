#!/usr/bin/env bash
# Validates docker-compose.yml as far as a machine without a Docker engine can, for both of its
# topologies: the default one (`docker compose up`: the services without a profile) and the
# profile `cluster` (`docker compose --profile cluster up envoy-cluster`: that service and what
# it depends on).
#   1. the compose file itself (`docker-compose config`: syntax, references, volumes);
#   2. each topology: one Envoy rendering the template, the hosts its configuration names are
#      services that run, no host port published twice, the cluster's replicas on PostgreSQL;
#   3. the Envoy configuration each topology's Envoy renders: the same template and the same
#      render script as `make run`, run by the shell its entrypoint names, with the environment
#      compose resolves for that service and the container paths mapped to this checkout,
#      through `envoy --mode validate`.
# Usage: check-compose.sh ENVOY WASM CERT_DIR OUT_DIR
set -euo pipefail
envoy=$1 wasm=$2 certs=$3 out=$4
here="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out"

docker-compose -f "$here/docker-compose.yml" --profile cluster config > "$out/compose.yaml"
echo "    docker-compose config: ok"

# Per topology: checks its services, writes the Envoy service's environment, as compose resolved
# it, to OUT/<topology>.env, and prints "<topology> <envoy service> <shell> <host>...".
/usr/bin/python3 - "$out/compose.yaml" "$out" "$here/Dockerfile" > "$out/topologies" <<'PY'
import re, shlex, sys, yaml
services = yaml.safe_load(open(sys.argv[1]))["services"]
out = sys.argv[2]
dockerfile = sys.argv[3]

def fail(message):
    sys.exit(f"docker-compose.yml: {message}")

def environment(service):
    env = services[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}

def published_port(port):
    """The host port of a `ports` entry (long or short form), None when none is fixed."""
    if isinstance(port, dict):
        return port.get("published")
    parts = str(port).split("/")[0].split(":")  # [IP:]HOST:CONTAINER or CONTAINER
    return parts[-2] if len(parts) >= 2 else None

def closure(root):
    """ROOT and every service it depends on, directly or not."""
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(services[name].get("depends_on") or [])
    return seen

topologies = {
    "default": {name for name, s in services.items() if not s.get("profiles")},
    "cluster": closure("envoy-cluster"),
}
for topology, started in topologies.items():
    needed = set().union(*(closure(name) for name in started))
    if needed != started:
        fail(f"{topology}: its services depend on {sorted(needed - started)} of another topology")
    # The Envoy service: the Dockerfile's `gateway` image, whose entrypoint renders the template.
    envoys = [name for name in started
              if (services[name].get("build") or {}).get("target") == "gateway"]
    if len(envoys) != 1:
        fail(f"{topology}: one Envoy service should run the Dockerfile's gateway image, found {envoys}")
    envoy = envoys[0]
    if services[envoy].get("entrypoint"):
        fail(f"{topology}: {envoy} replaces the gateway image's entrypoint, which renders the configuration")
    entrypoint = next((line for line in open(dockerfile) if line.startswith("ENTRYPOINT") and "render-envoy-config.sh" in line), "")
    shell = re.search(r"\b(sh|bash) \S*scripts/render-envoy-config\.sh", entrypoint)
    if not shell:
        fail(f"{topology}: the Dockerfile's gateway entrypoint does not run scripts/render-envoy-config.sh with sh or bash")
    env = environment(envoy)
    endpoints = env.get("TOKEN_SERVICE_ENDPOINTS") or f"{env.get('TOKEN_SERVICE_HOST', '127.0.0.1')}:8080"
    replicas = [endpoint.rsplit(":", 1)[0] for endpoint in endpoints.split(",")]
    hosts = [env.get("UPSTREAM_HOST", "127.0.0.1")] + replicas
    for host in hosts:
        if host not in started:
            fail(f"{topology}: {envoy} reaches '{host}', which is not a service of this topology")
    published = {}
    for name in sorted(started):
        for port in services[name].get("ports") or []:
            host_port = published_port(port)
            if host_port is None:
                continue
            if str(host_port) in published:
                fail(f"{topology}: {name} and {published[str(host_port)]} both publish port {host_port}")
            published[str(host_port)] = name
    # The networks (docs/docker.md): the token-service's listeners never on the upstream's
    # `edge` network; PostgreSQL on `db` alone, which Envoy is not on, every replica is.
    def networks(service):
        return set(services[service].get("networks") or {"default"})
    for replica in replicas:
        if "edge" in networks(replica) or "control" not in networks(replica):
            fail(f"{topology}: {replica} should be on the control network and not on edge")
    if "control" not in networks(envoy) or "db" in networks(envoy):
        fail(f"{topology}: {envoy} should be on the control network and not on db")
    if topology == "cluster":
        databases_hosts = [name for name in started if services[name].get("image", "").startswith("postgres:")]
        for db in databases_hosts:
            if networks(db) != {"db"}:
                fail(f"cluster: {db} should be on the db network alone, not {sorted(networks(db))}")
        for replica in replicas:
            if "db" not in networks(replica):
                fail(f"cluster: {replica} is not on the db network")
    if topology == "cluster":
        databases = {environment(r).get("TOKEN_SERVICE_DATABASE", "") for r in replicas}
        if len(replicas) < 2 or len(databases) != 1 or not databases.pop().startswith("postgres://"):
            fail("cluster: Envoy should balance over several token-service replicas on one postgres:// database")
    with open(f"{out}/{topology}.env", "w") as f:
        for name, value in sorted(env.items()):
            print(f"{name}={shlex.quote(value)}", file=f)
    print(topology, envoy, shell.group(1), *hosts)
PY

while read -r topology service shell hosts; do
  # Render with compose's environment; only the paths inside the containers become local ones.
  (
    set -a
    # shellcheck disable=SC1090
    . "$out/$topology.env"
    TEMPLATE_ROOT="$here" WASM_PATH="$wasm" CERT_DIR="$certs"
    set +a
    "$shell" "$here/scripts/render-envoy-config.sh"
  ) > "$out/envoy-$topology.yaml" || { echo "$service: $shell could not render the config" >&2; exit 1; }
  # The rendered configuration must be compose's, not the local defaults.
  for host in $hosts; do
    grep -q "address: $host," "$out/envoy-$topology.yaml" || { echo "$service's config does not reach '$host'" >&2; exit 1; }
  done
  "$envoy" --mode validate -c "$out/envoy-$topology.yaml" --log-level error
  echo "    $topology topology: the Envoy configuration of $service (reaching $hosts): valid"
done < "$out/topologies"
