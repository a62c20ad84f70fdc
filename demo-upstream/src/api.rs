//! The Step On API: step counts for the user the gateway names, and an echo of anything else.
//! The partners' upstream: an echo of everything, with no user data behind it.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

/// `GET /stepcounts` and the echo fallback.
pub fn router() -> Router {
    Router::new()
        .route("/stepcounts", get(step_counts))
        .fallback(any(echo))
}

/// The partners' upstream (`make run`'s second route, `/stepon-partners`): every path echoes,
/// `/stepcounts` too. That route has no plugin, so a client may write any identity header
/// there; nothing on this listener reads one, so it reaches no one's data.
pub fn partners_router() -> Router {
    Router::new().fallback(any(echo))
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&text);
            }
            _ => {
                out.insert(name.as_str().to_string(), Value::String(text));
            }
        }
    }
    Value::Object(out)
}

/// Deterministic demo data: a week of steps, derived from the user's name.
fn steps_of(user: &str) -> Vec<Value> {
    let seed = user.bytes().fold(7u32, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u32::from(b))
    });
    let days = [
        "2026-11-16",
        "2026-11-17",
        "2026-11-18",
        "2026-11-19",
        "2026-11-20",
        "2026-11-21",
        "2026-11-22",
    ];
    days.iter()
        .enumerate()
        .map(|(i, day)| json!({"date": day, "steps": 4000 + (seed.wrapping_mul(i as u32 + 1) % 9000)}))
        .collect()
}

/// Whose step counts a request may read: the user the gateway authenticated, or, where no
/// plugin spoke (no `X-Consumer-ID`), the one `mock-logged-in-as` names. Behind the plugin a
/// client's own `mock-logged-in-as` is ignored: a client-credentials token authenticates a
/// consumer and no user, and must not read whichever user the client names.
fn user_of(headers: &HeaderMap) -> Result<&str, &'static str> {
    let named = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|u| !u.is_empty())
    };
    if let Some(user) = named("x-authenticated-userid") {
        return Ok(user);
    }
    if headers.contains_key("x-consumer-id") {
        return Err(
            "The gateway authenticated a consumer but no user (no X-Authenticated-Userid): \
                    mock-logged-in-as is ignored behind the oauth2 plugin",
        );
    }
    named("mock-logged-in-as")
        .ok_or("Who are you? No X-Authenticated-Userid or mock-logged-in-as header")
}

async fn step_counts(headers: HeaderMap) -> Response {
    match user_of(&headers) {
        Ok(user) => Json(
            json!({"user": user, "stepcounts": steps_of(user), "headers": headers_json(&headers)}),
        )
        .into_response(),
        Err(why) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": why, "headers": headers_json(&headers)})),
        )
            .into_response(),
    }
}

fn parse_pairs(raw: &[u8]) -> Value {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(raw) {
        map.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    Value::Object(map)
}

async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let params = if content_type.starts_with("application/x-www-form-urlencoded") {
        parse_pairs(&body)
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let raw_query = parts.uri.query().unwrap_or("");
    Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parse_pairs(raw_query.as_bytes()),
        "raw_query": raw_query,
        "body": String::from_utf8_lossy(&body),
        "params": params,
        "headers": headers_json(&parts.headers),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// `GET path` with `headers` through `app`: the status and the JSON body.
    pub async fn get_json(
        app: Router,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn the_gateways_user_is_the_one_whose_steps_are_shown() {
        let headers = [
            ("x-consumer-id", "c1"),
            ("x-authenticated-userid", "lois"),
            ("mock-logged-in-as", "clark"),
        ];
        let (status, json) = get_json(router(), "/stepcounts", &headers).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["user"], "lois");
        assert_eq!(json["stepcounts"], json!(steps_of("lois")));
    }

    #[tokio::test]
    async fn mock_logged_in_as_names_the_user_where_no_plugin_is_on() {
        let headers = [("mock-logged-in-as", "clark")];
        let (status, json) = get_json(router(), "/stepcounts", &headers).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["user"], "clark");
    }

    /// A client-credentials token authenticates a consumer and no user: the plugin was on, so
    /// a client's `mock-logged-in-as` must not pick whose steps it reads.
    #[tokio::test]
    async fn mock_logged_in_as_is_ignored_once_a_consumer_was_authenticated() {
        let headers = [("x-consumer-id", "c1"), ("mock-logged-in-as", "clark")];
        let (status, json) = get_json(router(), "/stepcounts", &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
        assert!(json["stepcounts"].is_null(), "{json}");
        assert!(json["user"].is_null(), "{json}");
        let message = json["message"].as_str().unwrap_or_default();
        assert!(message.contains("X-Authenticated-Userid"), "{message}");
        // Even an empty consumer id means the gateway spoke.
        let headers = [("x-consumer-id", ""), ("mock-logged-in-as", "clark")];
        let (status, _) = get_json(router(), "/stepcounts", &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_partners_upstream_echoes_even_stepcounts_and_reads_no_identity() {
        let headers = [
            ("x-authenticated-userid", "clark"),
            ("mock-logged-in-as", "clark"),
        ];
        let (status, json) = get_json(partners_router(), "/stepcounts", &headers).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["path"], "/stepcounts");
        assert_eq!(json["method"], "GET");
        assert!(json["stepcounts"].is_null(), "{json}");
        assert!(json["user"].is_null(), "{json}");
        assert_eq!(json["headers"]["x-authenticated-userid"], "clark");
    }

    #[tokio::test]
    async fn no_user_at_all_is_401() {
        let (status, json) = get_json(router(), "/stepcounts", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
        assert!(json["headers"].is_object(), "{json}");
    }
}
