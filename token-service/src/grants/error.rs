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
    /// RFC 6749 §4.1.2.1: the server is overloaded (here: too many client secrets waiting for
    /// PBKDF2); answered 503 with `Retry-After`.
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// Every code, in declaration order (so `code as usize` indexes it).
    pub const ALL: [ErrorCode; 13] = [
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
        ErrorCode::TemporarilyUnavailable,
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
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
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
    /// The request was refused for now, not judged (an overloaded server, a client over its
    /// limit of failed authentications): seconds after which to try again (`Retry-After`).
    pub retry_after_s: Option<u64>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
            challenge_basic: false,
            retry_after_s: None,
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
            retry_after_s: None,
        }
    }

    /// `invalid_client` without looking at the secret: the client failed too many
    /// authentications lately (an online guess of its secret). Answered 429.
    pub fn too_many_failed_authentications(retry_after_s: u64, from_header: bool) -> Self {
        OAuthError {
            code: ErrorCode::InvalidClient,
            description: format!(
                "Too many failed client authentications; retry in {retry_after_s} s"
            ),
            challenge_basic: from_header,
            retry_after_s: Some(retry_after_s),
        }
    }

    /// Too many client secrets are waiting for PBKDF2 already: refused at once rather than
    /// queued (answered 503, like the filter's own `temporarily_unavailable`).
    pub fn secret_checks_overloaded() -> Self {
        OAuthError {
            retry_after_s: Some(1),
            ..Self::new(
                ErrorCode::TemporarilyUnavailable,
                "Too many client authentications in progress; retry shortly",
            )
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

    /// The database cannot be reached: fail closed with 503, as the filter does when it
    /// cannot reach the token-service, and let the client retry.
    pub fn database_unavailable() -> Self {
        OAuthError {
            retry_after_s: Some(1),
            ..Self::new(
                ErrorCode::TemporarilyUnavailable,
                "The service is temporarily unavailable; retry shortly",
            )
        }
    }

    /// What a storage failure answers: 503 when the database cannot be reached, else 500.
    pub fn from_storage(e: &crate::store::StoreError) -> Self {
        if e.is_unavailable() {
            Self::database_unavailable()
        } else {
            Self::server_error()
        }
    }

    /// What a grant's failure tells the client: an unreachable database (directly, or under
    /// the signing keys) is a retryable 503, anything else a `server_error`.
    pub fn from_failure(e: &GrantFailure) -> Self {
        match e {
            GrantFailure::Store(e) | GrantFailure::Signing(crate::jwt::SigningError::Store(e)) => {
                Self::from_storage(e)
            }
            GrantFailure::Signing(_) => Self::server_error(),
        }
    }

    /// The `{"error", "error_description"}` members, for JSON bodies and redirect URIs alike.
    pub fn to_params(&self) -> Vec<(String, Value)> {
        vec![
            ("error".to_string(), json!(self.code.as_str())),
            ("error_description".to_string(), json!(self.description)),
        ]
    }
}

/// Why a grant could not answer at all (as opposed to refusing with an [`OAuthError`]): the
/// database, or signing a JWT. Either is the server's fault: `oauth` answers `server_error`.
#[derive(Debug, thiserror::Error)]
pub enum GrantFailure {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Signing(#[from] crate::jwt::SigningError),
}
