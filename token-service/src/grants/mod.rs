//! OAuth 2.0 grant rules: Kong's `oauth2` plugin behaviour, one module per grant, with the
//! pure rules (scope, PKCE, client authentication, redirect URIs) apart from storage.

mod authorization_code;
pub mod authorize;
pub mod claims;
pub mod client_auth;
mod client_credentials;
pub mod error;
mod issue;
mod password;
pub mod pkce;
pub mod redirect;
mod refresh_token;
pub mod replay;
pub mod scope;
pub mod throttle;
pub mod token;
pub mod validity;

use crate::model::{OAuth2Config, Plugin, Service};
use crate::params::Params;
use crate::store::Store;
use error::{ErrorCode, OAuthError};
use serde_json::Value;

/// Authorization codes live five minutes (Kong's fixed lifetime)...
pub const CODE_TTL_S: i64 = 300;
/// ...and are remembered an hour longer so a replayed code can still revoke its tokens.
pub const CODE_REPLAY_MEMORY_S: i64 = 3600;

/// What a grant needs to know about the request it serves.
pub struct Request {
    pub params: Params,
    /// The value of the plugin's `auth_header_name` header (client Basic credentials).
    pub auth_header: Option<String>,
    /// The downstream connection to Envoy was TLS.
    pub tls: bool,
    /// The filter relayed a client's request (it sent `x-gateway-tls`). A request without it
    /// came straight to the trusted gateway listener (a resource server on the internal
    /// network, such as the filter's introspection mode), never over a client's connection.
    pub relayed: bool,
    pub forwarded_proto: Option<String>,
}

impl Request {
    /// A parameter that must be a string; other JSON types count as absent.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }

    pub fn state(&self) -> Option<Value> {
        self.params.get("state").filter(|v| !v.is_null()).cloned()
    }
}

/// Where the grant runs: the service and its plugin.
pub struct Context<'a> {
    pub store: &'a Store,
    pub service: &'a Service,
    pub plugin: &'a Plugin,
    /// Seconds after a redemption in which a second presentation of the same code or refresh
    /// token is a lost race rather than a theft (see [`replay`]).
    pub replay_grace_s: i64,
    /// Limits on client authentication (failures per client, PBKDF2 checks at once).
    pub client_auth: &'a throttle::ClientAuthGuard,
    /// The route's RFC 8414 issuer (`--issuer` followed by `x-gateway-prefix`): the `iss` and
    /// `aud` of the JWTs issued here.
    pub issuer: &'a str,
    /// What JWT access tokens are signed with.
    pub signing: &'a crate::jwt::Signing,
}

/// Kong's `check_https`: TLS to Envoy, or a trusted terminator that said so.
pub fn require_https(ctx: &Context<'_>, req: &Request) -> Result<(), OAuthError> {
    if req.tls {
        return Ok(());
    }
    if !ctx.plugin.config.accept_http_if_already_terminated {
        return Err(OAuthError::https_required());
    }
    match req.forwarded_proto.as_deref() {
        Some(proto) if proto.contains(',') => Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "Only one X-Forwarded-Proto header allowed",
        )),
        Some(proto) if proto.trim().eq_ignore_ascii_case("https") => Ok(()),
        _ => Err(OAuthError::https_required()),
    }
}

/// The `provision_key` check of authorize, password and client_credentials: in constant time,
/// like every secret, and never satisfied by an empty configured key (a key that was lost must
/// not turn into "no key needed").
pub fn provision_key_matches(config: &OAuth2Config, presented: Option<&str>) -> bool {
    let expected = config.provision_key.as_bytes();
    match presented {
        Some(presented) if !expected.is_empty() => {
            crate::secrets::constant_time_eq(presented.as_bytes(), expected)
        }
        _ => false,
    }
}

pub fn method_not_allowed(method: &str, endpoint: &str) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidMethod,
        format!("The HTTP method {method} is invalid for the {endpoint} endpoint"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(key: &str) -> OAuth2Config {
        OAuth2Config {
            provision_key: key.into(),
            ..OAuth2Config::default()
        }
    }

    #[test]
    fn provision_keys_match_exactly() {
        let c = config("provision123");
        assert!(provision_key_matches(&c, Some("provision123")));
        for wrong in ["provision12", "provision1234", "Provision123", ""] {
            assert!(!provision_key_matches(&c, Some(wrong)), "{wrong}");
        }
        assert!(!provision_key_matches(&c, None));
    }

    #[test]
    fn an_empty_configured_provision_key_matches_nothing() {
        // The store refuses such a config as corrupt; this is the second line of defence.
        let c = config("");
        assert!(!provision_key_matches(&c, Some("")));
        assert!(!provision_key_matches(&c, None));
    }
}
