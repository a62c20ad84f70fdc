//! Admin API errors, mapped to Kong's statuses and bodies in one place; storage internals are
//! logged, never shown.

use crate::params::ParamsError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Not found")]
    NotFound,
    #[error("schema violation")]
    Schema(Map<String, Value>),
    #[error("unique constraint violation on {0}")]
    Conflict(String),
    #[error("{0}")]
    Body(#[from] ParamsError),
    #[error("Invalid admin key")]
    Unauthorized,
    #[error("storage failure: {0}")]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(field) => AdminError::Conflict(field),
            StoreError::NotFound => AdminError::NotFound,
            StoreError::MissingReference => AdminError::Schema(fields([(
                "@entity",
                json!("a referenced entity does not exist"),
            )])),
            other => AdminError::Store(other),
        }
    }
}

pub fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Kong's one-line summary: `schema violation (name: required field missing; ...)`.
fn summary(fields: &Map<String, Value>) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}: {s}"),
            Value::Object(inner) => summary(inner)
                .replace("schema violation (", &format!("{k}."))
                .trim_end_matches(')')
                .to_string(),
            other => format!("{k}: {other}"),
        })
        .collect();
    format!("schema violation ({})", parts.join("; "))
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            AdminError::NotFound => (StatusCode::NOT_FOUND, json!({"message": "Not found"})),
            AdminError::Schema(f) => (
                StatusCode::BAD_REQUEST,
                json!({"code": 2, "name": "schema violation", "message": summary(f), "fields": f}),
            ),
            AdminError::Conflict(field) => (
                StatusCode::CONFLICT,
                json!({
                    "code": 5,
                    "name": "unique constraint violation",
                    "message": format!("UNIQUE violation detected on '{field}'"),
                    "fields": {field: "already exists"},
                }),
            ),
            AdminError::Body(ParamsError::TooLarge) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"message": ParamsError::TooLarge.to_string()}),
            ),
            AdminError::Body(e) => (
                StatusCode::BAD_REQUEST,
                json!({"name": "bad request", "message": e.to_string()}),
            ),
            AdminError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"message": "Invalid admin key"}),
            ),
            // Not the client's fault, so a 5xx; but named, so the operator can repair or
            // delete the row (deleting never reads it).
            AdminError::Store(StoreError::Corrupt(what)) => {
                tracing::error!(error = %what, "stored data is corrupt");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"message": format!("Stored data is corrupt: {what}")}),
                )
            }
            AdminError::Store(e) => {
                tracing::error!(error = %e, "admin request failed on storage");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"message": "An unexpected error occurred"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}

pub type AdminResult<T> = Result<T, AdminError>;
