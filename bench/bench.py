#!/usr/bin/env python3
"""`make bench`: both builds of the filter measured against a lean plain Envoy and Envoy's ext_authz.

Starts the real processes (token-service with its SQLite file, the demo upstream, and one Envoy
per configuration rendered from envoy/envoy.yaml.tmpl: plain, plain with the template's access
log, the empty dynamic module, the wasm filter (with and without a plugin), the native filter
(dynamic module, with and without a plugin), Envoy's ext_authz filter calling the token-service,
both builds for a plugin issuing JWT access tokens, and Envoy's jwt_authn filter with and without
its cache, verifying RS256 JWTs of a key the bench generates). Every Envoy but the one with the access log is lean: no access log. Drives them
with wrk on loopback, interleaving the scenarios round by round, then loads the pairs of each
ratio side by side. Prints requests/s, p50/p99 and Envoy CPU per request, writes BENCHMARKS.md,
and ends with the `bench:` summary line.
"""

import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import jwt_peer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
MISS_TOKENS = int(os.environ.get("BENCH_MISS_TOKENS", "80000"))
PAIR_ROUNDS = int(os.environ.get("BENCH_PAIR_ROUNDS", "5"))
# JWT access tokens minted (client_credentials, `access_token_format: jwt`) for the scenarios
# where each request brings a new JWT: many more than the filter's cache holds (16384 slots).
JWT_TOKENS = int(os.environ.get("BENCH_JWT_TOKENS", "50000"))
# Tokens signed by the bench for Envoy's jwt_authn without its cache (which keeps nothing, so a
# few suffice; the same wrk script and token length as our filter's side of the pair).
JWT_AUTHN_TOKENS = int(os.environ.get("BENCH_JWT_AUTHN_TOKENS", "1000"))
JWT_AUTHN_ISSUER = "https://bench.jwt-authn.example/bench"
# e.g. BENCH_ONLY=1,2n,3n while working on one path (a partial run rewrites nothing).
ONLY = [key for key in os.environ.get("BENCH_ONLY", "").split(",") if key]
OUR_JWT_SCENARIOS = ("2wj", "2nj", "3wj", "3nj")
# Our JWT scenarios need a token-service issuing JWTs and 50,000 JWTs minted: a partial run
# without them (BENCH_ONLY=1,7c,7u,2n) skips both.
OUR_JWTS = not ONLY or any(key in ONLY for key in OUR_JWT_SCENARIOS)
# The ratios, each from the pair loaded side by side: (scenario, baseline). The first three feed
# the `bench:` line's ratios; the rest are for the picture.
PAIRS = [("2w", "1"), ("2n", "1"), ("3n", "5"), ("0e", "1"), ("0w", "1"), ("2n", "1h"), ("2w", "1h"),
         ("2wm", "1"), ("2nm", "1"),
         ("3w", "5"), ("3n", "1"), ("3w", "1"), ("4n", "1"), ("4w", "1"), ("1", "5"), ("1L", "1"),
         # Issue 21: JWT access tokens against Envoy's jwt_authn and the ext_authz peer.
         ("2nj", "7c"), ("2wj", "7c"), ("2n", "7c"), ("2w", "7c"), ("3nj", "7u"), ("3nj", "5"), ("3wj", "5"),
         ("3wj", "7u"), ("7c", "1"), ("7u", "1")]
INDEX_ENTRIES = 2 * MISS_TOKENS + JWT_TOKENS + 10000
ENVOY = os.environ.get("ENVOY", os.path.join(ROOT, ".venv", "bin", "envoy"))
TARGET = os.path.join(ROOT, "target")
WASM = os.environ.get("BENCH_WASM", os.path.join(TARGET, "wasm32-wasip1", "wasm", "oauth2_filter.wasm"))
# BENCH_WASM=other.wasm and BENCH_NATIVE=other.so measure other builds of the filter (an A/B of a change).
NATIVE = os.environ.get("BENCH_NATIVE", os.path.join(TARGET, "release", "liboauth2_filter_native.so"))
# BENCH_WASM_B=other.wasm / BENCH_NATIVE_B=dir/liboauth2_filter_native.so add scenarios 2wb / 2nb
# (that build, cached valid token) to load beside 2w / 2n: BENCH_ONLY=2w,2wb BENCH_PAIRS=2wb/2w.
WASM_B = os.environ.get("BENCH_WASM_B")
NATIVE_B = os.environ.get("BENCH_NATIVE_B")
NOOP_DIR = os.path.join(TARGET, "bench-noop")
NOOP = os.path.join(NOOP_DIR, "release", "libbench_noop_module.so")

# The targets of issue 11: (name, what, the `bench:` line's key, comparison, bound).
TARGETS = [
    ("native cached ≥ 0.95 of plain Envoy (side by side)", "native_hit_ratio", ">=", 0.95),
    ("native cached adds ≤ 3 µs Envoy CPU per request", "native_added_us", "<=", 3.0),
    ("native miss ≥ 1.1× the ext_authz peer (side by side)", "native_miss_vs_ext_authz", ">=", 1.1),
    ("wasm cached ≥ 0.80 of plain Envoy (side by side)", "wasm_hit_ratio", ">=", 0.80),
    ("wasm cached adds ≤ 10 µs Envoy CPU per request", "wasm_added_us", "<=", 10.0),
    ("token-service ≥ 5,000 durable client_credentials tokens/s", "issue_rps", ">=", 5000),
    ("token-service ≥ 30,000 checks/s", "check_rps", ">=", 30000),
    # Issue 21 (side by side with Envoy's jwt_authn, RS256).
    ("native cached JWT ≥ 1.05× jwt_authn with its cache", "native_vs_jwt_authn", ">=", 1.05),
    ("native cached opaque token ≥ 1.05× jwt_authn with its cache", "native_opaque_vs_jwt_authn", ">=", 1.05),
    ("wasm cached JWT ≥ 0.95× jwt_authn with its cache", "wasm_vs_jwt_authn", ">=", 0.95),
    ("wasm cached opaque token ≥ 0.95× jwt_authn with its cache", "wasm_opaque_vs_jwt_authn", ">=", 0.95),
    ("native new JWT each request ≥ 0.95× jwt_authn without its cache", "native_jwt_miss_vs_jwt_authn_uncached",
     ">=", 0.95),
    ("native new JWT each request ≥ 1.5× the ext_authz peer", "native_jwt_miss_vs_ext_authz", ">=", 1.5),
    ("wasm new JWT each request ≥ 1.0× the ext_authz peer", "wasm_jwt_miss_vs_ext_authz", ">=", 1.0),
    ("no token-service call for a JWT of a published key (checks sent in the JWT scenarios)", "jwt_checks_sent",
     "<=", 0),
]

EXT_AUTHZ_FILTER = """          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              http_service:
                server_uri: {{ uri: "http://127.0.0.1:{port}", cluster: token_service, timeout: 1s }}
                path_prefix: /gateway/v1/services/bench/ext_authz
                authorization_request:
                  allowed_headers:
                    patterns: [{{ exact: authorization }}]
                authorization_response:
                  allowed_upstream_headers:
                    patterns:
                    - {{ exact: x-consumer-id }}
                    - {{ exact: x-consumer-username }}
                    - {{ exact: x-authenticated-userid }}
                    - {{ exact: x-authenticated-scope }}
                    - {{ exact: x-credential-identifier }}
"""

# The empty dynamic module (bench/noop-module): loaded, called on every request, does nothing.
NOOP_FILTER = """          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config:
                name: bench_noop_module
              filter_name: noop
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: ""
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(message):
    print(f"==> {message}", flush=True)


class Processes:
    def __init__(self, directory):
        self.dir = directory
        self.children = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.dir, f"{name}.log"), "ab")
        child = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                 env={**os.environ, **(env or {})})
        self.children.append(child)
        return child

    def stop(self):
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()


def http(method, url, body=None, headers=None):
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(url, what, accept=lambda status: status < 500, headers=None):
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            status, _ = http("GET", url, headers=headers)
            if accept(status):
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: {what} did not become ready at {url}")


def render_envoy(directory, name, ports, transform, service="bench", wasm=WASM):
    env = {
        **os.environ,
        "ENVOY_ADMIN_PORT": str(ports["admin"]), "ENVOY_HTTP_PORT": str(ports["http"]),
        "ENVOY_HTTPS_PORT": str(ports["https"]), "ENVOY_LISTEN_ADDRESS": "127.0.0.1",
        "UPSTREAM_PORT": str(ports["upstream"]), "TOKEN_SERVICE_PORT": str(ports["gateway"]),
        "CERT_DIR": os.path.join(directory, "certs"), "SERVICE": service, "ROUTE_PREFIX": "/bench",
        "POLL_INTERVAL_MS": os.environ.get("BENCH_POLL_INTERVAL_MS", "1000"), "WASM_PATH": wasm,
    }
    rendered = subprocess.run([os.path.join(ROOT, "scripts", "render-envoy-config.sh")], env=env,
                              check=True, capture_output=True, text=True).stdout
    path = os.path.join(directory, f"envoy-{name}.yaml")
    with open(path, "w") as f:
        f.write(transform(rendered))
    return path


WASM_ENTRY = "          - name: envoy.filters.http.wasm"
ROUTER_ENTRY = "          - name: envoy.filters.http.router"


def lean(config):
    """The template's configuration without its access log (stdout, one line per request), which
    costs plain Envoy about as much CPU as the rest of a request: every scenario but (1L) is lean."""
    start = config.index("          access_log:\n")
    end = config.index("          route_config:\n")
    return config[:start] + config[end:]


def without_wasm(config):
    """The same listeners and route, with the oauth2 filter taken out."""
    return config[:config.index(WASM_ENTRY)] + config[config.index(ROUTER_ENTRY):]


def with_entry(entry):
    """The oauth2 filter's entry replaced by another `http_filters` entry."""
    def transform(config):
        plain = without_wasm(config)
        at = plain.index(ROUTER_ENTRY)
        return plain[:at] + entry + plain[at:]
    return transform


def with_identity_headers(config, headers):
    """Plain Envoy's route adds the headers the filter adds for the bench token (same names and
    values), so (2)/(1h) is the filter's own cost without the bigger request and echoed response."""
    start = config.index('                metadata: { filter_metadata: { oauth2: { service: "bench",')
    route = config[start:config.index("\n", start) + 1]
    added = "                request_headers_to_add:\n" + "".join(
        f'                - header: {{ key: {name}, value: "{value}" }}\n'
        "                  append_action: OVERWRITE_IF_EXISTS_OR_ADD\n" for name, value in headers.items())
    return config.replace(route, route + added, 1)


def one_service(config):
    """The filter configured with `route_metadata: false`: its `service` protects every route and
    no request reads the route's metadata, as for a listener whose routes all belong to one
    service (the bench's). (2wm)/(2nm) keep the template's metadata lookup, as a listener of
    many services needs."""
    config, n = re.subn(r'\{"service": "([^"]+)",', r'{"service": "\1", "route_metadata": false,', config, count=1)
    assert n == 1, "the template's filter configuration no longer starts with its service"
    return config


def native(config):
    """The wasm filter's entry swapped for the native build's (envoy/native-filter.yaml.tmpl) with
    the same JSON configuration, as the e2e harness does for OAUTH2_FILTER_BUILD=native."""
    start, end = config.index(WASM_ENTRY), config.index(ROUTER_ENTRY)
    json_start = config.index("value: |\n", start) + len("value: |\n")
    json_end = config.rindex("\n", 0, config.index("vm_config:", json_start))
    with open(os.path.join(ROOT, "envoy", "native-filter.yaml.tmpl")) as f:
        template = f.read()
    entry = template.replace("{{FILTER_CONFIG}}", config[json_start:json_end])
    return config[:start] + entry.rstrip() + "\n" + config[end:]


def wrk(url, seconds=SECONDS, connections=CONNECTIONS, headers=(), script=None, args=()):
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for header in headers:
        argv += ["-H", header]
    if script:
        argv += ["-s", os.path.join(BENCH, script)]
    argv.append(url)
    if args:
        argv += ["--", *args]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return parse_wrk(out)


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "requests": requests,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "errors": errors.group(1) if errors else ""}


def median_of(samples):
    keys = [k for k in samples[0] if k.startswith(("cpu_", "busy")) or k in ("rps", "p50", "p99", "miss", "checks", "local")]
    return {key: statistics.median(s[key] for s in samples) for key in keys}


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_line(result):
    return " ".join(f"{k[4:]} {v:.1f}" for k, v in result.items() if k.startswith("cpu_"))


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_times():
    """Per CPU (0 and 1): (busy, total) jiffies so far, from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                total = sum(v[:8])
                out[int(m.group(1))] = (total - v[3] - v[4], total)
    return out


def busy_since(before):
    """Each CPU's busy share since `before` (0..1): is the Envoy's CPU the bottleneck?"""
    after = cpu_times()
    return {cpu: (after[cpu][0] - b[0]) / max(1, after[cpu][1] - b[1]) for cpu, b in before.items()}


def measured(pids, load):
    """Runs `load` and adds each process's CPU microseconds per request to its result, and how
    busy each CPU was."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    cpus = cpu_times()
    result = load()
    busy = busy_since(cpus)
    for name, pid in pids.items():
        result[f"cpu_{name}"] = (cpu_seconds(pid) - before[name]) * 1e6 / max(1, result["requests"])
    result["busy0"], result["busy1"] = busy.get(0, 0), busy.get(1, 0)
    return result


def cache_counts(admin_port):
    """The filter's counters (either build): (cache misses, cache hits, checks sent to the
    token-service, JWTs verified locally)."""
    query = urllib.parse.quote(r"oauth2\.(cache|check|jwt)\.")
    _, body = http("GET", f"http://127.0.0.1:{admin_port}/stats?filter={query}")
    miss = hits = sent = local = 0
    for line in body.decode().splitlines():
        name, _, value = line.partition(": ")
        if not value.strip().isdigit():
            continue
        if name.endswith("oauth2.cache.miss"):
            miss += int(value)
        elif name.endswith(("oauth2.cache.hit_worker", "oauth2.cache.hit_shared")):
            hits += int(value)
        elif name.endswith("oauth2.check.sent"):
            sent += int(value)
        elif name.endswith("oauth2.jwt.verified_locally"):
            local += int(value)
    return miss, hits, sent, local


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    envoy = subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "model": model, "kernel": platform.release(), "envoy": envoy,
            "wrk": wrk_version, "rustc": rustc}


def build_noop_module():
    """bench/noop-module (its own tiny workspace, no dependencies) into target/bench-noop."""
    subprocess.run(["cargo", "build", "-q", "--release", "--manifest-path",
                    os.path.join(BENCH, "noop-module", "Cargo.toml"), "--target-dir", NOOP_DIR], check=True)


def main():
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed (make bench installs it)")
    for path, what in ((WASM, "the wasm filter (make build)"), (NATIVE, "the native filter (make build-native)")):
        if not os.path.exists(path):
            sys.exit(f"bench: {path} is missing: build {what}")
    say("building the empty dynamic module (bench/noop-module)")
    build_noop_module()
    directory = tempfile.mkdtemp(prefix="oauth2-bench-")
    procs = Processes(directory)
    try:
        run(directory, procs)
    finally:
        procs.stop()


def mint_jwts(url, ports, app, jwt_file):
    """JWT_TOKENS JWT access tokens of service bench-jwt into `jwt_file`, minted with
    client_credentials at the token-service (each RS256-signed and recorded durably); waits
    until both JWT Envoys accept them (the signing key reached their filters)."""
    endpoint = f"http://127.0.0.1:{ports['gateway']}/gateway/v1/services/bench-jwt/oauth2/token"
    body = (f"grant_type=client_credentials&client_id={app['client_id']}"
            f"&client_secret={app['client_secret']}&scope=steps")
    headers = ["x-gateway-tls: on", "x-gateway-prefix: /bench"]
    # The issuance rate from a run of its own with no limit: wrk divides by the whole duration
    # it was given, so a run that stops at `limit` tokens reports limit / duration.
    say("measuring JWT issuance (client_credentials at the token-service, RS256, durable records, 5 s)")
    jwt_minted = wrk(endpoint, seconds=5, connections=16, script="mint_jwts.lua", headers=headers,
                     args=(body, os.devnull, str(10 ** 9)))
    if jwt_minted["non2xx"]:
        sys.exit(f"bench: {jwt_minted['non2xx']} token requests refused while measuring JWT issuance")
    seconds = max(5, int(JWT_TOKENS / max(jwt_minted["rps"], 50) * 1.5) + 2)
    say(f"minting {JWT_TOKENS} JWT access tokens ({jwt_minted['rps']:.0f}/s measured; at most {seconds} s)")
    minting = wrk(endpoint, seconds=seconds, connections=16, script="mint_jwts.lua", headers=headers,
                  args=(body, jwt_file, str(JWT_TOKENS)))
    with open(jwt_file) as f:
        jwts = [line.strip() for line in f if line.strip()]
    if len(jwts) < min(JWT_TOKENS, 1000):
        sys.exit(f"bench: only {len(jwts)} JWTs minted ({minting['non2xx']} refusals); see {os.path.dirname(jwt_file)}")
    say(f"minted {len(jwts)} JWTs ({jwt_minted['rps']:.0f}/s, {len(jwts[0])} bytes each)")
    for name in ("wasm_jwt", "native_jwt"):
        wait_for(url[name], f"the {name} filter verifying a JWT", accept=lambda s: s == 200,
                 headers={"Authorization": f"Bearer {jwts[0]}"})
    return jwts, jwt_minted


def run(directory, procs):
    started = time.monotonic()
    ports = {k: free_port() for k in ("gateway", "admin", "upstream")}
    admin = f"http://127.0.0.1:{ports['admin']}"
    say(f"starting token-service and the demo upstream (work dir {directory})")
    pids = {}
    pids["token-service"] = procs.start("token-service", [os.path.join(TARGET, "release", "token-service"),
                                  "--database", os.path.join(directory, "bench.db"),
                                  "--gateway-listen", f"127.0.0.1:{ports['gateway']}",
                                  "--admin-listen", f"127.0.0.1:{ports['admin']}",
                                  # Room for every token minted for (3) next to the rest.
                                  "--index-entries", str(INDEX_ENTRIES)], env={"RUST_LOG": "warn"}).pid
    pids["upstream"] = procs.start("upstream", [os.path.join(TARGET, "release", "demo-upstream"),
                             "--listen", f"127.0.0.1:{ports['upstream']}"]).pid
    wait_for(f"{admin}/status", "token-service")
    wait_for(f"http://127.0.0.1:{ports['upstream']}/ready", "demo upstream")

    say("creating service, plugin, consumer and application through the admin API")
    _, service = http("POST", f"{admin}/services", {"name": "bench"})
    service = json.loads(service)
    # A service with no plugin: its filter passes everything, which measures each build's floor.
    http("POST", f"{admin}/services", {"name": "bench-off"})
    status, plugin = http("POST", f"{admin}/services/bench/plugins", {"name": "oauth2", "config": {
        "enable_client_credentials": True, "enable_authorization_code": True, "token_expiration": 3600,
        "scopes": ["steps"], "provision_key": "bench-provision-key"}})
    assert status == 201, plugin
    _, consumer = http("POST", f"{admin}/consumers", {"username": "bench"})
    consumer = json.loads(consumer)
    _, app = http("POST", f"{admin}/consumers/bench/oauth2", {"name": "bench", "redirect_uris": ["http://localhost/cb"]})
    app = json.loads(app)
    _, token = http("POST", f"{admin}/oauth2_tokens", {"credential": {"id": app["id"]}, "service": {"id": service["id"]},
                                                       "expires_in": 3600})
    valid = json.loads(token)["access_token"]
    # Issue 21: a service whose plugin issues RFC 9068 JWT access tokens, behind Envoys of its own
    # (a JWT names the service it was issued for: the filter refuses it for another).
    _, jwt_service = http("POST", f"{admin}/services", {"name": "bench-jwt"})
    jwt_service = json.loads(jwt_service)
    status, plugin = http("POST", f"{admin}/services/bench-jwt/plugins", {"name": "oauth2", "config": {
        "enable_client_credentials": True, "token_expiration": 3600, "scopes": ["steps"],
        "access_token_format": "jwt"}})
    if status != 201 and OUR_JWTS:
        sys.exit(f"bench: the token-service refused a plugin with access_token_format jwt ({status}): {plugin[:300]!r}")
    say(f"signing {JWT_AUTHN_TOKENS} RS256 JWTs with a key of the bench's for Envoy's jwt_authn (openssl + Python)")
    peer_key = jwt_peer.RsaKey.generate(directory)
    peer_jwts = [peer_key.jwt(jwt_peer.access_token_claims(JWT_AUTHN_ISSUER, consumer, app["client_id"], app["id"],
                                                           jwt_service["id"])) for _ in range(JWT_AUTHN_TOKENS)]
    peer_file = os.path.join(directory, "jwt-authn-tokens.txt")
    with open(peer_file, "w") as f:
        f.write("\n".join(peer_jwts) + "\n")

    subprocess.run([os.path.join(ROOT, "scripts", "make-cert.sh"), os.path.join(directory, "certs")], check=True,
                   capture_output=True)
    native_env = {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": os.path.dirname(NATIVE)}
    noop_env = {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": os.path.dirname(NOOP)}
    # name: (transform of the rendered template, service, environment)
    configs = {
        "plain": (lambda c: lean(without_wasm(c)), "bench", {}),
        "plain_log": (without_wasm, "bench", {}),
        "plain_headers": (lambda c: lean(with_identity_headers(without_wasm(c), {
            "x-consumer-id": consumer["id"], "x-consumer-username": "bench",
            "x-credential-identifier": app["client_id"]})), "bench", {}),
        "noop": (lambda c: lean(with_entry(NOOP_FILTER)(c)), "bench", noop_env),
        "wasm_floor": (lambda c: lean(one_service(c)), "bench-off", {}),
        "wasm": (lambda c: lean(one_service(c)), "bench", {}),
        "wasm_meta": (lean, "bench", {}),
        "native_floor": (lambda c: lean(native(one_service(c))), "bench-off", native_env),
        "native": (lambda c: lean(native(one_service(c))), "bench", native_env),
        "native_meta": (lambda c: lean(native(c)), "bench", native_env),
        "ext_authz": (lambda c: lean(with_entry(EXT_AUTHZ_FILTER.format(port=ports["gateway"]))(c)), "bench", {}),
        **({"wasm_jwt": (lambda c: lean(one_service(c)), "bench-jwt", {}),
            "native_jwt": (lambda c: lean(native(one_service(c))), "bench-jwt", native_env)} if OUR_JWTS else {}),
        "jwt_authn": (lambda c: lean(with_entry(jwt_peer.jwt_authn_filter(JWT_AUTHN_ISSUER, peer_key, cache=True))(c)),
                      "bench", {}),
        "jwt_authn_nocache": (lambda c: lean(with_entry(jwt_peer.jwt_authn_filter(JWT_AUTHN_ISSUER, peer_key,
                                                                                  cache=False))(c)), "bench", {}),
    }
    wasm_of = {}
    if WASM_B:
        configs["wasm_b"] = (lambda c: lean(one_service(c)), "bench", {})
        wasm_of["wasm_b"] = WASM_B
    if NATIVE_B:
        configs["native_b"] = (lambda c: lean(native(one_service(c))), "bench",
                               {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": os.path.dirname(NATIVE_B)})
    envoys = {}
    for name, (transform, svc, env) in configs.items():
        p = {**ports, "admin": free_port(), "http": free_port(), "https": free_port()}
        config = render_envoy(directory, name, p, transform, svc, wasm_of.get(name, WASM))
        pids[name] = procs.start(f"envoy-{name}", ["taskset", "-c", "0", ENVOY, "-c", config, "--concurrency", "1",
                                                   "--disable-hot-restart", "-l", os.environ.get("BENCH_ENVOY_LOG_LEVEL", "warning")], env=env).pid
        envoys[name] = p
    for name, p in envoys.items():
        wait_for(f"http://127.0.0.1:{p['admin']}/ready", f"Envoy ({name})", accept=lambda s: s == 200)
    url = {name: f"http://127.0.0.1:{p['http']}/bench/ping" for name, p in envoys.items()}
    for name in [n for n in ("wasm", "native", "wasm_meta", "native_meta", "wasm_b", "native_b", "wasm_jwt",
                             "native_jwt") if n in url]:
        wait_for(url[name], f"the {name} filter's first state poll", accept=lambda s: s == 401)
    for name in ("wasm_floor", "native_floor", "noop"):
        wait_for(url[name], f"the pass-through filter ({name})", accept=lambda s: s == 200)
    for name in ("jwt_authn", "jwt_authn_nocache"):
        wait_for(url[name], f"Envoy's jwt_authn ({name}) accepting the bench's JWT", accept=lambda s: s == 200,
                 headers={"Authorization": f"Bearer {peer_jwts[0]}"})

    say(f"minting {MISS_TOKENS} tokens for the cache-miss scenarios (admin API, durable writes)")
    minted = wrk(f"{admin}/oauth2_tokens", seconds=max(5, MISS_TOKENS // 4000), connections=16,
                 script="mint_tokens.lua", args=("miss-", app["id"], service["id"], "10000000", str(MISS_TOKENS)))
    available = max(1000, min(MISS_TOKENS, minted["requests"] - minted["non2xx"] - 64))
    say(f"minted ~{available} tokens ({minted['rps']:.0f}/s through the admin API)")

    jwt_file = os.path.join(directory, "jwts.txt")
    jwts, jwt_minted = mint_jwts(url, ports, app, jwt_file) if OUR_JWTS else ([""], {"rps": 0})

    bearer = f"Authorization: Bearer {valid}"
    cc_body = f"grant_type=client_credentials&client_id={app['client_id']}&client_secret={app['client_secret']}&scope=steps"
    authorize_body = (f"response_type=code&client_id={app['client_id']}&scope=steps&provision_key=bench-provision-key"
                      "&authenticated_userid=clark")
    # (3): each Envoy cycles through all the minted tokens, every run going on where its last one
    # stopped, so a token comes back only after `available` others went through the filter's
    # cache (16384 slots, a new token overwrites its slot): nearly every request misses.
    cursor = {"wasm": 0, "native": 0, "wasm_jwt": 0, "native_jwt": 0, "jwt_authn_nocache": 0}

    def miss(envoy):
        def go(r):
            # From miss-1: wrk asks the minting script for one request it never sends, so miss-0
            # is never minted (checked in the database); cycling through it made one 401 per lap.
            result = wrk(url[envoy], script="cycle_tokens.lua", args=("miss-", "1", str(available), str(cursor[envoy])))
            cursor[envoy] += result["requests"] + 2 * CONNECTIONS
            return result
        return go
    def cycle(envoy, path):
        """Each request another token of the file, each run going on where the last one stopped."""
        def go(r):
            result = wrk(url[envoy], script="cycle_file.lua", args=(path, str(cursor[envoy])))
            cursor[envoy] += result["requests"] + 2 * CONNECTIONS
            return result
        return go
    invalid_runs = iter(range(1_000_000))
    invalid = lambda envoy: lambda r: wrk(url[envoy], script="cycle_tokens.lua",
                                          args=(f"invalid-{next(invalid_runs)}-", "0", "100000000"))
    https = f"https://127.0.0.1:{envoys['wasm']['https']}/bench/oauth2"
    direct = f"http://127.0.0.1:{ports['gateway']}/gateway/v1/services/bench"
    get = lambda envoy, connections=CONNECTIONS, header=bearer: lambda r: wrk(url[envoy], connections=connections,
                                                                               headers=[header])
    jwt_bearer = f"Authorization: Bearer {jwts[0]}"
    peer_bearer = f"Authorization: Bearer {peer_jwts[0]}"
    # Each scenario: its title, the Envoy it loads (None: the token-service directly), its wrk run.
    scenarios = {
        "1": ("plain Envoy (no filter, no access log)", "plain", get("plain")),
        "1L": ("plain Envoy with the template's access log", "plain_log", get("plain_log")),
        "1h": ("plain Envoy adding the filter's identity headers", "plain_headers", get("plain_headers")),
        "0e": ("empty dynamic module (native floor)", "noop", get("noop")),
        "0w": ("wasm filter loaded, no plugin (wasm floor)", "wasm_floor", get("wasm_floor")),
        "0n": ("native filter loaded, no plugin", "native_floor", get("native_floor")),
        "2w": ("wasm filter, cached valid token", "wasm", get("wasm")),
        "2n": ("native filter, cached valid token", "native", get("native")),
        "2wm": ("wasm filter, cached valid token, service from route metadata", "wasm_meta", get("wasm_meta")),
        "2nm": ("native filter, cached valid token, service from route metadata", "native_meta", get("native_meta")),
        "3w": ("wasm filter, new token each request", "wasm", miss("wasm")),
        "3n": ("native filter, new token each request", "native", miss("native")),
        "4w": ("wasm filter, invalid tokens", "wasm", invalid("wasm")),
        "4n": ("native filter, invalid tokens", "native", invalid("native")),
        "5": ("ext_authz peer (valid token)", "ext_authz", get("ext_authz")),
        **({"2wj": ("wasm filter, cached JWT access token", "wasm_jwt", get("wasm_jwt", header=jwt_bearer)),
            "2nj": ("native filter, cached JWT access token", "native_jwt", get("native_jwt", header=jwt_bearer)),
            "3wj": ("wasm filter, new JWT each request (verified locally)", "wasm_jwt", cycle("wasm_jwt", jwt_file)),
            "3nj": ("native filter, new JWT each request (verified locally)", "native_jwt",
                    cycle("native_jwt", jwt_file))} if OUR_JWTS else {}),
        "7c": ("Envoy jwt_authn with its cache, same RS256 JWT", "jwt_authn", get("jwt_authn", header=peer_bearer)),
        "7u": ("Envoy jwt_authn without cache, new RS256 JWT each request", "jwt_authn_nocache",
               cycle("jwt_authn_nocache", peer_file)),
        **({"2wb": ("wasm filter B (BENCH_WASM_B), cached valid token", "wasm_b", get("wasm_b"))} if WASM_B else {}),
        **({"2nb": ("native filter B (BENCH_NATIVE_B), cached valid token", "native_b", get("native_b"))}
           if NATIVE_B else {}),
        "L1": ("latency, one connection: plain Envoy", "plain", get("plain", 1)),
        "L2w": ("latency, one connection: wasm, cached token", "wasm", get("wasm", 1)),
        "L2n": ("latency, one connection: native, cached token", "native", get("native", 1)),
        "6a": ("client_credentials issuance via Envoy (HTTPS, wasm)", "wasm", lambda r: wrk(
            f"{https}/token", script="post_body.lua", args=(cc_body,))),
        "6b": ("authorization codes issued via Envoy (HTTPS, wasm)", "wasm", lambda r: wrk(
            f"{https}/authorize", script="post_body.lua", args=(authorize_body,))),
        "6c": ("token checks at the token-service", None, lambda r: wrk(
            f"{direct}/token", headers=[f"x-access-token: {valid}"])),
        "6d": ("client_credentials issuance at the token-service", None, lambda r: wrk(
            f"{direct}/oauth2/token", script="post_body.lua", args=(cc_body,), headers=["x-gateway-tls: on"])),
    }
    only = ONLY
    if only:
        scenarios = {key: s for key, s in scenarios.items() if key in only}
    samples = {key: [] for key in scenarios}
    for r in range(ROUNDS):
        for key, (title, envoy, scenario) in scenarios.items():
            # An Envoy proxying to the upstream has CPU 0 to itself (the services share CPU 1 with
            # wrk); where issuing tokens is the work (6), the token-service may use both CPUs.
            for helper in ("token-service", "upstream"):
                pin(pids[helper], {0, 1} if key.startswith("6") else {1})
            watched = {"envoy": pids[envoy]} if envoy else {}
            watched.update({"service": pids["token-service"], "upstream": pids["upstream"]})
            counted = key.startswith("3") or key.endswith("j")
            counts = cache_counts(envoys[envoy]["admin"]) if counted else None
            result = measured(watched, lambda: scenario(r))
            if counts:
                after = cache_counts(envoys[envoy]["admin"])
                result["miss"] = (after[0] - counts[0]) / max(1, after[0] - counts[0] + after[1] - counts[1])
                result["checks"] = after[2] - counts[2]
                result["local"] = (after[3] - counts[3]) / max(1, result["requests"])
            samples[key].append(result)
            print(f"    round {r + 1}/{ROUNDS}  {key:>3} {title:<52} {result['rps']:>8.0f} req/s  "
                  f"p50 {result['p50']:.2f} ms  p99 {result['p99']:.2f} ms  non-2xx {result['non2xx']}  "
                  f"CPU us/req: {cpu_line(result)}  busy cpu0 {result['busy0']:.0%} cpu1 {result['busy1']:.0%}"
                  + (f"  cache misses {result['miss']:.1%}" if "miss" in result else "")
                  + (f"  checks sent {result['checks']}  JWTs verified locally {result['local']:.1%}"
                     if "checks" in result else ""), flush=True)

    results = {key: median_of(s) for key, s in samples.items()}
    profiles = {}
    for key in [k for k in os.environ.get("BENCH_PERF", "").split(",") if k in scenarios]:
        title, envoy, scenario = scenarios[key]
        if envoy:
            say(f"profiling ({key}) {title}: perf record on its Envoy for one more run")
            profiles[key] = profile(directory, key, pids[envoy], lambda: scenario(None))
            print(profiles[key], flush=True)
    if profiles:
        write_profiles(profiles, titles={k: v[0] for k, v in scenarios.items()})
    if only:
        # A partial run rewrites nothing; BENCH_PAIRS=2n/1,2w/1 loads those pairs side by side.
        for a, b in [p.split("/") for p in os.environ.get("BENCH_PAIRS", "").split(",") if "/" in p]:
            if a in scenarios and b in scenarios:
                print_pair(a, b, scenarios, side_by_side(scenarios[a], scenarios[b], pids))
        return

    say(f"side by side: each pair loaded at the same time, {PAIR_ROUNDS} runs of {SECONDS} s")
    for helper in ("token-service", "upstream"):
        pin(pids[helper], {1})
    pairs = {}
    for a, b in PAIRS:
        pairs[(a, b)] = side_by_side(scenarios[a], scenarios[b], pids)
        print_pair(a, b, scenarios, pairs[(a, b)])
    ratio = lambda a, b: statistics.median(x["q"] for x in pairs[(a, b)])
    added = lambda a, b: statistics.median(x["added"] for x in pairs[(a, b)])
    seq_added = lambda a, b: statistics.median(x["cpu_envoy"] - y["cpu_envoy"] for x, y in zip(samples[a], samples[b]))
    summary = {
        "wasm_hit_ratio": ratio("2w", "1"), "native_hit_ratio": ratio("2n", "1"),
        "native_miss_vs_ext_authz": ratio("3n", "5"),
        "wasm_added_us": added("2w", "1"), "native_added_us": added("2n", "1"),
        "issue_rps": results["6d"]["rps"], "check_rps": results["6c"]["rps"],
        "native_vs_jwt_authn": ratio("2nj", "7c"), "wasm_vs_jwt_authn": ratio("2wj", "7c"),
        "native_opaque_vs_jwt_authn": ratio("2n", "7c"), "wasm_opaque_vs_jwt_authn": ratio("2w", "7c"),
        "native_jwt_miss_vs_jwt_authn_uncached": ratio("3nj", "7u"),
        "native_jwt_miss_vs_ext_authz": ratio("3nj", "5"), "wasm_jwt_miss_vs_ext_authz": ratio("3wj", "5"),
        "native_jwt_added_vs_jwt_authn_us": added("2nj", "7c"), "wasm_jwt_added_vs_jwt_authn_us": added("2wj", "7c"),
        "native_jwt_miss_added_vs_jwt_authn_uncached_us": added("3nj", "7u"),
        # Every check the JWT Envoys sent the token-service during the JWT scenarios' rounds.
        "jwt_checks_sent": sum(x["checks"] for k in ("2wj", "2nj", "3wj", "3nj") for x in samples[k]),
        "jwt_issue_rps": jwt_minted["rps"],
    }
    extra = {
        "seq_wasm_added_us": seq_added("2w", "1"), "seq_native_added_us": seq_added("2n", "1"),
        "added_p50_w": results["L2w"]["p50"] - results["L1"]["p50"],
        "added_p99_w": results["L2w"]["p99"] - results["L1"]["p99"],
        "added_p50_n": results["L2n"]["p50"] - results["L1"]["p50"],
        "added_p99_n": results["L2n"]["p99"] - results["L1"]["p99"],
        "minutes": (time.monotonic() - started) / 60,
    }
    titles = {key: title for key, (title, _, _) in scenarios.items()}
    sizes = {what: os.path.getsize(path) for what, path in (("wasm", WASM), ("native", NATIVE), ("noop", NOOP))}
    line = bench_line(summary)
    write_report(titles, results, summary, extra, samples, pairs, machine(), sizes,
                 service_memory(pids["token-service"]), line)
    print()
    for key, r in results.items():
        envoy_cpu = f"{r['cpu_envoy']:6.1f} us/req" if "cpu_envoy" in r else "      –      "
        print(f"{key:>3} {titles[key]:<52} {r['rps']:>9.0f} req/s   p50 {r['p50']:6.2f} ms   p99 {r['p99']:6.2f} ms"
              f"   Envoy CPU {envoy_cpu}")
    for (a, b), runs in pairs.items():
        print(f"ratio {a}/{b}: side by side {ratio(a, b):.2f} (sequential {results[a]['rps'] / results[b]['rps']:.2f}),"
              f" Envoy CPU added {added(a, b):+.1f} us/req (sequential {seq_added(a, b):+.1f})")
    for title, key, op, bound in TARGETS:
        print(f"target {'met   ' if met(summary[key], op, bound) else 'MISSED'} {title}: {summary[key]:.2f}")
    print(f"wrote BENCHMARKS.md ({extra['minutes']:.1f} min)")
    print(line)


def print_pair(a, b, scenarios, runs):
    """One side-by-side pair's runs, as the log shows them."""
    print(f"    {a:>3} / {b:<3} {scenarios[a][0]} / {scenarios[b][0]}: median "
          f"{statistics.median(x['q'] for x in runs):.3f}  runs {' '.join(format(x['q'], '.3f') for x in runs)}  "
          f"Envoy CPU added (us/req) {statistics.median(x['added'] for x in runs):.1f}  "
          f"busy cpu0 {statistics.median(x['busy0'] for x in runs):.0%} "
          f"cpu1 {statistics.median(x['busy1'] for x in runs):.0%}", flush=True)


def profile(directory, key, pid, load):
    """`perf record` (cpu-clock, 1 kHz, DWARF call chains) of one Envoy during a run of `load`; returns the share of its
    samples per shared object and the hottest symbols (Envoy's own binary is stripped: its code
    shows as addresses; the modules, libc and the kernel have names; V8's JIT code is anonymous)."""
    if not shutil.which("perf"):
        return "perf is not installed (Debian: linux-perf)"
    data = os.path.join(directory, f"perf-{key}.data")
    recorder = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1000", "--call-graph", "dwarf,8192",
                                 "-p", str(pid), "-o", data,
                                 "--", "sleep", str(SECONDS)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    result = load()
    recorder.wait()
    def report(sort, n, *extra):
        out = subprocess.run(["perf", "report", "-i", data, "--sort", sort, "--stdio", "-g", "none",
                              "--percent-limit", "0.3", *extra], capture_output=True, text=True).stdout
        return [line.rstrip() for line in out.splitlines() if line.strip() and not line.startswith("#")][:n]
    by_dso = report("dso", 10, "--no-children")
    by_sym = report("dso,sym", 20, "--no-children")
    # With call chains (DWARF unwinding): the module's hooks including the Envoy callbacks they make.
    hooks = [line for line in report("sym", 400, "--children") if "envoy_dynamic_module_" in line]
    if hooks:
        by_sym += ["dynamic-module hooks and callbacks, inclusive (children) and self:"] + hooks[:15]
    return (f"({key}) {result['rps']:.0f} req/s under perf; share of the Envoy's samples by shared object:\n"
            + "\n".join(by_dso) + "\nhottest symbols:\n" + "\n".join(by_sym))


def write_profiles(profiles, titles):
    """bench/PROFILES.md: the profiles of the last run with BENCH_PERF."""
    command = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith("BENCH_"))
    lines = ["# Profiles", "",
             f"Recorded {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} with "
             f"`{command} python3 bench/bench.py`: `perf record -e cpu-clock -F 1000 --call-graph dwarf` on the "
             f"Envoy of each scenario for one more run of {SECONDS} s (scenarios as in BENCHMARKS.md). Envoy's own "
             "binary is stripped: its code shows as addresses, but the dynamic-module ABI's callbacks "
             "(`envoy_dynamic_module_callback_*`) are exported and named, and the module's hooks "
             "(`envoy_dynamic_module_on_*`) are shown inclusive of the callbacks they make. The first column is "
             "inclusive (children), the second the symbol's own share. V8's JIT code is anonymous.", ""]
    for key, text in profiles.items():
        lines += [f"## ({key}) {titles[key]}", "", "```", text, "```", ""]
    with open(os.path.join(BENCH, "PROFILES.md"), "w") as f:
        f.write("\n".join(lines))


def bench_line(s):
    return (f"bench: wasm_hit_ratio={s['wasm_hit_ratio']:.2f} native_hit_ratio={s['native_hit_ratio']:.2f} "
            f"native_miss_vs_ext_authz={s['native_miss_vs_ext_authz']:.2f} wasm_added_us={s['wasm_added_us']:.1f} "
            f"native_added_us={s['native_added_us']:.1f} issue_rps={s['issue_rps']:.0f} check_rps={s['check_rps']:.0f} "
            f"native_vs_jwt_authn={s['native_vs_jwt_authn']:.2f} wasm_vs_jwt_authn={s['wasm_vs_jwt_authn']:.2f} "
            f"native_opaque_vs_jwt_authn={s['native_opaque_vs_jwt_authn']:.2f} "
            f"wasm_opaque_vs_jwt_authn={s['wasm_opaque_vs_jwt_authn']:.2f} "
            f"native_jwt_miss_vs_jwt_authn_uncached={s['native_jwt_miss_vs_jwt_authn_uncached']:.2f} "
            f"native_jwt_miss_vs_ext_authz={s['native_jwt_miss_vs_ext_authz']:.2f} "
            f"wasm_jwt_miss_vs_ext_authz={s['wasm_jwt_miss_vs_ext_authz']:.2f} "
            f"native_jwt_added_vs_jwt_authn_us={s['native_jwt_added_vs_jwt_authn_us']:.1f} "
            f"wasm_jwt_added_vs_jwt_authn_us={s['wasm_jwt_added_vs_jwt_authn_us']:.1f} "
            f"native_jwt_miss_added_vs_jwt_authn_uncached_us={s['native_jwt_miss_added_vs_jwt_authn_uncached_us']:.1f} "
            f"jwt_checks_sent={s['jwt_checks_sent']} jwt_issue_rps={s['jwt_issue_rps']:.0f}")


def met(value, op, bound):
    return value >= bound if op == ">=" else value <= bound


def pin(pid, cpus):
    """Moves every thread of a running process to `cpus` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass  # a thread that just ended


def side_by_side(a, b, pids):
    """Loads two Envoys at once (both pinned to CPU 0, so they share it) and returns, per run,
    a's requests/s over b's (the ratio of what each request costs, with any machine noise hitting
    both sides alike) and the Envoy CPU per request a adds over b, measured in the same run."""
    (_, envoy_a, run_a), (_, envoy_b, run_b) = a, b
    assert envoy_a != envoy_b, "a pair needs two Envoys"
    runs = []
    for _ in range(PAIR_ROUNDS):
        out = {}
        before = {k: cpu_seconds(pids[e]) for k, e in (("a", envoy_a), ("b", envoy_b))}
        cpus = cpu_times()
        threads = [threading.Thread(target=lambda k, run: out.__setitem__(k, run(None)), args=(k, run))
                   for k, run in (("a", run_a), ("b", run_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        busy = busy_since(cpus)
        cpu = {k: (cpu_seconds(pids[e]) - before[k]) * 1e6 / max(1, out[k]["requests"])
               for k, e in (("a", envoy_a), ("b", envoy_b))}
        runs.append({"q": out["a"]["rps"] / out["b"]["rps"], "added": cpu["a"] - cpu["b"],
                     "cpu_a": cpu["a"], "cpu_b": cpu["b"], "busy0": busy.get(0, 0), "busy1": busy.get(1, 0)})
    return runs


def service_memory(pid):
    """The token-service's resident memory (MiB) at the end of the run."""
    with open(f"/proc/{pid}/status") as f:
        kib = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    return kib / 1024


def write_report(titles, results, summary, extra, samples, pairs, m, sizes, service_mib, line):
    seq = lambda a, b: results[a]["rps"] / results[b]["rps"]
    seq_added = lambda a, b: statistics.median(x["cpu_envoy"] - y["cpu_envoy"] for x, y in zip(samples[a], samples[b]))
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} with `make bench` "
        f"(`python3 bench/bench.py`, {extra['minutes']:.1f} min): {ROUNDS} interleaved rounds of {SECONDS} s per "
        f"scenario, wrk with 1 thread and {CONNECTIONS} connections (L: 1 connection) pinned to CPU 1, each Envoy "
        "with one worker pinned to CPU 0; in (0)–(5) and (L) the token-service (in-memory check index of up to "
        f"{INDEX_ENTRIES} tokens) and the demo upstream run on CPU 1 too, so CPU 0 is the Envoys' alone; in (6) "
        "they may use both CPUs. Figures are the median of the rounds. Loopback only.",
        "",
        "**The baseline is lean**: no Envoy has an access log except (1L), which keeps the stack's template "
        "as it is (one line per request to stdout, here a file) for information: every CPU µs a baseline spends "
        "on work a filter does not add flatters the filter's ratios. In this run that log cost plain Envoy "
        f"{statistics.median(x['added'] for x in pairs[('1L', '1')]):+.1f} µs per request side by side "
        f"({seq_added('1L', '1'):+.1f} sequentially; requests/s quotient "
        f"{statistics.median(x['q'] for x in pairs[('1L', '1')]):.2f}).",
        "",
        f"Ratios are measured side by side: both scenarios of a ratio are loaded at the same time ({PAIR_ROUNDS} runs "
        f"of {SECONDS} s, two wrk processes on CPU 1), their two Envoys sharing CPU 0; the ratio is the median of "
        "the runs' requests/s quotients, and the CPU a filter adds is the median of the runs' differences of Envoy "
        "CPU µs per request, both Envoys measured in the same seconds. On this shared VM one Envoy's throughput "
        "moves by tens of percent from one run to the next, which sequential runs turn into noise; loaded "
        "together, both sides see the same machine.",
        "",
        f"Machine: {m['cpus']} CPUs, {m['model']}, Linux {m['kernel']}. Envoy {m['envoy']}. {m['wrk']}. {m['rustc']}.",
        f"Filter builds: wasm {sizes['wasm']} bytes (`target/wasm32-wasip1/wasm/oauth2_filter.wasm`), native "
        f"{sizes['native']} bytes (`target/release/liboauth2_filter_native.so`, dynamic-module ABI v0.2.0); the empty "
        f"dynamic module {sizes['noop']} bytes (`bench/noop-module`). Token-service resident memory at the end: "
        f"{service_mib:.0f} MiB.",
        "",
        f"    {line}",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "| --- | ---: | --- |",
    ]
    for title, key, op, bound in TARGETS:
        value = summary[key]
        shown = f"{value:.2f}" if value < 100 else f"{value:.0f}"
        lines.append(f"| {title} | {shown} | {'met' if met(value, op, bound) else '**missed**'} |")
    lines += [
        "",
        f"The µs added are side by side; sequentially (each Envoy alone on CPU 0, medians of the rounds' "
        f"differences): wasm {extra['seq_wasm_added_us']:+.1f} µs, native {extra['seq_native_added_us']:+.1f} µs. "
        f"Plain Envoy costs {results['1']['cpu_envoy']:.1f} µs of Envoy CPU per request here, so a filter keeping "
        f"0.95 of its throughput may add {results['1']['cpu_envoy'] / 0.95 - results['1']['cpu_envoy']:.1f} µs and "
        f"one keeping 0.80 {results['1']['cpu_envoy'] / 0.8 - results['1']['cpu_envoy']:.1f} µs: on a lean "
        "baseline the ratio targets are the stricter ones. The empty dynamic module (0e) and the identity "
        "headers alone (1h) show how much of that no filter code can save.",
        "",
        "## Side by side",
        "",
        "| ratio | requests/s, side by side | sequential (medians) | Envoy CPU added µs/req, side by side | sequential |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for (a, b), runs in pairs.items():
        lines.append(f"| {a} / {b}: {titles[a]} / {titles[b]} | {statistics.median(x['q'] for x in runs):.2f} | "
                     f"{seq(a, b):.2f} | {statistics.median(x['added'] for x in runs):+.1f} | {seq_added(a, b):+.1f} |")
    lines += [
        "",
        "## Every scenario",
        "",
        "| # | scenario | requests/s | p50 ms | p99 ms | Envoy CPU µs/req | token-service CPU µs/req | CPU 0 / CPU 1 busy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, r in results.items():
        envoy_cpu = f"{r['cpu_envoy']:.1f}" if "cpu_envoy" in r else "–"
        lines.append(f"| {key} | {titles[key]} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {envoy_cpu} | "
                     f"{r['cpu_service']:.0f} | {r['busy0']:.0%} / {r['busy1']:.0%} |")
    lines += [
        "",
        f"Latency a cached check adds, one connection (L2 − L1): wasm p50 {extra['added_p50_w'] * 1000:+.0f} µs, "
        f"p99 {extra['added_p99_w'] * 1000:+.0f} µs; native p50 {extra['added_p50_n'] * 1000:+.0f} µs, "
        f"p99 {extra['added_p99_n'] * 1000:+.0f} µs.",
        "Share of (3)'s requests that missed the filter's cache (its own counters): "
        f"wasm {results['3w']['miss']:.1%}, native {results['3n']['miss']:.1%}; JWTs (3wj) "
        f"{results['3wj']['miss']:.1%}, (3nj) {results['3nj']['miss']:.1%}; requests whose JWT the filter verified "
        f"itself (its counter `oauth2.jwt.verified_locally`): (3wj) {results['3wj']['local']:.1%}, (3nj) "
        f"{results['3nj']['local']:.1%} (no call: the "
        f"JWT Envoys sent the token-service {summary['jwt_checks_sent']} checks in all of (2wj), (2nj), (3wj) and "
        f"(3nj)). JWTs minted beforehand: {summary['jwt_issue_rps']:.0f}/s (client_credentials, RS256, "
        "at the token-service directly, durable records).",
        "",
        "Scenario notes: (1) is plain Envoy, lean: the baseline of every ratio. (1L) is the same with the",
        "stack's access log. (1h) is plain Envoy whose route adds the three identity headers the filter adds",
        "for the bench token (same names and values): the upstream echoes request headers, so they make both",
        "the upstream request and the response bigger, which (2)/(1h) leaves out of the filter's cost. (0e)",
        "loads a dynamic module that does nothing (`bench/noop-module`: every entry point of the ABI returns",
        "continue), the floor of any native filter; (0w) and (0n) load the",
        "wasm and native filters for a service without a plugin, so the filter only reads its settings and",
        "passes the request on. The filters of (0w), (0n) and (2)–(4) are configured with `route_metadata:",
        "false` (the bench's one route belongs to one service: the filter's `service` protects it and no",
        "request reads the route's metadata); (2wm) and (2nm) read it as a listener of many services must.",
        "(2)–(5) request `GET /bench/ping` (the demo upstream's echo) with a bearer",
        "token; the plain Envoys forward it unchecked. (3) cycles through tokens minted beforehand through",
        "the admin API, each Envoy going on where its last run stopped, so a token comes back only after all",
        "the others went through the filter's cache and nearly every request is checked by the token-service.",
        "(4) sends a different made-up token on every request (negative-cached per token). (5) is Envoy's",
        "own `ext_authz` HTTP filter calling the token-service's ext_authz endpoint for every request: the",
        "peer of (3), one call per request. (L) repeat (1) and (2) with one connection, so nothing queues.",
        "(2wj)/(2nj) and (3wj)/(3nj) are (2) and (3) with RFC 9068 JWT access tokens (RS256) of a plugin",
        "with `access_token_format: jwt` (service bench-jwt, its own Envoys): (2wj)/(2nj) send one JWT",
        "again and again (the filter's cached verdict); (3wj)/(3nj) cycle through JWTs minted beforehand",
        "(client_credentials), so each request brings a JWT the cache no longer holds and the filter",
        "verifies it itself (signature, claims), without a call. (7c) and (7u) are Envoy's own `jwt_authn`",
        "filter, one provider with an RS256 key the bench generates (`local_jwks` inline, no fetch), JWTs of",
        "the same claims and length, the Authorization header forwarded and the three identity headers set",
        "from claims (`claim_to_headers`) as our filter sets them: (7c) with `jwt_cache_config` and one JWT",
        "(its cache's hit), (7u) without the cache and a new JWT each request (Envoy's C++ verify every time).",
        "(6a) mints `client_credentials` tokens through Envoy (wasm filter) over HTTPS, each a durable SQLite",
        "write (WAL, synchronous=FULL, group commit); (6b) issues authorization codes the same way; (6c)",
        "calls the token-service's check endpoint directly; (6d) mints `client_credentials` tokens at the",
        "token-service directly: the service's own capacity (`issue_rps`), without the relay through Envoy.",
        "CPU columns: CPU time the process used during the run divided by the requests served (the Envoy",
        "under test, all its threads; the token-service). The busy column says which CPU was the bottleneck:",
        "where CPU 0 is not near 100%, Envoy was waiting for wrk, the upstream or the token-service on CPU 1,",
        "and its requests/s understate what it could do (its CPU per request does not).",
        "",
        "Per-round samples (requests/s):",
        "",
    ]
    for key, s in samples.items():
        lines.append(f"- {key} {titles[key]}: " + ", ".join(f"{x['rps']:.0f}" for x in s))
    lines += ["", "Side-by-side runs (quotients of requests/s; Envoy CPU µs/req of a and b; CPU 0 busy):", ""]
    for (a, b), runs in pairs.items():
        lines.append(f"- {a} / {b}: " + ", ".join(f"{x['q']:.3f} ({x['cpu_a']:.1f}/{x['cpu_b']:.1f}, {x['busy0']:.0%})"
                                                  for x in runs))
    lines += ["", line]
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
