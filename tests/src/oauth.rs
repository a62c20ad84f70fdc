//! The OAuth flows a client app runs, through Envoy.

use crate::stack::{Gateway, Stack};
use crate::Text;
use serde_json::Value;

/// A consumer's OAuth application, as the admin API created it.
#[derive(Debug, Clone)]
pub struct App {
    pub consumer_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

pub fn create_app(stack: &Stack, consumer: &str, redirect_uri: &str) -> App {
    let c = stack.admin_post("/consumers", &[("username", consumer)]);
    assert_eq!(c.status, 201, "{}", c.text);
    let path = format!("/consumers/{consumer}/oauth2");
    let k = stack.admin_post(&path, &[("name", consumer), ("redirect_uri", redirect_uri)]);
    assert_eq!(k.status, 201, "{}", k.text);
    let k = k.json();
    App {
        consumer_id: c.json().text("id"),
        client_id: k.text("client_id"),
        client_secret: k.text("client_secret"),
        redirect_uri: redirect_uri.to_string(),
    }
}

/// The value of `name` in the query of a redirect URI.
pub fn query_param(uri: &str, name: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// Authorizes `userid` for `app` over HTTPS and returns the code.
pub fn authorize_code(
    stack: &Stack,
    gw: &Gateway,
    app: &App,
    provision_key: &str,
    scope: &str,
    userid: &str,
) -> String {
    let answer = stack.client.post_form(
        &gw.https("/oauth2/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", &app.client_id),
            ("scope", scope),
            ("provision_key", provision_key),
            ("authenticated_userid", userid),
        ],
    );
    assert_eq!(answer.status, 200, "authorize: {}", answer.text);
    let uri = answer.json().text("redirect_uri");
    query_param(&uri, "code").unwrap_or_else(|| panic!("no code in {uri}"))
}

pub fn exchange_code(stack: &Stack, gw: &Gateway, app: &App, code: &str) -> Value {
    let answer = stack.client.post_form(
        &gw.https("/oauth2/token"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &app.client_id),
            ("client_secret", &app.client_secret),
            ("code", code),
        ],
    );
    assert_eq!(answer.status, 200, "token: {}", answer.text);
    answer.json()
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts Step On's answer to the seed tutorial's app (Shoe Fly Shoe, scope `step_counts`)
/// reading `user`'s step counts: the user, and the identity headers the upstream received.
pub fn assert_step_counts_for(body: &Value, user: &str, consumer_id: &str, client_id: &str) {
    assert_eq!(body["user"], user, "{body}");
    let upstream = &body["headers"];
    assert_eq!(upstream["x-consumer-id"], consumer_id, "{upstream}");
    assert_eq!(
        upstream["x-consumer-username"], "shoe-fly-shoe",
        "{upstream}"
    );
    assert_eq!(upstream["x-authenticated-userid"], user, "{upstream}");
    assert_eq!(
        upstream["x-authenticated-scope"], "step_counts",
        "{upstream}"
    );
    assert_eq!(upstream["x-credential-identifier"], client_id, "{upstream}");
    assert_eq!(
        body["stepcounts"].as_array().map(Vec::len),
        Some(7),
        "{body}"
    );
}
