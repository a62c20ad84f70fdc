//! Issue 21: discovery through Envoy, as a spec-following client does it. RFC 8414 §3.1 puts
//! the metadata of issuer `https://host/stepon` at
//! `https://host/.well-known/oauth-authorization-server/stepon` (outside the route's prefix);
//! OpenID Connect discovery reads `<issuer>/.well-known/openid-configuration`; both lead to
//! the `jwks_uri`, which publishes the token-service's signing keys.

use e2e::kong::{eventually, Kong};
use e2e::Text;
use serde_json::{json, Value};

/// `https://localhost:<port><path>`: a URL on the gateway outside any route prefix.
fn on_host(kong: &Kong, gw: usize, path: &str) -> String {
    format!("https://localhost:{}{path}", kong.gw(gw).https_port)
}

#[test]
fn rfc8414_section_3_1_metadata_openid_configuration_and_jwks_through_envoy() {
    let mut kong = Kong::start();
    // The template's second route (`/stepon-second`) protected too: each route answers its own.
    kong.configure("stepon-second", json!({"enable_client_credentials": true}));
    let gw = kong.protect("stepon", json!({"enable_client_credentials": true}));
    let client = &kong.stack.client;

    let at_prefix = client.get(&kong.gw(gw).https("/.well-known/oauth-authorization-server"));
    assert_eq!(at_prefix.status, 200, "{}", at_prefix.text);
    let spec = client.get(&on_host(
        &kong,
        gw,
        "/.well-known/oauth-authorization-server/stepon",
    ));
    assert_eq!(spec.status, 200, "RFC 8414 §3.1 location: {}", spec.text);
    let metadata = spec.json();
    assert_eq!(metadata, at_prefix.json());
    let issuer = "https://localhost:8443/stepon";
    assert_eq!(metadata["issuer"], issuer);
    assert_eq!(
        metadata["jwks_uri"],
        format!("{issuer}/.well-known/jwks.json")
    );
    let second = client.get(&on_host(
        &kong,
        gw,
        "/.well-known/oauth-authorization-server/stepon-second",
    ));
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(
        second.json()["issuer"],
        "https://localhost:8443/stepon-second"
    );
    let oidc = client.get(&kong.gw(gw).https("/.well-known/openid-configuration"));
    assert_eq!(oidc.status, 200, "{}", oidc.text);
    assert_eq!(oidc.json(), metadata, "the same document, the same issuer");

    // The JWK Set: the key the admin API adds is published through Envoy.
    let jwks_url = kong.gw(gw).https("/.well-known/jwks.json");
    let jwks = client.get(&jwks_url);
    assert_eq!(jwks.status, 200, "{}", jwks.text);
    assert!(jwks.json()["keys"].is_array(), "{}", jwks.text);
    let added = client.post_json(&kong.stack.admin("/signing-keys"), &json!({"alg": "ES256"}));
    assert_eq!(added.status, 201, "{}", added.text);
    let kid = added.json().text("kid");
    // Replicas read the keys at most KEYS_RELOAD old: wait until an answer carries it.
    let mut key = Value::Null;
    assert!(
        eventually(|| {
            let jwks = client.get(&jwks_url).json();
            key = jwks["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|key| key["kid"] == kid.as_str())
                .cloned()
                .unwrap_or_default();
            !key.is_null()
        }),
        "{kid} never published at {jwks_url}"
    );
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["alg"], "ES256");
    assert!(key.get("d").is_none(), "a private member: {key}");
}
