//! Shoe Fly Shoe, the tutorial's client app, for the browser path: its home page sends Clark
//! to Step On's authorization page; its `/callback` (the redirect URI registered in tutorial
//! step 4) checks `state`, exchanges the code at the gateway's `/oauth2/token`, reads
//! `/stepcounts` with the access token and shows Clark's step counts.
//!
//! Its client id and secret are read from the admin API (the first OAuth application of the
//! consumer `shoe-fly-shoe`), so `make run` needs no restart after step 4; a real client keeps
//! them in its own configuration (`--client-id`, `--client-secret`).

use crate::gateway::Gateway;
use crate::html::{error_page, escape, page};
use crate::random;
use crate::step_on::{cookie, set_cookie, SameSite};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use std::collections::HashMap;

const APP: &str = "Shoe Fly Shoe";
const STATE_COOKIE: &str = "shoefly_state";

#[derive(clap::Args, Clone)]
pub struct Config {
    /// Where browsers reach Shoe Fly Shoe; its redirect URI is `<client-url>/callback`.
    #[arg(long, env = "DEMO_CLIENT_URL", default_value = "http://localhost:5000")]
    pub client_url: String,
    /// Where browsers reach Step On's authorization page (`<step-on-url>/authorize`).
    #[arg(
        long,
        env = "DEMO_STEP_ON_URL",
        default_value = "http://localhost:3000"
    )]
    pub step_on_url: String,
    /// The consumer whose first OAuth application Shoe Fly Shoe is (tutorial step 4).
    #[arg(long, env = "DEMO_CLIENT_CONSUMER", default_value = "shoe-fly-shoe")]
    pub client_consumer: String,
    /// Shoe Fly Shoe's client_id, instead of reading it from the admin API.
    #[arg(long, env = "DEMO_CLIENT_ID", requires = "client_secret")]
    pub client_id: Option<String>,
    /// Shoe Fly Shoe's client_secret (with `--client-id`).
    #[arg(long, env = "DEMO_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// The scopes Shoe Fly Shoe asks for.
    #[arg(long, env = "DEMO_CLIENT_SCOPE", default_value = "step_counts")]
    pub client_scope: String,
}

#[derive(Clone)]
struct ShoeFly {
    gateway: Gateway,
    config: Config,
}

pub fn router(gateway: Gateway, config: Config) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/callback", get(callback))
        .with_state(ShoeFly { gateway, config })
}

impl ShoeFly {
    fn redirect_uri(&self) -> String {
        format!("{}/callback", self.config.client_url.trim_end_matches('/'))
    }

    /// `(client_id, client_secret)`, or the page that says Shoe Fly Shoe is not registered.
    async fn credentials(&self) -> Result<(String, String), Response> {
        if let (Some(id), Some(secret)) = (&self.config.client_id, &self.config.client_secret) {
            return Ok((id.clone(), secret.clone()));
        }
        match self.gateway.credential_of(&self.config.client_consumer).await {
            Ok(Some(credentials)) => Ok(credentials),
            Ok(None) => Err(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                APP,
                &format!(
                    "Shoe Fly Shoe is not registered yet: the consumer '{}' has no OAuth application (tutorial step 4).",
                    self.config.client_consumer
                ),
            )),
            Err(e) => Err(error_page(StatusCode::BAD_GATEWAY, APP, &e.0)),
        }
    }
}

/// `GET /`: a link to Step On's authorization page, with a fresh `state` kept in a cookie.
async fn home(State(app): State<ShoeFly>) -> Response {
    let (client_id, _) = match app.credentials().await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let state = match random::token() {
        Ok(s) => s,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, APP, &e.to_string()),
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &app.redirect_uri())
        .append_pair("scope", &app.config.client_scope)
        .append_pair("state", &state)
        .finish();
    let href = format!(
        "{}/authorize?{query}",
        app.config.step_on_url.trim_end_matches('/')
    );
    let body = format!(
        "<p>We recommend shoes from how much you walk.</p>\
         <p><a id=\"connect\" href=\"{}\">Connect your Step On account</a></p>",
        escape(&href)
    );
    let mut response = page(StatusCode::OK, APP, "Welcome", &body);
    set_cookie(
        &mut response,
        STATE_COOKIE,
        &state,
        SameSite::Lax,
        Some(600),
    );
    response
}

/// `GET /callback`: where Step On sends Clark back, with a code or an error.
async fn callback(
    State(app): State<ShoeFly>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let expected = cookie(&headers, STATE_COOKIE).filter(|s| !s.is_empty());
    // An answer to a request this browser did not start here (login CSRF) is refused.
    if expected.is_none() || query.get("state") != expected.as_ref() {
        let message =
            "This answer does not belong to an authorization started here (state mismatch).";
        return error_page(StatusCode::BAD_REQUEST, APP, message);
    }
    let mut response = match (query.get("code"), query.get("error")) {
        (_, Some(error)) => refused(error, query.get("error_description")),
        (Some(code), None) => show_step_counts(&app, code).await,
        (None, None) => error_page(StatusCode::BAD_REQUEST, APP, "No code in the answer."),
    };
    set_cookie(&mut response, STATE_COOKIE, "", SameSite::Lax, Some(0));
    response
}

fn refused(error: &str, description: Option<&String>) -> Response {
    let description = description.map_or(String::new(), |d| format!(" ({})", escape(d)));
    let body = format!(
        "<p id=\"refused\">Step On did not let us read your step counts: <code>{}</code>{description}.</p>",
        escape(error)
    );
    page(StatusCode::FORBIDDEN, APP, "No access", &body)
}

/// Code → access token → step counts, all server to server through the gateway.
async fn show_step_counts(app: &ShoeFly, code: &str) -> Response {
    let (client_id, client_secret) = match app.credentials().await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let redirect_uri = app.redirect_uri();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", client_id.as_str()),
        ("client_secret", client_secret.as_str()),
        ("code", code),
        ("redirect_uri", redirect_uri.as_str()),
    ];
    let token = match app.gateway.oauth("token", &form).await {
        Ok(answer) => answer,
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, APP, &e.0),
    };
    let Some(access_token) = token.json["access_token"].as_str() else {
        return gateway_refused("exchanging the code", token.status, &token.json);
    };
    match app.gateway.step_counts(access_token).await {
        Ok(answer) if answer.status.is_success() => step_counts_page(&answer.json),
        Ok(answer) => gateway_refused("reading the step counts", answer.status, &answer.json),
        Err(e) => error_page(StatusCode::BAD_GATEWAY, APP, &e.0),
    }
}

fn gateway_refused(what: &str, status: StatusCode, json: &Value) -> Response {
    let why = json["error_description"]
        .as_str()
        .or(json["error"].as_str())
        .unwrap_or("no reason given");
    let message = format!("The gateway refused {what} ({status}): {why}");
    error_page(StatusCode::BAD_GATEWAY, APP, &message)
}

/// The Step On API's `{"user", "stepcounts": [{"date", "steps"}]}` as a table.
fn step_counts_page(json: &Value) -> Response {
    let user = json["user"].as_str().unwrap_or("someone");
    let rows: String = json["stepcounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|day| {
            format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(day["date"].as_str().unwrap_or("")),
                escape(&day["steps"].to_string())
            )
        })
        .collect();
    let body = format!(
        "<p>Read through Step On, with <span id=\"user\">{user}</span>'s permission.</p>\
         <table id=\"stepcounts\"><tr><th>Date</th><th>Steps</th></tr>{rows}</table>",
        user = escape(user)
    );
    page(StatusCode::OK, APP, &format!("{user}'s step counts"), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_counts_render_as_an_escaped_table() {
        let json = serde_json::json!({
            "user": "<clark>",
            "stepcounts": [{"date": "2026-11-16", "steps": 4321}]
        });
        let response = step_counts_page(&json);
        assert_eq!(response.status(), StatusCode::OK);
        let body = futures_body(response);
        assert!(
            body.contains("<tr><td>2026-11-16</td><td>4321</td></tr>"),
            "{body}"
        );
        assert!(body.contains("&lt;clark&gt;&#39;s step counts"), "{body}");
        assert!(!body.contains("<clark>"), "{body}");
    }

    fn futures_body(response: Response) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
