//! What the token-service tells the filter (docs/gateway-protocol.md §1–2), parsed strictly:
//! anything malformed is an outage, never a pass.

use crate::jwt::PublishedKey;
use serde::Deserialize;
use std::rc::Rc;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConsumerInfo {
    pub id: String,
    pub username: Option<String>,
    pub custom_id: Option<String>,
}

/// The resolved plugin settings the filter enforces.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Settings {
    pub id: String,
    #[serde(default)]
    pub updated_at: i64,
    pub auth_header_name: String,
    pub hide_credentials: bool,
    pub realm: Option<String>,
    pub global_credentials: bool,
    pub anonymous: Option<ConsumerInfo>,
    pub anonymous_error: Option<String>,
    /// What the token-service issues (docs/jwt-access-tokens.md §1). The filter recognises a
    /// JWT by its shape whatever this says (tokens issued before a switch stay valid).
    #[serde(default)]
    pub access_token_format: AccessTokenFormat,
    /// The phantom-token header: where the filter forwards a signed identity, if anywhere.
    #[serde(default)]
    pub identity_jwt_header: Option<String>,
    /// Whether the `X-Consumer-*`, `X-Credential-Identifier`, `X-Authenticated-*` headers are
    /// set (client copies are stripped either way).
    #[serde(default = "yes")]
    pub identity_headers: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessTokenFormat {
    #[default]
    Opaque,
    Jwt,
}

impl Settings {
    /// Settings the filter could not enforce as written are no settings (the answer is an
    /// outage, never a silent default): a phantom-token header that is no lower-case header
    /// name, or `identity_headers: false` with nowhere else for the identity to go.
    fn enforceable(&self) -> bool {
        let header_ok = match self.identity_jwt_header.as_deref() {
            Some(name) => is_header_name(name),
            None => true,
        };
        header_ok && (self.identity_headers || self.identity_jwt_header.is_some())
    }
}

/// A lower-case HTTP header name the filter can write (letters, digits, `-`, `_`).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A JWT the filter must no longer verify locally (contract §4), until its `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Distrusted {
    pub digest: String,
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceInfo {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatePoll {
    pub seq: i64,
    pub reset: bool,
    pub revoked: Vec<String>,
    pub service: Option<ServiceInfo>,
    pub plugin: Option<Settings>,
    /// The token-service's `--issuer` (JWT access tokens; absent from older token-services).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Every published signing key, on every answer.
    #[serde(default)]
    pub keys: Vec<PublishedKey>,
    /// JWTs distrusted since `since` (on a `reset` answer: all of them that have not expired).
    #[serde(default)]
    pub distrusted: Vec<Distrusted>,
    /// The list was too long to carry: every JWT is checked until an answer says `false`.
    #[serde(default)]
    pub distrust_all: bool,
}

/// How the filter stands with its service, after the latest poll. (Made once per state
/// answer, never per request: the size of `On` costs nothing worth a box.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// No answer yet from the token-service: fail closed.
    Unknown,
    /// The token-service does not know the configured service: fail closed.
    UnknownService,
    /// No enabled oauth2 plugin: requests pass untouched.
    Off,
    On(Settings),
}

impl StatePoll {
    pub fn parse(body: &[u8]) -> Option<StatePoll> {
        let poll: StatePoll = serde_json::from_slice(body).ok()?;
        let enforceable = match &poll.plugin {
            Some(settings) => settings.enforceable(),
            None => true,
        };
        enforceable.then_some(poll)
    }

    pub fn protection(&self) -> Protection {
        match (&self.service, &self.plugin) {
            (None, _) => Protection::UnknownService,
            (Some(_), None) => Protection::Off,
            (Some(_), Some(settings)) => Protection::On(settings.clone()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CredentialInfo {
    pub id: String,
    pub client_id: String,
}

/// The answer of a token check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Shared, not copied: the worker's cache hands the same identity to every request of
    /// the token.
    Active(Rc<Identity>),
    Invalid,
    GlobalToken,
}

/// Who a valid token speaks for: the upstream identity headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `None` for tokens of a third-party authorization server (no consumers there).
    pub consumer_id: Option<String>,
    pub consumer_custom_id: Option<String>,
    pub consumer_username: Option<String>,
    pub credential_identifier: Option<String>,
    pub authenticated_userid: Option<String>,
    pub authenticated_scope: Option<String>,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<u64>,
    /// The signed identity forwarded to the upstream under `identity_jwt_header`, if any.
    pub identity_jwt: Option<IdentityJwt>,
}

/// The phantom token (docs/jwt-access-tokens.md §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityJwt {
    /// A JWT access token verified locally is itself the signed statement: forwarded as is.
    AccessToken,
    /// The `identity_jwt` of a check answer.
    Issued(String),
}

#[derive(Deserialize)]
struct CheckAnswer {
    active: bool,
    #[serde(default)]
    reason: Option<String>,
    consumer: Option<ConsumerInfo>,
    credential: Option<CredentialInfo>,
    authenticated_userid: Option<String>,
    scope: Option<String>,
    exp: Option<u64>,
    #[serde(default)]
    identity_jwt: Option<String>,
}

/// How long a verdict carrying an identity JWT may be reused: no longer than the identity
/// JWT's `exp` minus the clock skew, so the upstream never receives an expired one. `None`
/// when the JWT has no readable `exp` (the answer is then unusable).
fn identity_jwt_expiry(jwt: &str) -> Option<u64> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Exp {
        exp: u64,
    }
    let claims = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let exp: Exp = serde_json::from_slice(&bytes).ok()?;
    Some(exp.exp.saturating_sub(crate::jwt::CLOCK_SKEW_S))
}

impl Verdict {
    pub fn parse(body: &[u8]) -> Option<Verdict> {
        let answer: CheckAnswer = serde_json::from_slice(body).ok()?;
        if !answer.active {
            return Some(match answer.reason.as_deref() {
                Some("global_token") => Verdict::GlobalToken,
                _ => Verdict::Invalid,
            });
        }
        let consumer = answer.consumer?;
        let mut expires_at = answer.exp;
        if let Some(jwt) = &answer.identity_jwt {
            let until = identity_jwt_expiry(jwt)?;
            expires_at = Some(expires_at.map_or(until, |exp| exp.min(until)));
        }
        Some(Verdict::Active(Rc::new(Identity {
            consumer_id: Some(consumer.id),
            consumer_custom_id: consumer.custom_id,
            consumer_username: consumer.username,
            credential_identifier: answer.credential.map(|c| c.client_id),
            authenticated_userid: answer.authenticated_userid,
            authenticated_scope: answer.scope,
            expires_at,
            identity_jwt: answer.identity_jwt.map(IdentityJwt::Issued),
        })))
    }
}

/// An RFC 7662 introspection answer from a third-party authorization server.
#[derive(Deserialize)]
struct Introspection {
    active: bool,
    scope: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    sub: Option<String>,
    exp: Option<u64>,
}

impl Verdict {
    /// RFC 7662 §2.2: only `active` is required; the rest maps onto the identity headers.
    pub fn parse_introspection(body: &[u8]) -> Option<Verdict> {
        let answer: Introspection = serde_json::from_slice(body).ok()?;
        if !answer.active {
            return Some(Verdict::Invalid);
        }
        Some(Verdict::Active(Rc::new(Identity {
            consumer_id: None,
            consumer_custom_id: None,
            authenticated_userid: answer.sub.or_else(|| answer.username.clone()),
            consumer_username: answer.username,
            credential_identifier: answer.client_id,
            authenticated_scope: answer.scope,
            expires_at: answer.exp,
            identity_jwt: None,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introspection_answers_map_to_identities() {
        let body = br#"{"active":true,"scope":"read","client_id":"app","username":"clark","sub":"u-1","exp":9,"extra":1}"#;
        let Some(Verdict::Active(i)) = Verdict::parse_introspection(body) else {
            unreachable!("active")
        };
        assert_eq!(
            (i.consumer_id.as_deref(), i.authenticated_userid.as_deref()),
            (None, Some("u-1"))
        );
        assert_eq!(
            (
                i.consumer_username.as_deref(),
                i.credential_identifier.as_deref()
            ),
            (Some("clark"), Some("app"))
        );
        assert_eq!(
            Verdict::parse_introspection(br#"{"active":false}"#),
            Some(Verdict::Invalid)
        );
        assert_eq!(Verdict::parse_introspection(br#"{"scope":"x"}"#), None);
    }

    #[test]
    fn state_without_plugin_turns_protection_off() {
        let s = StatePoll::parse(
            br#"{"seq":3,"reset":true,"revoked":[],"service":{"id":"x","name":"s"},"plugin":null}"#,
        );
        assert_eq!(s.map(|s| s.protection()), Some(Protection::Off));
    }

    #[test]
    fn unknown_service_is_its_own_state() {
        let s = StatePoll::parse(
            br#"{"seq":0,"reset":true,"revoked":[],"service":null,"plugin":null}"#,
        );
        assert_eq!(s.map(|s| s.protection()), Some(Protection::UnknownService));
    }

    #[test]
    fn garbage_is_not_a_state() {
        assert_eq!(StatePoll::parse(b"<html>"), None);
        assert_eq!(StatePoll::parse(br#"{"seq":"x"}"#), None);
    }

    #[test]
    fn check_answers() {
        let active = br#"{"active":true,"consumer":{"id":"c1","username":"bob","custom_id":null},
            "credential":{"id":"k","client_id":"app"},"authenticated_userid":"clark","scope":"email","exp":99}"#;
        let Some(Verdict::Active(identity)) = Verdict::parse(active) else {
            unreachable!("an active answer parses")
        };
        assert_eq!(identity.consumer_username.as_deref(), Some("bob"));
        assert_eq!(identity.credential_identifier.as_deref(), Some("app"));
        assert_eq!(identity.expires_at, Some(99));
        assert_eq!(
            Verdict::parse(br#"{"active":false,"reason":"invalid"}"#),
            Some(Verdict::Invalid)
        );
        assert_eq!(
            Verdict::parse(br#"{"active":false,"reason":"global_token"}"#),
            Some(Verdict::GlobalToken)
        );
        assert_eq!(Verdict::parse(br#"{"active":true}"#), None);
        assert_eq!(Verdict::parse(b""), None);
    }
}
