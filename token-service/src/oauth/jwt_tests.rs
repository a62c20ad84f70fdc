//! JWT access tokens (docs/jwt-access-tokens.md §2, §4, §6) through the gateway router, on
//! both store backends: every grant issues the contract's JWT, verified against the published
//! JWKS by `jsonwebtoken` (not by anything of ours); the record behind it makes introspection,
//! revocation, refresh and the check work as for an opaque token; what changes a JWT's record
//! distrusts it in the state poll; the check answer carries the identity JWT.

use crate::app::{gateway_router, AppState, OAuthSettings};
use crate::model::{
    new_id, now, AccessTokenFormat, ClientType, Consumer, Credential, OAuth2Config, Plugin, Service,
};
use crate::secrets::token_digest;
use crate::store::testing::{on_both_backends, Backend, TestDb};
use crate::store::Store;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{json, Value};
use tower::ServiceExt;

const ISSUER: &str = "https://gw.example.com";
const PREFIX: &str = "/stepon";
const ROUTE_ISSUER: &str = "https://gw.example.com/stepon";
const PROVISION_KEY: &str = "provision123";
const REDIRECT: &str = "https://client.test/cb";
const LIFETIME: i64 = 600;

struct Fixture {
    _db: TestDb,
    store: Store,
    state: AppState,
    router: axum::Router,
    consumer: Consumer,
    credential: Credential,
    service_id: String,
}

fn jwt_config() -> OAuth2Config {
    OAuth2Config {
        provision_key: PROVISION_KEY.into(),
        enable_authorization_code: true,
        enable_implicit_grant: true,
        enable_password_grant: true,
        enable_client_credentials: true,
        scopes: Some(vec!["read".into(), "write".into()]),
        token_expiration: LIFETIME,
        access_token_format: AccessTokenFormat::Jwt,
        ..OAuth2Config::default()
    }
}

async fn fixture(backend: Backend, config: OAuth2Config) -> Option<Fixture> {
    let db = TestDb::new(backend).await?;
    let store = db.open().await;
    let consumer = Consumer {
        id: new_id(),
        created_at: 0,
        username: Some("bob".into()),
        custom_id: Some("c-1".into()),
        tags: None,
    };
    let credential = Credential {
        id: new_id(),
        created_at: 0,
        consumer_id: consumer.id.clone(),
        name: "app".into(),
        client_id: "app".into(),
        client_secret: "app-secret".into(),
        hash_secret: false,
        redirect_uris: Some(vec![REDIRECT.into()]),
        client_type: ClientType::Confidential,
        tags: None,
    };
    let service_id = new_id();
    let (c, k, s) = (consumer.clone(), credential.clone(), service_id.clone());
    store
        .write(move |repo| {
            repo.insert_consumer(&c)?;
            repo.insert_credential(&k)?;
            repo.insert_service(&Service {
                id: s.clone(),
                created_at: 0,
                updated_at: 0,
                name: Some("a".into()),
                url: None,
                tags: None,
            })?;
            repo.insert_plugin(&Plugin {
                id: new_id(),
                created_at: 0,
                updated_at: 0,
                name: "oauth2".into(),
                service_id: Some(s),
                enabled: true,
                config,
            })
        })
        .await
        .expect("fixture");
    let settings = OAuthSettings {
        issuer: ISSUER.parse().expect("issuer"),
        ..OAuthSettings::default()
    };
    let state = AppState::new(store.clone(), None).with_oauth(settings);
    let router = gateway_router(state.clone());
    Some(Fixture {
        _db: db,
        store,
        state,
        router,
        consumer,
        credential,
        service_id,
    })
}

impl Fixture {
    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A form POST to an OAuth endpoint as the filter relays it from route `/stepon`.
    async fn post(&self, endpoint: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        self.post_with_prefix(endpoint, form, PREFIX).await
    }

    async fn post_with_prefix(
        &self,
        endpoint: &str,
        form: &[(&str, &str)],
        prefix: &str,
    ) -> (StatusCode, Value) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = Request::post(format!("/gateway/v1/services/a/oauth2/{endpoint}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-gateway-tls", "on")
            .header("x-gateway-prefix", prefix)
            .body(Body::from(body))
            .expect("request");
        self.send(request).await
    }

    async fn password(&self) -> Value {
        let (status, body) = self
            .post(
                "token",
                &[
                    ("grant_type", "password"),
                    ("client_id", "app"),
                    ("client_secret", "app-secret"),
                    ("provision_key", PROVISION_KEY),
                    ("authenticated_userid", "clark"),
                    ("scope", "read write"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        self.post(
            "token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "app"),
                ("client_secret", "app-secret"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// The filter's check of `token` (from route `/stepon`).
    async fn check(&self, token: &str) -> Value {
        let request = Request::get("/gateway/v1/services/a/token")
            .header("x-access-token", token)
            .header("x-gateway-prefix", PREFIX)
            .body(Body::empty())
            .expect("request");
        let (status, body) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn state(&self, since: Option<i64>) -> Value {
        let query = since.map_or_else(String::new, |s| format!("?since={s}"));
        let request = Request::get(format!("/gateway/v1/services/a/state{query}"))
            .body(Body::empty())
            .expect("request");
        self.send(request).await.1
    }

    /// The first state answer since `since` whose `distrusted` holds `digest` (on PostgreSQL
    /// a change enters the feed once every transaction begun before it has ended).
    async fn distrusted_since(&self, since: i64, digest: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let answer = self.state(Some(since)).await;
            let listed = answer["distrusted"]
                .as_array()
                .is_some_and(|l| l.iter().any(|e| e["digest"] == digest));
            if listed {
                return answer;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{digest} not distrusted within 10 s: {answer}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn position(&self) -> i64 {
        self.state(None).await["seq"].as_i64().expect("seq")
    }

    /// The record an access token is stored under (by the digest of the whole JWT).
    async fn record_id(&self, access_token: &str) -> Option<String> {
        let digest = token_digest(access_token);
        self.store
            .read(move |repo| repo.token("", &digest))
            .await
            .expect("read")
            .map(|t| t.id)
    }

    /// Verifies `token` with the published key its `kid` names, as any resource server
    /// would with `jsonwebtoken`: signature, `exp`, `iss` and `aud`. Answers the header's
    /// `typ` and the claims.
    async fn verify(&self, token: &str) -> (String, Value) {
        // The JWKS as published to resource servers (and relayed by the filter).
        let request = Request::get("/gateway/v1/services/a/.well-known/jwks.json")
            .body(Body::empty())
            .expect("request");
        let (status, jwks) = self.send(request).await;
        assert_eq!(status, StatusCode::OK, "{jwks}");
        let header = jsonwebtoken::decode_header(token).expect("a JWS header");
        let kid = header.kid.clone().expect("a kid");
        let jwk = jwks["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
            .unwrap_or_else(|| panic!("{kid} is not published: {jwks}"));
        let jwk: Jwk = serde_json::from_value(jwk.clone()).expect("a JWK");
        let key = DecodingKey::from_jwk(&jwk).expect("a decoding key");
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[ROUTE_ISSUER]);
        validation.set_audience(&[ROUTE_ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .unwrap_or_else(|e| panic!("{token} does not verify: {e}"));
        (data.header.typ.unwrap_or_default(), data.claims)
    }

    /// The contract's claims of an access token issued here to `app`.
    fn expected_claims(&self, jti: &str, iat: i64, user: Option<&str>, scope: &str) -> Value {
        let mut claims = json!({
            "iss": ROUTE_ISSUER, "aud": ROUTE_ISSUER, "sub": user.unwrap_or("app"),
            "client_id": "app", "scope": scope, "jti": jti, "iat": iat, "exp": iat + LIFETIME,
            "consumer": {"id": self.consumer.id, "username": "bob", "custom_id": "c-1"},
            "credential_id": self.credential.id, "service_id": self.service_id,
        });
        if let Some(user) = user {
            claims["authenticated_userid"] = json!(user);
        }
        claims
    }

    /// Verifies an access token and checks its claims are exactly the contract's.
    async fn assert_contract_jwt(&self, token: &str, user: Option<&str>, scope: &str) {
        let (typ, claims) = self.verify(token).await;
        assert_eq!(typ, "at+jwt");
        let jti = self
            .record_id(token)
            .await
            .expect("a record under the JWT's digest");
        let iat = claims["iat"].as_i64().expect("iat");
        assert!((now() - iat).abs() <= 5, "iat is now: {claims}");
        assert_eq!(claims, self.expected_claims(&jti, iat, user, scope));
    }
}

fn text(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field}: {body}"))
        .to_string()
}

/// A parameter of a redirect URI's query or fragment.
fn redirect_param(body: &Value, name: &str) -> String {
    let uri = url::Url::parse(&text(body, "redirect_uri")).expect("a URI");
    let pairs = uri.fragment().unwrap_or_else(|| uri.query().unwrap_or(""));
    form_urlencoded::parse(pairs.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no {name} in {uri}"))
}

async fn every_grant_issues_a_contract_jwt_that_verifies_against_the_jwks(backend: Backend) {
    let Some(f) = fixture(backend, jwt_config()).await else {
        return;
    };
    // Password.
    let pair = f.password().await;
    f.assert_contract_jwt(&text(&pair, "access_token"), Some("clark"), "read write")
        .await;
    assert_eq!(pair["expires_in"], json!(LIFETIME));
    assert!(
        pair["refresh_token"]
            .as_str()
            .is_some_and(|r| !r.contains('.')),
        "opaque"
    );

    // Client credentials: the client is the subject.
    let (status, body) = f
        .post(
            "token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                ("client_secret", "app-secret"),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    f.assert_contract_jwt(&text(&body, "access_token"), None, "read")
        .await;

    // Authorization code, then its exchange.
    let authorize = |response_type: &'static str| {
        [
            ("response_type", response_type),
            ("client_id", "app"),
            ("provision_key", PROVISION_KEY),
            ("authenticated_userid", "lois"),
            ("scope", "write"),
            ("redirect_uri", REDIRECT),
        ]
    };
    let (status, body) = f.post("authorize", &authorize("code")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let code = redirect_param(&body, "code");
    let (status, body) = f
        .post(
            "token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "app"),
                ("client_secret", "app-secret"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    f.assert_contract_jwt(&text(&body, "access_token"), Some("lois"), "write")
        .await;

    // Implicit: the JWT travels in the redirect URI's fragment.
    let (status, body) = f.post("authorize", &authorize("token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    f.assert_contract_jwt(
        &redirect_param(&body, "access_token"),
        Some("lois"),
        "write",
    )
    .await;

    // Refresh: a new JWT for the same grant.
    let (status, body) = f.refresh(&text(&pair, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    f.assert_contract_jwt(&text(&body, "access_token"), Some("clark"), "read write")
        .await;
}

async fn a_jwt_is_introspected_checked_and_revoked_like_an_opaque_token(backend: Backend) {
    let Some(f) = fixture(backend, jwt_config()).await else {
        return;
    };
    let jwt = text(&f.password().await, "access_token");
    assert!(
        jwt.len() > 512,
        "longer than any opaque token: {}",
        jwt.len()
    );
    let client = [("client_id", "app"), ("client_secret", "app-secret")];
    let with_token = |token: &str| {
        let mut form = vec![("token", token.to_string())];
        form.extend(client.iter().map(|(k, v)| (*k, v.to_string())));
        form
    };
    let form = with_token(&jwt);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = f.post("introspect", &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["active"], &body["sub"]),
        (&json!(true), &json!("clark")),
        "{body}"
    );
    let answer = f.check(&jwt).await;
    assert_eq!(answer["active"], json!(true), "{answer}");
    assert_eq!(answer["consumer"]["custom_id"], json!("c-1"));
    assert!(
        answer.get("identity_jwt").is_none(),
        "not asked for: {answer}"
    );

    let start = f.position().await;
    let (status, _) = f.post("revoke", &form).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.check(&jwt).await["active"], json!(false));
    let (_, body) = f.post("introspect", &form).await;
    assert_eq!(body, json!({"active": false}));
    let answer = f.distrusted_since(start, &token_digest(&jwt)).await;
    let (_, claims) = f.verify(&jwt).await;
    let entry = answer["distrusted"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|e| e["digest"] == token_digest(&jwt).as_str())
        })
        .cloned();
    assert_eq!(entry.map(|e| e["exp"].clone()), Some(claims["exp"].clone()));
    assert!(answer["revoked"]
        .as_array()
        .is_some_and(|r| r.contains(&json!(token_digest(&jwt)))));
}

async fn a_refreshed_away_jwt_is_distrusted(backend: Backend) {
    for reuse in [false, true] {
        let config = OAuth2Config {
            reuse_refresh_token: reuse,
            ..jwt_config()
        };
        let Some(f) = fixture(backend, config).await else {
            return;
        };
        let pair = f.password().await;
        let old = text(&pair, "access_token");
        let start = f.position().await;
        let (status, renewed) = f.refresh(&text(&pair, "refresh_token")).await;
        assert_eq!(status, StatusCode::OK, "{renewed}");
        let new = text(&renewed, "access_token");
        f.distrusted_since(start, &token_digest(&old)).await;
        assert_eq!(
            f.check(&old).await["active"],
            json!(false),
            "reuse: {reuse}"
        );
        assert_eq!(f.check(&new).await["active"], json!(true), "reuse: {reuse}");
        let (_, old_claims) = f.verify(&old).await;
        let (_, new_claims) = f.verify(&new).await;
        assert_ne!(old_claims["jti"], new_claims["jti"], "each JWT its own jti");
        if reuse {
            assert_eq!(renewed["refresh_token"], pair["refresh_token"], "kept");
            let (status, again) = f.refresh(&text(&pair, "refresh_token")).await;
            assert_eq!(status, StatusCode::OK, "still good: {again}");
        }
    }
}

async fn a_jwt_whose_identity_changed_is_distrusted_and_checked_from_its_record(backend: Backend) {
    let Some(f) = fixture(backend, jwt_config()).await else {
        return;
    };
    let jwt = text(&f.password().await, "access_token");
    let start = f.position().await;
    // An operator narrows the token's scope (PATCH /oauth2_tokens/{id}): the JWT still says
    // "read write", so the filter must ask, and the check answers the record's truth.
    let id = f.record_id(&jwt).await.expect("record");
    let admin = crate::app::admin_router(f.state.clone());
    let request = Request::patch(format!("/oauth2_tokens/{id}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"scope": "read"}).to_string()))
        .expect("request");
    let response = admin.oneshot(request).await.expect("answer");
    assert_eq!(response.status(), StatusCode::OK);
    f.distrusted_since(start, &token_digest(&jwt)).await;
    let answer = f.check(&jwt).await;
    assert_eq!(
        (&answer["active"], &answer["scope"]),
        (&json!(true), &json!("read"))
    );

    // The consumer renamed: distrusted again? It is already listed; a new JWT of the same
    // consumer is distrusted by the rename.
    let second = text(&f.password().await, "access_token");
    let start = f.position().await;
    let mut consumer = f.consumer.clone();
    consumer.username = Some("robert".into());
    f.store
        .write(move |repo| repo.update_consumer(&consumer))
        .await
        .expect("rename");
    f.distrusted_since(start, &token_digest(&second)).await;
    assert_eq!(
        f.check(&second).await["consumer"]["username"],
        json!("robert")
    );
}

async fn the_check_carries_an_identity_jwt_when_the_plugin_asks(backend: Backend) {
    let config = OAuth2Config {
        identity_jwt_header: Some("x-identity".into()),
        access_token_format: AccessTokenFormat::Opaque,
        ..jwt_config()
    };
    let Some(f) = fixture(backend, config).await else {
        return;
    };
    // A phantom token: the client holds an opaque token, the upstream gets a signed one.
    let opaque = text(&f.password().await, "access_token");
    assert!(!opaque.contains('.'), "opaque: {opaque}");
    let answer = f.check(&opaque).await;
    assert_eq!(answer["active"], json!(true), "{answer}");
    let identity = text(&answer, "identity_jwt");
    let (typ, claims) = f.verify(&identity).await;
    assert_eq!(typ, "identity+jwt");
    let iat = claims["iat"].as_i64().expect("iat");
    assert!((now() - iat).abs() <= 5);
    assert_eq!(
        claims["exp"],
        json!(iat + 300),
        "five minutes, the token lives longer"
    );
    for (claim, value) in [
        ("sub", json!("clark")),
        ("client_id", json!("app")),
        ("scope", json!("read write")),
        ("credential_id", json!(f.credential.id)),
        ("authenticated_userid", json!("clark")),
        (
            "consumer",
            json!({"id": f.consumer.id, "username": "bob", "custom_id": "c-1"}),
        ),
    ] {
        assert_eq!(claims[claim], value, "{claim}: {claims}");
    }
    assert!(claims["jti"].as_str().is_some_and(crate::model::is_uuid));
    // Never for a token that is not active.
    let answer = f.check("no-such-token").await;
    assert!(answer.get("identity_jwt").is_none(), "{answer}");
}

async fn a_jwt_plugin_refuses_a_route_prefix_that_is_no_path(backend: Backend) {
    let Some(f) = fixture(backend, jwt_config()).await else {
        return;
    };
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "app"),
        ("client_secret", "app-secret"),
    ];
    let (status, body) = f
        .post_with_prefix("token", &form, "//evil.example/x?")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], json!("invalid_request"));
    assert_eq!(body["error_description"], json!("Invalid route prefix"));
    // No prefix (a direct call on the gateway listener): the bare issuer.
    let (status, body) = f.post_with_prefix("token", &form, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = text(&body, "access_token");
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&token)
        .expect("a JWT")
        .claims;
    assert_eq!(claims["iss"], json!(ISSUER));
}

on_both_backends!(
    every_grant_issues_a_contract_jwt_that_verifies_against_the_jwks,
    a_jwt_is_introspected_checked_and_revoked_like_an_opaque_token,
    a_refreshed_away_jwt_is_distrusted,
    a_jwt_whose_identity_changed_is_distrusted_and_checked_from_its_record,
    the_check_carries_an_identity_jwt_when_the_plugin_asks,
    a_jwt_plugin_refuses_a_route_prefix_that_is_no_path,
);
