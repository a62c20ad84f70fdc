//! OAuth answers to HTTP, in one place: statuses, `Cache-Control: no-store`/`Pragma: no-cache`
//! on everything, the Basic challenge on header-authenticated client failures, and the Bearer
//! challenge on 405s. Every error answer is tagged with its [`ErrorCode`] (a response
//! extension, never sent) for the endpoint to count.

use crate::grants::authorize::Outcome as AuthorizeOutcome;
use crate::grants::error::{ErrorCode, OAuthError};
use crate::grants::token::Outcome as TokenOutcome;
use crate::params::ParamsError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

pub fn json_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn error_body(error: &OAuthError, state: Option<Value>) -> Value {
    let mut body: Map<String, Value> = error.to_params().into_iter().collect();
    if let Some(state) = state {
        body.insert("state".into(), state);
    }
    Value::Object(body)
}

/// Marks `response` as carrying the OAuth error `code` (see [`error_code`]).
fn tagged(mut response: Response, code: ErrorCode) -> Response {
    response.extensions_mut().insert(code);
    response
}

/// The OAuth error an answer of this module carries, if any: in its JSON body or inside its
/// redirect URI.
pub fn error_code(response: &Response) -> Option<ErrorCode> {
    response.extensions().get::<ErrorCode>().copied()
}

pub fn oauth_error(error: OAuthError, state: Option<Value>) -> Response {
    let status = match error.code {
        ErrorCode::InvalidClient if error.retry_after_s.is_some() => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InvalidClient if error.challenge_basic => StatusCode::UNAUTHORIZED,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InvalidMethod => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = json_response(status, error_body(&error, state));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"OAuth2.0\""),
        );
    }
    if let Some(seconds) = error.retry_after_s {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    tagged(response, error.code)
}

/// `Bearer realm="r", error="...", error_description="..."` (RFC 6750 §3; realm first).
pub fn bearer_challenge(realm: Option<&str>, error: Option<&OAuthError>) -> String {
    let mut params = Vec::new();
    if let Some(realm) = realm.filter(|r| !r.is_empty()) {
        params.push(format!("realm=\"{realm}\""));
    }
    if let Some(e) = error {
        params.push(format!("error=\"{}\"", e.code.as_str()));
        params.push(format!("error_description=\"{}\"", e.description));
    }
    if params.is_empty() {
        "Bearer".to_string()
    } else {
        format!("Bearer {}", params.join(", "))
    }
}

pub fn method_not_allowed(error: OAuthError, realm: Option<String>) -> Response {
    let challenge = bearer_challenge(realm.as_deref(), Some(&error));
    let mut response = oauth_error(error, None);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

pub fn authorize(outcome: AuthorizeOutcome, state: Option<Value>) -> Response {
    match outcome {
        AuthorizeOutcome::Redirect { error: None, uri } => {
            json_response(StatusCode::OK, json!({ "redirect_uri": uri }))
        }
        AuthorizeOutcome::Redirect {
            error: Some(code),
            uri,
        } => tagged(
            json_response(StatusCode::BAD_REQUEST, json!({ "redirect_uri": uri })),
            code,
        ),
        AuthorizeOutcome::Error(e) => oauth_error(e, state),
    }
}

pub fn token(outcome: TokenOutcome, state: Option<Value>) -> Response {
    match outcome {
        TokenOutcome::Issued(mut body) => {
            if let Some(state) = state {
                body.insert("state".into(), state);
            }
            json_response(StatusCode::OK, Value::Object(body))
        }
        TokenOutcome::Error(e) => oauth_error(e, state),
    }
}

pub fn bad_body(error: ParamsError) -> Response {
    let status = match error {
        ParamsError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = json!({"error": "invalid_request", "error_description": error.to_string()});
    tagged(json_response(status, body), ErrorCode::InvalidRequest)
}

pub fn not_found() -> Response {
    let body = json!({"error": "invalid_request", "error_description": "Not found"});
    tagged(
        json_response(StatusCode::NOT_FOUND, body),
        ErrorCode::InvalidRequest,
    )
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceLookupError {
    #[error("unknown service")]
    UnknownService,
    #[error("the service has no enabled oauth2 plugin")]
    NoPlugin,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IntoResponse for ServiceLookupError {
    fn into_response(self) -> Response {
        match self {
            ServiceLookupError::Store(e) => {
                tracing::error!(error = %e, "service look-up failed");
                oauth_error(OAuthError::from_storage(&e), None)
            }
            other => tagged(
                json_response(
                    StatusCode::NOT_FOUND,
                    json!({"error": "invalid_request", "error_description": other.to_string()}),
                ),
                ErrorCode::InvalidRequest,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_database_answers_503_temporarily_unavailable_not_500() {
        let unavailable = StoreError::Unavailable("connection refused".into());
        let response = oauth_error(OAuthError::from_storage(&unavailable), None);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let bug = StoreError::Task("a bug".into());
        let response = oauth_error(OAuthError::from_storage(&bug), None);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn bearer_challenges_put_realm_first() {
        let e = OAuthError::new(
            ErrorCode::InvalidMethod,
            "The HTTP method GET is invalid for the token endpoint",
        );
        assert_eq!(
            bearer_challenge(Some("test-oauth2"), Some(&e)),
            "Bearer realm=\"test-oauth2\", error=\"invalid_method\", error_description=\"The HTTP method GET is invalid for the token endpoint\""
        );
        assert_eq!(bearer_challenge(None, None), "Bearer");
        assert_eq!(
            bearer_challenge(Some("service"), None),
            "Bearer realm=\"service\""
        );
    }
}
