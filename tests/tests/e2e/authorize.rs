//! `/oauth2/authorize` through Envoy: Kong's code and implicit grant cases (A1–A28, I1–I5).

use e2e::kong::{assert_no_store, oauth_error, Kong, PROVISION_KEY};
use e2e::Text;
use serde_json::{json, Value};

fn redirect_of(answer: &e2e::Answer) -> String {
    answer.json().text("redirect_uri")
}

#[test]
fn authorization_code_requests_follow_kongs_checks_in_order() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({}));
    let url = kong.gw(gw).https("/oauth2/authorize");
    let base = |extra: Value| {
        let mut body = json!({"provision_key": PROVISION_KEY, "authenticated_userid": "id123"});
        e2e::kong::merge(&mut body, extra);
        body
    };

    // A1: nothing at all.
    let a = kong.post(&url, json!({}));
    assert_eq!(
        (a.status, a.json()),
        (
            400,
            oauth_error("invalid_provision_key", "Invalid provision_key")
        )
    );
    assert_no_store(&a);
    // A3: no authenticated_userid.
    let a = kong.post(&url, json!({"provision_key": PROVISION_KEY}));
    assert_eq!(
        a.json(),
        oauth_error(
            "invalid_authenticated_userid",
            "Missing authenticated_userid parameter"
        )
    );
    // A4: no client: a plain JSON error, no redirect.
    let a = kong.post(&url, base(json!({})));
    assert_eq!(
        (a.status, a.json()),
        (
            400,
            oauth_error("invalid_client", "Invalid client authentication")
        )
    );
    // A5: known client, no scope: the error travels in the redirect URI.
    let a = kong.post(&url, base(json!({"client_id": "clientid123"})));
    assert_eq!(a.status, 400);
    assert_eq!(
        redirect_of(&a),
        "http://google.test/kong?error=invalid_scope&error_description=You%20must%20specify%20a%20scope"
    );
    // A6: unknown scope.
    let a = kong.post(
        &url,
        base(json!({"client_id": "clientid123", "scope": "wot"})),
    );
    assert_eq!(
        redirect_of(&a),
        "http://google.test/kong?error=invalid_scope&error_description=%22wot%22%20is%20an%20invalid%20scope"
    );
    // A7/A8: no response_type, with state echoed.
    let a = kong.post(
        &url,
        base(json!({"client_id": "clientid123", "scope": "email", "state": "somestate"})),
    );
    assert_eq!(
        redirect_of(&a),
        "http://google.test/kong?error=unsupported_response_type&error_description=Invalid%20response_type&state=somestate"
    );
    // A9: a redirect_uri that was never registered goes to the first registered one.
    let a = kong.post(
        &url,
        base(json!({"client_id": "clientid123", "scope": "email", "response_type": "code", "redirect_uri": "http://hello.test/"})),
    );
    assert_eq!(
        redirect_of(&a),
        "http://google.test/kong?error=invalid_request&error_description=Invalid%20redirect_uri%20that%20does%20not%20match%20with%20any%20redirect_uri%20created%20with%20the%20application"
    );
    // A15/A19: success, with state.
    let a = kong.post(&url, base(json!({"client_id": "clientid123", "scope": "email", "response_type": "code", "state": "hello"})));
    assert_eq!(a.status, 200, "{}", a.text);
    let uri = redirect_of(&a);
    let code = uri
        .strip_prefix("http://google.test/kong?code=")
        .and_then(|r| r.strip_suffix("&state=hello"));
    assert!(
        code.is_some_and(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_alphanumeric())),
        "{uri}"
    );
    assert_no_store(&a);
    // A10: registered query parameters are kept, ours override, keys sorted.
    let a = kong.post(
        &url,
        base(json!({"client_id": "clientid789", "scope": "email", "response_type": "code"})),
    );
    let uri = redirect_of(&a);
    assert!(
        uri.starts_with("http://google.test/kong?code=")
            && uri.ends_with("&foo=bar")
            && !uri.contains("code=123"),
        "{uri}"
    );
    // A11: first registered URI when none is given.
    let a = kong.post(
        &url,
        base(json!({"client_id": "clientid456", "scope": "email", "response_type": "code"})),
    );
    assert!(
        redirect_of(&a).starts_with("http://one.test/one/?code="),
        "{}",
        a.text
    );
    // A12: plain HTTP is refused.
    let a = kong.post(
        &kong.gw(gw).http("/oauth2/authorize"),
        base(json!({"client_id": "clientid123"})),
    );
    assert_eq!(
        (a.status, a.json()),
        (400, oauth_error("access_denied", "You must use HTTPS"))
    );
    // A14: X-Forwarded-Proto is not trusted without accept_http_if_already_terminated.
    let a = kong.stack.client.send(
        kong.stack
            .client
            .raw()
            .post(kong.gw(gw).http("/oauth2/authorize"))
            .header("x-forwarded-proto", "https")
            .json(&json!({})),
    );
    assert_eq!(a.json(), oauth_error("access_denied", "You must use HTTPS"));
    // A16: a wrong provision key.
    let a = kong.post(
        &url,
        json!({"provision_key": "provision123a", "authenticated_userid": "x"}),
    );
    assert_eq!(
        a.json(),
        oauth_error("invalid_provision_key", "Invalid provision_key")
    );
    // A18: a trailing slash is the same endpoint.
    let a = kong.post(
        &kong.gw(gw).https("/oauth2/authorize/"),
        base(json!({"client_id": "clientid123", "scope": "email", "response_type": "code"})),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    // Scopes with dots (A21) and several scopes.
    let a = kong.post(&url, base(json!({"client_id": "clientid123", "scope": "user.email profile", "response_type": "code"})));
    assert_eq!(a.status, 200, "{}", a.text);
    // Only POST: 405 with a Bearer challenge naming the realm.
    let a = kong.stack.client.get(&url);
    assert_eq!(a.status, 405);
    assert_eq!(
        a.json(),
        oauth_error(
            "invalid_method",
            "The HTTP method GET is invalid for the authorization endpoint"
        )
    );
    assert_eq!(
        a.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"service\", error=\"invalid_method\", error_description=\"The HTTP method GET is invalid for the authorization endpoint\"")
    );
}

#[test]
fn pkce_rules_at_the_authorization_endpoint() {
    let mut kong = Kong::start();
    let lax = kong.protect("oauth2", json!({}));
    let none = kong.protect("oauth2-none", json!({"pkce": "none"}));
    let strict = kong.protect("oauth2-strict", json!({"pkce": "strict"}));
    let body = |client: &str, extra: Value| {
        let mut b = json!({"provision_key": PROVISION_KEY, "authenticated_userid": "id123", "client_id": client,
            "scope": "user.email", "response_type": "code", "state": "hello"});
        e2e::kong::merge(&mut b, extra);
        b
    };
    let url = kong.gw(lax).https("/oauth2/authorize");
    // A22: plain (or any non-S256 method) is refused.
    for method in ["foo", "plain"] {
        let a = kong.post(
            &url,
            body(
                "clientid11211",
                json!({"code_challenge": "1234", "code_challenge_method": method}),
            ),
        );
        assert_eq!(
            redirect_of(&a),
            "http://google.test/kong?error=invalid_request&error_description=code_challenge_method%20is%20not%20supported%2c%20must%20be%20S256&state=hello"
        );
    }
    // A23: a method without a challenge.
    let a = kong.post(
        &url,
        body("clientid11211", json!({"code_challenge_method": "H256"})),
    );
    assert!(
        redirect_of(&a)
            .contains("code_challenge%20is%20required%20when%20code_method%20is%20present"),
        "{}",
        a.text
    );
    // A24: public clients need PKCE under lax.
    let a = kong.post(&url, body("clientid11211", json!({})));
    assert!(
        redirect_of(&a).contains("code_challenge%20is%20required%20for%20public%20clients"),
        "{}",
        a.text
    );
    // A25: strict requires it of confidential clients too.
    let a = kong.post(
        &kong.gw(strict).https("/oauth2/authorize"),
        body("clientid123", json!({})),
    );
    assert!(
        redirect_of(&a).contains("code_challenge%20is%20required%20for%20confidential%20clients"),
        "{}",
        a.text
    );
    // A26: none lets a public client through without it.
    let a = kong.post(
        &kong.gw(none).https("/oauth2/authorize"),
        body("clientid11211", json!({})),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    // A27/A28: a challenge with no method (S256 assumed) or S256.
    for extra in [
        json!({"code_challenge": "1234"}),
        json!({"code_challenge": "1234", "code_challenge_method": "S256"}),
    ] {
        let a = kong.post(&url, body("clientid11211", extra));
        assert_eq!(a.status, 200, "{}", a.text);
    }
}

#[test]
fn the_implicit_grant_returns_the_token_in_the_fragment() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({}));
    let a = kong.post(
        &kong.gw(gw).https("/oauth2/authorize"),
        json!({"provision_key": PROVISION_KEY, "authenticated_userid": "userid123", "client_id": "clientid123",
               "scope": "email  profile", "response_type": "token", "state": "wot"}),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_no_store(&a);
    let uri = redirect_of(&a);
    let fragment = uri
        .strip_prefix("http://google.test/kong#access_token=")
        .unwrap_or_else(|| panic!("{uri}"));
    let (token, rest) = fragment.split_once('&').unwrap_or_default();
    assert_eq!(token.len(), 32);
    assert_eq!(rest, "expires_in=5&state=wot&token_type=bearer");

    // I5: the implicit token works on the route, with the identity upstream.
    let answer = kong
        .stack
        .client
        .get(&kong.gw(gw).http(&format!("/request?access_token={token}")));
    assert_eq!(answer.status, 200, "{}", answer.text);
    let headers = &answer.json()["headers"];
    assert_eq!(headers["x-consumer-username"], "bob");
    assert_eq!(headers["x-authenticated-scope"], "email profile");
    assert_eq!(headers["x-authenticated-userid"], "userid123");
    assert_eq!(headers["x-credential-identifier"], "clientid123");
    assert_eq!(headers["x-consumer-id"], Value::String(kong.bob_id.clone()));
}
