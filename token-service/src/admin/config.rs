//! `POST /config`: a declarative file (Kong's DB-less `/config`), synced as decK syncs:
//! JSON, YAML (`application/yaml`), or the multipart field `config` (`curl -F config=@kong.yml`).
//! `?dry_run=true` answers the diff and changes nothing.

use super::error::{fields, AdminError, AdminResult};
use crate::app::AppState;
use crate::declarative::{self, DeclarativeError, Format, MAX_FILE_BYTES};
use crate::params::{self, Nesting};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new().route("/config", post(apply))
}

async fn apply(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let dry_run = dry_run(uri.query().unwrap_or(""))?;
    let (file, format) = read_file(&headers, body).await?;
    let env = |name: &str| std::env::var(name).ok();
    let desired = declarative::parse(&file, format, &env)?;
    let diff = if dry_run {
        declarative::diff(&state.store, desired).await?
    } else {
        declarative::sync(&state.store, desired).await?
    };
    if !dry_run && !diff.is_empty() {
        tracing::info!(
            changes = diff.changes.len(),
            "declarative configuration applied"
        );
    }
    Ok(Json(diff.to_json(dry_run)))
}

/// `?dry_run=true|false` (other parameters are ignored, as in Kong).
fn dry_run(query: &str) -> AdminResult<bool> {
    let mut answer = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "dry_run" {
            continue;
        }
        let parsed = match value.as_ref() {
            "true" | "1" | "" => true,
            "false" | "0" => false,
            _ => return Err(schema("dry_run", "expected a boolean")),
        };
        if answer.replace(parsed).is_some() {
            return Err(schema("dry_run", "expected a single value"));
        }
    }
    Ok(answer.unwrap_or(false))
}

fn schema(field: &str, message: &str) -> AdminError {
    AdminError::Schema(fields([(field, json!(message))]))
}

/// The file and how it is written, from the body as its content type says.
async fn read_file(headers: &HeaderMap, body: Body) -> AdminResult<(Bytes, Format)> {
    let bytes = axum::body::to_bytes(body, MAX_FILE_BYTES)
        .await
        .map_err(|_| DeclarativeError::TooLarge)?;
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let mime = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if params::is_json(content_type) {
        return Ok((bytes, Format::Json));
    }
    if mime.ends_with("/yaml") || mime.ends_with("/x-yaml") || mime.ends_with("+yaml") {
        return Ok((bytes, Format::Yaml));
    }
    if mime == "multipart/form-data" || mime == "application/x-www-form-urlencoded" {
        // A form field's text: YAML, which reads JSON as well.
        let form = params::parse_body(content_type, bytes, Nesting::Flat).await?;
        return match form.get("config") {
            Some(Value::String(file)) => Ok((Bytes::from(file.clone()), Format::Yaml)),
            Some(_) => Err(schema("config", "expected one file")),
            None => Err(schema("config", "required field missing")),
        };
    }
    Err(DeclarativeError::UnsupportedMediaType.into())
}
