//! What Kong lacks, served on every protected route: RFC 7662 introspection, RFC 7009
//! revocation and RFC 8414 metadata.

use e2e::kong::{eventually, oauth_error, Kong};
use e2e::Text;
use serde_json::json;

#[test]
fn introspection_revocation_and_metadata_on_the_route() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({"token_expiration": 600}));
    let pair = kong.provision_token(gw);
    let token = pair.text("access_token");
    let introspect = kong.gw(gw).https("/oauth2/introspect");

    // Introspection needs an authenticated client.
    let a = kong.post(&introspect, json!({"token": token}));
    assert_eq!(
        a.json(),
        oauth_error("invalid_client", "Invalid client authentication")
    );
    let a = kong.post(
        &introspect,
        json!({"token": token, "client_id": "clientid123", "client_secret": "secret123"}),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    let i = a.json();
    assert_eq!(i["active"], true);
    assert_eq!(
        (i["scope"].clone(), i["client_id"].clone(), i["sub"].clone()),
        (json!("email"), json!("clientid123"), json!("userid123"))
    );
    assert_eq!(i["username"], "bob");
    assert!(i["exp"].as_i64().unwrap_or(0) > i["iat"].as_i64().unwrap_or(i64::MAX));
    let a = kong.post(
        &introspect,
        json!({"token": "nope", "client_id": "clientid123", "client_secret": "secret123"}),
    );
    assert_eq!(a.json(), json!({"active": false}));

    // Revoking the refresh token revokes the grant: the access token stops working.
    assert_eq!(kong.get_with_token(gw, "/request", &token).status, 200);
    let revoke = kong.gw(gw).https("/oauth2/revoke");
    let a = kong.post(&revoke, json!({"token": pair["refresh_token"], "client_id": "clientid123", "client_secret": "secret123"}));
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(eventually(|| kong
        .get_with_token(gw, "/request", &token)
        .status
        == 401));
    let a = kong.post(
        &introspect,
        json!({"token": token, "client_id": "clientid123", "client_secret": "secret123"}),
    );
    assert_eq!(a.json(), json!({"active": false}));
    // Unknown tokens answer 200 too (RFC 7009 §2.2), and another client cannot revoke ours.
    let a = kong.post(
        &revoke,
        json!({"token": "unknown", "client_id": "clientid123", "client_secret": "secret123"}),
    );
    assert_eq!(a.status, 200);
    let other = kong.provision_token(gw);
    let other_token = other.text("access_token");
    kong.post(
        &revoke,
        json!({"token": other_token, "client_id": "clientid789", "client_secret": "secret789"}),
    );
    assert_eq!(
        kong.get_with_token(gw, "/request", &other_token).status,
        200
    );

    // RFC 8414 metadata names this route's endpoints.
    let m = kong
        .stack
        .client
        .get(&kong.gw(gw).https("/.well-known/oauth-authorization-server"));
    assert_eq!(m.status, 200, "{}", m.text);
    let m = m.json();
    // The issuer is the token-service's `--issuer` (default: make run's HTTPS listener).
    let issuer = "https://localhost:8443/oauth2";
    assert_eq!(m["issuer"], json!(issuer));
    assert_eq!(m["token_endpoint"], json!(format!("{issuer}/oauth2/token")));
    assert_eq!(
        m["introspection_endpoint"],
        json!(format!("{issuer}/oauth2/introspect"))
    );
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        m["scopes_supported"],
        json!(["email", "profile", "user.email"])
    );
}

#[test]
fn the_filter_can_trust_any_rfc7662_authorization_server() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({"token_expiration": 600}));
    // A second route, protected through introspection: here the token-service's own RFC 7662
    // endpoint plays the third-party authorization server (Keycloak, Hydra, ...).
    let config = json!({
        "introspection": {
            "cluster": "token_service",
            "path": "/gateway/v1/services/oauth2/oauth2/introspect",
            "client_id": "clientid789",
            "client_secret": "secret789",
        },
        "hide_credentials": true,
        "realm": "third-party",
        "cache": {"max_ttl_s": 1, "negative_ttl_s": 1},
    });
    kong.stack
        .add_gateway_configured("/api", &config.to_string());
    let rs = kong.stack.gateways.len() - 1;
    let pair = kong.provision_token(gw);
    let token = pair.text("access_token");

    let r = kong.get_with_token(rs, "/request", &token);
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.json()["headers"];
    assert_eq!(
        (
            h["x-authenticated-userid"].clone(),
            h["x-authenticated-scope"].clone()
        ),
        (json!("userid123"), json!("email"))
    );
    assert_eq!(
        (
            h["x-consumer-username"].clone(),
            h["x-credential-identifier"].clone()
        ),
        (json!("bob"), json!("clientid123"))
    );
    assert!(
        h.get("authorization").is_none(),
        "hide_credentials applies: {h}"
    );
    assert!(h.get("x-consumer-id").is_none());

    let r = kong.get_with_token(rs, "/request", "made-up");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"third-party\", error=\"invalid_token\", error_description=\"The access token is invalid or has expired\"")
    );
    let r = kong.stack.client.get(&kong.gw(rs).http("/request"));
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"third-party\"")
    );

    // Revoked at the authorization server: refused once the short cache lifetime passes.
    let revoke = kong.gw(gw).https("/oauth2/revoke");
    kong.post(
        &revoke,
        json!({"token": token, "client_id": "clientid123", "client_secret": "secret123"}),
    );
    assert!(e2e::stack::wait_until(
        std::time::Duration::from_secs(4),
        || kong.get_with_token(rs, "/request", &token).status == 401
    ));
}
