//! Admin API errors, mapped to Kong's statuses and bodies in one place; storage internals are
//! logged, never shown.

use crate::declarative::{DeclarativeError, Problem};
use crate::jwt::SigningError;
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
    #[error("{0}")]
    Declarative(DeclarativeError),
    /// A request the signing keys' rules refuse (retiring the only active key).
    #[error("{0}")]
    KeyState(String),
    /// Making or reading a signing key failed (not the client's fault).
    #[error("{0}")]
    Signing(SigningError),
}

impl From<SigningError> for AdminError {
    fn from(e: SigningError) -> Self {
        match e {
            SigningError::Store(e) => AdminError::from(e),
            SigningError::UnknownKey(_) => AdminError::NotFound,
            e @ SigningError::OnlyActiveKey(_) => AdminError::KeyState(e.to_string()),
            other => AdminError::Signing(other),
        }
    }
}

impl From<DeclarativeError> for AdminError {
    fn from(e: DeclarativeError) -> Self {
        match e {
            DeclarativeError::Store(e) => AdminError::from(e),
            other => AdminError::Declarative(other),
        }
    }
}

/// Kong's answer to an invalid declarative file (code 14): `fields` maps each field path to
/// its message; `flattened_errors` groups them by entity, as Kong's `?flatten_errors=1` does.
fn invalid_config(problems: &[Problem]) -> Value {
    let fields: Map<String, Value> = problems
        .iter()
        .map(|p| (p.path(), json!(p.message)))
        .collect();
    let mut entities: Vec<(&str, Vec<&Problem>)> = Vec::new();
    for p in problems {
        match entities.iter_mut().find(|(entity, _)| *entity == p.entity) {
            Some((_, list)) => list.push(p),
            None => entities.push((&p.entity, vec![p])),
        }
    }
    let flattened: Vec<Value> = entities
        .iter()
        .map(|(entity, list)| {
            let errors: Vec<Value> = list
                .iter()
                .map(|p| {
                    let kind = if p.field.is_empty() {
                        "entity"
                    } else {
                        "field"
                    };
                    json!({"field": p.field, "message": p.message, "type": kind})
                })
                .collect();
            json!({
                "entity_path": entity,
                "entity_type": list[0].entity_type,
                "entity_name": list[0].name,
                "errors": errors,
            })
        })
        .collect();
    let summary: Vec<String> = problems.iter().map(Problem::to_string).collect();
    json!({
        "code": 14,
        "name": "invalid declarative configuration",
        "message": format!("declarative config is invalid: {}", summary.join("; ")),
        "fields": fields,
        "flattened_errors": flattened,
    })
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
            AdminError::Declarative(DeclarativeError::Invalid(problems)) => {
                (StatusCode::BAD_REQUEST, invalid_config(problems))
            }
            AdminError::Declarative(e @ DeclarativeError::TooLarge) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"message": e.to_string()}),
            ),
            AdminError::Declarative(e @ DeclarativeError::UnsupportedMediaType) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"message": e.to_string()}),
            ),
            AdminError::Declarative(DeclarativeError::Store(e)) => {
                tracing::error!(error = %e, "declarative sync failed on storage");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"message": "An unexpected error occurred"}),
                )
            }
            AdminError::KeyState(message) => (StatusCode::CONFLICT, json!({"message": message})),
            AdminError::Signing(e) => {
                tracing::error!(error = %e, "a signing key operation failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"message": "An unexpected error occurred"}),
                )
            }
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
            AdminError::Store(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "admin request: the database is unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"message": "The database is unavailable; retry shortly"}),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_database_answers_503_not_500() {
        let unavailable = AdminError::Store(StoreError::Unavailable("refused".into()));
        assert_eq!(
            unavailable.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let bug = AdminError::Store(StoreError::Task("a bug".into()));
        assert_eq!(
            bug.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
