//! The entities the token-service keeps, as the rest of the program sees them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Consumer {
    pub id: String,
    pub created_at: i64,
    pub username: Option<String>,
    pub custom_id: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Service {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: Option<String>,
    pub url: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PkceMode {
    None,
    Lax,
    Strict,
}

/// What the grants issue as access tokens (docs/jwt-access-tokens.md §1).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessTokenFormat {
    /// Kong's random strings, looked up by the filter on a cache miss.
    #[default]
    Opaque,
    /// RFC 9068 JWTs the filter verifies itself.
    Jwt,
}

/// Kong's `oauth2` plugin configuration, with Kong's defaults, and this project's JWT
/// settings (docs/jwt-access-tokens.md §1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct OAuth2Config {
    pub scopes: Option<Vec<String>>,
    pub mandatory_scope: bool,
    pub provision_key: String,
    pub token_expiration: i64,
    pub enable_authorization_code: bool,
    pub enable_implicit_grant: bool,
    pub enable_client_credentials: bool,
    pub enable_password_grant: bool,
    pub hide_credentials: bool,
    pub accept_http_if_already_terminated: bool,
    pub anonymous: Option<String>,
    pub global_credentials: bool,
    pub auth_header_name: String,
    pub refresh_token_ttl: i64,
    pub reuse_refresh_token: bool,
    pub pkce: PkceMode,
    pub realm: Option<String>,
    pub access_token_format: AccessTokenFormat,
    /// The request header in which the filter forwards a signed identity JWT (lower case).
    pub identity_jwt_header: Option<String>,
    /// Whether the filter sets Kong's `X-Consumer-*` and `X-Authenticated-*` headers.
    pub identity_headers: bool,
}

impl Default for OAuth2Config {
    fn default() -> Self {
        OAuth2Config {
            scopes: None,
            mandatory_scope: false,
            provision_key: String::new(),
            token_expiration: 7200,
            enable_authorization_code: false,
            enable_implicit_grant: false,
            enable_client_credentials: false,
            enable_password_grant: false,
            hide_credentials: false,
            accept_http_if_already_terminated: false,
            anonymous: None,
            global_credentials: false,
            auth_header_name: "authorization".to_string(),
            refresh_token_ttl: 1_209_600,
            reuse_refresh_token: false,
            pkce: PkceMode::Lax,
            realm: Some("service".to_string()),
            access_token_format: AccessTokenFormat::Opaque,
            identity_jwt_header: None,
            identity_headers: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Plugin {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: String,
    pub service_id: Option<String>,
    pub enabled: bool,
    pub config: OAuth2Config,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    Confidential,
    Public,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Confidential => "confidential",
            ClientType::Public => "public",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    pub id: String,
    pub created_at: i64,
    pub consumer_id: String,
    pub name: String,
    pub client_id: String,
    /// Plaintext, or the hashed form when `hash_secret`.
    pub client_secret: String,
    pub hash_secret: bool,
    pub redirect_uris: Option<Vec<String>>,
    pub client_type: ClientType,
    pub tags: Option<Vec<String>>,
}

/// A token row. The access and refresh tokens themselves are never stored, only digests.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: String,
    pub created_at: i64,
    pub credential_id: String,
    pub service_id: Option<String>,
    pub token_type: String,
    pub expires_in: i64,
    pub access_token_hash: String,
    pub refresh_token_hash: Option<String>,
    pub authenticated_userid: Option<String>,
    pub scope: Option<String>,
    /// When the whole row (and so the refresh token) disappears; `None` keeps it forever.
    pub ttl_at: Option<i64>,
    /// The grant this token descends from: a reused code or refresh token revokes it all.
    pub family_id: String,
    /// For a JWT access token, its `exp` claim: once the row changes or goes, the JWT is
    /// distrusted until then (docs/jwt-access-tokens.md §4). `None` for an opaque token.
    pub jwt_exp: Option<i64>,
}

impl Token {
    pub fn lifetime(&self) -> Lifetime {
        Lifetime {
            created_at: self.created_at,
            expires_in: self.expires_in,
            ttl_at: self.ttl_at,
        }
    }

    pub fn access_expired(&self, now: i64) -> bool {
        self.lifetime().access_expired(now)
    }

    pub fn row_expired(&self, now: i64) -> bool {
        self.lifetime().row_expired(now)
    }

    pub fn access_expires_at(&self) -> Option<i64> {
        self.lifetime().access_expires_at()
    }
}

/// When a token stops being good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub created_at: i64,
    pub expires_in: i64,
    /// When the whole row (and so the refresh token) disappears; `None` keeps it forever.
    pub ttl_at: Option<i64>,
}

impl Lifetime {
    /// Kong's rule: valid for exactly `expires_in` seconds (inclusive); `<= 0` never expires.
    pub fn access_expired(&self, now: i64) -> bool {
        self.expires_in > 0 && now.saturating_sub(self.created_at) > self.expires_in
    }

    pub fn row_expired(&self, now: i64) -> bool {
        self.ttl_at.is_some_and(|at| at < now)
    }

    /// Stored rows may predate the admin API's bounds, so the sum saturates (a lifetime too
    /// long to represent ends at the end of time) instead of overflowing.
    pub fn access_expires_at(&self) -> Option<i64> {
        let by_expiry = (self.expires_in > 0).then(|| later(self.created_at, self.expires_in));
        match (by_expiry, self.ttl_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationCode {
    pub id: String,
    pub created_at: i64,
    pub code_hash: String,
    pub credential_id: String,
    pub service_id: Option<String>,
    pub plugin_id: Option<String>,
    pub authenticated_userid: Option<String>,
    pub scope: Option<String>,
    pub challenge: Option<String>,
    pub challenge_method: Option<String>,
    pub expires_at: i64,
    /// Set once the code was exchanged; a second exchange revokes what the first produced.
    pub used_at: Option<i64>,
}

/// The longest `client_id` or service name: the admin API stores none longer, so a longer one
/// in a request is unknown without a look-up (and never remembered by the in-memory index).
pub const MAX_IDENTIFIER_BYTES: usize = 256;

/// The longest access token, refresh token or code: generated ones are far shorter, operators
/// may set at most this many characters, so a longer one is invalid without a look-up.
pub const MAX_TOKEN_BYTES: usize = 512;

/// The longest token a client may present (introspection, revocation, the filter's check,
/// the admin API's look-up by token): a JWT access token (docs/jwt-access-tokens.md §5, the
/// filter's own bound) is about 1 KB. A longer one is unknown without a look-up.
pub const MAX_PRESENTED_TOKEN_BYTES: usize = 8192;

/// The digest a presented token is looked up by; `None` for one longer than any token.
pub fn presented_token_digest(token: &str) -> Option<String> {
    (token.len() <= MAX_PRESENTED_TOKEN_BYTES).then(|| crate::secrets::token_digest(token))
}

/// The longest lifetime the admin API accepts (`token_expiration`, `refresh_token_ttl`, a
/// token's `expires_in`), in seconds: Kong's bound of `refresh_token_ttl`, about three years.
pub const MAX_LIFETIME_S: i64 = 100_000_000;

/// `at + seconds`, saturating: every lifetime added to a time goes through here, so stored
/// or computed values out of range can never overflow (a panic, or a time in the past).
pub fn later(at: i64, seconds: i64) -> i64 {
    at.saturating_add(seconds)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(created_at: i64, expires_in: i64, ttl_at: Option<i64>) -> Token {
        Token {
            id: new_id(),
            created_at,
            credential_id: new_id(),
            service_id: None,
            token_type: "bearer".into(),
            expires_in,
            access_token_hash: String::new(),
            refresh_token_hash: None,
            authenticated_userid: None,
            scope: None,
            ttl_at,
            family_id: new_id(),
            jwt_exp: None,
        }
    }

    #[test]
    fn access_tokens_live_exactly_expires_in_seconds() {
        let t = token(100, 5, None);
        assert!(!t.access_expired(105));
        assert!(t.access_expired(106));
        assert_eq!(t.access_expires_at(), Some(105));
    }

    #[test]
    fn zero_expiry_never_expires() {
        let t = token(100, 0, None);
        assert!(!t.access_expired(i64::MAX / 2));
        assert_eq!(t.access_expires_at(), None);
    }

    #[test]
    fn lifetimes_out_of_range_saturate_instead_of_overflowing() {
        let t = token(now(), i64::MAX, None);
        assert_eq!(t.access_expires_at(), Some(i64::MAX));
        assert!(!t.access_expired(now()));
        let t = token(i64::MIN, 5, None);
        assert!(t.access_expired(now()), "created at the dawn of time");
        let t = token(i64::MAX, 5, Some(i64::MAX));
        assert!(!t.access_expired(i64::MIN));
        assert_eq!(t.access_expires_at(), Some(i64::MAX));
        assert_eq!(later(i64::MAX - 1, MAX_LIFETIME_S), i64::MAX);
    }

    #[test]
    fn row_ttl_caps_access_expiry() {
        let t = token(100, 50, Some(120));
        assert_eq!(t.access_expires_at(), Some(120));
        assert!(t.row_expired(121));
    }
}
