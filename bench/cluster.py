#!/usr/bin/env python3
"""`make bench`, after bench/bench.py: the token-service on PostgreSQL, one replica and three.

On one throwaway PostgreSQL (scripts/pg.sh: fsync on), each configuration on a fresh database:
one token-service replica (pg1) and three replicas sharing a database (pg3); next to them the
single SQLite process (sqlite) for comparison. Each is measured in two scenarios, at the
token-service directly as bench.py's (6c) and (6d) are:

- issue: durable client_credentials tokens (POST .../oauth2/token, `x-gateway-tls: on`);
- check: token checks of one valid token (GET .../token, `x-access-token`), mostly answered from
  the replica's in-memory index.

With several replicas the load is spread over them: one wrk per replica, all at once, their
requests/s summed. A control row loads the one replica with as many connections as pg3's three
wrk together (CLUSTER_CONTROL=0 leaves it out), so what replicas add shows apart from what more
clients add. CLUSTER_SECONDS (10), CLUSTER_ROUNDS (3), CLUSTER_CONNECTIONS (per wrk, 32) and
CLUSTER_BUDGET_S (230: rounds that would end later are left out) tune it. Rounds are interleaved over configurations and scenarios; figures are the
medians of the rounds. CPU per token: the token-service processes' CPU time during a run, and
PostgreSQL's (its postmaster and every child of it, those that ended included), divided by the
requests served. Prints a table and the `cluster:` line, and writes its own section at the end
of BENCHMARKS.md (between `<!-- cluster-bench -->` markers; the rest of the file is left as
bench.py wrote it). BENCH_CLUSTER=0 skips it all.
"""

import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__ left in the working tree
import bench  # noqa: E402  (bench/bench.py: processes, wrk, CPU accounting)
from bench import ROOT, TARGET, free_port, http, say  # noqa: E402

ROUNDS = int(os.environ.get("CLUSTER_ROUNDS", "3"))
SECONDS = int(os.environ.get("CLUSTER_SECONDS", "10"))
# wrk connections per replica (each wrk has one thread, pinned to CPU 1 as in bench.py).
CONNECTIONS = int(os.environ.get("CLUSTER_CONNECTIONS", str(bench.CONNECTIONS)))
# The whole script should stay within this; rounds that would not fit are left out.
BUDGET_S = float(os.environ.get("CLUSTER_BUDGET_S", "230"))
REPLICAS = {"sqlite": 1, "pg1": 1, "pg3": 3}
SCENARIOS = {"issue": "durable client_credentials tokens", "check": "token checks (valid token)"}
# The control: the one replica offered pg3's load (as many connections as pg3's three wrk), so
# that what three replicas add can be told from what three times the clients add.
CONTROL = os.environ.get("CLUSTER_CONTROL", "1") != "0"
TITLES = {"sqlite": "SQLite, 1 process", "pg1": "PostgreSQL, 1 replica", "pg3": "PostgreSQL, 3 replicas",
          "pg1x3": f"PostgreSQL, 1 replica at pg3's load ({3 * CONNECTIONS} connections)"}
# Each row of the table: (configuration, scenario) -> (the stack it loads, wrk connections per replica).
ROWS = {("sqlite", "issue"): ("sqlite", CONNECTIONS), ("sqlite", "check"): ("sqlite", CONNECTIONS),
        ("pg1", "issue"): ("pg1", CONNECTIONS), ("pg1", "check"): ("pg1", CONNECTIONS),
        **({("pg1x3", "issue"): ("pg1", 3 * CONNECTIONS)} if CONTROL else {}),
        ("pg3", "issue"): ("pg3", CONNECTIONS), ("pg3", "check"): ("pg3", CONNECTIONS)}
# The targets of issue 10, for each PostgreSQL configuration: (scenario, bound).
TARGETS = {"issue": 2000, "check": 20000}
BEGIN, END = "<!-- cluster-bench -->", "<!-- /cluster-bench -->"
SERVICE = "bench"


def children(pid):
    """The processes whose parent is `pid` (a scan of /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass  # a process that just ended
    return found


def server_cpu_seconds(postmaster):
    """CPU time of a PostgreSQL server so far: the postmaster's own, its reaped children's
    (cutime + cstime: backends that ended) and every live child's."""
    with open(f"/proc/{postmaster}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = sum(int(x) for x in fields[11:15]) / bench.TICKS
    for pid in children(postmaster):
        try:
            total += bench.cpu_seconds(pid)
        except OSError:
            pass  # it ended between the scan and the read: its time is in cutime next time
    return total


def children_cpu_seconds():
    """CPU time of this script's children that ended (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def metric_sums(admin_ports):
    """Summed over replicas: the writer's batch-size and commit histograms (sum, count)."""
    sums = {}
    for port in admin_ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            continue
        for name, value in re.findall(r"^token_service_store_(\w+(?:_sum|_count)) (\S+)$", text, re.M):
            sums[name] = sums.get(name, 0.0) + float(value)
    return sums


class Stack:
    """One configuration: its token-service processes and the bench client's credentials."""

    def __init__(self, key, procs, database, postmaster):
        self.key, self.postmaster = key, postmaster
        self.gateways, self.admins, self.pids = [], [], []
        for i in range(REPLICAS[key]):
            gateway, admin = free_port(), free_port()
            child = procs.start(f"{key}-{i + 1}", [
                os.path.join(TARGET, "release", "token-service"), "--database", database,
                "--gateway-listen", f"127.0.0.1:{gateway}", "--admin-listen", f"127.0.0.1:{admin}"],
                env={"RUST_LOG": "warn"})
            self.gateways.append(gateway)
            self.admins.append(admin)
            self.pids.append(child.pid)
        for admin in self.admins:
            bench.wait_for(f"http://127.0.0.1:{admin}/status", f"token-service ({key})")
        self.provision()

    def admin(self, method, path, body, expect=201):
        status, answer = http(method, f"http://127.0.0.1:{self.admins[0]}{path}", body)
        if status != expect:
            sys.exit(f"cluster: {self.key}: {method} {path} answered {status}: {answer[:200]!r}")
        return json.loads(answer)

    def provision(self):
        """The service, its oauth2 plugin, a consumer and its application (as bench.py does),
        and one valid token for the checks."""
        service = self.admin("POST", "/services", {"name": SERVICE})
        self.admin("POST", f"/services/{SERVICE}/plugins", {"name": "oauth2", "config": {
            "enable_client_credentials": True, "token_expiration": 3600, "scopes": ["steps"]}})
        self.admin("POST", "/consumers", {"username": SERVICE})
        app = self.admin("POST", f"/consumers/{SERVICE}/oauth2", {"name": SERVICE, "redirect_uris": ["http://localhost/cb"]})
        token = self.admin("POST", "/oauth2_tokens", {"credential": {"id": app["id"]}, "service": {"id": service["id"]},
                                                      "expires_in": 3600})
        self.valid = token["access_token"]
        self.body = (f"grant_type=client_credentials&client_id={app['client_id']}"
                     f"&client_secret={app['client_secret']}&scope=steps")
        # Every replica has to know the service, its plugin and the token before it is loaded.
        for gateway in self.gateways:
            self.await_check(gateway)

    def await_check(self, gateway):
        url = f"http://127.0.0.1:{gateway}/gateway/v1/services/{SERVICE}/token"
        deadline = time.time() + 20
        while time.time() < deadline:
            if http("GET", url, headers={"x-access-token": self.valid})[0] == 200:
                return
            time.sleep(0.1)
        sys.exit(f"cluster: {self.key}: the replica on :{gateway} does not accept the bench token")

    def load(self, scenario, connections):
        """One wrk per replica, all at once; returns their results."""
        def one(gateway):
            base = f"http://127.0.0.1:{gateway}/gateway/v1/services/{SERVICE}"
            if scenario == "issue":
                return bench.wrk(f"{base}/oauth2/token", seconds=SECONDS, connections=connections, script="post_body.lua",
                                 args=(self.body,), headers=["x-gateway-tls: on"])
            return bench.wrk(f"{base}/token", seconds=SECONDS, connections=connections,
                             headers=[f"x-access-token: {self.valid}"])
        out = [None] * len(self.gateways)
        failures = []

        def run(i, gateway):
            try:
                out[i] = one(gateway)
            except Exception as e:  # reported after the others finished
                failures.append(e)
        threads = [threading.Thread(target=run, args=(i, g)) for i, g in enumerate(self.gateways)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
        return out

    def measure(self, scenario, connections):
        """A run of `scenario` with its CPU per request: the token-service processes' (all
        replicas) and PostgreSQL's (the whole server)."""
        service_before = sum(bench.cpu_seconds(p) for p in self.pids)
        pg_before = server_cpu_seconds(self.postmaster) if self.postmaster else 0.0
        metrics_before = metric_sums(self.admins)
        cpus = bench.cpu_times()
        waited, began = children_cpu_seconds(), time.monotonic()
        runs = self.load(scenario, connections)
        busy = bench.busy_since(cpus)
        wall, wrk_cpu = time.monotonic() - began, children_cpu_seconds() - waited
        requests = sum(r["requests"] for r in runs)
        service_cpu = sum(bench.cpu_seconds(p) for p in self.pids) - service_before
        pg_cpu = server_cpu_seconds(self.postmaster) - pg_before if self.postmaster else 0.0
        result = {
            "rps": sum(r["rps"] for r in runs), "requests": requests,
            "non2xx": sum(r["non2xx"] for r in runs),
            "errors": "; ".join(r["errors"] for r in runs if r["errors"]),
            "p50": statistics.median(r["p50"] for r in runs), "p99": max(r["p99"] for r in runs),
            "per_replica": [r["rps"] for r in runs],
            "cpu_service": service_cpu * 1e6 / max(1, requests), "cpu_pg": pg_cpu * 1e6 / max(1, requests),
            "cpu_wrk": wrk_cpu * 1e6 / max(1, requests),
            "busy0": busy.get(0, 0), "busy1": busy.get(1, 0),
            # The share of the CPUs that went to other processes of this shared machine, and to kernel
            # threads (the filesystem's journal, writeback), not to the services, PostgreSQL or wrk.
            "others": max(0.0, sum(busy.values()) / len(busy) - (service_cpu + pg_cpu + wrk_cpu) / (wall * len(busy))),
        }
        if scenario == "issue":
            after = metric_sums(self.admins)
            delta = lambda name: after.get(name, 0.0) - metrics_before.get(name, 0.0)
            batches = delta("write_batch_size_count")
            result["batches"] = batches
            result["batch_size"] = delta("write_batch_size_sum") / max(1, batches)
            result["commit_ms"] = delta("commit_duration_seconds_sum") * 1000 / max(1, delta("commit_duration_seconds_count"))
            result["batch_ms"] = (delta("write_batch_duration_seconds_sum") * 1000
                                  / max(1, delta("write_batch_duration_seconds_count")))
        return result


def pg_tool(name):
    found = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: [int(x) for x in re.findall(r"\d+", v)]) \
        if os.path.isdir("/usr/lib/postgresql") else []
    return os.path.join("/usr/lib/postgresql", found[-1], "bin", name) if found else name


def pg_sh(*args):
    """scripts/pg.sh with `args`; its last line of output (a URL)."""
    done = subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"cluster: scripts/pg.sh {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def stop_wrk():
    """Any wrk this script started that still runs (a run cut short)."""
    for pid in children(os.getpid()):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() in ("wrk", "taskset"):
                    os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


def main():
    if os.environ.get("BENCH_CLUSTER", "1") == "0":
        print("cluster: skipped (BENCH_CLUSTER=0)")
        return
    if not shutil.which("wrk"):
        sys.exit("cluster: wrk is not installed (make bench installs it)")
    if not os.path.exists(os.path.join(TARGET, "release", "token-service")):
        sys.exit("cluster: target/release/token-service is missing: cargo build --release -p token-service")
    # A SIGTERM ends the script as Ctrl-C does, through the finally blocks below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    directory = tempfile.mkdtemp(prefix="oauth2-cluster-bench-")
    pg_dir = os.path.join(directory, "pg")
    procs = bench.Processes(directory)
    try:
        say(f"starting a throwaway PostgreSQL (scripts/pg.sh, data in {pg_dir})")
        pg_sh("start", pg_dir)
        run(directory, pg_dir, procs, started)
    finally:
        stop_wrk()
        procs.stop()
        subprocess.run([os.path.join(ROOT, "scripts", "pg.sh"), "stop", pg_dir], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def run(directory, pg_dir, procs, started):
    with open(os.path.join(pg_dir, "data", "postmaster.pid")) as f:
        postmaster = int(f.readline())
    port = open(os.path.join(pg_dir, "port")).read().strip()
    pg_version = subprocess.run([pg_tool("psql"), "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "postgres",
                                 "-tAc", "SHOW server_version"], capture_output=True, text=True).stdout.strip()
    stacks = {}
    for key in REPLICAS:
        if key == "sqlite":
            database, pm = os.path.join(directory, "sqlite", "token-service.db"), None
        else:
            database, pm = pg_sh("createdb", pg_dir, f"bench_{key}"), postmaster
        say(f"{TITLES[key]}: starting {REPLICAS[key]} token-service process(es) on {database}")
        stacks[key] = Stack(key, procs, database, pm)

    samples = {row: [] for row in ROWS}
    per_round = len(samples) * (SECONDS + 1)
    for r in range(ROUNDS):
        if r > 0 and time.monotonic() - started + per_round > BUDGET_S:
            say(f"stopping after {r} round(s): another would take the script past {BUDGET_S:.0f} s")
            break
        for (key, scenario), (stack, connections) in ROWS.items():
            result = stacks[stack].measure(scenario, connections)
            samples[(key, scenario)].append(result)
            print(f"    round {r + 1}/{ROUNDS}  {key:<6} {scenario:<5} {result['rps']:>8.0f} req/s "
                  f"({' + '.join(f'{x:.0f}' for x in result['per_replica'])})  non-2xx {result['non2xx']}"
                  f"{'  socket errors ' + result['errors'] if result['errors'] else ''}  CPU us/req: "
                  f"token-service {result['cpu_service']:.1f} postgres {result['cpu_pg']:.1f} wrk {result['cpu_wrk']:.1f}  "
                  f"busy cpu0 {result['busy0']:.0%} cpu1 {result['busy1']:.0%} (others {result['others']:.0%})"
                  + (f"  batch {result['batch_size']:.1f} writes, commit {result['commit_ms']:.2f} ms, "
                     f"batch {result['batch_ms']:.2f} ms" if scenario == "issue" else ""), flush=True)
    results = {k: summarize(s) for k, s in samples.items() if s}
    line = "cluster: " + " ".join(f"{k}_{s}_rps={results[(k, s)]['rps']:.0f}"
                                  for k, s in (("pg1", "issue"), ("pg3", "issue"), ("pg1", "check"),
                                               ("pg3", "check"), ("sqlite", "issue"), ("sqlite", "check")))
    memory = {k: sum(bench.service_memory(p) for p in st.pids) for k, st in stacks.items()}
    minutes = (time.monotonic() - started) / 60
    table = report_table(results)
    print()
    print("\n".join(table))
    for key in ("pg1", "pg3"):
        for scenario, bound in TARGETS.items():
            value = results[(key, scenario)]["rps"]
            print(f"target {'met   ' if value >= bound else 'MISSED'} {TITLES[key]}: {SCENARIOS[scenario]} "
                  f"≥ {bound}/s: {value:.0f}")
    write_section(results, samples, line, table, memory, pg_version, minutes)
    print(f"wrote the cluster section of BENCHMARKS.md ({minutes:.1f} min)")
    print(line)


def summarize(runs):
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["non2xx_total"] = sum(r["non2xx"] for r in runs)
    out["requests_total"] = sum(r["requests"] for r in runs)
    out["errors"] = "; ".join(r["errors"] for r in runs if r["errors"])
    return out


def report_table(results):
    lines = ["| configuration | scenario | requests/s | p50 ms | p99 ms | non-2xx | token-service CPU µs/req | "
             "PostgreSQL CPU µs/req | wrk CPU µs/req | CPU 0 / CPU 1 busy | of which others | "
             "writes per batch, batch ms, COMMIT ms |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (key, scenario), r in results.items():
        batch = f"{r['batch_size']:.1f}, {r['batch_ms']:.2f}, {r['commit_ms']:.2f}" if scenario == "issue" else "–"
        pg = f"{r['cpu_pg']:.1f}" if key != "sqlite" else "–"
        errors = f" (socket errors: {r['errors']})" if r["errors"] else ""
        lines.append(f"| {TITLES[key]} | {SCENARIOS[scenario]} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                     f"{r['non2xx_total']}{errors} | {r['cpu_service']:.1f} | {pg} | {r['cpu_wrk']:.1f} | "
                     f"{r['busy0']:.0%} / {r['busy1']:.0%} | {r['others']:.0%} | {batch} |")
    return lines


def write_section(results, samples, line, table, memory, pg_version, minutes):
    m = {"cpus": os.cpu_count(), "model": "unknown", "kernel": os.uname().release}
    try:
        m = bench.machine()
    except (OSError, IndexError):
        pass  # no Envoy (bench.machine asks it its version): the CPU count will do
    rps = lambda k, s: results[(k, s)]["rps"]
    lines = [
        BEGIN,
        "## Token-service replicas on PostgreSQL",
        "",
        f"Measured {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} with `make bench` after bench.py "
        f"(`python3 bench/cluster.py`, {minutes:.1f} min; `BENCH_CLUSTER=0` skips it) on {m['cpus']} cores "
        f"({m['model']}, Linux {m['kernel']}), PostgreSQL {pg_version} started by `scripts/pg.sh` (fsync on, "
        "default settings but shared_buffers 128MB), every configuration on a fresh database of that one server "
        "(the SQLite one on its own file): one token-service replica, three replicas sharing the database, and the "
        "single SQLite process. At the token-service directly, as bench.py's (6c) and (6d): durable "
        "`client_credentials` tokens (POST `/gateway/v1/services/bench/oauth2/token`, `x-gateway-tls: on`) and "
        "checks of one valid token (GET `/gateway/v1/services/bench/token`, `x-access-token`; answered from each "
        f"replica's in-memory index). One wrk per replica ({CONNECTIONS} connections, 1 thread, all on CPU 1), all "
        f"at once, their requests/s summed; {len(next(iter(samples.values())))} interleaved rounds of {SECONDS} s, "
        "figures the medians. The token-services and PostgreSQL may use both CPUs, and so share them with each "
        "other and with wrk. CPU µs per request: the CPU time of the token-service processes (all replicas) and of "
        "the PostgreSQL server (postmaster and every child, the ended ones too) during the run over the requests "
        "served. wrk's too. CPU busy: each CPU's busy share during the run (/proc/stat); of which others: the share of both "
        "CPUs that went to anything else (busy time less the CPU time of the token-services, PostgreSQL and wrk): "
        "other processes of this shared machine, and kernel threads such as the filesystem's journal. "
        "Writes per batch: the writes one commit of a replica's writer thread carries, how long it holds "
        "its transaction (BEGIN to COMMIT returned) and how long its COMMIT (the fsync) takes, means from the "
        f"services' /metrics. Token-service resident memory at the end: "
        + ", ".join(f"{TITLES[k]} {v:.0f} MiB" for k, v in memory.items()) + ".",
        "",
        f"    {line}",
        "",
        "| target (PostgreSQL) | 1 replica | 3 replicas |",
        "| --- | ---: | ---: |",
    ]
    for scenario, bound in TARGETS.items():
        cells = [f"{rps(k, scenario):.0f} {'met' if rps(k, scenario) >= bound else '**missed**'}" for k in ("pg1", "pg3")]
        lines.append(f"| ≥ {bound:,} {SCENARIOS[scenario]}/s | {cells[0]} | {cells[1]} |")
    lines += ["", *table, ""]
    scale = lambda s: rps("pg3", s) / rps("pg1", s)
    cpu = lambda k, s, what: results[(k, s)][f"cpu_{what}"]
    busy = lambda k, s: f"{results[(k, s)]['busy0']:.0%}/{results[(k, s)]['busy1']:.0%}"
    saturated = lambda k, s: min(results[(k, s)]["busy0"], results[(k, s)]["busy1"]) >= 0.85
    one = results[("pg1", "issue")]

    def spread(scenario):
        """Whether the rounds' figures of pg1 and pg3 overlap (on a shared VM they move a lot)."""
        a, b = ([x["rps"] for x in samples[(k, scenario)]] for k in ("pg1", "pg3"))
        overlap = max(min(a), min(b)) <= min(max(a), max(b))
        return (f"the rounds ranged {min(a):.0f}–{max(a):.0f} with one replica and {min(b):.0f}–{max(b):.0f} "
                f"with three, {'overlapping' if overlap else 'not overlapping'}")
    text = (f"**From 1 to 3 replicas** (one database): issuance ×{scale('issue'):.2f} ({rps('pg1', 'issue'):.0f} → "
            f"{rps('pg3', 'issue'):.0f}/s), checks ×{scale('check'):.2f} ({rps('pg1', 'check'):.0f} → "
            f"{rps('pg3', 'check'):.0f}/s). Three replicas are offered three times the connections ({CONNECTIONS} "
            "each)")
    if ("pg1x3", "issue") in results:
        control = rps("pg1x3", "issue")
        text += (f"; one replica offered as many made {control:.0f} tokens/s, so of the issuance gain "
                 f"×{control / rps('pg1', 'issue'):.2f} is the load and ×{rps('pg3', 'issue') / control:.2f} the "
                 "replicas")
    text += (f". With one replica the CPUs were {busy('pg1', 'issue')} busy during issuance, its writer thread "
             f"holding each batch of {one['batch_size']:.0f} writes for {one['batch_ms']:.2f} ms of which the "
             f"COMMIT took {one['commit_ms']:.2f} ms: "
             + (f"the CPUs were the limit (other processes took {one['others']:.0%} of them)"
                if saturated("pg1", "issue") else
                "neither the CPUs nor the fsync were the limit but the one writer thread working through its batch, "
                "statement by statement, with PostgreSQL")
             + f"; three replicas run three writers at once (CPUs {busy('pg3', 'issue')} busy). Checks left the "
             f"CPUs {busy('pg1', 'check')} busy with one replica and {busy('pg3', 'check')} with three; a check costs "
             f"the token-service {cpu('pg1', 'check', 'service'):.1f} µs and wrk {cpu('pg1', 'check', 'wrk'):.1f} µs, "
             f"so on {m['cpus']} cores the load generator takes a large share of what the replicas could use, "
             f"and the replicas only share the same CPUs ({spread('check')}). Per issued token: token-service "
             f"{cpu('pg1', 'issue', 'service'):.0f} → {cpu('pg3', 'issue', 'service'):.0f} µs, PostgreSQL "
             f"{cpu('pg1', 'issue', 'pg'):.0f} → {cpu('pg3', 'issue', 'pg'):.0f} µs (SQLite: "
             f"{cpu('sqlite', 'issue', 'service'):.0f} µs in its one process). Per check: token-service "
             f"{cpu('pg1', 'check', 'service'):.1f} → {cpu('pg3', 'check', 'service'):.1f} µs, PostgreSQL "
             f"{cpu('pg1', 'check', 'pg'):.1f} → {cpu('pg3', 'check', 'pg'):.1f} µs. PostgreSQL against SQLite "
             f"(one process each): issuance ×{rps('pg1', 'issue') / rps('sqlite', 'issue'):.2f}, checks "
             f"×{rps('pg1', 'check') / rps('sqlite', 'check'):.2f}.")
    lines += [
        text,
        "",
        "Per-round samples (requests/s, summed over replicas):",
        "",
    ]
    for (key, scenario), runs in samples.items():
        lines.append(f"- {TITLES[key]}, {SCENARIOS[scenario]}: " + ", ".join(
            f"{x['rps']:.0f} ({' + '.join(f'{y:.0f}' for y in x['per_replica'])})" if len(x["per_replica"]) > 1
            else f"{x['rps']:.0f}" for x in runs))
    lines.append(END)
    path = os.path.join(ROOT, "BENCHMARKS.md")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    section = "\n".join(lines) + "\n"
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + section.rstrip("\n") + text[end:]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("cluster: interrupted (everything it started is stopped)")
