//! JWT access tokens (RFC 9068, docs/jwt-access-tokens.md) through a real Envoy: verified at
//! the edge without asking the token-service, refused when forged or tampered, revoked on every
//! worker within the propagation bound, and signing keys rotated without refusing a valid token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e::kong::{eventually_everywhere, oauth_error, Kong};
use e2e::stack::wait_until;
use e2e::Text;
use serde_json::{json, Value};
use std::time::Duration;

const CHECKS_SENT: &str = "oauth2.check.sent";

fn jwt_plugin() -> Value {
    json!({"access_token_format": "jwt", "token_expiration": 600})
}

/// The header and claims of a compact JWS (the test's own reading, no verification).
fn decode(jwt: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {jwt}");
    let json = |part: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url part");
        serde_json::from_slice(&bytes).expect("JSON part")
    };
    (json(parts[0]), json(parts[1]))
}

fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

/// `jwt` with its header and claims replaced, its signature kept.
fn with_parts(jwt: &str, header: &Value, claims: &Value) -> String {
    let signature = jwt.rsplit('.').next().unwrap_or_default();
    format!(
        "{}.{}.{signature}",
        encode_part(header),
        encode_part(claims)
    )
}

fn assert_invalid_token(answer: &e2e::http::Answer, what: &str) {
    assert_eq!(
        (answer.status, answer.json()),
        (
            401,
            oauth_error(
                "invalid_token",
                "The access token is invalid or has expired"
            )
        ),
        "{what} was not refused: {}",
        answer.text
    );
}

#[test]
fn jwt_access_tokens_pass_the_edge_without_asking_the_token_service() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", jwt_plugin());
    let token = kong.provision_token(gw).text("access_token");

    let (header, claims) = decode(&token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256", "RS256 is the default key");
    assert!(header["kid"].is_string());
    let issuer = "https://localhost:8443/oauth2";
    assert_eq!(claims["iss"], issuer);
    let audience_names_issuer = claims["aud"] == issuer
        || claims["aud"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(issuer)));
    assert!(audience_names_issuer, "{claims}");
    assert_eq!(claims["sub"], "userid123");
    assert_eq!(claims["client_id"], "clientid123");
    assert_eq!(claims["scope"], "email");
    assert_eq!(claims["consumer"]["id"], json!(kong.bob_id));
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(lifetime, 600);

    // Several new JWTs, each used more than once: every one passes, none is asked about.
    let tokens: Vec<String> = (0..4)
        .map(|_| kong.provision_token(gw).text("access_token"))
        .collect();
    let client = &kong.stack.client;
    let checks_before = kong.gw(gw).filter_stat(client, CHECKS_SENT);
    for token in tokens.iter().chain(tokens.iter()) {
        let r = kong.get_with_token(gw, "/request", token);
        assert_eq!(r.status, 200, "{}", r.text);
        let headers = &r.json()["headers"];
        assert_eq!(headers["x-consumer-id"], json!(kong.bob_id));
        assert_eq!(headers["x-consumer-username"], "bob");
        assert_eq!(headers["x-credential-identifier"], "clientid123");
        assert_eq!(headers["x-authenticated-scope"], "email");
        assert_eq!(headers["x-authenticated-userid"], "userid123");
    }
    assert_eq!(
        kong.gw(gw).filter_stat(client, CHECKS_SENT),
        checks_before,
        "a JWT of a published key needs no call to the token-service"
    );
}

#[test]
fn forged_and_tampered_jwts_are_refused_on_cache_hit_and_miss() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", jwt_plugin());
    let token = kong.provision_token(gw).text("access_token");
    // The genuine token is cached on the worker(s) that saw it.
    assert_eq!(kong.get_with_token(gw, "/request", &token).status, 200);
    let (header, claims) = decode(&token);

    let mut more_scope = claims.clone();
    more_scope["scope"] = json!("email profile");
    let mut other_user = claims.clone();
    other_user["sub"] = json!("admin");
    other_user["authenticated_userid"] = json!("admin");
    let mut later = claims.clone();
    later["exp"] = json!(claims["exp"].as_i64().unwrap_or(0) + 86_400);
    let mut none = header.clone();
    none["alg"] = json!("none");
    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = json!("not-a-published-key");
    let mut plain_typ = header.clone();
    plain_typ["typ"] = json!("JWT");
    let mut embedded_key = header.clone();
    embedded_key["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    let hs256 = {
        let mut h = header.clone();
        h["alg"] = json!("HS256");
        h
    };
    let jwks = kong
        .stack
        .client
        .get(&kong.gw(gw).https("/.well-known/jwks.json"))
        .text;
    let signature = token.rsplit('.').next().unwrap_or_default();

    let forged = [
        ("a widened scope", with_parts(&token, &header, &more_scope)),
        ("another user", with_parts(&token, &header, &other_user)),
        ("a later expiry", with_parts(&token, &header, &later)),
        (
            "alg none without a signature",
            format!("{}.{}.", encode_part(&none), encode_part(&claims)),
        ),
        (
            "alg none with the old signature",
            with_parts(&token, &none, &claims),
        ),
        ("an unknown kid", with_parts(&token, &unknown_kid, &claims)),
        ("typ JWT", with_parts(&token, &plain_typ, &claims)),
        (
            "a key in the header",
            with_parts(&token, &embedded_key, &claims),
        ),
        (
            "HS256 keyed with the published JWKS",
            hmac_sha256_jwt(&hs256, &claims, jwks.as_bytes()),
        ),
        (
            "a truncated signature",
            token[..token.len() - 4].to_string(),
        ),
        (
            "no signature",
            token[..token.len() - signature.len()].to_string(),
        ),
        (
            "a signature from another token",
            format!(
                "{}.{}",
                &token[..token.rfind('.').unwrap_or(0)],
                kong.provision_token(gw)
                    .text("access_token")
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
            ),
        ),
        ("an oversized token", format!("{token}{}", "A".repeat(8200))),
    ];
    for (what, forged) in &forged {
        assert_invalid_token(&kong.get_with_token(gw, "/request", forged), what);
        // The query string is another way in; it must be refused the same way.
        let r = kong
            .stack
            .client
            .get(&kong.gw(gw).http(&format!("/request?access_token={forged}")));
        assert_ne!(r.status, 200, "{what} in the query passed");
    }
    // The genuine token still works after all that.
    assert_eq!(kong.get_with_token(gw, "/request", &token).status, 200);
}

/// A JWT signed with HMAC-SHA256 under `key`: the classic confusion of a public key used as an
/// HMAC secret.
fn hmac_sha256_jwt(header: &Value, claims: &Value, key: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let signing_input = format!("{}.{}", encode_part(header), encode_part(claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(signing_input.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{tag}")
}

#[test]
fn a_jwt_of_one_service_is_refused_by_another() {
    let mut kong = Kong::start();
    let first = kong.protect("oauth2", jwt_plugin());
    let second = kong.protect("oauth2-3", jwt_plugin());
    let token = kong.provision_token(first).text("access_token");
    assert_eq!(kong.get_with_token(first, "/request", &token).status, 200);
    assert_invalid_token(
        &kong.get_with_token(second, "/request", &token),
        "another service's JWT",
    );
}

#[test]
fn a_revoked_or_refreshed_away_jwt_is_refused_on_every_worker() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", jwt_plugin());
    let pair = kong.provision_token(gw);
    let token = pair.text("access_token");
    for _ in 0..8 {
        assert_eq!(kong.get_with_token(gw, "/request", &token).status, 200);
    }
    let revoke = kong.post(
        &kong.gw(gw).https("/oauth2/revoke"),
        json!({"token": token, "client_id": "clientid123", "client_secret": "secret123"}),
    );
    assert_eq!(revoke.status, 200, "{}", revoke.text);
    assert!(
        eventually_everywhere(|| kong.get_with_token(gw, "/request", &token).status == 401),
        "the revoked JWT still passes"
    );
    let introspected = kong.post(
        &kong.gw(gw).https("/oauth2/introspect"),
        json!({"token": token, "client_id": "clientid123", "client_secret": "secret123"}),
    );
    assert_eq!(introspected.json(), json!({"active": false}));

    // Refresh rotation: the old JWT stops working, the new one works.
    let pair = kong.provision_token(gw);
    let old = pair.text("access_token");
    assert_eq!(kong.get_with_token(gw, "/request", &old).status, 200);
    let refreshed = kong.post(
        &kong.gw(gw).https("/oauth2/token"),
        json!({"grant_type": "refresh_token", "refresh_token": pair["refresh_token"],
               "client_id": "clientid123", "client_secret": "secret123"}),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let new = refreshed.json().text("access_token");
    assert_eq!(decode(&new).0["typ"], "at+jwt");
    assert!(
        eventually_everywhere(|| kong.get_with_token(gw, "/request", &old).status == 401),
        "the refreshed-away JWT still passes"
    );
    assert_eq!(kong.get_with_token(gw, "/request", &new).status, 200);
}

#[test]
fn a_renamed_consumer_is_named_by_its_jwts_at_once() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", jwt_plugin());
    let token = kong.provision_token(gw).text("access_token");
    let username = |kong: &Kong| {
        kong.get_with_token(gw, "/request", &token).json()["headers"]["x-consumer-username"].clone()
    };
    assert_eq!(username(&kong), "bob");
    let renamed = kong.stack.client.patch_json(
        &kong.stack.admin("/consumers/bob"),
        &json!({"username": "robert"}),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert!(
        eventually_everywhere(|| username(&kong) == "robert"),
        "the JWT's signed claims outlived the consumer's rename"
    );
}

#[test]
fn signing_keys_rotate_without_refusing_a_valid_token() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", jwt_plugin());
    let old = kong.provision_token(gw).text("access_token");
    let old_kid = decode(&old).0.text("kid");
    let client = &kong.stack.client;
    let keys = client.get(&kong.stack.admin("/signing-keys"));
    assert_eq!(keys.status, 200, "{}", keys.text);
    assert!(
        !keys.text.contains("\"d\""),
        "a private key in the admin API: {}",
        keys.text
    );

    let added = client.post_json(&kong.stack.admin("/signing-keys"), &json!({"alg": "ES256"}));
    assert_eq!(added.status, 201, "{}", added.text);
    let new_kid = added.json().text("kid");
    assert_eq!(added.json()["status"], "next", "{}", added.text);
    // Published before it signs: every replica's JWKS names it within its reload interval
    // (250 ms), long before it activates (the publish delay, 5 s).
    let jwks = || {
        client
            .get(&kong.gw(gw).https("/.well-known/jwks.json"))
            .json()
    };
    let publishes = |kid: &str| {
        jwks()["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k["kid"] == json!(kid)))
    };
    assert!(
        eventually_everywhere(|| publishes(&new_kid)),
        "the new key is not published by every replica"
    );

    let signed_by_new_key = wait_until(Duration::from_secs(20), || {
        let token = kong.provision_token(gw).text("access_token");
        decode(&token).0["kid"] == json!(new_kid)
    });
    assert!(signed_by_new_key, "the new key never started signing");
    let new = kong.provision_token(gw).text("access_token");
    assert_eq!(decode(&new).0["alg"], "ES256");
    assert_eq!(kong.get_with_token(gw, "/request", &new).status, 200);
    // The retired key stays published while its tokens live.
    assert_eq!(kong.get_with_token(gw, "/request", &old).status, 200);
    assert!(publishes(&old_kid), "the retired key was unpublished early");

    let bad = client.post_json(&kong.stack.admin("/signing-keys"), &json!({"alg": "HS256"}));
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(bad.text.contains("alg"), "{}", bad.text);
}

/// The JWK Set the route publishes, as a `jsonwebtoken` key for `token`'s `kid`.
fn published_key(kong: &Kong, gw: usize, token: &str) -> jsonwebtoken::DecodingKey {
    let (header, _) = decode(token);
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(
        kong.stack
            .client
            .get(&kong.gw(gw).https("/.well-known/jwks.json"))
            .json(),
    )
    .expect("a JWK Set");
    let jwk = jwks
        .find(&header.text("kid"))
        .unwrap_or_else(|| panic!("{header} names no published key"));
    jsonwebtoken::DecodingKey::from_jwk(jwk).expect("a usable JWK")
}

/// Verifies `jwt` with the route's published keys, as an upstream would; the route is
/// `/<service>`.
fn verified_claims(kong: &Kong, gw: usize, service: &str, jwt: &str) -> Value {
    let key = published_key(kong, gw, jwt);
    let alg = jsonwebtoken::decode_header(jwt).expect("a JWS header").alg;
    let mut validation = jsonwebtoken::Validation::new(alg);
    let issuer = format!("https://localhost:8443/{service}");
    validation.set_issuer(&[&issuer]);
    validation.set_audience(&[&issuer]);
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .unwrap_or_else(|e| panic!("{jwt} does not verify with the published keys: {e}"))
        .claims
}

#[test]
fn the_upstream_gets_a_signed_identity_instead_of_trusting_headers() {
    let mut kong = Kong::start();
    // An opaque token, the identity JWT in its own header, no X- identity headers.
    let gw = kong.protect(
        "oauth2",
        json!({"token_expiration": 600, "identity_jwt_header": "x-identity", "identity_headers": false}),
    );
    let token = kong.provision_token(gw).text("access_token");
    assert_eq!(token.split('.').count(), 1, "an opaque token");
    let r = kong.stack.client.get_with(
        &kong.gw(gw).http("/request"),
        &[
            ("authorization", &format!("bearer {token}")),
            // A client's own copies of what the gateway asserts never reach the upstream.
            ("x-identity", "forged.identity.jwt"),
            ("x-consumer-id", "forged"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let headers = &r.json()["headers"];
    assert!(headers.get("x-consumer-id").is_none(), "{headers}");
    assert!(headers.get("x-authenticated-userid").is_none(), "{headers}");
    let identity = headers["x-identity"]
        .as_str()
        .unwrap_or_else(|| panic!("no identity JWT reached the upstream: {headers}"))
        .to_string();
    assert_ne!(identity, "forged.identity.jwt");
    assert_eq!(decode(&identity).0["typ"], "identity+jwt");
    let claims = verified_claims(&kong, gw, "oauth2", &identity);
    assert_eq!(claims["consumer"]["id"], json!(kong.bob_id));
    assert_eq!(claims["sub"], "userid123");
    assert_eq!(claims["scope"], "email");
    let lifetime = claims["exp"].as_i64().unwrap_or(i64::MAX) - claims["iat"].as_i64().unwrap_or(0);
    assert!(lifetime <= 300, "short-lived: {claims}");
    // The upstream cannot turn around and use it as an access token.
    assert_invalid_token(
        &kong.get_with_token(gw, "/request", &identity),
        "an identity JWT presented as an access token",
    );

    // A JWT access token verified in Envoy is itself the identity, in `Authorization`.
    let jwt_gw = kong.protect(
        "oauth2-3",
        json!({"access_token_format": "jwt", "token_expiration": 600,
               "identity_jwt_header": "authorization"}),
    );
    let jwt = kong.provision_token(jwt_gw).text("access_token");
    let r = kong.get_with_token(jwt_gw, "/request", &jwt);
    assert_eq!(r.status, 200, "{}", r.text);
    let forwarded = r.json()["headers"]["authorization"].clone();
    assert_eq!(forwarded, json!(format!("Bearer {jwt}")));
    let claims = verified_claims(&kong, jwt_gw, "oauth2-3", &jwt);
    assert_eq!(claims["consumer"]["id"], json!(kong.bob_id));
}
