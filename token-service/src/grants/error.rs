//! OAuth 2.0 errors: the variants are the RFC 6749 error codes (plus Kong's own), each with
//! the exact description a client sees. Mapping to HTTP happens once, in `oauth::response`.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    InvalidProvisionKey,
    InvalidAuthenticatedUserid,
    InvalidMethod,
    ServerError,
}

impl ErrorCode {
    /// Every code, in declaration order (so `code as usize` indexes it).
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::UnsupportedResponseType,
        ErrorCode::InvalidScope,
        ErrorCode::AccessDenied,
        ErrorCode::InvalidProvisionKey,
        ErrorCode::InvalidAuthenticatedUserid,
        ErrorCode::InvalidMethod,
        ErrorCode::ServerError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::InvalidProvisionKey => "invalid_provision_key",
            ErrorCode::InvalidAuthenticatedUserid => "invalid_authenticated_userid",
            ErrorCode::InvalidMethod => "invalid_method",
            ErrorCode::ServerError => "server_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
    /// Client authentication failed with credentials from the Authorization header:
    /// RFC 6749 §5.2 (and Kong) answer 401 with a Basic challenge.
    pub challenge_basic: bool,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            challenge_basic: false,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_client(from_header: bool) -> Self {
        OAuthError {
            code: ErrorCode::InvalidClient,
            description: "Invalid client authentication".into(),
            challenge_basic: from_header,
        }
    }

    pub fn invalid_code() -> Self {
        Self::invalid_request("Invalid code")
    }

    pub fn https_required() -> Self {
        Self::new(ErrorCode::AccessDenied, "You must use HTTPS")
    }

    pub fn invalid_provision_key() -> Self {
        Self::new(ErrorCode::InvalidProvisionKey, "Invalid provision_key")
    }

    pub fn missing_authenticated_userid() -> Self {
        Self::new(
            ErrorCode::InvalidAuthenticatedUserid,
            "Missing authenticated_userid parameter",
        )
    }

    pub fn invalid_redirect_uri() -> Self {
        Self::invalid_request(
            "Invalid redirect_uri that does not match with any redirect_uri created with the application",
        )
    }

    pub fn server_error() -> Self {
        Self::new(ErrorCode::ServerError, "An unexpected error occurred")
    }

    /// The `{"error", "error_description"}` members, for JSON bodies and redirect URIs alike.
    pub fn to_params(&self) -> Vec<(String, Value)> {
        vec![
            ("error".to_string(), json!(self.code.as_str())),
            ("error_description".to_string(), json!(self.description)),
        ]
    }
}
