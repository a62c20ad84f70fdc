//! Many services behind one Envoy listener (issue 12): each route names the service that
//! protects it in its metadata, each service keeps its own plugin settings, a token of one is
//! refused on the other unless both plugins share `global_credentials`, and the OAuth
//! endpoints under each route speak for that route's service. The filter's counters reach
//! Envoy's `/stats` and `/stats/prometheus`.

use e2e::kong::{eventually, Kong};
use e2e::stack::{Gateway, GatewayOptions, Stack};
use e2e::Text;
use serde_json::json;

fn client_credentials(kong: &Kong, gw: &Gateway, prefix: &str) -> String {
    let url = format!("https://localhost:{}/{prefix}/oauth2/token", gw.https_port);
    let answer = kong.post(
        &url,
        json!({"client_id": "clientid123", "client_secret": "secret123",
               "grant_type": "client_credentials", "scope": "email"}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json().text("access_token")
}

fn get(kong: &Kong, gw: &Gateway, prefix: &str, token: &str) -> e2e::http::Answer {
    let url = format!("http://127.0.0.1:{}/{prefix}/request", gw.http_port);
    kong.stack
        .client
        .get_with(&url, &[("authorization", &format!("Bearer {token}"))])
}

#[test]
fn two_services_on_one_listener_keep_their_own_settings_and_tokens() {
    let mut kong = Kong::start();
    let gw = kong.protect_two(
        (
            "alpha",
            json!({"enable_client_credentials": true, "realm": "alpha", "token_expiration": 600}),
        ),
        (
            "beta",
            json!({"enable_client_credentials": true, "realm": "beta", "hide_credentials": true,
                   "token_expiration": 600}),
        ),
    );
    let gw = kong.gw(gw);

    // Each route's OAuth endpoint issues tokens of its own service.
    let alpha_token = client_credentials(&kong, gw, "alpha");
    let beta_token = client_credentials(&kong, gw, "beta");

    // Each service enforces its own settings: beta hides the credential, alpha does not.
    let a = get(&kong, gw, "alpha", &alpha_token);
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        a.json()["headers"]["authorization"].is_string(),
        "{}",
        a.text
    );
    let b = get(&kong, gw, "beta", &beta_token);
    assert_eq!(b.status, 200, "{}", b.text);
    assert!(b.json()["headers"]["authorization"].is_null(), "{}", b.text);
    assert_eq!(
        a.json()["headers"]["x-consumer-username"],
        json!("bob"),
        "{}",
        a.text
    );

    // A token of one service is refused on the other, with that service's realm.
    for (prefix, token, realm) in [
        ("beta", &alpha_token, "beta"),
        ("alpha", &beta_token, "alpha"),
    ] {
        let r = get(&kong, gw, prefix, token);
        assert_eq!(r.status, 401, "{prefix}: {}", r.text);
        assert_eq!(r.json()["error"], json!("invalid_token"));
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with(&format!("Bearer realm=\"{realm}\"")),
            "{challenge}"
        );
    }

    // With global_credentials on both plugins, a global token works on either route.
    for service in ["alpha", "beta"] {
        let plugins = kong
            .stack
            .admin_get(&format!("/services/{service}/plugins"))
            .json();
        let id = plugins["data"][0].text("id");
        let patched = kong.stack.client.patch_json(
            &kong.stack.admin(&format!("/plugins/{id}")),
            &json!({"config": {"global_credentials": true}}),
        );
        assert_eq!(patched.status, 200, "{}", patched.text);
    }
    let global = eventually(|| {
        let url = format!("https://localhost:{}/alpha/oauth2/token", gw.https_port);
        let answer = kong.post(
            &url,
            json!({"client_id": "clientid123", "client_secret": "secret123",
                   "grant_type": "client_credentials", "scope": "email"}),
        );
        let token = answer.json().text("access_token");
        !token.is_empty() && get(&kong, gw, "beta", &token).status == 200
    });
    assert!(
        global,
        "a global token was not accepted on the other service"
    );

    // The filter's counters reach Envoy's stats (flushed on the filter's tick).
    let counted = eventually(|| {
        gw.filter_stat(&kong.stack.client, "oauth2.allowed") >= 2
            && gw.filter_stat(&kong.stack.client, "oauth2.denied.invalid_token") >= 2
            && gw.filter_stat(&kong.stack.client, "oauth2.relay.sent") >= 3
            && gw.filter_stat(&kong.stack.client, "oauth2.check.sent") >= 2
    });
    assert!(
        counted,
        "filter counters not in Envoy's stats: {}",
        kong.stack
            .client
            .get(&format!(
                "http://127.0.0.1:{}/stats?filter=oauth2",
                gw.admin_port
            ))
            .text
    );
    let prometheus = kong
        .stack
        .client
        .get(&format!(
            "http://127.0.0.1:{}/stats/prometheus",
            gw.admin_port
        ))
        .text;
    let allowed = prometheus
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "{} ",
                e2e::stack::prometheus_name("oauth2.allowed{}")
            ))
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(
        allowed.is_some_and(|n| n >= 2),
        "oauth2_allowed missing from /stats/prometheus"
    );

    // `route_metadata: false`: the filter's `service` protects every route and the metadata is
    // not read, so the route naming beta is alpha's on this Envoy: beta's token is refused
    // there with alpha's realm (its token stays bound to beta), alpha's is let through, and no token is refused.
    let config = json!({
        "service": "alpha",
        "token_service": {"cluster": "token_service", "authority": "token-service", "timeout_ms": 1000},
        "poll_interval_ms": e2e::stack::POLL_INTERVAL_MS,
        "route_metadata": false,
    });
    let options = GatewayOptions {
        filter_config: Some(config.to_string()),
        second_route: Some(("beta".to_string(), "/beta".to_string())),
        ..GatewayOptions::default()
    };
    kong.stack.add_gateway_with("alpha", "/alpha", options);
    let single = &kong.stack.gateways[kong.stack.gateways.len() - 1];
    let r = get(&kong, single, "beta", &beta_token);
    assert_eq!(r.status, 401, "{}", r.text);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"alpha\""),
        "{challenge}"
    );
    let r = get(&kong, single, "beta", &alpha_token);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json()["headers"]["x-consumer-username"],
        json!("bob"),
        "{}",
        r.text
    );
    let url = format!("http://127.0.0.1:{}/beta/request", single.http_port);
    let r = kong.stack.client.get(&url);
    assert_eq!(r.status, 401, "{}", r.text);

    // There, a route leaves the filter with Envoy's own per-route `disabled`: it passes
    // untouched while the other route stays protected.
    let options = GatewayOptions {
        filter_config: Some(config.to_string()),
        second_route: Some(("beta".to_string(), "/beta".to_string())),
        second_route_filter_disabled: true,
        ..GatewayOptions::default()
    };
    kong.stack.add_gateway_with("alpha", "/alpha", options);
    let opted_out = &kong.stack.gateways[kong.stack.gateways.len() - 1];
    let url = format!("http://127.0.0.1:{}/beta/request", opted_out.http_port);
    let r = kong.stack.client.get(&url);
    assert_eq!(r.status, 200, "{}", r.text);
    let url = format!("http://127.0.0.1:{}/alpha/request", opted_out.http_port);
    let r = kong.stack.client.get(&url);
    assert_eq!(r.status, 401, "{}", r.text);
}

/// `make run`'s second route (`/stepon-partners`, a service with no plugin) goes to an echo of
/// its own, not to Step On's API: identity headers a client writes there pass untouched (the
/// filter leaves a route it does not protect alone, by design) but name no one whose data
/// could be read. The first route, with no plugin either (tutorial step 2), still answers Clark.
#[test]
fn the_unprotected_second_route_reaches_an_echo_and_no_step_counts() {
    let mut stack = Stack::start_services();
    stack.create_service("step-on");
    stack.create_service("step-on-partners");
    let options = GatewayOptions {
        second_route: Some(("step-on-partners".into(), "/stepon-partners".into())),
        ..GatewayOptions::default()
    };
    stack.add_gateway_with("step-on", "/stepon", options);
    let gw = stack.gateway();
    let forged = [
        ("x-authenticated-userid", "clark"),
        ("mock-logged-in-as", "clark"),
    ];

    let url = format!(
        "http://127.0.0.1:{}/stepon-partners/stepcounts",
        gw.http_port
    );
    let partners = stack.client.get_with(&url, &forged);
    assert_eq!(partners.status, 200, "{}", partners.text);
    let echo = partners.json();
    assert!(
        echo["stepcounts"].is_null(),
        "user data on the second route: {echo}"
    );
    assert!(echo["user"].is_null(), "{echo}");
    assert_eq!(echo["path"], json!("/stepcounts"), "{echo}");
    assert_eq!(echo["headers"]["x-authenticated-userid"], json!("clark"));

    let step_on = stack.client.get_with(&gw.http("/stepcounts"), &forged);
    assert_eq!(step_on.status, 200, "{}", step_on.text);
    assert_eq!(step_on.json()["user"], json!("clark"), "{}", step_on.text);
}
