//! RFC 8414 authorization-server metadata for one protected route, and its JWK Set.
//!
//! The same document answers at `<prefix>/.well-known/oauth-authorization-server`, at RFC 8414
//! §3.1's `/.well-known/oauth-authorization-server<prefix>` (the filter relays both here with
//! `x-gateway-prefix`), and at `<prefix>/.well-known/openid-configuration` for OpenID Connect
//! discovery clients: it names only what this server does (no ID tokens, no userinfo), so an
//! OIDC client discovers the endpoints and the `jwks_uri`, nothing it would then miss.
//!
//! The issuer is the operator's (`--issuer`) followed by the route's prefix: a client's `Host`
//! (or anything else it sends) never reaches these URLs, so nobody can make the document point
//! a reader at another server.

use super::response::json_response;
use crate::app::AppState;
use crate::grants::error::OAuthError;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn serve(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, plugin) = match super::protected_service(&state, service).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let prefix = super::header_text(&headers, "x-gateway-prefix").unwrap_or_default();
    if !is_route_prefix(&prefix) {
        return super::response::oauth_error(
            OAuthError::invalid_request("Invalid route prefix"),
            None,
        );
    }
    let issuer = format!("{}{prefix}", state.oauth.issuer.as_str());
    let config = &plugin.config;
    let mut response_types = Vec::new();
    if config.enable_authorization_code {
        response_types.push("code");
    }
    if config.enable_implicit_grant {
        response_types.push("token");
    }
    let mut grant_types = vec!["authorization_code", "refresh_token"];
    if config.enable_client_credentials {
        grant_types.push("client_credentials");
    }
    if config.enable_password_grant {
        grant_types.push("password");
    }
    if config.enable_implicit_grant {
        grant_types.push("implicit");
    }
    json_response(
        StatusCode::OK,
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
            "token_endpoint": format!("{issuer}/oauth2/token"),
            "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
            "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "response_types_supported": response_types,
            "grant_types_supported": grant_types,
            "scopes_supported": config.scopes,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        }),
    )
}

/// RFC 7517 JWK Set of the token-service's published signing keys (the same on every route),
/// at `<prefix>/.well-known/jwks.json` for a protected service.
pub async fn jwks(State(state): State<AppState>, Path(service): Path<String>) -> Response {
    if let Err(e) = super::protected_service(&state, service).await {
        return e.into_response();
    }
    public_jwks(&state).await
}

/// The JWK Set on the gateway listener itself (`GET /.well-known/jwks.json`).
pub async fn jwks_of_the_token_service(State(state): State<AppState>) -> Response {
    public_jwks(&state).await
}

async fn public_jwks(state: &AppState) -> Response {
    match state.signing.public_jwks().await {
        Ok(jwks) => json_response(StatusCode::OK, jwks),
        Err(e) => {
            tracing::error!(error = %e, "the JWK Set could not be read");
            super::response::oauth_error(
                OAuthError::new(
                    crate::grants::error::ErrorCode::TemporarilyUnavailable,
                    "The signing keys are unavailable",
                ),
                None,
            )
        }
    }
}

/// What the filter sends as `x-gateway-prefix`: empty, or an absolute path of RFC 3986 path
/// characters (no query, fragment, quote, space or control character can reach the URLs).
pub(crate) fn is_route_prefix(prefix: &str) -> bool {
    prefix.is_empty()
        || (prefix.starts_with('/')
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::is_route_prefix;

    #[test]
    fn route_prefixes_are_plain_paths() {
        for ok in ["", "/stepon", "/a/b-c_d.e~f", "/%7Euser"] {
            assert!(is_route_prefix(ok), "{ok}");
        }
        for bad in ["stepon", "/a?b", "/a#b", "/a b", "/a\"b", "/a\r\nx", "/é"] {
            assert!(!is_route_prefix(bad), "{bad:?}");
        }
    }
}
