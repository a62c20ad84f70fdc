//! One running product: a token-service with its SQLite file, the demo upstream, and one Envoy
//! per protected service (a wasm filter is configured per listener, so each service the tests
//! protect gets its own Envoy, rendered from the shipped `envoy/envoy.yaml.tmpl`).
//!
//! In PostgreSQL mode (`OAUTH2_TEST_POSTGRES_DIR`, see [`crate::postgres`]) every stack gets a
//! fresh database on that server instead, and runs `OAUTH2_TEST_REPLICAS` (2) token-service
//! replicas on it, each with its own listeners; every Envoy's token-service cluster lists all
//! of them. The admin helpers talk to replica 0.

use crate::http::{Answer, Client};
use crate::paths;
/// The filter's counters as Envoy names them for the build under test.
pub use crate::paths::{prometheus_name, stat_name};
use crate::postgres::{self, PgDatabase, PgServer};
use crate::process::{free_port, Process};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The filter polls this often in tests; the propagation bound below follows from it.
pub const POLL_INTERVAL_MS: u64 = 200;

pub struct Stack {
    pub dir: tempfile::TempDir,
    /// Replica 0's admin listener (the admin helpers' target).
    pub admin_port: u16,
    /// Replica 0's gateway listener (the one Envoy calls).
    pub gateway_port: u16,
    pub upstream_port: u16,
    /// The demo upstream's partners echo (no user data): every gateway's second route.
    pub partners_port: u16,
    pub client: Client,
    pub gateways: Vec<Gateway>,
    replicas: Vec<Replica>,
    database: Database,
    token_service_args: Vec<String>,
    token_service_env: Vec<(String, String)>,
    _upstream: Process,
}

/// Where the stack's token-service keeps its data.
#[derive(Debug, Clone)]
pub enum Database {
    /// One SQLite file (the default).
    Sqlite(PathBuf),
    /// A database of its own on a PostgreSQL server, shared by every replica.
    Postgres(PgDatabase),
}

impl Database {
    /// The token-service's `--database`.
    fn arg(&self) -> std::ffi::OsString {
        match self {
            Database::Sqlite(path) => path.clone().into_os_string(),
            Database::Postgres(db) => db.url.clone().into(),
        }
    }
}

/// One token-service process and its two listeners.
struct Replica {
    admin_port: u16,
    gateway_port: u16,
    log: PathBuf,
    process: Process,
}

/// How a stack differs from the default one (whose store and replicas the environment picks:
/// one replica on SQLite, or `OAUTH2_TEST_REPLICAS` on `OAUTH2_TEST_POSTGRES_DIR`'s server).
#[derive(Default)]
pub struct StackOptions<'a> {
    /// Extra token-service arguments, given to every replica.
    pub token_service_args: &'a [&'a str],
    /// Extra environment variables of every replica (e.g. the secrets a declarative file
    /// names as `{vault://env/NAME}`).
    pub token_service_env: &'a [(&'a str, &'a str)],
    /// A fresh database on this server (even when the suite runs on SQLite).
    pub postgres: Option<&'a PgServer>,
    /// How many replicas when on PostgreSQL (on SQLite there is always one).
    pub replicas: Option<usize>,
}

/// An Envoy protecting one service under a route prefix.
pub struct Gateway {
    pub service: String,
    pub prefix: String,
    pub http_port: u16,
    pub https_port: u16,
    pub admin_port: u16,
    pub log: PathBuf,
    /// The self-signed certificate of the https listener (`cert.pem`, `key.pem`).
    pub cert_dir: PathBuf,
    process: Process,
    config_path: PathBuf,
    out_path: PathBuf,
    /// Set for a gateway started with hot restart enabled: its base id, epoch and the
    /// processes of earlier epochs (they drain and exit on their own).
    hot_restart: Option<HotRestart>,
    /// The replicas (indexes into the stack's) in its token-service cluster.
    pub replicas: Vec<usize>,
}

/// How a gateway differs from the template's defaults.
#[derive(Debug, Clone, Default)]
pub struct GatewayOptions {
    /// The filter's JSON configuration instead of the template's.
    pub filter_config: Option<String>,
    /// Envoy's hot restart enabled (see [`Gateway::hot_restart`]).
    pub hot_restart: bool,
    /// The port of both routes' upstream instead of the demo upstream's and the partners echo
    /// (e.g. a [`crate::recorder::Recorder`], the witness of what reached an upstream).
    pub upstream_port: Option<u16>,
    /// The template's second route on the same listener: (service, prefix). By default
    /// `<service>-second` under `<prefix>-second`, which no test reaches unless it asks.
    pub second_route: Option<(String, String)>,
    /// `xff_num_trusted_hops`: how many proxies in front of Envoy are trusted to say the
    /// client's address and scheme (`X-Forwarded-For`, `X-Forwarded-Proto`). 0 by default.
    pub trusted_hops: u32,
    /// The token-service replicas (indexes into the stack's) in the Envoy's cluster; all of
    /// them by default.
    pub replicas: Option<Vec<usize>>,
    /// The second route turns the oauth2 filter off with Envoy's own per-route
    /// `FilterConfig { disabled: true }` (any filter's opt-out, no metadata involved).
    pub second_route_filter_disabled: bool,
    /// The listener's `request_timeout` (the template's default: 60 s), e.g. `"3s"`.
    pub request_timeout: Option<String>,
    /// The HTTPS listener's port instead of a free one: a test that names the issuer
    /// (`--issuer https://127.0.0.1:PORT`) before its Envoy starts picks the port first.
    pub https_port: Option<u16>,
    /// More endpoints of the token-service cluster after the replicas' (loopback ports of
    /// [`crate::fake::FakeTokenService`]s: replicas that misbehave).
    pub stand_in_ports: Vec<u16>,
    /// The filter's `poll_interval_ms` instead of [`POLL_INTERVAL_MS`].
    pub poll_interval_ms: Option<u64>,
    /// The token-service cluster without the template's outlier detection, as a user's own
    /// Envoy may be: only the health checks steer calls away from a failing replica.
    pub without_outlier_detection: bool,
}

struct HotRestart {
    base_id_path: PathBuf,
    epoch: u32,
    parents: Vec<Process>,
}

impl Gateway {
    /// Envoy's value of one of the filter's counters (`oauth2.allowed`...), named as the build
    /// under test names it (see [`stat_name`]); 0 until the filter first adds to it.
    pub fn filter_stat(&self, client: &Client, metric: &str) -> u64 {
        let name = stat_name(metric);
        let url = format!(
            "http://127.0.0.1:{}/stats?filter=^{}$",
            self.admin_port,
            name.replace('.', "\\.")
        );
        client
            .get(&url)
            .text
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}{}", self.http_port, self.prefix, path)
    }

    pub fn https(&self, path: &str) -> String {
        format!(
            "https://localhost:{}{}{}",
            self.https_port, self.prefix, path
        )
    }

    /// Clients for request shapes reqwest cannot send (HTTP/2 trailers, raw HTTP/1.1).
    pub fn wire(&self) -> crate::wire::Wire {
        crate::wire::Wire::new(self.http_port, self.https_port)
    }

    /// The route's path on the wire (`prefix` + `path`), for [`crate::wire`] shapes.
    pub fn target(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Envoy's hot restart: a new process (next epoch, same configuration) takes over the
    /// listeners while the old one drains and exits.
    pub fn hot_restart(&mut self) {
        let Some(hot) = self.hot_restart.as_mut() else {
            panic!("this gateway was not started with hot restart enabled")
        };
        let base_id = std::fs::read_to_string(&hot.base_id_path).expect("base id file");
        hot.epoch += 1;
        let mut cmd = envoy_command(&self.config_path, &self.log);
        cmd.args([
            "--base-id",
            base_id.trim(),
            "--restart-epoch",
            &hot.epoch.to_string(),
        ])
        .args(["--drain-time-s", "1", "--parent-shutdown-time-s", "2"]);
        let next = Process::spawn("envoy", cmd, &self.out_path);
        hot.parents.push(std::mem::replace(&mut self.process, next));
    }
}

impl Stack {
    /// The tutorial's stack: service `step-on` (no plugin yet) behind `/stepon`.
    pub fn start() -> Stack {
        let mut stack = Stack::start_services();
        stack.create_service("step-on");
        stack.add_gateway("step-on", "/stepon");
        stack
    }

    /// token-service and upstream only; add services and gateways yourself.
    pub fn start_services() -> Stack {
        Stack::start_services_with(&[])
    }

    /// Like [`Stack::start_services`], with extra token-service arguments.
    pub fn start_services_with(extra_args: &[&str]) -> Stack {
        Stack::start_services_opts(StackOptions {
            token_service_args: extra_args,
            ..StackOptions::default()
        })
    }

    /// token-service replicas and upstream as `options` say; add services and gateways yourself.
    pub fn start_services_opts(options: StackOptions<'_>) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = options
            .postgres
            .or_else(|| postgres::postgres_mode().then(PgServer::shared));
        let (database, replicas) = match server {
            Some(server) => (
                Database::Postgres(server.create_database()),
                options.replicas.unwrap_or_else(postgres::replicas_from_env),
            ),
            None => (Database::Sqlite(dir.path().join("token-service.db")), 1),
        };
        let (upstream_port, partners_port) = (free_port(), free_port());
        let extra_args: Vec<String> = options
            .token_service_args
            .iter()
            .map(|a| a.to_string())
            .collect();
        let extra_env: Vec<(String, String)> = options
            .token_service_env
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let replicas: Vec<Replica> = (0..replicas)
            .map(|index| {
                let (admin_port, gateway_port) = (free_port(), free_port());
                let log = dir.path().join(if index == 0 {
                    "token-service.log".to_string()
                } else {
                    format!("token-service-{index}.log")
                });
                let process = spawn_token_service(
                    &database,
                    admin_port,
                    gateway_port,
                    (&extra_args, &extra_env),
                    &log,
                );
                Replica {
                    admin_port,
                    gateway_port,
                    log,
                    process,
                }
            })
            .collect();
        let mut upstream_cmd = Command::new(paths::demo_upstream_bin());
        upstream_cmd
            .arg("--listen")
            .arg(format!("127.0.0.1:{upstream_port}"))
            .arg("--partners-listen")
            .arg(format!("127.0.0.1:{partners_port}"));
        let upstream = Process::spawn(
            "demo-upstream",
            upstream_cmd,
            &dir.path().join("upstream.log"),
        );
        let stack = Stack {
            dir,
            admin_port: replicas[0].admin_port,
            gateway_port: replicas[0].gateway_port,
            upstream_port,
            partners_port,
            client: Client::new(),
            gateways: Vec::new(),
            replicas,
            database,
            token_service_args: extra_args,
            token_service_env: extra_env,
            _upstream: upstream,
        };
        for index in 0..stack.replicas.len() {
            stack.wait_for_replica(index);
        }
        stack.wait_for(
            &format!("http://127.0.0.1:{upstream_port}/ready"),
            "demo upstream",
        );
        stack.wait_for(
            &format!("http://127.0.0.1:{partners_port}/ready"),
            "demo upstream's partners echo",
        );
        stack
    }

    /// Where the token-service keeps its data: the SQLite file, or the PostgreSQL database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// How many token-service replicas run (1 on SQLite).
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Replica `index`'s gateway listener (the one Envoy calls).
    pub fn replica_gateway_port(&self, index: usize) -> u16 {
        self.replicas[index].gateway_port
    }

    /// A URL on replica `index`'s admin listener.
    pub fn replica_admin(&self, index: usize, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{}",
            self.replicas[index].admin_port, path
        )
    }

    /// A URL on replica `index`'s gateway listener (what the filter calls).
    pub fn replica_gateway(&self, index: usize, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}{}",
            self.replicas[index].gateway_port, path
        )
    }

    /// Every replica's log, one after the other.
    pub fn token_service_log(&self) -> String {
        self.replicas
            .iter()
            .map(|r| std::fs::read_to_string(&r.log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Replica `index`'s log.
    pub fn replica_log(&self, index: usize) -> String {
        std::fs::read_to_string(&self.replicas[index].log).unwrap_or_default()
    }

    fn wait_for_replica(&self, index: usize) {
        self.wait_for(
            &self.replica_gateway(index, "/gateway/v1/services/-/state"),
            &format!("token-service replica {index}"),
        );
    }

    fn wait_for(&self, url: &str, what: &str) {
        let ok = wait_until(Duration::from_secs(20), || {
            self.client
                .raw()
                .get(url)
                .send()
                .map(|r| r.status().as_u16() < 500)
                .unwrap_or(false)
        });
        assert!(
            ok,
            "{what} did not become ready at {url}; logs in {}",
            self.dir.path().display()
        );
    }

    /// Starts an Envoy protecting `service` under `prefix`, and waits until its filter has
    /// the service's state (requests no longer answer 503).
    pub fn add_gateway(&mut self, service: &str, prefix: &str) -> &Gateway {
        self.add_gateway_with(service, prefix, GatewayOptions::default())
    }

    /// Like [`Stack::add_gateway`], with Envoy's hot restart enabled (see [`Gateway::hot_restart`]).
    pub fn add_hot_restartable_gateway(&mut self, service: &str, prefix: &str) -> &Gateway {
        let options = GatewayOptions {
            hot_restart: true,
            ..GatewayOptions::default()
        };
        self.add_gateway_with(service, prefix, options)
    }

    /// An Envoy whose filter has `filter_config` (JSON) instead of the template's.
    pub fn add_gateway_configured(&mut self, prefix: &str, filter_config: &str) -> &Gateway {
        let options = GatewayOptions {
            filter_config: Some(filter_config.to_string()),
            ..GatewayOptions::default()
        };
        self.add_gateway_with("custom", prefix, options)
    }

    /// An Envoy protecting `service` under `prefix`, as `options` say.
    pub fn add_gateway_with(
        &mut self,
        service: &str,
        prefix: &str,
        options: GatewayOptions,
    ) -> &Gateway {
        let hot_restart = options.hot_restart;
        // Stand-ins that fail every call may answer the first requests' own state fetch.
        let probe_at_once = options.stand_in_ports.is_empty();
        let (second_service, second_prefix) = options
            .second_route
            .clone()
            .unwrap_or_else(|| (format!("{service}-second"), format!("{prefix}-second")));
        let upstream_port = options.upstream_port.unwrap_or(self.upstream_port);
        let replicas = options
            .replicas
            .clone()
            .unwrap_or_else(|| (0..self.replicas.len()).collect());
        let token_service_ports: Vec<u16> = replicas
            .iter()
            .map(|&r| self.replica_gateway_port(r))
            .chain(options.stand_in_ports.iter().copied())
            .collect();
        let index = self.gateways.len();
        let (http_port, admin_port) = (free_port(), free_port());
        let https_port = options.https_port.unwrap_or_else(free_port);
        let certs = self.dir.path().join("certs");
        let status = Command::new(paths::make_cert_script())
            .arg(&certs)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("make-cert.sh");
        assert!(status.success(), "making the certificate failed");
        let template = std::fs::read_to_string(paths::envoy_template()).expect("envoy template");
        let config = render(
            &template,
            &[
                ("ADMIN_PORT", admin_port.to_string()),
                ("LISTEN_ADDRESS", "127.0.0.1".into()),
                ("HTTP_PORT", http_port.to_string()),
                ("HTTPS_PORT", https_port.to_string()),
                ("UPSTREAM_HOST", "127.0.0.1".into()),
                ("UPSTREAM_PORT", upstream_port.to_string()),
                ("SECOND_UPSTREAM_HOST", "127.0.0.1".into()),
                // A test that names its upstream (a recording witness) gets both routes there.
                (
                    "SECOND_UPSTREAM_PORT",
                    options
                        .upstream_port
                        .unwrap_or(self.partners_port)
                        .to_string(),
                ),
                (
                    "TOKEN_SERVICE_LB_ENDPOINTS",
                    lb_endpoints(&token_service_ports),
                ),
                ("WASM_PATH", paths::wasm_module().display().to_string()),
                ("CERT_DIR", certs.display().to_string()),
                ("SERVICE", service.to_string()),
                ("ROUTE_PREFIX", prefix.to_string()),
                ("SECOND_SERVICE", second_service.clone()),
                ("SECOND_ROUTE_PREFIX", second_prefix),
                (
                    "POLL_INTERVAL_MS",
                    options
                        .poll_interval_ms
                        .unwrap_or(POLL_INTERVAL_MS)
                        .to_string(),
                ),
                ("XFF_NUM_TRUSTED_HOPS", options.trusted_hops.to_string()),
                (
                    "REQUEST_TIMEOUT",
                    options
                        .request_timeout
                        .clone()
                        .unwrap_or_else(|| "60s".into()),
                ),
                ("MAX_HEAP_BYTES", "1073741824".into()),
            ],
        );
        let config = match &options.filter_config {
            Some(json) => replace_filter_config(&config, json),
            None => config,
        };
        let config = if paths::native_build() {
            use_native_filter(&config)
        } else {
            config
        };
        let config = if options.without_outlier_detection {
            without_outlier_detection(&config)
        } else {
            config
        };
        let config = if options.second_route_filter_disabled {
            disable_filter_on_route(&config, &second_service)
        } else {
            config
        };
        let config_path = self.dir.path().join(format!("envoy-{index}.yaml"));
        std::fs::write(&config_path, config).expect("write envoy config");
        let log = self.dir.path().join(format!("envoy-{index}.log"));
        let mut cmd = envoy_command(&config_path, &log);
        let base_id_path = self.dir.path().join(format!("envoy-{index}.base-id"));
        if hot_restart {
            cmd.args(["--use-dynamic-base-id", "--base-id-path"])
                .arg(&base_id_path);
        } else {
            cmd.arg("--disable-hot-restart");
        }
        let out_path = self.dir.path().join(format!("envoy-{index}.out"));
        let process = Process::spawn("envoy", cmd, &out_path);
        let gateway = Gateway {
            service: service.into(),
            prefix: prefix.into(),
            http_port,
            https_port,
            admin_port,
            log,
            cert_dir: certs,
            process,
            config_path,
            out_path,
            hot_restart: hot_restart.then(|| HotRestart {
                base_id_path,
                epoch: 0,
                parents: Vec::new(),
            }),
            replicas,
        };
        self.wait_for_envoy(admin_port, &gateway.log);
        // A ready Envoy checks at once (DESIGN: a valid token never gets 503 because Envoy has
        // just started): every gateway of the suite proves it, in both builds, with no wait.
        let probe = gateway.http("/__probe");
        let probes = if probe_at_once { 6 } else { 0 };
        for attempt in 0..probes {
            let answer = self.client.get(&probe);
            assert!(
                !(answer.status == 503 && answer.text.contains("temporarily_unavailable")),
                "a freshly ready Envoy answered 503 (probe {attempt}): {}; see {}",
                answer.text,
                gateway.log.display()
            );
        }
        self.gateways.push(gateway);
        self.gateways.last().expect("just pushed")
    }

    pub fn gateway(&self) -> &Gateway {
        self.gateways.first().expect("a gateway")
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }

    pub fn create_service(&self, name: &str) -> Value {
        let answer = self
            .client
            .post_form(&self.admin("/services"), &[("name", name)]);
        assert_eq!(
            answer.status, 201,
            "creating service {name}: {}",
            answer.text
        );
        answer.json()
    }

    pub fn admin_post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.client.post_form(&self.admin(path), form)
    }

    pub fn admin_get(&self, path: &str) -> Answer {
        self.client.get(&self.admin(path))
    }

    /// SIGKILL every replica, as a crash would.
    pub fn kill_token_service(&mut self) {
        for replica in &mut self.replicas {
            replica.process.kill();
        }
    }

    /// SIGKILL replica `index` alone.
    pub fn kill_replica(&mut self, index: usize) {
        self.replicas[index].process.kill();
    }

    /// Every replica killed (if running) and started again on the same ports and data.
    pub fn restart_token_service(&mut self) {
        self.kill_token_service();
        for index in 0..self.replicas.len() {
            self.spawn_replica(index);
        }
        for index in 0..self.replicas.len() {
            self.wait_for_replica(index);
        }
    }

    /// Replica `index` killed (if running) and started again on its ports.
    pub fn restart_replica(&mut self, index: usize) {
        self.replicas[index].process.kill();
        self.spawn_replica(index);
        self.wait_for_replica(index);
    }

    fn spawn_replica(&mut self, index: usize) {
        let replica = &self.replicas[index];
        let process = spawn_token_service(
            &self.database,
            replica.admin_port,
            replica.gateway_port,
            (&self.token_service_args, &self.token_service_env),
            &replica.log,
        );
        self.replicas[index].process = process;
    }

    /// Replica 0's process id.
    pub fn token_service_pid(&self) -> Option<u32> {
        self.replica_pid(0)
    }

    pub fn replica_pid(&self, index: usize) -> Option<u32> {
        self.replicas[index].process.pid()
    }

    /// Every running replica's process id.
    pub fn token_service_pids(&self) -> Vec<u32> {
        self.replicas
            .iter()
            .filter_map(|r| r.process.pid())
            .collect()
    }
}

fn spawn_token_service(
    database: &Database,
    admin_port: u16,
    gateway_port: u16,
    (extra, env): (&[String], &[(String, String)]),
    log: &std::path::Path,
) -> Process {
    let mut cmd = Command::new(paths::token_service_bin());
    cmd.arg("--database")
        .arg(database.arg())
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{admin_port}"))
        .arg("--gateway-listen")
        .arg(format!("127.0.0.1:{gateway_port}"))
        .args(extra)
        .envs(env.iter().map(|(n, v)| (n, v)))
        .env("RUST_LOG", "info");
    Process::spawn("token-service", cmd, log)
}

fn envoy_command(config: &std::path::Path, log: &std::path::Path) -> Command {
    let mut cmd = Command::new(paths::envoy_bin());
    if paths::native_build() {
        cmd.env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            paths::native_module_dir(),
        );
    }
    cmd.arg("-c")
        .arg(config)
        .args([
            "--concurrency",
            "2",
            "--file-flush-interval-msec",
            "100",
            "-l",
            "warning",
        ])
        .arg("--log-path")
        .arg(log);
    // E2E_ENVOY_COMPONENT_LOG=upstream:debug,hc:debug: more of Envoy's own story in its log.
    if let Ok(levels) = std::env::var("E2E_ENVOY_COMPONENT_LOG") {
        cmd.args(["--component-log-level", &levels]);
    }
    cmd
}

/// Swaps the filter's JSON configuration (the block under `value: |`) for `json`.
fn replace_filter_config(config: &str, json: &str) -> String {
    let start = config
        .find("value: |\n")
        .map(|i| i + "value: |\n".len())
        .expect("filter configuration block");
    let end = config[start..]
        .find("vm_config:")
        .map(|i| start + i)
        .expect("vm_config after the configuration");
    let line_start = config[..end].rfind('\n').map_or(end, |i| i + 1);
    format!(
        "{}                    {}\n{}",
        &config[..start],
        json,
        &config[line_start..]
    )
}

/// The native build: the wasm filter entry (`http_filters`) becomes the dynamic module's
/// (`envoy/native-filter.yaml.tmpl`), with the same JSON configuration; nothing else changes.
/// Adds Envoy's per-route `FilterConfig { disabled: true }` for the oauth2 filter (of the build
/// under test) to the route whose metadata names `service`.
fn disable_filter_on_route(config: &str, service: &str) -> String {
    let filter = if paths::native_build() {
        "envoy.filters.http.dynamic_modules"
    } else {
        "envoy.filters.http.wasm"
    };
    let metadata = format!("metadata: {{ filter_metadata: {{ oauth2: {{ service: \"{service}\",");
    let at = config
        .find(&metadata)
        .and_then(|i| config[i..].find('\n').map(|end| i + end + 1))
        .expect("the route naming the service");
    let indent = "                ";
    format!(
        "{}{indent}typed_per_filter_config:\n{indent}  {filter}:\n{indent}    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n{indent}    disabled: true\n{}",
        &config[..at],
        &config[at..]
    )
}

/// The token-service cluster's `outlier_detection` block (its line and every line indented
/// deeper) taken out.
fn without_outlier_detection(config: &str) -> String {
    let key = "    outlier_detection:\n";
    let start = config.find(key).expect("the outlier_detection block");
    let block_end = config[start + key.len()..]
        .split_inclusive('\n')
        .take_while(|line| line.starts_with("      "))
        .map(str::len)
        .sum::<usize>();
    let end = start + key.len() + block_end;
    format!("{}{}", &config[..start], &config[end..])
}

fn use_native_filter(config: &str) -> String {
    let start = config
        .find("          - name: envoy.filters.http.wasm")
        .expect("the wasm filter entry");
    let end = config[start..]
        .find("          - name: envoy.filters.http.router")
        .map(|i| start + i)
        .expect("the router after the wasm filter");
    let json_start = config[start..end]
        .find("value: |\n")
        .map(|i| start + i + "value: |\n".len())
        .expect("the filter configuration block");
    let json_end = config[json_start..end]
        .find("vm_config:")
        .and_then(|i| config[..json_start + i].rfind('\n'))
        .expect("vm_config after the configuration");
    let json = &config[json_start..json_end];
    let template =
        std::fs::read_to_string(paths::native_filter_template()).expect("native filter template");
    let entry = template.replace("{{FILTER_CONFIG}}", json.trim_end_matches('\n'));
    format!(
        "{}{}\n{}",
        &config[..start],
        entry.trim_end(),
        &config[end..]
    )
}

/// The template's token-service endpoints (one per replica), as a YAML flow sequence.
pub fn lb_endpoints(ports: &[u16]) -> String {
    let endpoints: Vec<String> = ports
        .iter()
        .map(|port| {
            format!("{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}")
        })
        .collect();
    format!("[{}]", endpoints.join(", "))
}

fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(
        !out.contains("{{"),
        "unrendered placeholder in the Envoy template"
    );
    out
}

/// An Envoy on a configuration a test wrote whole, for topologies the template does not
/// cover (several listeners in one process, each with its own filter configuration). Killed
/// when dropped.
pub struct CustomEnvoy {
    pub admin_port: u16,
    pub log: PathBuf,
    _process: Process,
}

impl Stack {
    /// Starts Envoy on `config` (its JSON configuration; see [`filter_entry`] for the
    /// filter of the build under test) and waits until it is ready.
    pub fn start_custom_envoy(&self, name: &str, config: &Value, admin_port: u16) -> CustomEnvoy {
        let config_path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&config_path, config.to_string()).expect("write envoy config");
        let log = self.dir.path().join(format!("{name}.log"));
        let mut cmd = envoy_command(&config_path, &log);
        cmd.arg("--disable-hot-restart");
        let process = Process::spawn("envoy", cmd, &self.dir.path().join(format!("{name}.out")));
        self.wait_for_envoy(admin_port, &log);
        CustomEnvoy {
            admin_port,
            log,
            _process: process,
        }
    }
}

impl Stack {
    /// Waits until the Envoy whose admin listener is `admin_port` answers `/ready`.
    fn wait_for_envoy(&self, admin_port: u16, log: &std::path::Path) {
        let ready = wait_until(Duration::from_secs(20), || {
            self.client
                .raw()
                .get(format!("http://127.0.0.1:{admin_port}/ready"))
                .send()
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
        assert!(ready, "Envoy did not become ready; see {}", log.display());
    }
}

/// The oauth2 filter of the build under test (wasm, with the template's `vm_id`, or the
/// native module) as an `http_filters` entry of Envoy's JSON configuration, configured with
/// `filter_config`.
pub fn filter_entry(filter_config: &Value) -> Value {
    let configuration = serde_json::json!({
        "@type": "type.googleapis.com/google.protobuf.StringValue",
        "value": filter_config.to_string(),
    });
    if paths::native_build() {
        return serde_json::json!({
            "name": "envoy.filters.http.dynamic_modules",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {"name": "oauth2_filter_native"},
                "filter_name": "oauth2",
                "filter_config": configuration,
            }
        });
    }
    serde_json::json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "oauth2",
                "root_id": "oauth2",
                "fail_open": false,
                "allow_on_headers_stop_iteration": true,
                "configuration": configuration,
                "vm_config": {
                    "vm_id": "oauth2",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": paths::wasm_module().display().to_string()}},
                },
            }
        }
    })
}

/// Polls `condition` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Stack {
    /// A failing test shows the tail of every process log before the temp dir goes away; a
    /// PostgreSQL database goes away with its stack.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.show_logs();
        }
        if let Database::Postgres(db) = self.database.clone() {
            self.kill_token_service();
            db.drop_database();
        }
    }
}

impl Stack {
    fn show_logs(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        // E2E_KEEP_LOGS=<dir>: the whole logs of a failing test are copied there.
        let keep = std::env::var_os("E2E_KEEP_LOGS").map(PathBuf::from);
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log" || e == "out") {
                if let (Some(keep), Some(run), Some(name)) =
                    (&keep, self.dir.path().file_name(), path.file_name())
                {
                    let _ = std::fs::create_dir_all(keep.join(run));
                    let _ = std::fs::copy(&path, keep.join(run).join(name));
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("---- {} (last lines)", path.display());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
