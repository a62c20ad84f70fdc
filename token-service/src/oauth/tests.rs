//! The OAuth endpoints driven through the gateway router, as the filter relays them: a real
//! store in a temporary directory, requests over the router (no sockets), concurrency on
//! tokio's multi-threaded runtime.

use crate::app::{gateway_router, AppState, OAuthSettings};
use crate::grants::throttle::{ClientAuthGuard, FailureLimit, HashPool};
use crate::model::{new_id, ClientType, Consumer, Credential, OAuth2Config, Plugin, Service};
use crate::store::Store;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const PROVISION_KEY: &str = "provision123";
const REDIRECT: &str = "https://client.test/cb";
/// A PKCE verifier and its S256 challenge.
const VERIFIER: &str = "abcdelfhigklmnopqrstuvwxyz0123456789abcdefg";

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    store: Store,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn text(&self, name: &str) -> String {
        self.body[name].as_str().unwrap_or_default().to_string()
    }
}

fn plugin_config(global: bool) -> OAuth2Config {
    OAuth2Config {
        provision_key: PROVISION_KEY.into(),
        enable_authorization_code: true,
        enable_password_grant: true,
        enable_client_credentials: true,
        global_credentials: global,
        ..OAuth2Config::default()
    }
}

fn credential(consumer_id: &str, client_id: &str, client_type: ClientType) -> Credential {
    Credential {
        id: new_id(),
        created_at: 0,
        consumer_id: consumer_id.into(),
        name: client_id.into(),
        client_id: client_id.into(),
        client_secret: format!("{client_id}-secret"),
        hash_secret: false,
        redirect_uris: Some(vec![REDIRECT.into()]),
        client_type,
        tags: None,
    }
}

/// Services `a` and `b` (each its own plugin) and `g` (`global_credentials`); clients `conf`
/// (confidential, secret `conf-secret`), `other` (confidential) and `pub` (public).
async fn fixture(settings: OAuthSettings, configs: &[(&str, OAuth2Config)]) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("t.db")).expect("store");
    let configs: Vec<(String, OAuth2Config)> = configs
        .iter()
        .map(|(name, c)| (name.to_string(), c.clone()))
        .collect();
    store
        .write(move |repo| {
            let consumer = Consumer {
                id: new_id(),
                created_at: 0,
                username: Some("bob".into()),
                custom_id: None,
                tags: None,
            };
            repo.insert_consumer(&consumer)?;
            for (id, kind) in [
                ("conf", ClientType::Confidential),
                ("other", ClientType::Confidential),
                ("pub", ClientType::Public),
            ] {
                repo.insert_credential(&credential(&consumer.id, id, kind))?;
            }
            for (name, config) in configs {
                let service = Service {
                    id: new_id(),
                    created_at: 0,
                    updated_at: 0,
                    name: Some(name),
                    url: None,
                    tags: None,
                };
                repo.insert_service(&service)?;
                repo.insert_plugin(&Plugin {
                    id: new_id(),
                    created_at: 0,
                    updated_at: 0,
                    name: "oauth2".into(),
                    service_id: Some(service.id),
                    enabled: true,
                    config,
                })?;
            }
            Ok(())
        })
        .await
        .expect("fixture");
    let app = gateway_router(AppState::new(store.clone(), None).with_oauth(settings));
    Fixture {
        _dir: dir,
        app,
        store,
    }
}

async fn standard(settings: OAuthSettings) -> Fixture {
    fixture(
        settings,
        &[
            ("a", plugin_config(false)),
            ("b", plugin_config(false)),
            ("g", plugin_config(true)),
        ],
    )
    .await
}

fn encode(form: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

impl Fixture {
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A form POST as the filter relays it from a client on `tls` (or, with `tls: None`, a
    /// direct call on the gateway listener), with extra headers.
    async fn post_as(
        &self,
        path: &str,
        form: &[(&str, &str)],
        tls: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::post(format!("/gateway/v1/services{path}"))
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(tls) = tls {
            request = request
                .header("x-gateway-tls", tls)
                .header("x-gateway-host", "localhost")
                .header("x-gateway-prefix", "");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(encode(form))).expect("request"))
            .await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        self.post_as(path, form, Some("on"), &[]).await
    }

    /// The filter's token check: is `token` good at `service`?
    async fn active_at(&self, service: &str, token: &str) -> bool {
        let request = Request::get(format!("/gateway/v1/services/{service}/token"))
            .header("x-access-token", token)
            .body(Body::empty())
            .expect("request");
        let answer = self.send(request).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body["active"] == true
    }

    /// A password-grant pair for `conf` at `service`.
    async fn password_pair(&self, service: &str) -> Answer {
        let a = self
            .post(
                &format!("/{service}/oauth2/token"),
                &[
                    ("grant_type", "password"),
                    ("client_id", "conf"),
                    ("client_secret", "conf-secret"),
                    ("provision_key", PROVISION_KEY),
                    ("authenticated_userid", "user1"),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a
    }

    /// An authorization code for `conf` at service `a`, with these extra parameters.
    async fn code(&self, extra: &[(&str, &str)]) -> String {
        let mut form = vec![
            ("response_type", "code"),
            ("client_id", "conf"),
            ("provision_key", PROVISION_KEY),
            ("authenticated_userid", "user1"),
        ];
        form.extend_from_slice(extra);
        let a = self.post("/a/oauth2/authorize", &form).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let uri = url::Url::parse(&a.text("redirect_uri")).expect("redirect uri");
        let code = uri.query_pairs().find(|(k, _)| k == "code");
        code.map(|(_, v)| v.into_owned()).expect("a code")
    }

    async fn exchange(&self, code: &str, extra: &[(&str, &str)]) -> Answer {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", "conf"),
            ("client_secret", "conf-secret"),
            ("code", code),
        ];
        form.extend_from_slice(extra);
        self.post("/a/oauth2/token", &form).await
    }

    async fn refresh(&self, service: &str, refresh_token: &str) -> Answer {
        self.post(
            &format!("/{service}/oauth2/token"),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "conf"),
                ("client_secret", "conf-secret"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }
}

fn assert_error(a: &Answer, status: StatusCode, error: &str, description: &str) {
    assert_eq!(
        (a.status, a.body.clone()),
        (
            status,
            json!({"error": error, "error_description": description})
        )
    );
}

// ----- 1. introspection and revocation -----

#[tokio::test]
async fn introspection_and_revocation_refuse_public_clients() {
    let f = standard(OAuthSettings::default()).await;
    let token = f.password_pair("a").await.text("access_token");
    for endpoint in ["introspect", "revoke"] {
        let path = format!("/a/oauth2/{endpoint}");
        // A public client proves nothing: anyone knows its client_id.
        let a = f
            .post(&path, &[("token", &token), ("client_id", "pub")])
            .await;
        assert_error(
            &a,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client authentication",
        );
        assert_eq!(
            a.headers.get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Basic realm=\"OAuth2.0\""[..])
        );
        // Nor by HTTP Basic without a secret.
        let a = f
            .post_as(
                &path,
                &[("token", &token)],
                Some("on"),
                &[("authorization", "Basic cHViOg==")],
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        // A confidential client without its secret, or with a wrong one, neither.
        let a = f
            .post(&path, &[("token", &token), ("client_id", "conf")])
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        let a = f
            .post(
                &path,
                &[
                    ("token", &token),
                    ("client_id", "conf"),
                    ("client_secret", "wrong"),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    assert!(f.active_at("a", &token).await, "nothing was revoked");
    let a = f
        .post(
            "/a/oauth2/introspect",
            &[
                ("token", &token),
                ("client_id", "other"),
                ("client_secret", "other-secret"),
            ],
        )
        .await;
    assert_eq!(
        (a.status, a.body["active"].clone()),
        (StatusCode::OK, json!(true))
    );
}

#[tokio::test]
async fn introspection_and_revocation_need_https_like_the_token_endpoint() {
    let f = standard(OAuthSettings::default()).await;
    let token = f.password_pair("a").await.text("access_token");
    let form = [
        ("token", token.as_str()),
        ("client_id", "other"),
        ("client_secret", "other-secret"),
    ];
    for endpoint in ["introspect", "revoke", "token"] {
        let path = format!("/a/oauth2/{endpoint}");
        let a = f.post_as(&path, &form, Some("off"), &[]).await;
        assert_error(
            &a,
            StatusCode::BAD_REQUEST,
            "access_denied",
            "You must use HTTPS",
        );
        // A client's own X-Forwarded-Proto does not count without the plugin's consent.
        let a = f
            .post_as(&path, &form, Some("off"), &[("x-forwarded-proto", "https")])
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{endpoint}: {}", a.body);
    }
    assert!(f.active_at("a", &token).await, "nothing was revoked");
    // A resource server calling the trusted gateway listener itself (no x-gateway-tls: the
    // filter's introspection mode) is not a client connection to Envoy.
    let a = f.post_as("/a/oauth2/introspect", &form, None, &[]).await;
    assert_eq!(
        (a.status, a.body["active"].clone()),
        (StatusCode::OK, json!(true))
    );
}

#[tokio::test]
async fn plain_http_is_accepted_only_from_a_terminator_the_plugin_trusts() {
    let config = OAuth2Config {
        accept_http_if_already_terminated: true,
        ..plugin_config(false)
    };
    let f = fixture(OAuthSettings::default(), &[("a", config)]).await;
    let token = f.password_pair("a").await.text("access_token");
    let form = [
        ("token", token.as_str()),
        ("client_id", "other"),
        ("client_secret", "other-secret"),
    ];
    let a = f
        .post_as(
            "/a/oauth2/introspect",
            &form,
            Some("off"),
            &[("x-forwarded-proto", "https")],
        )
        .await;
    assert_eq!(a.body["active"], json!(true), "{}", a.body);
    let a = f
        .post_as("/a/oauth2/introspect", &form, Some("off"), &[])
        .await;
    assert_error(
        &a,
        StatusCode::BAD_REQUEST,
        "access_denied",
        "You must use HTTPS",
    );
}

// ----- 2. PKCE downgrade -----

#[tokio::test]
async fn a_verifier_for_a_code_issued_without_challenge_is_refused() {
    let f = standard(OAuthSettings::default()).await;
    let code = f.code(&[]).await;
    let a = f.exchange(&code, &[("code_verifier", VERIFIER)]).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_grant", "Invalid code");
    // Without the verifier the same kind of code works (PKCE is optional for this client).
    let code = f.code(&[]).await;
    let a = f.exchange(&code, &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

// ----- 3. a token's binding survives refresh -----

#[tokio::test]
async fn refreshing_at_a_global_service_keeps_the_service_binding() {
    let f = standard(OAuthSettings::default()).await;
    let pair = f.password_pair("a").await;
    let a = f.refresh("g", &pair.text("refresh_token")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let token = a.text("access_token");
    assert!(
        f.active_at("a", &token).await,
        "still good where it was issued"
    );
    assert!(
        !f.active_at("g", &token).await,
        "not turned into a global token"
    );
    assert!(!f.active_at("b", &token).await);
    // And the next refresh, back at home, keeps it too.
    let a = f.refresh("a", &a.text("refresh_token")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(f.active_at("a", &a.text("access_token")).await);
    assert!(!f.active_at("g", &a.text("access_token")).await);
}

#[tokio::test]
async fn global_tokens_stay_global_through_refresh() {
    let f = standard(OAuthSettings::default()).await;
    let pair = f.password_pair("g").await;
    let a = f.refresh("g", &pair.text("refresh_token")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(f.active_at("g", &a.text("access_token")).await);
    assert!(!f.active_at("a", &a.text("access_token")).await);
}

// ----- 4. provision_key -----

#[tokio::test]
async fn the_provision_key_must_match_exactly() {
    let f = standard(OAuthSettings::default()).await;
    for key in ["provision12", "provision1234", "Provision123", ""] {
        let a = f
            .post(
                "/a/oauth2/authorize",
                &[
                    ("response_type", "code"),
                    ("client_id", "conf"),
                    ("authenticated_userid", "u"),
                    ("provision_key", key),
                ],
            )
            .await;
        assert_eq!(a.body["error"], "invalid_provision_key", "{key}");
    }
    f.code(&[]).await;
}

// ----- 5. racing redemptions -----

/// Fires `n` copies of one request at once (a barrier releases them together).
async fn race<F, Fut>(n: usize, redeem: F) -> Vec<Answer>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let redeem = Arc::new(redeem);
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, redeem) = (barrier.clone(), redeem.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                redeem().await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

/// The one winner of a burst of identical redemptions followed by stragglers within the
/// window; every loser got the ordinary error.
fn the_only_winner(answers: Vec<Answer>, loser_error: &Value) -> Answer {
    let (winners, losers): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .partition(|a| a.status == StatusCode::OK);
    assert_eq!(winners.len(), 1, "exactly one redemption wins");
    for loser in &losers {
        assert_eq!(
            (loser.status, &loser.body),
            (StatusCode::BAD_REQUEST, loser_error)
        );
    }
    winners.into_iter().next().expect("a winner")
}

fn racing_settings() -> OAuthSettings {
    OAuthSettings {
        replay_grace_s: 60,
        ..OAuthSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_code_exchanges_leave_the_winner_its_tokens() {
    let f = Arc::new(standard(racing_settings()).await);
    let code = f.code(&[]).await;
    let (f2, code2) = (f.clone(), code.clone());
    let mut answers = race(8, move || {
        let (f, code) = (f2.clone(), code2.clone());
        async move { f.exchange(&code, &[]).await }
    })
    .await;
    // Stragglers just after the winner's commit, still within the window.
    for _ in 0..2 {
        answers.push(f.exchange(&code, &[]).await);
    }
    let invalid = json!({"error": "invalid_request", "error_description": "Invalid code"});
    let winner = the_only_winner(answers, &invalid);
    assert!(f.active_at("a", &winner.text("access_token")).await);
    let a = f.refresh("a", &winner.text("refresh_token")).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the winner's refresh token lives: {}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_refreshes_leave_the_winner_its_tokens() {
    let f = Arc::new(standard(racing_settings()).await);
    let refresh_token = f.password_pair("a").await.text("refresh_token");
    let (f2, r2) = (f.clone(), refresh_token.clone());
    let mut answers = race(8, move || {
        let (f, r) = (f2.clone(), r2.clone());
        async move { f.refresh("a", &r).await }
    })
    .await;
    for _ in 0..2 {
        answers.push(f.refresh("a", &refresh_token).await);
    }
    let invalid = json!({"error": "invalid_request", "error_description": "Invalid refresh_token"});
    let winner = the_only_winner(answers, &invalid);
    assert!(f.active_at("a", &winner.text("access_token")).await);
    let a = f.refresh("a", &winner.text("refresh_token")).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "the winner's refresh token lives: {}",
        a.body
    );
}

fn short_window() -> OAuthSettings {
    OAuthSettings {
        replay_grace_s: 1,
        ..OAuthSettings::default()
    }
}

/// Past the window (1 s here; time is counted in whole seconds).
async fn after_the_window() {
    tokio::time::sleep(Duration::from_millis(2100)).await;
}

#[tokio::test]
async fn a_late_code_replay_revokes_what_the_code_produced() {
    let f = standard(short_window()).await;
    let code = f.code(&[]).await;
    let first = f.exchange(&code, &[]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    after_the_window().await;
    let a = f.exchange(&code, &[]).await;
    assert_error(
        &a,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "Invalid code",
    );
    assert!(!f.active_at("a", &first.text("access_token")).await);
    let a = f.refresh("a", &first.text("refresh_token")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
}

#[tokio::test]
async fn a_late_refresh_replay_revokes_the_family() {
    let f = standard(short_window()).await;
    let old = f.password_pair("a").await.text("refresh_token");
    let new = f.refresh("a", &old).await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.body);
    after_the_window().await;
    let a = f.refresh("a", &old).await;
    assert_error(
        &a,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "Invalid refresh_token",
    );
    assert!(!f.active_at("a", &new.text("access_token")).await);
    let a = f.refresh("a", &new.text("refresh_token")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
}

// ----- the state poll -----

async fn state(f: &Fixture, query: &str) -> Answer {
    let request = Request::get(format!("/gateway/v1/services/a/state{query}"));
    f.send(request.body(Body::empty()).expect("request")).await
}

/// A filter that polled an empty change feed (seq 0) is up to date: polling again with
/// `since=0` must not tell it to drop its cache (it did, on every poll, until nothing was
/// ever revoked: the benchmark's cached path missed after each poll).
#[tokio::test]
async fn an_up_to_date_poll_of_an_empty_feed_is_no_reset() {
    let f = standard(OAuthSettings::default()).await;
    let first = state(&f, "").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(
        first.body["reset"],
        json!(true),
        "a filter that knows nothing"
    );
    assert_eq!(first.body["seq"], json!(0));
    let again = state(&f, "?since=0").await;
    assert_eq!(again.body["reset"], json!(false), "{}", again.body);
    assert_eq!(state(&f, "?since=-1").await.body["reset"], json!(true));
    assert_eq!(
        state(&f, "?since=5").await.body["reset"],
        json!(true),
        "ahead of the feed"
    );
}

// ----- 6. RFC 8414 metadata -----

async fn metadata(f: &Fixture, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::get("/gateway/v1/services/a/.well-known/oauth-authorization-server");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    f.send(request.body(Body::empty()).expect("request")).await
}

#[tokio::test]
async fn metadata_comes_from_the_configured_issuer_not_the_request() {
    let settings = OAuthSettings {
        issuer: "https://gw.example.com".parse().expect("issuer"),
        ..OAuthSettings::default()
    };
    let f = standard(settings).await;
    let a = metadata(
        &f,
        &[
            ("host", "evil.example"),
            ("x-gateway-host", "evil.example"),
            ("x-gateway-tls", "off"),
            ("x-forwarded-host", "evil.example"),
            ("x-gateway-prefix", "/stepon"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let issuer = "https://gw.example.com/stepon";
    assert_eq!(a.body["issuer"], issuer);
    for (field, path) in [
        ("authorization_endpoint", "authorize"),
        ("token_endpoint", "token"),
        ("introspection_endpoint", "introspect"),
        ("revocation_endpoint", "revoke"),
    ] {
        assert_eq!(a.body[field], format!("{issuer}/oauth2/{path}"));
    }
    let a = metadata(&f, &[]).await;
    assert_eq!(a.body["issuer"], "https://gw.example.com");
}

#[tokio::test]
async fn metadata_defaults_to_the_https_listener_and_refuses_odd_prefixes() {
    let f = standard(OAuthSettings::default()).await;
    let a = metadata(&f, &[("x-gateway-host", "evil.example")]).await;
    assert_eq!(a.body["issuer"], "https://localhost:8443");
    let a = metadata(&f, &[("x-gateway-prefix", "//evil.example/x?")]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
}

/// Issue 21: the metadata names the JWK Set, and OpenID Connect discovery (which looks at
/// `<issuer>/.well-known/openid-configuration` and requires the same `issuer`) finds the same
/// document, without claiming ID tokens this server does not issue.
#[tokio::test]
async fn metadata_names_the_jwks_and_answers_oidc_discovery_too() {
    let f = standard(OAuthSettings::default()).await;
    let prefix = [("x-gateway-prefix", "/stepon")];
    let a = metadata(&f, &prefix).await;
    assert_eq!(
        a.body["jwks_uri"],
        "https://localhost:8443/stepon/.well-known/jwks.json"
    );
    let mut request = Request::get("/gateway/v1/services/a/.well-known/openid-configuration");
    request = request.header("x-gateway-prefix", "/stepon");
    let oidc = f.send(request.body(Body::empty()).expect("request")).await;
    assert_eq!(oidc.status, StatusCode::OK, "{}", oidc.body);
    assert_eq!(oidc.body, a.body);
    assert_eq!(oidc.body["issuer"], "https://localhost:8443/stepon");
    for claimed in ["id_token_signing_alg_values_supported", "userinfo_endpoint"] {
        assert!(oidc.body.get(claimed).is_none(), "{claimed} claimed");
    }
}

async fn get(f: &Fixture, path: &str) -> Answer {
    f.send(Request::get(path).body(Body::empty()).expect("request"))
        .await
}

/// The JWK Set on both paths, and the state poll's `issuer` and `keys` (docs/jwt-access-tokens.md
/// §3, §4): every published key, public members only.
#[tokio::test]
async fn the_jwks_and_the_state_poll_publish_the_signing_keys() {
    let settings = OAuthSettings {
        issuer: "https://gw.example.com".parse().expect("issuer"),
        ..OAuthSettings::default()
    };
    let f = standard(settings).await;
    for path in [
        "/.well-known/jwks.json",
        "/gateway/v1/services/a/.well-known/jwks.json",
    ] {
        let a = get(&f, path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        assert_eq!(
            a.body,
            json!({"keys": []}),
            "{path}: no key before the first need"
        );
    }
    let poll = state(&f, "").await;
    assert_eq!(poll.body["issuer"], "https://gw.example.com");
    assert_eq!(poll.body["keys"], json!([]));

    // Another handle on the same database (a grant on this replica, or another replica).
    let signing = crate::jwt::Signing::new(f.store.clone(), Default::default());
    let exp = crate::model::now() + 60;
    let token = signing
        .sign("at+jwt", &json!({"exp": exp}))
        .await
        .expect("signed");
    let kid = jsonwebtoken::decode_header(&token)
        .expect("header")
        .kid
        .expect("kid");
    let next = signing.add(crate::jwt::Alg::ES256).await.expect("added");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let jwks = loop {
        let a = get(&f, "/gateway/v1/services/a/.well-known/jwks.json").await;
        if a.body["keys"].as_array().map(Vec::len) == Some(2) {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never published: {}",
            a.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(jwks.headers["content-type"], "application/json");
    let kids: Vec<&str> = jwks.body["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids, [kid.as_str(), next.kid.as_str()]);
    for key in jwks.body["keys"].as_array().into_iter().flatten() {
        assert_eq!(key["use"], "sig", "{key}");
        assert!(key["alg"].is_string() && key["kty"].is_string(), "{key}");
        assert!(key.get("d").is_none(), "a private member: {key}");
    }
    assert_eq!(get(&f, "/.well-known/jwks.json").await.body, jwks.body);
    let poll = state(&f, "").await;
    let keys = poll.body["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 2, "{}", poll.body);
    assert_eq!(keys[0]["kid"], json!(kid));
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["jwk"], jwks.body["keys"][0]);
    assert_eq!(keys[1]["alg"], "ES256");

    let unknown = get(&f, "/gateway/v1/services/nope/.well-known/jwks.json").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
}

// ----- 6. metrics -----

/// The value of one exported series (name and labels exactly as rendered).
fn metric(f: &Fixture, series: &str) -> f64 {
    let text = f.store.render_metrics();
    let value = text.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
    });
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn issued_tokens_errors_and_checks_are_counted_exactly() {
    let f = standard(OAuthSettings::default()).await;
    let code = f.code(&[]).await;
    let pair = f.exchange(&code, &[]).await;
    assert_eq!(pair.status, StatusCode::OK, "{}", pair.body);
    let refreshed = f.refresh("a", &pair.text("refresh_token")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    f.password_pair("a").await;
    let global = f.password_pair("g").await;
    let cc = f
        .post(
            "/a/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "conf"),
                ("client_secret", "conf-secret"),
            ],
        )
        .await;
    assert_eq!(cc.status, StatusCode::OK, "{}", cc.body);

    // Errors: in a JSON body (twice), inside the authorize redirect URI, and a 405.
    let wrong_secret = [
        ("grant_type", "client_credentials"),
        ("client_id", "conf"),
        ("client_secret", "nope"),
    ];
    for _ in 0..2 {
        let a = f.post("/a/oauth2/token", &wrong_secret).await;
        assert_eq!(a.body["error"], "invalid_client", "{}", a.body);
    }
    let implicit_off = f
        .post(
            "/a/oauth2/authorize",
            &[
                ("response_type", "token"),
                ("client_id", "conf"),
                ("provision_key", PROVISION_KEY),
                ("authenticated_userid", "user1"),
            ],
        )
        .await;
    assert_eq!(implicit_off.status, StatusCode::BAD_REQUEST);
    assert!(implicit_off
        .text("redirect_uri")
        .contains("error=unsupported_response_type"));
    let get = Request::get("/gateway/v1/services/a/oauth2/token")
        .body(Body::empty())
        .expect("request");
    assert_eq!(f.send(get).await.status, StatusCode::METHOD_NOT_ALLOWED);

    // Checks: active, bound to another service, global at a non-global plugin, unknown.
    let token = refreshed.text("access_token");
    assert!(f.active_at("a", &token).await);
    assert!(!f.active_at("b", &token).await);
    assert!(!f.active_at("a", &global.text("access_token")).await);
    assert!(!f.active_at("a", "never-issued").await);

    for (series, value) in [
        ("authorization_code", 1.0),
        ("refresh_token", 1.0),
        ("password", 2.0),
        ("client_credentials", 1.0),
        ("implicit", 0.0),
    ]
    .map(|(grant, n)| {
        (
            format!("token_service_tokens_issued_total{{grant=\"{grant}\"}}"),
            n,
        )
    })
    .into_iter()
    .chain(
        [
            ("invalid_client", 2.0),
            ("unsupported_response_type", 1.0),
            ("invalid_method", 1.0),
            ("invalid_grant", 0.0),
        ]
        .map(|(e, n)| {
            (
                format!("token_service_oauth_errors_total{{error=\"{e}\"}}"),
                n,
            )
        }),
    )
    .chain(
        [
            ("active", 1.0),
            ("invalid", 2.0),
            ("global_token", 1.0),
            ("unknown_service", 0.0),
        ]
        .map(|(o, n)| {
            (
                format!("token_service_token_checks_total{{outcome=\"{o}\"}}"),
                n,
            )
        }),
    ) {
        assert_eq!(metric(&f, &series), value, "{series}");
    }
    // Issued tokens are in memory before their first check; the unknown one is refused by
    // the digest set, without a read.
    let lookups = "token_service_index_lookups_total{map=\"token\",result=";
    assert_eq!(metric(&f, &format!("{lookups}\"hit\"}}")), 3.0);
    assert_eq!(metric(&f, &format!("{lookups}\"miss\"}}")), 0.0);
    let digests = "token_service_index_lookups_total{map=\"digest\",result=";
    assert_eq!(metric(&f, &format!("{digests}\"hit\"}}")), 1.0);
}

// ----- client authentication under attack (security review, issue 18) -----

impl Fixture {
    /// The same store served with these limits on client authentication.
    fn guarded(&self, guard: ClientAuthGuard) -> Fixture {
        let state = AppState::new(self.store.clone(), None).with_client_auth(guard);
        Fixture {
            _dir: tempfile::tempdir().expect("temp dir"),
            app: gateway_router(state),
            store: self.store.clone(),
        }
    }

    async fn client_credentials(&self, client_id: &str, secret: &str) -> Answer {
        self.post(
            "/a/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ],
        )
        .await
    }
}

fn retry_after(a: &Answer) -> Option<u64> {
    a.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn failed_client_authentications_are_limited_per_client() {
    let f = standard(OAuthSettings::default()).await;
    for _ in 0..10 {
        let a = f.client_credentials("conf", "guess").await;
        assert_error(
            &a,
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Invalid client authentication",
        );
    }
    // The eleventh guess is not looked at, nor is the right secret until the allowance refills.
    for secret in ["guess", "conf-secret"] {
        let a = f.client_credentials("conf", secret).await;
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
        assert_eq!(a.body["error"], "invalid_client", "{}", a.body);
        assert_eq!(retry_after(&a), Some(1), "{:?}", a.headers);
    }
    // So are introspection and revocation (by HTTP Basic: conf:conf-secret).
    let a = f
        .post_as(
            "/a/oauth2/introspect",
            &[("token", "x")],
            Some("on"),
            &[("authorization", "Basic Y29uZjpjb25mLXNlY3JldA==")],
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    // Another client is not held back by the guesses at `conf`.
    let a = f.client_credentials("other", "other-secret").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn successful_authentications_are_never_counted() {
    let f = standard(OAuthSettings::default()).await;
    for _ in 0..30 {
        let a = f.client_credentials("conf", "conf-secret").await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
}

/// A `hash_secret` client whose user-chosen secret is stored as PBKDF2.
async fn add_hashed_client(f: &Fixture, client_id: &'static str, secret: &'static str) {
    f.store
        .write(move |repo| {
            let consumer = Consumer {
                id: new_id(),
                created_at: 0,
                username: Some(format!("owner-of-{client_id}")),
                custom_id: None,
                tags: None,
            };
            repo.insert_consumer(&consumer)?;
            repo.insert_credential(&Credential {
                client_secret: crate::secrets::hash_client_secret(secret, false),
                hash_secret: true,
                ..credential(&consumer.id, client_id, ClientType::Confidential)
            })
        })
        .await
        .expect("hashed client");
}

/// On a single-threaded runtime, so that any PBKDF2 run on the async thread would hold
/// `/status` for the whole flood (seconds) instead of microseconds.
#[tokio::test(flavor = "current_thread")]
async fn a_flood_of_wrong_hashed_secrets_is_refused_fast_and_starves_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const FLOOD: usize = 24;
    let base = standard(OAuthSettings::default()).await;
    add_hashed_client(&base, "hashed", "hashed-secret").await;
    // One PBKDF2 at a time, one waiting; no failure limit in the way of the flood.
    let limit = FailureLimit {
        burst: 1_000,
        refill_every: Duration::from_millis(1),
    };
    let f = Arc::new(base.guarded(ClientAuthGuard::new(HashPool::new(1, 1), limit)));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    // Distinct guesses, as an attacker sends (identical checks in flight share one PBKDF2).
    for i in 0..FLOOD {
        let (f, refused) = (f.clone(), refused.clone());
        flood.push(tokio::spawn(async move {
            let a = f.client_credentials("hashed", &format!("guess-{i}")).await;
            if a.status == StatusCode::SERVICE_UNAVAILABLE {
                refused.fetch_add(1, Ordering::SeqCst);
            }
            a
        }));
    }
    // Queued behind the whole flood on the one async thread: answered in milliseconds when
    // PBKDF2 runs elsewhere, after every inline PBKDF2 of the flood otherwise (~0.7 s each in
    // a debug build).
    let asked = std::time::Instant::now();
    let status = tokio::spawn({
        let f = f.clone();
        async move {
            f.send(
                Request::get("/status")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
        }
    });
    let status = status.await.expect("status task");
    assert_eq!(status.status, StatusCode::OK, "{}", status.body);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "/status took {:?} behind the flood",
        asked.elapsed()
    );
    let mut answers = Vec::new();
    for task in flood {
        answers.push(task.await.expect("flood task"));
    }
    for a in &answers {
        match a.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_error(
                    a,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "Too many client authentications in progress; retry shortly",
                );
                assert_eq!(retry_after(a), Some(1));
            }
            _ => assert_error(
                a,
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "Invalid client authentication",
            ),
        }
    }
    let refused = refused.load(Ordering::SeqCst);
    assert!(refused >= FLOOD / 2, "only {refused} of {FLOOD} refused");
    // The pool is free again once the flood is over: the right secret gets its token.
    let a = f.client_credentials("hashed", "hashed-secret").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

// ----- issued tokens and the index's digest set (issue 18) -----

impl Fixture {
    /// What the store's digest set says of `token` now (without reading the database).
    fn presence(&self, token: &str) -> crate::store::Presence {
        self.store
            .index()
            .presence(&crate::secrets::token_digest(token), crate::model::now())
    }
}

/// Every grant's token is in the index's digest set when the answer leaves (so no check
/// of it can find it missing), and valid; a refresh drops the access token it replaces.
#[tokio::test]
async fn every_grant_issues_tokens_the_digest_set_knows_at_once() {
    use crate::store::Presence;
    let implicit = OAuth2Config {
        enable_implicit_grant: true,
        ..plugin_config(false)
    };
    let f = fixture(OAuthSettings::default(), &[("a", implicit)]).await;
    let pair = f.password_pair("a").await;
    let code = f.code(&[]).await;
    let exchanged = f.exchange(&code, &[]).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.body);
    let credentials = f.client_credentials("conf", "conf-secret").await;
    assert_eq!(credentials.status, StatusCode::OK, "{}", credentials.body);
    let implicit = f
        .post(
            "/a/oauth2/authorize",
            &[
                ("response_type", "token"),
                ("client_id", "conf"),
                ("provision_key", PROVISION_KEY),
                ("authenticated_userid", "user1"),
            ],
        )
        .await;
    assert_eq!(implicit.status, StatusCode::OK, "{}", implicit.body);
    let fragment = url::Url::parse(&implicit.text("redirect_uri"))
        .expect("redirect uri")
        .fragment()
        .unwrap_or_default()
        .to_string();
    let implicit_token = form_urlencoded::parse(fragment.as_bytes())
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
        .expect("an implicit token");
    let tokens = [
        ("password", pair.text("access_token")),
        ("authorization_code", exchanged.text("access_token")),
        ("client_credentials", credentials.text("access_token")),
        ("implicit", implicit_token),
    ];
    for (grant, token) in &tokens {
        assert_eq!(f.presence(token), Presence::Present, "{grant}");
        assert!(f.active_at("a", token).await, "{grant}");
    }
    let refreshed = f.refresh("a", &pair.text("refresh_token")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(
        f.presence(&refreshed.text("access_token")),
        Presence::Present
    );
    assert!(f.active_at("a", &refreshed.text("access_token")).await);
    assert_eq!(f.presence(&pair.text("access_token")), Presence::Absent);
    assert!(!f.active_at("a", &pair.text("access_token")).await);
}
