//! The seed tutorial (Kong's "Step On" / "Shoe Fly Shoe" authorization code flow), end to end.

use e2e::oauth::{assert_step_counts_for, bearer, create_app, exchange_code, query_param};
use e2e::stack::{wait_until, Stack, POLL_INTERVAL_MS};
use e2e::Text;
use serde_json::Value;
use std::time::Duration;

const INVALID_CHALLENGE: &str =
    "Bearer realm=\"service\", error=\"invalid_token\", error_description=\"The access token is invalid or has expired\"";

/// Changes reach the filter within one poll interval plus a round trip; allow generous slack.
fn propagation() -> Duration {
    Duration::from_millis(POLL_INTERVAL_MS * 5 + 1000)
}

#[test]
fn the_seed_tutorial_works_through_envoy() {
    let mut stack = Stack::start();
    let gw = stack.gateway();
    let client = &stack.client;

    // Step 2: without a plugin, the service passes requests through untouched.
    let open = client.get_with(&gw.http("/stepcounts"), &[("mock-logged-in-as", "clark")]);
    assert_eq!(open.status, 200, "{}", open.text);
    assert_eq!(open.json()["user"], "clark");

    // Step 3: the oauth2 plugin, created the seed's way (form data, `value.*`).
    let plugin = stack.admin_post(
        "/apis/step-on/plugins",
        &[
            ("name", "oauth2"),
            ("value.scopes", "user_profile,biometric,step_counts"),
            ("value.mandatory_scope", "true"),
        ],
    );
    assert_eq!(plugin.status, 201, "{}", plugin.text);
    let plugin = plugin.json();
    assert_eq!(plugin["config"]["enable_authorization_code"], true);
    let provision_key = plugin["config"].text("provision_key");
    assert_eq!(provision_key.len(), 32);

    let missing = || client.get(&gw.http("/stepcounts"));
    // (The demo upstream answers 401 itself without a user: wait for the filter's challenge.)
    let challenged = || missing().header("www-authenticate").is_some();
    assert!(
        e2e::kong::eventually_everywhere(challenged),
        "the plugin never reached the filter"
    );
    let answer = missing();
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"service\"")
    );
    assert_eq!(
        answer.json(),
        serde_json::json!({"error": "invalid_request", "error_description": "The access token is missing"})
    );

    // Step 4: the consumer (Shoe Fly Shoe) and its OAuth application.
    let app = create_app(&stack, "shoe-fly-shoe", "http://localhost:5000/callback");
    assert_eq!(app.client_id.len(), 32);

    // The authorization endpoint refuses plain HTTP.
    let http = client.post_form(
        &gw.http("/oauth2/authorize"),
        &[("client_id", &app.client_id)],
    );
    assert_eq!(http.status, 400);
    assert_eq!(
        http.json(),
        serde_json::json!({"error": "access_denied", "error_description": "You must use HTTPS"})
    );
    assert_eq!(http.header("cache-control").as_deref(), Some("no-store"));

    // Clark grants Shoe Fly Shoe access to his step counts.
    let authorize = client.post_form(
        &gw.https("/oauth2/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", &app.client_id),
            ("scope", "step_counts"),
            ("provision_key", &provision_key),
            ("authenticated_userid", "clark"),
            ("state", "shoes&socks"),
        ],
    );
    assert_eq!(authorize.status, 200, "{}", authorize.text);
    assert_eq!(authorize.header("pragma").as_deref(), Some("no-cache"));
    let redirect = authorize.json().text("redirect_uri");
    assert!(
        redirect.starts_with("http://localhost:5000/callback?code="),
        "{redirect}"
    );
    assert_eq!(
        query_param(&redirect, "state").as_deref(),
        Some("shoes%26socks")
    );
    let code = query_param(&redirect, "code").unwrap_or_default();
    assert_eq!(code.len(), 32);
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));

    // The app exchanges the code for a token pair.
    let pair = exchange_code(&stack, gw, &app, &code);
    assert_eq!(pair["token_type"], "bearer");
    assert_eq!(pair["expires_in"], 7200);
    let access = pair.text("access_token");
    let refresh = pair.text("refresh_token");
    assert_eq!((access.len(), refresh.len()), (32, 32));

    // The app reads Clark's step counts; the upstream learns who is asking, and forged
    // identity headers from the client never reach it.
    let steps = client.get_with(
        &gw.http("/stepcounts"),
        &[
            ("authorization", &bearer(&access)),
            ("x-consumer-id", "forged"),
            ("x-authenticated-userid", "mallory"),
            ("x-anonymous-consumer", "true"),
        ],
    );
    assert_eq!(steps.status, 200, "{}", steps.text);
    let body = steps.json();
    assert_step_counts_for(&body, "clark", &app.consumer_id, &app.client_id);
    let upstream: &Value = &body["headers"];
    assert!(upstream.get("x-anonymous-consumer").is_none(), "{upstream}");
    assert!(upstream.get("x-consumer-custom-id").is_none(), "{upstream}");

    // Refresh: a new pair, and the old access token stops working within the bound.
    let refreshed = client.post_form(
        &gw.https("/oauth2/token"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &app.client_id),
            ("client_secret", &app.client_secret),
            ("refresh_token", &refresh),
        ],
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let new_access = refreshed.json().text("access_token");
    assert_ne!(new_access, access);
    assert_ne!(
        refreshed.json()["refresh_token"].as_str(),
        Some(refresh.as_str())
    );
    let old = || {
        client.get_with(
            &gw.http("/stepcounts"),
            &[("authorization", &bearer(&access))],
        )
    };
    assert!(
        wait_until(propagation(), || old().status == 401),
        "the refreshed-away token still works"
    );
    assert_eq!(
        old().header("www-authenticate").as_deref(),
        Some(INVALID_CHALLENGE)
    );
    let new = client.get_with(
        &gw.http("/stepcounts"),
        &[("authorization", &bearer(&new_access))],
    );
    assert_eq!(new.status, 200);

    // A made-up token is refused with RFC 6750's invalid_token.
    let bad = client.get_with(
        &gw.http("/stepcounts"),
        &[("authorization", "Bearer not-a-real-token")],
    );
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.header("www-authenticate").as_deref(),
        Some(INVALID_CHALLENGE)
    );
    assert_eq!(bad.json()["error"], "invalid_token");

    // The token-service goes down: an unknown token is an outage (503), never a pass.
    stack.kill_token_service();
    let gw = stack.gateway();
    let down = stack.client.get_with(
        &gw.http("/stepcounts"),
        &[("authorization", "Bearer another-unknown-token")],
    );
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(down.json()["error"], "temporarily_unavailable");
}

/// Issue 22: the tutorial's state declared in `examples/step-on.kong.yml` (synced at start-up
/// with `--declarative-config`, its secrets from the environment) runs the tutorial as the
/// admin API's steps 3 and 4 do.
#[test]
fn the_tutorial_runs_with_the_declared_credentials() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/step-on.kong.yml");
    let (provision_key, secret) = ("declared-provision-key-123", "declared-shoe-fly-secret");
    let mut stack = Stack::start_services_opts(e2e::StackOptions {
        token_service_args: &["--declarative-config", example],
        token_service_env: &[
            ("STEP_ON_PROVISION_KEY", provision_key),
            ("SHOE_FLY_SHOE_SECRET", secret),
        ],
        ..e2e::StackOptions::default()
    });
    stack.add_gateway("step-on", "/stepon");
    let gw = stack.gateway();
    let client = &stack.client;
    let consumer = stack.admin_get("/consumers/shoe-fly-shoe");
    assert_eq!(consumer.status, 200, "{}", consumer.text);
    let app = e2e::oauth::App {
        consumer_id: consumer.json().text("id"),
        client_id: "shoe-fly-shoe".into(),
        client_secret: secret.into(),
        redirect_uri: "http://localhost:5000/callback".into(),
    };
    let authorize = client.post_form(
        &gw.https("/oauth2/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", &app.client_id),
            ("scope", "step_counts"),
            ("provision_key", provision_key),
            ("authenticated_userid", "clark"),
        ],
    );
    assert_eq!(authorize.status, 200, "{}", authorize.text);
    let redirect = authorize.json().text("redirect_uri");
    let code = query_param(&redirect, "code").unwrap_or_default();
    let pair = exchange_code(&stack, gw, &app, &code);
    let steps = client.get_with(
        &gw.http("/stepcounts"),
        &[("authorization", &bearer(&pair.text("access_token")))],
    );
    assert_eq!(steps.status, 200, "{}", steps.text);
    assert_eq!(steps.json()["user"], "clark");
    assert_eq!(
        steps.json()["headers"]["x-consumer-username"],
        "shoe-fly-shoe"
    );
    // A wrong secret is refused: the declared one is the only one.
    let wrong = e2e::oauth::App {
        client_secret: "not-the-declared-secret".into(),
        ..app
    };
    let refused = client.post_form(
        &gw.https("/oauth2/token"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &wrong.client_id),
            ("client_secret", &wrong.client_secret),
            ("code", "whatever"),
        ],
    );
    // Kong's answer to body credentials: 400 invalid_client.
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.json()["error"], "invalid_client");
}
