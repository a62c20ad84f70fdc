//! RFC 8414 authorization-server metadata for one protected route.

use super::response::json_response;
use crate::app::AppState;
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
    let tls = super::header_text(&headers, "x-gateway-tls").as_deref() == Some("on");
    let scheme = if tls { "https" } else { "http" };
    let host = super::header_text(&headers, "x-gateway-host").unwrap_or_else(|| "localhost".into());
    let prefix = super::header_text(&headers, "x-gateway-prefix").unwrap_or_default();
    let issuer = format!("{scheme}://{host}{prefix}");
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
