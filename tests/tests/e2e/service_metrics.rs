//! The token-service's `/metrics` (issue 12): served on the admin listener only, behind the
//! admin key, in the Prometheus text format, and counting exactly what clients and the filter
//! did: tokens by grant, OAuth errors by code, the filter's checks by outcome (matching the
//! checks Envoy's stats say the filter sent), the index's hits and size, write batches and
//! purged rows.

use e2e::kong::{eventually, Kong, REDIRECT};
use e2e::stack::{wait_until, Gateway, Stack, StackOptions};
use e2e::Text;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// One scrape, parsed: every sample by its series (`name{labels}` exactly as served).
struct Scrape {
    samples: HashMap<String, f64>,
    text: String,
}

impl Scrape {
    /// The value of `series`; a series that is not exported fails the test.
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in\n{}", self.text))
    }

    /// How much `series` moved since `before`.
    fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.get(series) - before.get(series)
    }
}

fn issued(grant: &str) -> String {
    format!("token_service_tokens_issued_total{{grant=\"{grant}\"}}")
}

fn error(code: &str) -> String {
    format!("token_service_oauth_errors_total{{error=\"{code}\"}}")
}

fn checks(outcome: &str) -> String {
    format!("token_service_token_checks_total{{outcome=\"{outcome}\"}}")
}

fn token_lookups(result: &str) -> String {
    format!("token_service_index_lookups_total{{map=\"token\",result=\"{result}\"}}")
}

const GRANTS: [&str; 5] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "implicit",
];

const ERRORS: [&str; 12] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "unsupported_response_type",
    "invalid_scope",
    "access_denied",
    "invalid_provision_key",
    "invalid_authenticated_userid",
    "invalid_method",
    "server_error",
];

/// Scrapes the admin listener's `/metrics` and checks the exposition format on the way.
fn scrape(stack: &Stack, headers: &[(&str, &str)]) -> Scrape {
    let answer = stack.client.get_with(&stack.admin("/metrics"), headers);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = parse_exposition(&answer.text)
        .unwrap_or_else(|e| panic!("not the Prometheus text format: {e}\n{}", answer.text));
    Scrape {
        samples,
        text: answer.text,
    }
}

/// The Prometheus text format (0.0.4), as its parser reads it: `# HELP`/`# TYPE` comments,
/// each family typed once and before its samples; every sample `name{labels} value` with a
/// valid name, quoted and escaped label values, and a float value, belonging to the family
/// the last `# TYPE` named (histograms through `_bucket`, `_sum`, `_count`); a histogram's
/// buckets cumulative and ending in `le="+Inf"` equal to its `_count`.
fn parse_exposition(text: &str) -> Result<HashMap<String, f64>, String> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut family: Option<(String, String)> = None;
    let mut samples = HashMap::new();
    let mut last_bucket: Option<(String, f64)> = None;
    // Each histogram's `le="+Inf"` bucket, to compare with its `_count`.
    let mut inf_buckets: HashMap<String, f64> = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["TYPE", name, kind] => {
                    valid_name(name)?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(format!("unknown type in {line}"));
                    }
                    if typed.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(format!("{name} typed twice"));
                    }
                    family = Some((name.to_string(), kind.to_string()));
                }
                ["HELP", name, ..] => valid_name(name)?,
                _ => {}
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("no value in {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                rest.strip_suffix('}')
                    .ok_or_else(|| format!("unclosed labels in {line}"))?,
            ),
            None => (series, ""),
        };
        valid_name(name)?;
        let labels = parse_labels(labels).map_err(|e| format!("{e} in {line}"))?;
        let (family_name, kind) = family
            .as_ref()
            .ok_or_else(|| format!("sample before any # TYPE: {line}"))?;
        let belongs = match kind.as_str() {
            "histogram" | "summary" => ["_bucket", "_sum", "_count", ""]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family_name)),
            _ => name == family_name,
        };
        if !belongs {
            return Err(format!("{line} after # TYPE {family_name} {kind}"));
        }
        if name.ends_with("_bucket") {
            let le = labels
                .iter()
                .find(|(k, _)| k == "le")
                .ok_or_else(|| format!("bucket without le: {line}"))?;
            if let Some((previous_name, previous)) = &last_bucket {
                if previous_name == name && value < *previous {
                    return Err(format!("buckets not cumulative at {line}"));
                }
            }
            last_bucket = Some((name.to_string(), value));
            if le.1 == "+Inf" {
                inf_buckets.insert(family_name.clone(), value);
            }
        }
        if name.ends_with("_count") && kind == "histogram" {
            let inf = inf_buckets.get(family_name).copied();
            if inf != Some(value) {
                return Err(format!("{line}: +Inf bucket {inf:?}"));
            }
        }
        if samples.insert(series.to_string(), value).is_some() {
            return Err(format!("{series} twice"));
        }
    }
    Ok(samples)
}

fn valid_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

/// `k="v",k2="v2"` (escapes `\\`, `\"`, `\n` in values).
fn parse_labels(mut text: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"").ok_or("label without =\"")?;
        valid_name(key)?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("bad escape".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.push((key.to_string(), value));
        text = &rest[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
    }
    Ok(labels)
}

/// Consumer `bob` and his confidential client `clientid123` (Kong's first fixture), on a
/// token-service started with `args`. One replica in PostgreSQL mode too: the metrics and the
/// index they describe are one process's.
fn kong_with(args: &[&str]) -> Kong {
    let stack = Stack::start_services_opts(StackOptions {
        token_service_args: args,
        replicas: Some(1),
        ..StackOptions::default()
    });
    let bob = stack
        .client
        .post_json(&stack.admin("/consumers"), &json!({"username": "bob"}));
    assert_eq!(bob.status, 201, "{}", bob.text);
    let client = stack.client.post_json(
        &stack.admin("/consumers/bob/oauth2"),
        &json!({"name": "app", "client_id": "clientid123", "client_secret": "secret123",
                "redirect_uris": [REDIRECT], "client_type": "confidential"}),
    );
    assert_eq!(client.status, 201, "{}", client.text);
    Kong {
        bob_id: bob.json().text("id"),
        stack,
    }
}

fn client_credentials(kong: &Kong, gw: &Gateway, prefix: &str, secret: &str) -> e2e::Answer {
    let url = format!("https://localhost:{}/{prefix}/oauth2/token", gw.https_port);
    kong.post(
        &url,
        json!({"client_id": "clientid123", "client_secret": secret,
               "grant_type": "client_credentials", "scope": "email"}),
    )
}

fn get(kong: &Kong, gw: &Gateway, prefix: &str, token: &str) -> u16 {
    let url = format!("http://127.0.0.1:{}/{prefix}/anything", gw.http_port);
    kong.stack
        .client
        .get_with(&url, &[("authorization", &format!("Bearer {token}"))])
        .status
}

#[test]
fn metrics_count_exactly_what_clients_and_the_filter_did() {
    let mut kong = kong_with(&[]);
    // alpha shares its tokens (global_credentials), beta does not: a token of alpha presented
    // at beta is the check outcome `global_token`.
    let gw = kong.protect_two(
        (
            "alpha",
            json!({"enable_client_credentials": true, "global_credentials": true,
                   "token_expiration": 600}),
        ),
        (
            "beta",
            json!({"enable_client_credentials": true, "token_expiration": 600}),
        ),
    );
    let gw_index = gw;
    let gw = kong.gw(gw_index);
    let stack = &kong.stack;
    let checks_sent = "oauth2.check.sent";
    let envoy_before = gw.filter_stat(&kong.stack.client, checks_sent);
    let before = scrape(stack, &[]);

    // Two grants: the code flow at alpha, client credentials at beta; one failing request.
    let code_token = kong.provision_token(gw_index)["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let beta = client_credentials(&kong, gw, "beta", "secret123");
    assert_eq!(beta.status, 200, "{}", beta.text);
    let beta_token = beta.json().text("access_token");
    let refused = client_credentials(&kong, gw, "beta", "wrong-secret");
    assert_eq!(
        refused.json()["error"],
        json!("invalid_client"),
        "{}",
        refused.text
    );

    // Four first sightings, so four checks: two active, one global, one unknown.
    assert_eq!(get(&kong, gw, "alpha", &code_token), 200);
    assert_eq!(get(&kong, gw, "beta", &beta_token), 200);
    assert_eq!(get(&kong, gw, "beta", &code_token), 401);
    assert_eq!(get(&kong, gw, "alpha", "never-issued-token"), 401);

    let after = scrape(stack, &[]);
    for grant in GRANTS {
        let expected = match grant {
            "authorization_code" | "client_credentials" => 1.0,
            _ => 0.0,
        };
        assert_eq!(after.delta(&before, &issued(grant)), expected, "{grant}");
    }
    for code in ERRORS {
        let expected = if code == "invalid_client" { 1.0 } else { 0.0 };
        assert_eq!(after.delta(&before, &error(code)), expected, "{code}");
    }
    for (outcome, expected) in [
        ("active", 2.0),
        ("invalid", 1.0),
        ("global_token", 1.0),
        ("unknown_service", 0.0),
    ] {
        assert_eq!(
            after.delta(&before, &checks(outcome)),
            expected,
            "{outcome}"
        );
    }
    // The filter says it sent as many checks as the token-service answered.
    let sent = eventually(|| gw.filter_stat(&kong.stack.client, checks_sent) - envoy_before == 4);
    assert!(
        sent,
        "Envoy counted {} checks",
        gw.filter_stat(&kong.stack.client, checks_sent) - envoy_before
    );

    // The issued tokens were in memory before their first check; the unknown one was refused
    // by the digest set of every live token, without a read.
    assert_eq!(after.delta(&before, &token_lookups("hit")), 3.0);
    assert_eq!(after.delta(&before, &token_lookups("miss")), 0.0);
    let refused = "token_service_index_lookups_total{map=\"digest\",result=\"hit\"}";
    assert_eq!(after.delta(&before, refused), 1.0);
    assert_eq!(after.get("token_service_index_entries{map=\"token\"}"), 2.0);
    assert!(after.get("token_service_index_bytes{map=\"token\"}") > 0.0);

    // Each Envoy worker keeps polling both services' state.
    assert!(after.delta(&before, "token_service_state_polls_total") > 0.0);

    // Writes: the code, the code's exchange and the client credentials token at least; every
    // batch committed, so every batch was timed.
    let batches = "token_service_store_write_batch_size";
    assert!(after.delta(&before, &format!("{batches}_sum")) >= 3.0);
    assert!(after.delta(&before, &format!("{batches}_count")) >= 1.0);
    for timed in [
        "token_service_store_commit_duration_seconds_count",
        "token_service_store_write_batch_duration_seconds_count",
    ] {
        assert_eq!(
            after.get(timed),
            after.get(&format!("{batches}_count")),
            "{timed}"
        );
    }
}

#[test]
fn purged_rows_are_counted_by_kind() {
    let mut kong = kong_with(&["--purge-interval-s", "1"]);
    // Tokens whose whole row lives one second.
    let gw = kong.protect(
        "ephemeral",
        json!({"enable_client_credentials": true, "token_expiration": 1,
               "refresh_token_ttl": 1}),
    );
    let gw = kong.gw(gw);
    for _ in 0..2 {
        let answer = client_credentials(&kong, gw, "ephemeral", "secret123");
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    let purged = "token_service_purged_rows_total{kind=\"token\"}";
    let both = wait_until(Duration::from_secs(10), || {
        scrape(&kong.stack, &[]).get(purged) >= 2.0
    });
    let last = scrape(&kong.stack, &[]);
    assert!(both, "{}", last.text);
    assert_eq!(last.get(purged), 2.0);
    assert_eq!(
        last.get("token_service_purged_rows_total{kind=\"authorization_code\"}"),
        0.0
    );
    // Purged tokens leave the index too, their digests included.
    assert_eq!(last.get("token_service_index_entries{map=\"token\"}"), 0.0);
    assert_eq!(last.get("token_service_index_entries{map=\"digest\"}"), 0.0);
    let rows = kong.stack.admin_get("/oauth2_tokens").json();
    assert_eq!(rows["data"], Value::Array(Vec::new()), "{rows}");
}

#[test]
fn metrics_are_served_on_the_admin_listener_behind_the_admin_key() {
    let stack = Stack::start_services_with(&["--admin-key", "s3cret-admin-key"]);
    let url = stack.admin("/metrics");
    for wrong in [&[][..], &[("x-admin-key", "guess")][..]] {
        let answer = stack.client.get_with(&url, wrong);
        assert_eq!(answer.status, 401, "{}", answer.text);
        assert!(!answer.text.contains("token_service_"), "{}", answer.text);
    }
    let scraped = scrape(&stack, &[("x-admin-key", "s3cret-admin-key")]);
    assert_eq!(scraped.get(&issued("password")), 0.0);
    // The listener Envoy reaches does not serve it.
    let gateway = format!("http://127.0.0.1:{}/metrics", stack.gateway_port);
    let answer = stack.client.get(&gateway);
    assert_eq!(answer.status, 404, "{}", answer.text);
    assert!(!answer.text.contains("token_service_"));
}

#[test]
fn the_exposition_parser_refuses_what_prometheus_would() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{k=\"v\\\"x\"} 1\n";
    assert_eq!(parse_exposition(good).map(|s| s.len()), Ok(1), "{good}");
    for bad in [
        "a_total 1\n",
        "# TYPE a_total counter\nb_total 1\n",
        "# TYPE a_total counter\na_total{k=\"v} 1\n",
        "# TYPE a_total counter\na_total{k=v} 1\n",
        "# TYPE a_total counter\na_total one\n",
        "# TYPE 1a counter\n1a 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}
