//! The Step On API: step counts for the user the gateway names, and an echo of anything else.

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

async fn step_counts(headers: HeaderMap) -> Response {
    let user = headers
        .get("x-authenticated-userid")
        .or_else(|| headers.get("mock-logged-in-as"))
        .and_then(|v| v.to_str().ok())
        .filter(|u| !u.is_empty());
    match user {
        Some(user) => Json(json!({"user": user, "stepcounts": steps_of(user), "headers": headers_json(&headers)})).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Who are you? No X-Authenticated-Userid or mock-logged-in-as header", "headers": headers_json(&headers)})),
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
