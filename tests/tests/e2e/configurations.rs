//! Several filter configurations in one Envoy, and workers that sit idle: the review's blind
//! spot (issue 18), since every other test runs one configuration per Envoy with busy workers.
//! Both builds (the wasm filter's configurations share one `vm_id`, as the README's snippets
//! do; the native module's share one process). A recording upstream is the witness.

use e2e::fake::{FakeTokenService, Misbehaviour};
use e2e::kong::Kong;
use e2e::recorder::Recorder;
use e2e::stack::{filter_entry, wait_until, GatewayOptions, Stack};
use e2e::{free_port, Text};
use serde_json::{json, Value};
use std::time::Duration;

const SERVICE: &str = "shared-name";

/// Kong's fixtures with a plugin on `SERVICE` that issues client-credentials tokens.
fn token_service_with_plugin() -> Kong {
    let mut kong = Kong::start();
    kong.configure(
        SERVICE,
        json!({"enable_client_credentials": true, "token_expiration": 600}),
    );
    kong
}

/// A client-credentials token issued by the stack's token-service (as Envoy relays it).
fn issue(stack: &Stack) -> String {
    let url = format!(
        "http://127.0.0.1:{}/gateway/v1/services/{SERVICE}/oauth2/token",
        stack.gateway_port
    );
    let body = json!({"client_id": "clientid123", "client_secret": "secret123",
                      "grant_type": "client_credentials", "scope": "email"});
    let answer = stack.client.send(
        stack
            .client
            .raw()
            .post(url)
            .header("x-gateway-tls", "on")
            .json(&body),
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json().text("access_token")
}

/// A connection per request, so each of Envoy's workers gets its turn.
fn fresh_connections() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn get(client: &reqwest::blocking::Client, port: u16, token: &str) -> (u16, String) {
    let answer = client
        .get(format!("http://127.0.0.1:{port}/request"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .expect("request through Envoy");
    let status = answer.status().as_u16();
    (status, answer.text().unwrap_or_default())
}

fn listener(name: &str, port: u16, filter_config: Value) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}]},
                "http_filters": [
                    filter_entry(&filter_config),
                    {"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                ],
            }
        }]}],
    })
}

fn cluster(name: &str, port: u16, http2: bool) -> Value {
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    });
    if http2 {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        });
    }
    cluster
}

fn token_service_mode(cluster: &str) -> Value {
    json!({"service": SERVICE, "token_service": {"cluster": cluster, "authority": "token-service"},
           "poll_interval_ms": 200})
}

fn introspection_mode(cluster: &str, path: &str) -> Value {
    json!({"introspection": {"cluster": cluster, "path": path,
                             "client_id": "clientid789", "client_secret": "secret789"}})
}

/// Issue 18 (high): staging and production token-services protecting a service of the same
/// name, and two RFC 7662 servers, on four listeners of one Envoy. A token accepted by one
/// configuration was then accepted by the other from the shared cache, with the first one's
/// identity, its own server never asked.
#[test]
fn configurations_in_one_envoy_never_share_a_verdict() {
    let staging = token_service_with_plugin();
    let production = token_service_with_plugin();
    let knows_no_token_port = free_port();
    let knows_no_token = FakeTokenService::start(knows_no_token_port, Misbehaviour::KnowsNoToken);
    let witness = Recorder::start();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let (staging_ts, production_ts, staging_idp, other_idp) =
        (ports[0], ports[1], ports[2], ports[3]);
    let admin_port = free_port();
    let introspect = format!("/gateway/v1/services/{SERVICE}/oauth2/introspect");
    let config = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                listener("staging_ts", staging_ts, token_service_mode("staging")),
                listener("production_ts", production_ts, token_service_mode("production")),
                listener("staging_idp", staging_idp, introspection_mode("staging_idp", &introspect)),
                listener("other_idp", other_idp, introspection_mode("other_idp", "/introspect")),
            ],
            "clusters": [
                cluster("upstream", witness.port, false),
                cluster("staging", staging.stack.gateway_port, true),
                cluster("production", production.stack.gateway_port, true),
                cluster("staging_idp", staging.stack.gateway_port, false),
                cluster("other_idp", knows_no_token_port, false),
            ],
        }
    });
    let envoy = staging
        .stack
        .start_custom_envoy("four-configurations", &config, admin_port);
    let token = issue(&staging.stack);
    let client = fresh_connections();

    for (accepting, refusing) in [(staging_ts, production_ts), (staging_idp, other_idp)] {
        // Accepted where its issuer is asked, on every worker: cached in shared data.
        for _ in 0..6 {
            let (status, text) = get(&client, accepting, &token);
            assert_eq!(status, 200, "{text}; see {}", envoy.log.display());
        }
        let forwarded = witness.all().len();
        for _ in 0..6 {
            let (status, text) = get(&client, refusing, &token);
            assert_eq!(
                status,
                401,
                "the other configuration's verdict answered: {text}; see {}",
                envoy.log.display()
            );
            assert!(text.contains("invalid_token"), "{text}");
        }
        assert_eq!(
            witness.all().len(),
            forwarded,
            "nothing refused reached the upstream"
        );
    }
    assert!(
        knows_no_token.calls() > 0,
        "the second authorization server was asked"
    );
    // And the other way round: a production token is refused on staging's listener.
    let production_token = issue(&production.stack);
    assert_eq!(get(&client, production_ts, &production_token).0, 200);
    assert_eq!(get(&client, staging_ts, &production_token).0, 401);
}

/// Issue 18 (medium): a revocation reaches every cache within the bound however long the
/// workers sat idle. Natively, the main thread's poller kept 256 answers for the workers; one
/// that slept through more cleared only its own copy, and the shared cache answered the
/// revoked token for `max_ttl_s` (here 300 s).
#[test]
fn a_revocation_reaches_every_cache_however_long_the_workers_sat_idle() {
    let mut kong = token_service_with_plugin();
    let witness = Recorder::start();
    // Polled every 50 ms, for each service the filter configuration knows.
    let filter_config = json!({
        "service": SERVICE,
        "token_service": {"cluster": "token_service", "authority": "token-service", "timeout_ms": 1000},
        "poll_interval_ms": 50,
        "cache": {"max_ttl_s": 300},
    });
    kong.stack.add_gateway_with(
        SERVICE,
        "/idle",
        GatewayOptions {
            filter_config: Some(filter_config.to_string()),
            upstream_port: Some(witness.port),
            ..GatewayOptions::default()
        },
    );
    let stack = &kong.stack;
    let port = stack.gateways[0].http_port;
    let token = issue(stack);
    let client = fresh_connections();
    let url = format!("http://127.0.0.1:{port}/idle/request");
    let status = || {
        client
            .get(&url)
            .header("authorization", format!("Bearer {token}"))
            .send()
            .map(|r| r.status().as_u16())
            .expect("request through Envoy")
    };
    let polls = || {
        let metrics = stack.client.get(&stack.admin("/metrics")).text;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("token_service_state_polls_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // The template's second route names a second service: once met, the HTTP listener's
    // filter polls two (40 answers a second; the HTTPS listener's, one). Met first: a
    // service's first state moves the cache epoch, which would drop the token's entry.
    let second = client
        .get(format!("http://127.0.0.1:{port}/idle-second/request"))
        .send()
        .map(|r| r.status().as_u16());
    assert!(second.is_ok());
    // ...at the poller's next round: wait for a few, then cache the token.
    let met = polls();
    assert!(wait_until(Duration::from_secs(20), || polls() >= met + 20.0));
    for _ in 0..8 {
        assert_eq!(status(), 200);
    }
    let revoked = stack
        .client
        .delete(&stack.admin(&format!("/oauth2_tokens/{token}")));
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let at_revocation = polls();
    // Idle workers (no request reaches Envoy) while the token-service answers 600 polls: 400
    // of them the HTTP listener's, more than the native poller's feed keeps (256).
    let idle = wait_until(Duration::from_secs(60), || polls() >= at_revocation + 600.0);
    assert!(idle, "the filter stopped polling");
    let forwarded = witness.all().len();
    let statuses: Vec<u16> = (0..8).map(|_| status()).collect();
    assert!(
        statuses.iter().all(|s| *s == 401),
        "the revoked token after the workers sat idle: {statuses:?}; see {}",
        stack.gateways[0].log.display()
    );
    assert_eq!(witness.all().len(), forwarded);
}
