//! Issue 21 (token-service side): with `access_token_format: jwt`, the tokens a client gets
//! through Envoy are RFC 9068 JWTs that a resource server verifies with the published JWKS
//! and a JOSE library of its own (here `jsonwebtoken`), and introspection and revocation (RFC
//! 7009, by the JWT string) through Envoy work on them as on opaque tokens.

use e2e::kong::{eventually, Kong};
use e2e::Text;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{json, Value};

#[test]
fn jwt_access_tokens_through_envoy_verify_with_the_jwks_and_are_revoked() {
    let mut kong = Kong::start();
    let gw = kong.protect(
        "stepon",
        json!({"access_token_format": "jwt", "token_expiration": 600, "enable_client_credentials": true}),
    );
    // The first JWT generates the signing key (RS256, on first need), which on a loaded
    // machine can outlast the filter's relay timeout (a 503): a client credentials grant
    // waits for the key before the code flow (whose code is good once) runs.
    let token_url = kong.gw(gw).https("/oauth2/token");
    let credentials = json!({"grant_type": "client_credentials", "client_id": "clientid123",
        "client_secret": "secret123", "scope": "email"});
    assert!(
        eventually(|| kong.post(&token_url, credentials.clone()).status == 200),
        "no JWT issued"
    );
    let pair = kong.provision_token(gw);
    let token = pair.text("access_token");

    // A resource server's verification: the key named by `kid` in the JWKS, RS256, the
    // route's issuer as `iss` and `aud`, `typ: at+jwt`.
    let header = jsonwebtoken::decode_header(&token).expect("a JWS");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.clone().expect("a kid");
    // Each replica re-reads the keys within a bound (`jwt::signer::KEYS_RELOAD`): one that
    // did not sign this JWT may publish its key that much later.
    let jwks_url = kong.stack.replica_gateway(0, "/.well-known/jwks.json");
    let mut jwks = JwkSet { keys: Vec::new() };
    assert!(
        eventually(|| {
            let answer = kong.stack.client.get(&jwks_url);
            jwks = serde_json::from_str(&answer.text).expect("a JWK Set");
            jwks.find(&kid).is_some()
        }),
        "{kid} is never published at {jwks_url}"
    );
    let jwk = jwks.find(&kid).expect("the signing key is published");
    let key = DecodingKey::from_jwk(jwk).expect("a key");
    let issuer = "https://localhost:8443/stepon";
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims: Value = jsonwebtoken::decode(&token, &key, &validation)
        .expect("the JWT verifies")
        .claims;
    assert_eq!(claims["sub"], "userid123");
    assert_eq!(claims["client_id"], "clientid123");
    assert_eq!(claims["scope"], "email");
    assert_eq!(claims["consumer"]["username"], "bob");
    assert_eq!(
        claims["exp"]
            .as_i64()
            .zip(claims["iat"].as_i64())
            .map(|(e, i)| e - i),
        Some(600)
    );

    // Introspection and revocation through Envoy take the JWT as they take an opaque token.
    // (The gateway's own acceptance and refusal of JWTs is the filter's, tested with it.)
    let client = json!({"client_id": "clientid123", "client_secret": "secret123"});
    let with_token = |mut body: Value| {
        body["token"] = json!(token);
        body
    };
    let introspect = kong.gw(gw).https("/oauth2/introspect");
    let active = kong.post(&introspect, with_token(client.clone()));
    assert_eq!(active.status, 200, "{}", active.text);
    assert_eq!(active.json()["active"], true, "{}", active.text);
    assert_eq!(active.json()["sub"], "userid123");
    let revoke = kong.post(
        &kong.gw(gw).https("/oauth2/revoke"),
        with_token(client.clone()),
    );
    assert_eq!(revoke.status, 200, "{}", revoke.text);
    // (Another replica learns of it through the feed: at once, or within a poll.)
    assert!(
        eventually(|| kong.post(&introspect, with_token(client.clone())).json()
            == json!({"active": false})),
        "a revoked JWT still introspects active"
    );
}
