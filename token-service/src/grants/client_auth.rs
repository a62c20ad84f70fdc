//! Client authentication at the token endpoint (Kong's `retrieve_client_credentials`).

use super::error::OAuthError;
use super::throttle::ClientAuthGuard;
use crate::model::{ClientType, Credential};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PresentedClient {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Credentials came from the Authorization (or configured) header: failures answer 401.
    pub from_header: bool,
}

/// Body/query `client_id` + `client_secret` win; else HTTP Basic from the auth header; else a
/// lone `client_id` (public clients). A header that is not Basic yields no client at all.
pub fn presented(
    params: &serde_json::Map<String, Value>,
    auth_header: Option<&str>,
) -> PresentedClient {
    let id = params
        .get("client_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let secret = params
        .get("client_secret")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if id.is_some() && secret.is_some() {
        return PresentedClient {
            client_id: id,
            client_secret: secret,
            from_header: false,
        };
    }
    if let Some(header) = auth_header {
        let (client_id, client_secret) = basic_credentials(header).unwrap_or((None, None));
        return PresentedClient {
            client_id,
            client_secret,
            from_header: true,
        };
    }
    PresentedClient {
        client_id: id,
        client_secret: None,
        from_header: false,
    }
}

fn basic_credentials(header: &str) -> Option<(Option<String>, Option<String>)> {
    let trimmed = header.trim_start();
    let scheme_end = trimmed
        .find(|c: char| c.is_whitespace())
        .unwrap_or(trimmed.len());
    let (scheme, rest) = trimmed.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(match text.split_once(':') {
        Some((id, secret)) => (Some(id.to_string()), Some(secret.to_string())),
        None => (Some(text), None),
    })
}

/// Checks the presented secret against a known client, through the process's guard (the
/// limit of failures per client, PBKDF2 off the async workers: see [`super::throttle`]).
pub async fn authenticate(
    guard: &ClientAuthGuard,
    client: &Credential,
    presented: &PresentedClient,
) -> Result<(), OAuthError> {
    match client.client_type {
        ClientType::Public => match presented.client_secret.as_deref().map(str::trim) {
            Some(secret) if !secret.is_empty() => Err(OAuthError::invalid_request(
                "client_secret is disallowed for public clients",
            )),
            _ => Ok(()),
        },
        ClientType::Confidential => match presented.client_secret.as_deref() {
            Some(secret) => guard.verify(client, secret, presented.from_header).await,
            None => Err(OAuthError::invalid_client(presented.from_header)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn body_credentials_win() {
        let p = presented(
            &params(json!({"client_id": "a", "client_secret": "b"})),
            Some("Basic eDp5"),
        );
        assert_eq!(
            p,
            PresentedClient {
                client_id: Some("a".into()),
                client_secret: Some("b".into()),
                from_header: false
            }
        );
    }

    #[test]
    fn basic_header_variants() {
        let p = presented(
            &params(json!({})),
            Some("Basic Y2xpZW50aWQxMjM6c2VjcmV0MTIz"),
        );
        assert_eq!(
            (
                p.client_id.as_deref(),
                p.client_secret.as_deref(),
                p.from_header
            ),
            (Some("clientid123"), Some("secret123"), true)
        );
        let p = presented(&params(json!({})), Some("basic Y2xpZW50aWQxMTIxMQ=="));
        assert_eq!(
            (p.client_id.as_deref(), p.client_secret),
            (Some("clientid11211"), None)
        );
        let p = presented(&params(json!({})), Some("Basic Y2xpZW50aWQxMTIxMTo="));
        assert_eq!(p.client_secret.as_deref(), Some(""));
    }

    #[test]
    fn a_non_basic_header_hides_the_body_client_id() {
        let p = presented(&params(json!({"client_id": "a"})), Some("Bearer x"));
        assert_eq!(
            p,
            PresentedClient {
                client_id: None,
                client_secret: None,
                from_header: true
            }
        );
    }

    #[test]
    fn lone_client_id_without_header() {
        let p = presented(&params(json!({"client_id": "a"})), None);
        assert_eq!(p.client_id.as_deref(), Some("a"));
    }
}
