//! `/oauth2/token` through Envoy: code exchange, PKCE, client credentials, password and
//! refresh grants with Kong's statuses and texts (T1–T40, C1–C19, P1–P11, F1–F9).

use e2e::kong::{assert_no_store, oauth_error, Kong, PROVISION_KEY};
use e2e::Text;
use serde_json::{json, Value};

const VERIFIER: &str = "abcdelfhigklmnopqrstuvwxyz0123456789abcdefg";
const CHALLENGE_OF_VERIFIER: &str = "2aC4cMSkAsMRtZbhHhiZkDW3sddRf_iTRGil1r9gi8w=";

fn is_token(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[test]
fn authorization_code_exchange() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({}));
    let other = kong.protect("oauth2-other", json!({}));
    let url = kong.gw(gw).https("/oauth2/token");

    // T1–T3: no usable client.
    for body in [
        json!({}),
        json!({"code": "x"}),
        json!({"code": "x", "client_secret": "secret123"}),
    ] {
        let a = kong.post(&url, body);
        assert_eq!(
            (a.status, a.json()),
            (
                400,
                oauth_error("invalid_client", "Invalid client authentication")
            )
        );
        assert_no_store(&a);
    }
    let code = kong.provision_code(gw, "clientid123", json!({}));
    // T4: no grant type.
    let a = kong.post(
        &url,
        json!({"code": code, "client_id": "clientid123", "client_secret": "secret123"}),
    );
    assert_eq!(
        a.json(),
        oauth_error("unsupported_grant_type", "Invalid grant_type")
    );
    // T5: a wrong code.
    let a = kong.post(&url, json!({"code": format!("{code}hello"), "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code"}));
    assert_eq!(a.json(), oauth_error("invalid_request", "Invalid code"));
    // T11: another application's secret cannot spend it.
    let a = kong.post(&url, json!({"code": code, "client_id": "clientid789", "client_secret": "secret789", "grant_type": "authorization_code"}));
    assert_eq!(a.json(), oauth_error("invalid_request", "Invalid code"));
    // T12: nor can another service.
    let a = kong.post(&kong.gw(other).https("/oauth2/token"), json!({"code": code, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code"}));
    assert_eq!(a.json(), oauth_error("invalid_request", "Invalid code"));
    // T6/T7: the right client, with state echoed.
    let a = kong.post(&url, json!({"code": code, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code", "state": "wot"}));
    assert_eq!(a.status, 200, "{}", a.text);
    let t = a.json();
    assert_eq!(
        (
            t["token_type"].clone(),
            t["expires_in"].clone(),
            t["state"].clone()
        ),
        (json!("bearer"), json!(5), json!("wot"))
    );
    assert!(
        is_token(&t["access_token"]) && is_token(&t["refresh_token"]),
        "{t}"
    );
    let token = t.text("access_token");
    assert_eq!(kong.get_with_token(gw, "/request", &token).status, 200);
    // T10: single use; and beyond Kong (RFC 6749 §4.1.2), a replayed code revokes what it gave.
    crate::oauth_hardening::after_the_replay_window();
    let a = kong.post(&url, json!({"code": code, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code"}));
    assert_eq!(a.json(), oauth_error("invalid_request", "Invalid code"));
    assert!(
        e2e::kong::eventually(|| kong.get_with_token(gw, "/request", &token).status == 401),
        "replay did not revoke"
    );
    // T8: a code of clientid333 spent by clientid123, state in the error.
    let code333 = kong.provision_code(gw, "clientid333", json!({}));
    let a = kong.post(&url, json!({"code": code333, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code", "state": "wot"}));
    assert_eq!(
        a.json(),
        json!({"error": "invalid_request", "error_description": "Invalid code", "state": "wot"})
    );
    // T33: a confidential client without its secret.
    let a = kong.post(
        &url,
        json!({"code": code333, "client_id": "clientid333", "grant_type": "authorization_code"}),
    );
    assert_eq!(
        a.json(),
        oauth_error("invalid_client", "Invalid client authentication")
    );
    // Basic credentials that are wrong: 401 with a Basic challenge.
    let a = kong.stack.client.send(
        kong.stack
            .client
            .raw()
            .post(&url)
            .basic_auth("clientid333", Some("wrong"))
            .json(&json!({"code": code333, "grant_type": "authorization_code"})),
    );
    assert_eq!(
        (a.status, a.json()),
        (
            401,
            oauth_error("invalid_client", "Invalid client authentication")
        )
    );
    assert_eq!(
        a.header("www-authenticate").as_deref(),
        Some("Basic realm=\"OAuth2.0\"")
    );
    // ...and right ones work (hashed secret).
    let a = kong.stack.client.send(
        kong.stack
            .client
            .raw()
            .post(&url)
            .basic_auth("clientid333", Some("secret333"))
            .json(&json!({"code": code333, "grant_type": "authorization_code"})),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    // The token works on its service only (R9/R22).
    let token = a.json().text("access_token");
    let r = kong.get_with_token(other, "/request", &token);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        oauth_error(
            "invalid_token",
            "The access token is invalid or has expired"
        )
    );
    let r = kong.get_with_token(gw, "/request", &token);
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.json()["headers"];
    assert_eq!(
        (
            h["x-authenticated-userid"].clone(),
            h["x-authenticated-scope"].clone()
        ),
        (json!("userid123"), json!("email"))
    );
}

#[test]
fn pkce_at_the_token_endpoint() {
    let mut kong = Kong::start();
    let lax = kong.protect("oauth2", json!({}));
    let none = kong.protect("oauth2-none", json!({"pkce": "none"}));
    let url = kong.gw(lax).https("/oauth2/token");
    let challenge = json!({"code_challenge": CHALLENGE_OF_VERIFIER});
    let exchange = |url: &str, code: &str, extra: Value| {
        let mut body =
            json!({"code": code, "client_id": "clientid11211", "grant_type": "authorization_code"});
        e2e::kong::merge(&mut body, extra);
        kong.post(url, body)
    };

    // T19/T25: no verifier.
    let code = kong.provision_code(lax, "clientid11211", challenge.clone());
    let a = exchange(&url, &code, json!({}));
    assert_eq!(
        a.json(),
        oauth_error(
            "invalid_request",
            "code_verifier is required for PKCE authorization requests"
        )
    );
    // T27/T24/T23: bad lengths; T28: not a string.
    for verifier in [json!(""), json!("abc123"), json!("abc123".repeat(30))] {
        let a = exchange(&url, &code, json!({"code_verifier": verifier}));
        assert_eq!(
            a.json(),
            oauth_error(
                "invalid_request",
                "code_verifier must be between 43 and 128 characters"
            )
        );
    }
    let a = exchange(&url, &code, json!({"code_verifier": 12}));
    assert_eq!(
        a.json(),
        oauth_error("invalid_request", "code_verifier is not a string")
    );
    // T29: a verifier that does not match.
    let a = exchange(&url, &code, json!({"code_verifier": "x".repeat(43)}));
    assert_eq!(a.json(), oauth_error("invalid_grant", "Invalid code"));
    // T17: a public client may not send a secret.
    let a = exchange(
        &url,
        &code,
        json!({"code_verifier": VERIFIER, "client_secret": "secret11211"}),
    );
    assert_eq!(
        a.json(),
        oauth_error(
            "invalid_request",
            "client_secret is disallowed for public clients"
        )
    );
    // T13/T21: the right verifier, no secret: a token pair (with a refresh token).
    let a = exchange(&url, &code, json!({"code_verifier": VERIFIER}));
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(is_token(&a.json()["refresh_token"]));
    // T14: a public client identified by Basic without a secret.
    let code = kong.provision_code(lax, "clientid11211", challenge.clone());
    let a = kong.stack.client.send(
        kong.stack.client.raw().post(&url).header("authorization", "Basic Y2xpZW50aWQxMTIxMQ==")
            .json(&json!({"code": code, "grant_type": "authorization_code", "code_verifier": VERIFIER})),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    // T36: with pkce=none, a code issued with a challenge still needs the verifier.
    let code = kong.provision_code(none, "clientid123", challenge);
    let a = kong.post(&kong.gw(none).https("/oauth2/token"), json!({"code": code, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code"}));
    assert_eq!(
        a.json(),
        oauth_error(
            "invalid_request",
            "code_verifier is required for PKCE authorization requests"
        )
    );
    // T20/T37: pkce=none, no challenge: plain confidential flow.
    let code = kong.provision_code(none, "clientid123", json!({}));
    let a = kong.post(&kong.gw(none).https("/oauth2/token"), json!({"code": code, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code"}));
    assert_eq!(a.status, 200, "{}", a.text);
}

#[test]
fn client_credentials_and_password_grants() {
    let mut kong = Kong::start();
    let cc = kong.protect(
        "oauth2-4",
        json!({"enable_client_credentials": true, "enable_authorization_code": false}),
    );
    let pw = kong.protect("oauth2-5", json!({"enable_password_grant": true, "enable_authorization_code": false, "realm": "test-oauth2"}));
    let url = kong.gw(cc).https("/oauth2/token");

    // C2/C3: empty or missing credentials.
    let a = kong.post(
        &url,
        json!({"client_id": "", "client_secret": "", "grant_type": "client_credentials"}),
    );
    assert_eq!(
        a.json(),
        oauth_error("invalid_client", "Invalid client authentication")
    );
    let a = kong.post(&url, json!({"grant_type": "client_credentials"}));
    assert_eq!(
        a.json(),
        oauth_error("invalid_client", "Invalid client authentication")
    );
    // C6: no grant type.
    let a = kong.post(
        &url,
        json!({"client_id": "clientid123", "client_secret": "secret123", "scope": "email"}),
    );
    assert_eq!(
        a.json(),
        oauth_error("unsupported_grant_type", "Invalid grant_type")
    );
    // C4/C5: GET, with and without a realm.
    let a = kong
        .stack
        .client
        .get(&format!("{url}?grant_type=client_credentials"));
    assert_eq!(a.status, 405);
    assert_eq!(
        a.json(),
        oauth_error(
            "invalid_method",
            "The HTTP method GET is invalid for the token endpoint"
        )
    );
    let a = kong.stack.client.get(&kong.gw(pw).https("/oauth2/token"));
    assert_eq!(
        a.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"test-oauth2\", error=\"invalid_method\", error_description=\"The HTTP method GET is invalid for the token endpoint\"")
    );
    // C7: plain HTTP.
    let a = kong.post(
        &kong.gw(cc).http("/oauth2/token"),
        json!({"grant_type": "client_credentials"}),
    );
    assert_eq!(a.json(), oauth_error("access_denied", "You must use HTTPS"));
    // C8: authenticated_userid needs the provision key.
    let a = kong.post(&url, json!({"client_id": "clientid123", "client_secret": "secret123", "grant_type": "client_credentials", "authenticated_userid": "user123"}));
    assert_eq!(
        a.json(),
        oauth_error("invalid_provision_key", "Invalid provision_key")
    );
    // C10/C13: tokens without refresh tokens, also for clients without redirect URIs.
    for (id, secret) in [
        ("clientid123", "secret123"),
        ("clientid10112", "secret10112"),
    ] {
        let a = kong.post(&url, json!({"client_id": id, "client_secret": secret, "grant_type": "client_credentials", "scope": "email"}));
        assert_eq!(a.status, 200, "{}", a.text);
        let t = a.json();
        assert!(
            is_token(&t["access_token"]) && t.get("refresh_token").is_none(),
            "{t}"
        );
        assert_eq!(t["expires_in"], 5);
    }
    // C14/C18: an authenticated user vouched for with the provision key travels upstream.
    let a = kong.post(&url, json!({"client_id": "clientid123", "client_secret": "secret123", "grant_type": "client_credentials",
        "scope": "email", "authenticated_userid": "hello", "provision_key": PROVISION_KEY}));
    let token = a.json().text("access_token");
    let r = kong
        .stack
        .client
        .get(&kong.gw(cc).http(&format!("/request?access_token={token}")));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["headers"]["x-authenticated-userid"], "hello");
    // C17: wrong Basic credentials.
    let a = kong.stack.client.send(
        kong.stack
            .client
            .raw()
            .post(&url)
            .basic_auth("clientid123", Some("secret124"))
            .json(&json!({"grant_type": "client_credentials"})),
    );
    assert_eq!(a.status, 401);
    assert_eq!(
        a.header("www-authenticate").as_deref(),
        Some("Basic realm=\"OAuth2.0\"")
    );

    // Password grant (P5–P8).
    let url = kong.gw(pw).https("/oauth2/token");
    let base = json!({"client_id": "clientid123", "client_secret": "secret123", "grant_type": "password", "scope": "email"});
    let a = kong.post(&url, base.clone());
    assert_eq!(
        a.json(),
        oauth_error("invalid_provision_key", "Invalid provision_key")
    );
    let mut with_key = base.clone();
    e2e::kong::merge(&mut with_key, json!({"provision_key": PROVISION_KEY}));
    let a = kong.post(&url, with_key.clone());
    assert_eq!(
        a.json(),
        oauth_error(
            "invalid_authenticated_userid",
            "Missing authenticated_userid parameter"
        )
    );
    e2e::kong::merge(&mut with_key, json!({"authenticated_userid": "id123"}));
    let a = kong.post(&url, with_key);
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(is_token(&a.json()["refresh_token"]));
    // R16: scope must be a string.
    for scope in [json!(["email"]), json!(123), json!(false)] {
        let a = kong.post(&url, json!({"client_id": "clientid123", "client_secret": "secret123", "grant_type": "password",
            "provision_key": PROVISION_KEY, "authenticated_userid": "id123", "scope": scope}));
        assert_eq!(
            a.json(),
            oauth_error("invalid_scope", "scope must be a string")
        );
    }
    // P2: the realm in the missing-token challenge.
    let r = kong.stack.client.get(&kong.gw(pw).http("/request"));
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"test-oauth2\"")
    );
}

#[test]
fn refresh_tokens_rotate_or_are_reused() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({}));
    let reuse = kong.protect("oauth2-13", json!({"reuse_refresh_token": true}));
    let url = kong.gw(gw).https("/oauth2/token");
    let refresh = |url: &str, token: &Value, client: &str, secret: &str| {
        kong.post(url, json!({"refresh_token": token, "client_id": client, "client_secret": secret, "grant_type": "refresh_token"}))
    };

    // F1: an unknown refresh token.
    let a = refresh(&url, &json!("hello"), "clientid123", "secret123");
    assert_eq!(
        a.json(),
        oauth_error("invalid_request", "Invalid refresh_token")
    );
    // F5: a confidential client without its secret.
    let pair = kong.provision_token(gw);
    let a = kong.post(&url, json!({"refresh_token": pair["refresh_token"], "client_id": "clientid123", "grant_type": "refresh_token"}));
    assert_eq!(
        a.json(),
        oauth_error("invalid_client", "Invalid client authentication")
    );
    // F6: another client's refresh token.
    let a = refresh(&url, &pair["refresh_token"], "clientid789", "secret789");
    assert_eq!(
        a.json(),
        oauth_error("invalid_client", "Invalid client authentication")
    );
    // F2/F8: rotation: a new pair, both tokens different.
    let a = refresh(&url, &pair["refresh_token"], "clientid123", "secret123");
    assert_eq!(a.status, 200, "{}", a.text);
    let rotated = a.json();
    assert!(is_token(&rotated["access_token"]) && is_token(&rotated["refresh_token"]));
    assert_ne!(rotated["refresh_token"], pair["refresh_token"]);
    // The old access token dies at once.
    let old = pair.text("access_token");
    assert!(e2e::kong::eventually(|| kong
        .get_with_token(gw, "/request", &old)
        .status
        == 401));

    // F9: reuse_refresh_token keeps the refresh token and replaces the access token.
    let code = kong.provision_code(reuse, "clientid123", json!({}));
    let first = kong.post(&kong.gw(reuse).https("/oauth2/token"), json!({"code": code, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code"})).json();
    let a = refresh(
        &kong.gw(reuse).https("/oauth2/token"),
        &first["refresh_token"],
        "clientid123",
        "secret123",
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json()["refresh_token"], first["refresh_token"]);
    assert_ne!(a.json()["access_token"], first["access_token"]);
    let new = a.json().text("access_token");
    assert_eq!(kong.get_with_token(reuse, "/request", &new).status, 200);
    let old = first.text("access_token");
    assert!(e2e::kong::eventually(|| kong
        .get_with_token(reuse, "/request", &old)
        .status
        == 401));
}
