#!/usr/bin/env python3
"""`make bench`: the filter measured against plain Envoy and Envoy's ext_authz, side by side.

Starts the real processes (token-service with its SQLite file, the demo upstream, and three
Envoys rendered from envoy/envoy.yaml.tmpl: with the oauth2 filter, without any filter, and
with Envoy's native ext_authz filter calling the token-service), then drives them with wrk on
loopback, interleaving the scenarios round by round so machine noise hits all alike. Prints
requests/s and p50/p99 per scenario, the ratios, writes BENCHMARKS.md, and ends with the
`bench:` summary line.
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
import time
import urllib.request
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
MISS_TOKENS = int(os.environ.get("BENCH_MISS_TOKENS", "60000"))
ENVOY = os.environ.get("ENVOY", os.path.join(ROOT, ".venv", "bin", "envoy"))
TARGET = os.path.join(ROOT, "target")

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


def wait_for(url, what, accept=lambda status: status < 500):
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            status, _ = http("GET", url)
            if accept(status):
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: {what} did not become ready at {url}")


def render_envoy(directory, name, ports, transform, service="bench"):
    env = {
        **os.environ,
        "ENVOY_ADMIN_PORT": str(ports["admin"]), "ENVOY_HTTP_PORT": str(ports["http"]),
        "ENVOY_HTTPS_PORT": str(ports["https"]), "ENVOY_LISTEN_ADDRESS": "127.0.0.1",
        "UPSTREAM_PORT": str(ports["upstream"]), "TOKEN_SERVICE_PORT": str(ports["gateway"]),
        "CERT_DIR": os.path.join(directory, "certs"), "SERVICE": service, "ROUTE_PREFIX": "/bench",
        "POLL_INTERVAL_MS": "1000",
        "WASM_PATH": os.path.join(TARGET, "wasm32-wasip1", "wasm", "oauth2_filter.wasm"),
    }
    rendered = subprocess.run([os.path.join(ROOT, "scripts", "render-envoy-config.sh")], env=env,
                              check=True, capture_output=True, text=True).stdout
    path = os.path.join(directory, f"envoy-{name}.yaml")
    with open(path, "w") as f:
        f.write(transform(rendered))
    return path


def without_wasm(config):
    """The same listeners and route, with the oauth2 filter taken out."""
    start = config.index("          - name: envoy.filters.http.wasm")
    end = config.index("          - name: envoy.filters.http.router")
    return config[:start] + config[end:]


def with_ext_authz(port):
    def transform(config):
        plain = without_wasm(config)
        at = plain.index("          - name: envoy.filters.http.router")
        return plain[:at] + EXT_AUTHZ_FILTER.format(port=port) + plain[at:]
    return transform


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
    return {key: statistics.median(s[key] for s in samples) for key in ("rps", "p50", "p99")}


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


def main():
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed (make bench installs it)")
    directory = tempfile.mkdtemp(prefix="oauth2-bench-")
    procs = Processes(directory)
    try:
        run(directory, procs)
    finally:
        procs.stop()


def run(directory, procs):
    ports = {k: free_port() for k in ("gateway", "admin", "upstream")}
    admin = f"http://127.0.0.1:{ports['admin']}"
    say(f"starting token-service and the demo upstream (work dir {directory})")
    procs.start("token-service", [os.path.join(TARGET, "release", "token-service"),
                                  "--database", os.path.join(directory, "bench.db"),
                                  "--gateway-listen", f"127.0.0.1:{ports['gateway']}",
                                  "--admin-listen", f"127.0.0.1:{ports['admin']}"], env={"RUST_LOG": "warn"})
    procs.start("upstream", [os.path.join(TARGET, "release", "demo-upstream"),
                             "--listen", f"127.0.0.1:{ports['upstream']}"])
    wait_for(f"{admin}/status", "token-service")
    wait_for(f"http://127.0.0.1:{ports['upstream']}/ready", "demo upstream")

    say("creating service, plugin, consumer and application through the admin API")
    _, service = http("POST", f"{admin}/services", {"name": "bench"})
    service = json.loads(service)
    # A service with no plugin: its filter passes everything, which measures the wasm floor.
    http("POST", f"{admin}/services", {"name": "bench-off"})
    status, plugin = http("POST", f"{admin}/services/bench/plugins", {"name": "oauth2", "config": {
        "enable_client_credentials": True, "enable_authorization_code": True, "token_expiration": 3600,
        "scopes": ["steps"], "provision_key": "bench-provision-key"}})
    assert status == 201, plugin
    http("POST", f"{admin}/consumers", {"username": "bench"})
    _, app = http("POST", f"{admin}/consumers/bench/oauth2", {"name": "bench", "redirect_uris": ["http://localhost/cb"]})
    app = json.loads(app)
    _, token = http("POST", f"{admin}/oauth2_tokens", {"credential": {"id": app["id"]}, "service": {"id": service["id"]},
                                                       "expires_in": 3600})
    valid = json.loads(token)["access_token"]

    subprocess.run([os.path.join(ROOT, "scripts", "make-cert.sh"), os.path.join(directory, "certs")], check=True,
                   capture_output=True)
    envoys = {}
    for name, transform, svc in (("filter", lambda c: c, "bench"), ("plain", without_wasm, "bench"),
                                 ("ext_authz", with_ext_authz(ports["gateway"]), "bench"),
                                 ("floor", lambda c: c, "bench-off")):
        p = {**ports, "admin": free_port(), "http": free_port(), "https": free_port(),
             "upstream": ports["upstream"], "gateway": ports["gateway"]}
        config = render_envoy(directory, name, p, transform, svc)
        procs.start(f"envoy-{name}", ["taskset", "-c", "0", ENVOY, "-c", config, "--concurrency", "1",
                                      "--disable-hot-restart", "-l", "warning"])
        envoys[name] = p
        wait_for(f"http://127.0.0.1:{p['admin']}/ready", f"Envoy ({name})", accept=lambda s: s == 200)
    url = {name: f"http://127.0.0.1:{p['http']}/bench/ping" for name, p in envoys.items()}
    wait_for(url["filter"], "the filter's first state poll", accept=lambda s: s == 401)
    wait_for(url["floor"], "the pass-through filter's first state poll", accept=lambda s: s == 200)

    say(f"minting {MISS_TOKENS} tokens for the cache-miss scenario (admin API, durable writes)")
    minted = wrk(f"{admin}/oauth2_tokens", seconds=max(5, MISS_TOKENS // 2500), connections=16,
                 script="mint_tokens.lua", args=("miss-", app["id"], service["id"], "10000000"))
    available = max(1000, minted["requests"] - minted["non2xx"] - 64)
    say(f"minted ~{available} tokens ({minted['rps']:.0f}/s through the admin API)")

    bearer = f"Authorization: Bearer {valid}"
    cc_body = f"grant_type=client_credentials&client_id={app['client_id']}&client_secret={app['client_secret']}&scope=steps"
    authorize_body = (f"response_type=code&client_id={app['client_id']}&scope=steps&provision_key=bench-provision-key"
                      "&authenticated_userid=clark")
    per_round = available // ROUNDS
    scenarios = {
        "1 plain Envoy (no filter)": lambda r: wrk(url["plain"], headers=[bearer]),
        "0 filter loaded, no plugin (wasm floor)": lambda r: wrk(url["floor"], headers=[bearer]),
        "2 filter, cached valid token": lambda r: wrk(url["filter"], headers=[bearer]),
        "3 filter, new token each request": lambda r: wrk(url["filter"], script="cycle_tokens.lua",
                                                         args=("miss-", str(r * per_round), str(per_round))),
        "4 filter, invalid tokens": lambda r: wrk(url["filter"], script="cycle_tokens.lua",
                                                 args=(f"invalid-{r}-", "0", "100000000")),
        "5 ext_authz peer (valid token)": lambda r: wrk(url["ext_authz"], headers=[bearer]),
        "6a client_credentials issuance via Envoy": lambda r: wrk(
            f"https://127.0.0.1:{envoys['filter']['https']}/bench/oauth2/token", script="post_body.lua", args=(cc_body,)),
        "6b authorization codes issued via Envoy": lambda r: wrk(
            f"https://127.0.0.1:{envoys['filter']['https']}/bench/oauth2/authorize", script="post_body.lua",
            args=(authorize_body,)),
        "6c token checks at the token-service": lambda r: wrk(
            f"http://127.0.0.1:{ports['gateway']}/gateway/v1/services/bench/token", headers=[f"x-access-token: {valid}"]),
    }
    samples = {name: [] for name in scenarios}
    for r in range(ROUNDS):
        for name, scenario in scenarios.items():
            result = scenario(r)
            samples[name].append(result)
            print(f"    round {r + 1}/{ROUNDS}  {name:<42} {result['rps']:>9.0f} req/s  p50 {result['p50']:.2f} ms  "
                  f"p99 {result['p99']:.2f} ms  non-2xx {result['non2xx']}", flush=True)

    results = {name: median_of(s) for name, s in samples.items()}
    plain = results["1 plain Envoy (no filter)"]["rps"]
    ratio = lambda name, base=plain: results[name]["rps"] / base
    summary = {
        "cache_hit_ratio": ratio("2 filter, cached valid token"),
        "miss_ratio": ratio("3 filter, new token each request"),
        "invalid_ratio": ratio("4 filter, invalid tokens"),
        "floor_ratio": ratio("0 filter loaded, no plugin (wasm floor)"),
        "vs_ext_authz": ratio("2 filter, cached valid token", results["5 ext_authz peer (valid token)"]["rps"]),
        "miss_vs_ext_authz": ratio("3 filter, new token each request", results["5 ext_authz peer (valid token)"]["rps"]),
    }
    wasm_size = os.path.getsize(os.path.join(TARGET, "wasm32-wasip1", "wasm", "oauth2_filter.wasm"))
    write_report(results, summary, samples, machine(), wasm_size)
    print()
    for name, r in results.items():
        print(f"{name:<44} {r['rps']:>9.0f} req/s   p50 {r['p50']:6.2f} ms   p99 {r['p99']:6.2f} ms")
    print(f"ratios: floor/plain {summary['floor_ratio']:.2f}  cached/plain {summary['cache_hit_ratio']:.2f}  miss/plain {summary['miss_ratio']:.2f}  "
          f"invalid/plain {summary['invalid_ratio']:.2f}  cached/ext_authz {summary['vs_ext_authz']:.2f}  "
          f"miss/ext_authz {summary['miss_vs_ext_authz']:.2f}")
    print("wrote BENCHMARKS.md")
    print(f"bench: cache_hit_ratio={summary['cache_hit_ratio']:.2f} miss_ratio={summary['miss_ratio']:.2f} "
          f"vs_ext_authz={summary['vs_ext_authz']:.2f} "
          f"issue_rps={results['6a client_credentials issuance via Envoy']['rps']:.0f} "
          f"check_rps={results['6c token checks at the token-service']['rps']:.0f}")


def write_report(results, summary, samples, m, wasm_size):
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} with `make bench` "
        f"(`python3 bench/bench.py`): {ROUNDS} interleaved rounds of {SECONDS} s per scenario, "
        f"wrk with 1 thread and {CONNECTIONS} connections pinned to CPU 1, each Envoy with one worker pinned to "
        "CPU 0; token-service and demo upstream unpinned. Figures are the median of the rounds. Loopback only.",
        "",
        f"Machine: {m['cpus']} CPUs, {m['model']}, Linux {m['kernel']}. Envoy {m['envoy']}. {m['wrk']}. {m['rustc']}.",
        f"Filter module: {wasm_size} bytes (`target/wasm32-wasip1/wasm/oauth2_filter.wasm`).",
        "",
        "| scenario | requests/s | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} |")
    lines += [
        "",
        "| ratio | value |",
        "| --- | ---: |",
        f"| cached valid token / plain Envoy | {summary['cache_hit_ratio']:.2f} |",
        f"| new token each request / plain Envoy | {summary['miss_ratio']:.2f} |",
        f"| invalid tokens / plain Envoy | {summary['invalid_ratio']:.2f} |",
        f"| filter loaded, no plugin (wasm floor) / plain Envoy | {summary['floor_ratio']:.2f} |",
        f"| cached valid token / ext_authz peer | {summary['vs_ext_authz']:.2f} |",
        f"| new token each request / ext_authz peer | {summary['miss_vs_ext_authz']:.2f} |",
        "",
        "Scenario notes: (0) is the same Envoy and filter for a service without a plugin: the filter only",
        "reads its settings and passes the request on, so (0)/(1) is what loading any wasm filter costs here.",
        "(1)–(5) request `GET /bench/ping` (the demo upstream's echo) with a bearer token; the",
        "plain Envoy forwards it unchecked. (3) cycles through tokens minted beforehand through the admin API,",
        "a fresh range per round, so nearly every request misses the filter's cache and is checked by the",
        "token-service. (4) sends a different made-up token on every request (negative-cached per token).",
        "(5) is Envoy's own `ext_authz` HTTP filter calling the token-service's ext_authz endpoint for every",
        "request. (6a) mints `client_credentials` tokens through Envoy over HTTPS, each a durable SQLite write",
        "(WAL, synchronous=FULL, group commit); (6b) issues authorization codes the same way; (6c) calls the",
        "token-service's check endpoint directly.",
        "",
        "Per-round samples (requests/s):",
        "",
    ]
    for name, s in samples.items():
        lines.append(f"- {name}: " + ", ".join(f"{x['rps']:.0f}" for x in s))
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
