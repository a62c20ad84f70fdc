//! The compose `cluster` profile as a user reaches it: Envoy's published HTTP (:8000) and HTTPS
//! (:8443) listeners, each replica's published admin API (127.0.0.1:8001-8003, with the admin
//! key), the host ports read from Docker (`docker port`), and the containers behind them. Set up once per test process: an oauth2 plugin (client
//! credentials) on the service `step-on-partners` (route `/stepon-partners`, the partners' echo
//! upstream) and a consumer of this run's own.

use crate::docker::{Container, Project};
use e2e::stack::wait_until;
use e2e::Text;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The compose services, as docker-compose.yml names them.
pub const REPLICAS: [&str; 3] = ["token-service-1", "token-service-2", "token-service-3"];
pub const POSTGRES: &str = "postgres";
pub const ENVOY: &str = "envoy-cluster";

/// The route the tests protect: Envoy's second route, whose upstream echoes every request.
const SERVICE: &str = "step-on-partners";
const ROUTE: &str = "/stepon-partners";

/// The README's propagation bound with the defaults (a 1 s poll plus one round trip): the
/// cluster profile polls every 500 ms, so this has room for a loaded machine.
pub const REVOCATION_BOUND: Duration = Duration::from_millis(1100);

pub struct Cluster {
    pub project: Project,
    admin_key: String,
    client_id: String,
    client_secret: String,
    /// `http://host:port` of Envoy's HTTP listener, `https://...` of its HTTPS one, and of each
    /// replica's admin API.
    envoy_http: String,
    envoy_https: String,
    admin: [String; 3],
    /// An answer slower than this during a fault is a hang, and counts as one: a replica
    /// whose database vanished mid-query takes up to its TCP_USER_TIMEOUT (3 s) to say so.
    pub http: reqwest::blocking::Client,
}

/// One test at a time: each breaks the one shared cluster on purpose.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The cluster, set up on first use (waiting for it to be up, within a deadline).
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(Cluster::set_up)
}

/// A client that opens a new connection for every request, so Envoy's workers (each with its
/// own cache and its own poll) take turns answering, and a dead connection is never reused.
pub fn fresh_connections(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .expect("http client")
}

/// Sends a request: its status and body, or status 0 when no answer came (refused, reset, or
/// slower than the client's timeout).
fn answer(request: reqwest::blocking::RequestBuilder) -> (u16, String) {
    match request.send() {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

impl Cluster {
    fn set_up() -> Cluster {
        let project = std::env::var("OAUTH2_COMPOSE_PROJECT").unwrap_or_else(|_| {
            panic!(
                "OAUTH2_COMPOSE_PROJECT is not set: these tests run against the compose \
                 cluster profile that `make test-docker-faults` brings up"
            )
        });
        let run = format!("faults-{}", std::process::id());
        let project = Project::new(&project);
        let envoy = project.container(ENVOY);
        let cluster = Cluster {
            envoy_http: format!("http://{}", envoy.published(8000)),
            envoy_https: format!("https://{}", envoy.published(8443)),
            admin: REPLICAS.map(|r| format!("http://{}", project.container(r).published(8001))),
            project,
            admin_key: std::env::var("OAUTH2_ADMIN_KEY")
                .unwrap_or_else(|_| "oauth2-demo-admin-key".into()),
            client_id: run.clone(),
            client_secret: format!("{run}-secret"),
            http: fresh_connections(Duration::from_secs(8)),
        };
        let up = wait_until(Duration::from_secs(180), || {
            (0..REPLICAS.len()).all(|r| cluster.replica_status(r) == 200)
        });
        assert!(
            up,
            "the cluster's replicas did not all answer /status 200 within 180 s"
        );
        cluster.protect_the_partners_route();
        cluster.create_the_client(&run);
        let serving = wait_until(Duration::from_secs(60), || {
            cluster
                .issue()
                .is_some_and(|token| cluster.works_everywhere(&token))
        });
        assert!(serving, "Envoy never accepted a token of this run's client");
        cluster
    }

    fn admin_url(&self, replica: usize, path: &str) -> String {
        format!("{}{path}", self.admin[replica])
    }

    /// A call to replica `replica`'s admin API: (status, JSON body or Null). Status 0 when no
    /// answer came within the client's timeout.
    pub fn admin(
        &self,
        replica: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.admin_url(replica, path))
            .header("x-admin-key", &self.admin_key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let (status, text) = answer(request);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Replica `replica`'s admin `/status`: 200 while it can read its database, 503 when it
    /// cannot; 0 when it did not answer within 8 s.
    pub fn replica_status(&self, replica: usize) -> u16 {
        self.admin(replica, reqwest::Method::GET, "/status", None).0
    }

    fn protect_the_partners_route(&self) {
        let config = json!({"enable_client_credentials": true, "token_expiration": 3600,
                            "scopes": ["echo"], "mandatory_scope": false});
        let path = format!("/services/{SERVICE}/plugins");
        let body = json!({"name": "oauth2", "config": config});
        let (status, created) = self.admin(0, reqwest::Method::POST, &path, Some(&body));
        if status == 201 {
            return;
        }
        // Already protected (a second run on the same stack): this run's settings.
        let (_, list) = self.admin(0, reqwest::Method::GET, &path, None);
        let id = list["data"]
            .as_array()
            .and_then(|plugins| plugins.iter().find(|p| p["name"] == "oauth2"))
            .map(|p| p.text("id"))
            .unwrap_or_else(|| panic!("no oauth2 plugin on {SERVICE}: {status} {created}"));
        let patch = json!({"config": config});
        let (status, body) = self.admin(
            0,
            reqwest::Method::PATCH,
            &format!("/plugins/{id}"),
            Some(&patch),
        );
        assert_eq!(status, 200, "{body}");
    }

    fn create_the_client(&self, run: &str) {
        let consumer = json!({"username": run});
        let (status, body) = self.admin(0, reqwest::Method::POST, "/consumers", Some(&consumer));
        assert_eq!(status, 201, "{body}");
        let credential = json!({"name": run, "client_id": self.client_id,
                                "client_secret": self.client_secret, "hash_secret": false,
                                "redirect_uris": ["http://faults.test/callback"]});
        let path = format!("/consumers/{run}/oauth2");
        let (status, body) = self.admin(0, reqwest::Method::POST, &path, Some(&credential));
        assert_eq!(status, 201, "{body}");
    }

    /// A token request through Envoy (HTTPS): (status, the access token when one was issued).
    pub fn request_token(&self, client: &reqwest::blocking::Client) -> (u16, Option<String>) {
        let body = json!({"client_id": self.client_id, "client_secret": self.client_secret,
                          "grant_type": "client_credentials", "scope": "echo"});
        let request = client
            .post(format!("{}{ROUTE}/oauth2/token", self.envoy_https))
            .json(&body);
        let (status, text) = answer(request);
        let token = serde_json::from_str::<Value>(&text)
            .ok()
            .map(|v| v.text("access_token"))
            .filter(|t| status == 200 && !t.is_empty());
        (status, token)
    }

    /// A token issued through Envoy, if one was.
    pub fn issue(&self) -> Option<String> {
        self.request_token(&self.http).1
    }

    /// `GET /stepon-partners/faults` through Envoy with `token` (None: no Authorization):
    /// the status, 0 when no answer came.
    pub fn use_token(&self, client: &reqwest::blocking::Client, token: Option<&str>) -> u16 {
        self.use_token_answer(client, token).0
    }

    pub fn use_token_answer(
        &self,
        client: &reqwest::blocking::Client,
        token: Option<&str>,
    ) -> (u16, String) {
        let mut request = client.get(format!("{}{ROUTE}/faults", self.envoy_http));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        answer(request)
    }

    /// The token works through Envoy 8 times in a row on fresh connections (each Envoy
    /// worker keeps its own cache).
    pub fn works_everywhere(&self, token: &str) -> bool {
        (0..8).all(|_| self.use_token(&self.http, Some(token)) == 200)
    }

    /// Envoy has refused `token` (401) for good: the start of a run of 8 refusals in a row,
    /// counted from `since`; None if that did not happen within `limit`. Beside it, how many
    /// of each other answer came before (200: let through within the bound; 503: a check
    /// that reached a replica which could not answer).
    pub fn refused_for_good(
        &self,
        token: &str,
        since: Instant,
        limit: Duration,
    ) -> (Option<Duration>, BTreeMap<u16, usize>) {
        let (mut run_start, mut run) = (None, 0);
        let mut others = BTreeMap::new();
        while since.elapsed() < limit {
            let sent = since.elapsed();
            match self.use_token(&self.http, Some(token)) {
                401 => {
                    run_start.get_or_insert(sent);
                    run += 1;
                    if run >= 8 {
                        return (run_start, others);
                    }
                }
                other => {
                    *others.entry(other).or_insert(0) += 1;
                    (run_start, run) = (None, 0);
                }
            }
        }
        (None, others)
    }

    /// Revokes `token` through replica `replica`'s admin API; when the revocation was
    /// acknowledged (committed), and how long the call took.
    pub fn revoke(&self, replica: usize, token: &str) -> (Instant, Duration) {
        let path = format!("/oauth2_tokens/{token}");
        let sent = Instant::now();
        let (status, body) = self.admin(replica, reqwest::Method::DELETE, &path, None);
        assert_eq!(
            status,
            204,
            "revoking through replica {}: {body}",
            replica + 1
        );
        (Instant::now(), sent.elapsed())
    }

    /// The token's row, read through replica `replica`'s admin API: does the database hold it?
    pub fn stored(&self, replica: usize, token: &str) -> bool {
        let path = format!("/oauth2_tokens/{token}");
        self.admin(replica, reqwest::Method::GET, &path, None).0 == 200
    }

    /// Replica `replica`'s counter `metric` (every series summed), from its admin /metrics.
    pub fn replica_counter(&self, replica: usize, metric: &str) -> Option<f64> {
        let request = self
            .http
            .get(self.admin_url(replica, "/metrics"))
            .header("x-admin-key", &self.admin_key);
        let (status, text) = answer(request);
        (status == 200).then(|| {
            text.lines()
                .filter(|line| {
                    line.strip_prefix(metric)
                        .is_some_and(|rest| rest.starts_with(['{', ' ']))
                })
                .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum()
        })
    }

    /// Tokens replica `replica` issued so far (every grant).
    pub fn issued_by(&self, replica: usize) -> f64 {
        self.replica_counter(replica, "token_service_tokens_issued_total")
            .unwrap_or(f64::NAN)
    }

    /// Token checks replica `replica` answered to the filter so far.
    pub fn checks_by(&self, replica: usize) -> f64 {
        self.replica_counter(replica, "token_service_token_checks_total")
            .unwrap_or(f64::NAN)
    }

    pub fn container(&self, service: &str) -> Container {
        self.project.container(service)
    }

    /// The precondition of every fault: the three replicas answer `/status` 200, and Envoy
    /// sends token requests to each of them (so a replica back from the previous fault is in
    /// rotation again), within `limit`.
    pub fn wait_healthy(&self, limit: Duration) {
        let healthy = wait_until(limit, || {
            (0..REPLICAS.len()).all(|r| self.replica_status(r) == 200)
        });
        assert!(
            healthy,
            "the replicas did not all answer /status 200 within {limit:?}"
        );
        let before: Vec<f64> = (0..REPLICAS.len()).map(|r| self.issued_by(r)).collect();
        let everywhere = wait_until(limit, || {
            let token = self.issue();
            token.is_some_and(|t| self.use_token(&self.http, Some(&t)) == 200)
                && (0..REPLICAS.len()).all(|r| self.issued_by(r) > before[r])
        });
        let after: Vec<f64> = (0..REPLICAS.len()).map(|r| self.issued_by(r)).collect();
        assert!(
            everywhere,
            "Envoy did not send token requests to every replica within {limit:?} \
             (issued before {before:?}, after {after:?})"
        );
    }

    /// A URL of replica `replica`'s gateway listener (unpublished: Envoy's side), at its
    /// address on a network it does not share with PostgreSQL, so it answers while cut from
    /// its database.
    pub fn replica_gateway(&self, replica: usize, path: &str) -> String {
        let container = self.container(REPLICAS[replica]);
        let postgres = self.container(POSTGRES).networks();
        let address = container
            .networks()
            .keys()
            .filter(|n| !postgres.contains_key(*n))
            .find_map(|n| container.address_on(n))
            .unwrap_or_else(|| {
                panic!(
                    "{} has no address off the database network",
                    REPLICAS[replica]
                )
            });
        format!("http://{address}:8080{path}")
    }

    /// Replica `replica`'s own answer to the filter's token check of `token`: its status and
    /// `active` (None when it did not answer 200).
    pub fn replica_check(&self, replica: usize, token: &str) -> (u16, Option<bool>) {
        self.replica_check_at(replica, token, None)
    }

    /// [`Cluster::replica_check`] as the filter sends it once it has polled up to feed
    /// position `position` (`x-oauth2-feed-position`): the replica must not answer from before.
    pub fn replica_check_at(
        &self,
        replica: usize,
        token: &str,
        position: Option<i64>,
    ) -> (u16, Option<bool>) {
        let url = self.replica_gateway(replica, &format!("/gateway/v1/services/{SERVICE}/token"));
        let mut request = self.http.get(url).header("x-access-token", token);
        if let Some(position) = position {
            request = request.header("x-oauth2-feed-position", position.to_string());
        }
        let (status, text) = answer(request);
        let active = serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|_| status == 200)
            .map(|v| v["active"] == Value::Bool(true));
        (status, active)
    }

    /// Of `tokens`, those replica `replica` does not answer active (its address looked up
    /// once, not per token).
    pub fn unknown_at<'t>(
        &self,
        replica: usize,
        tokens: impl Iterator<Item = &'t String>,
    ) -> Vec<&'t String> {
        let url = self.replica_gateway(replica, &format!("/gateway/v1/services/{SERVICE}/token"));
        tokens
            .filter(|token| {
                let (status, text) =
                    answer(self.http.get(&url).header("x-access-token", token.as_str()));
                let active = serde_json::from_str::<Value>(&text)
                    .is_ok_and(|v| v["active"] == Value::Bool(true));
                !(status == 200 && active)
            })
            .collect()
    }

    /// The change feed's position as replica `replica` reports it to the filter's state poll.
    pub fn feed_position(&self, replica: usize) -> Option<i64> {
        let url = self.replica_gateway(replica, &format!("/gateway/v1/services/{SERVICE}/state"));
        let (status, text) = answer(self.http.get(url));
        let state: Value = serde_json::from_str(&text).ok().filter(|_| status == 200)?;
        state["seq"].as_i64()
    }

    /// Replica `replica`'s gateway `/status` (what Envoy's health check asks).
    pub fn replica_gateway_status(&self, replica: usize) -> u16 {
        answer(self.http.get(self.replica_gateway(replica, "/status"))).0
    }

    /// A token request sent straight to replica `replica`'s gateway listener, as the filter
    /// relays one that came over HTTPS: its status.
    pub fn replica_token_request(&self, replica: usize) -> (u16, String) {
        let body = json!({"client_id": self.client_id, "client_secret": self.client_secret,
                          "grant_type": "client_credentials", "scope": "echo"});
        let url = self.replica_gateway(
            replica,
            &format!("/gateway/v1/services/{SERVICE}/oauth2/token"),
        );
        answer(
            self.http
                .post(url)
                .header("x-gateway-tls", "on")
                .json(&body),
        )
    }

    /// The networks `container` shares with PostgreSQL: cutting them cuts it from its
    /// database and from nothing else, which needs the compose file's separate networks.
    pub fn networks_shared_with_postgres(&self, container: &Container) -> Vec<String> {
        let postgres = self.container(POSTGRES).networks();
        let own = container.networks();
        let shared: Vec<String> = own
            .keys()
            .filter(|n| postgres.contains_key(*n))
            .cloned()
            .collect();
        assert!(
            !shared.is_empty() && shared.len() < own.len(),
            "{} must share a network with PostgreSQL and have one without it (the cluster \
             profile's db and control networks), so it can be cut from PostgreSQL alone: it is \
             on {:?}, PostgreSQL on {:?}",
            container.service,
            own.keys(),
            postgres.keys()
        );
        shared
    }
}
