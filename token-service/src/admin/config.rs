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

#[cfg(test)]
mod tests {
    use crate::app::AppState;
    use crate::store::testing::{on_both_backends, Backend, TestDb};
    use crate::store::Store;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    /// The example with literal secrets (the process environment is shared by every test).
    fn example() -> String {
        include_str!("../../../examples/step-on.kong.yml")
            .replace("\"{vault://env/step-on-provision-key}\"", "pk")
            .replace("\"{vault://env/shoe-fly-shoe-secret}\"", "secret")
    }

    async fn admin(backend: Backend) -> Option<(TestDb, Store, axum::Router)> {
        let db = TestDb::new(backend).await?;
        let store = db.open().await;
        let router = super::super::router(AppState::new(store.clone(), None));
        Some((db, store, router))
    }

    async fn post(
        router: &axum::Router,
        uri: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let request = Request::post(uri)
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// What `curl -F config=@kong.yml` sends.
    fn multipart(file: &str) -> Vec<u8> {
        format!(
            "--XX\r\nContent-Disposition: form-data; name=\"config\"; filename=\"kong.yml\"\r\nContent-Type: application/octet-stream\r\n\r\n{file}\r\n--XX--\r\n"
        )
        .into_bytes()
    }

    async fn consumers(store: &Store) -> usize {
        store
            .read(|repo| repo.list_consumers(0, 1000))
            .await
            .expect("read")
            .data
            .len()
    }

    async fn a_multipart_file_is_synced(backend: Backend) {
        let Some((_db, store, router)) = admin(backend).await else {
            return;
        };
        let form = "multipart/form-data; boundary=XX";
        let (status, body) = post(&router, "/config", form, multipart(&example())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["summary"]["create"], 4, "{body}");
        assert_eq!(body["dry_run"], false);
        assert_eq!(consumers(&store).await, 1);
        let (status, body) = post(&router, "/config", form, multipart(&example())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["summary"],
            serde_json::json!({"create": 0, "update": 0, "delete": 0})
        );
    }

    async fn a_dry_run_changes_nothing(backend: Backend) {
        let Some((_db, store, router)) = admin(backend).await else {
            return;
        };
        let yaml = example().into_bytes();
        let (status, body) = post(
            &router,
            "/config?dry_run=true",
            "application/yaml",
            yaml.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["dry_run"], true);
        assert_eq!(body["created"].as_array().map(Vec::len), Some(4), "{body}");
        assert_eq!(consumers(&store).await, 0, "nothing applied");
        let (status, _) = post(&router, "/config?dry_run=maybe", "application/yaml", yaml).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    async fn a_bad_file_is_refused_naming_the_field(backend: Backend) {
        let Some((_db, store, router)) = admin(backend).await else {
            return;
        };
        let bad = example().replace(
            "client_id: shoe-fly-shoe",
            "client_id: shoe-fly-shoe\n        colour: red",
        );
        let (status, body) = post(&router, "/config", "application/yaml", bad.into_bytes()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], 14);
        assert_eq!(body["name"], "invalid declarative configuration");
        assert_eq!(
            body["fields"]["consumers[0].oauth2_credentials[0].colour"], "unknown field",
            "{body}"
        );
        assert_eq!(
            body["flattened_errors"][0]["entity_type"], "oauth2_credential",
            "{body}"
        );
        assert_eq!(consumers(&store).await, 0, "nothing applied");
        let json = br#"{"_format_version": "3.0", "consumers": [{"username": 7}]}"#.to_vec();
        let (status, body) = post(&router, "/config", "application/json", json).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["fields"]["consumers[0].username"], "expected a string",
            "{body}"
        );
        let (status, _) = post(&router, "/config", "text/plain", b"x".to_vec()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let no_field =
            b"--XX\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--XX--\r\n"
                .to_vec();
        let (status, body) = post(
            &router,
            "/config",
            "multipart/form-data; boundary=XX",
            no_field,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["fields"]["config"], "required field missing", "{body}");
    }

    on_both_backends!(
        a_multipart_file_is_synced,
        a_dry_run_changes_nothing,
        a_bad_file_is_refused_naming_the_field,
    );
}
