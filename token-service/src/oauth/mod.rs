//! The OAuth endpoints, served on the gateway listener for the filter to relay
//! (docs/gateway-protocol.md §3): authorize, token, RFC 7662 introspection, RFC 7009
//! revocation and RFC 8414 metadata, for one service at a time.

mod introspection;
#[cfg(test)]
mod jwt_tests;
mod metadata;
mod response;
#[cfg(test)]
mod tests;

use crate::app::AppState;
use crate::grants::error::{GrantFailure, OAuthError};
use crate::grants::{self, Context, Request};
use crate::model::{AccessTokenFormat, Plugin, Service};
use crate::params::{self, Nesting, ParamsError, MAX_BODY_BYTES};
use crate::store::ProtectedService;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use response::{oauth_error, ServiceLookupError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/gateway/v1/services/{service}/oauth2/{endpoint}",
            any(endpoint),
        )
        .route(
            "/gateway/v1/services/{service}/.well-known/oauth-authorization-server",
            get(metadata::serve),
        )
        .route(
            "/gateway/v1/services/{service}/.well-known/openid-configuration",
            get(metadata::serve),
        )
        .route(
            "/gateway/v1/services/{service}/.well-known/jwks.json",
            get(metadata::jwks),
        )
        .route(
            "/.well-known/jwks.json",
            get(metadata::jwks_of_the_token_service),
        )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Authorize,
    Token,
    Introspect,
    Revoke,
}

impl Endpoint {
    fn parse(name: &str) -> Option<Endpoint> {
        match name {
            "authorize" => Some(Endpoint::Authorize),
            "token" => Some(Endpoint::Token),
            "introspect" => Some(Endpoint::Introspect),
            "revoke" => Some(Endpoint::Revoke),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Endpoint::Authorize => "authorization",
            Endpoint::Token => "token",
            Endpoint::Introspect => "introspection",
            Endpoint::Revoke => "revocation",
        }
    }
}

/// The service and its enabled `oauth2` plugin.
pub(crate) async fn protected_service(
    state: &AppState,
    key: String,
) -> Result<(Service, Plugin), ServiceLookupError> {
    match state.store.protected_service(&key).await?.as_deref() {
        None => Err(ServiceLookupError::UnknownService),
        Some(ProtectedService { plugin: None, .. }) => Err(ServiceLookupError::NoPlugin),
        Some(ProtectedService {
            service,
            plugin: Some(plugin),
        }) => Ok((service.clone(), plugin.clone())),
    }
}

/// Every answer of the four endpoints passes here, so each OAuth error is counted once
/// (by the code `oauth::response` tagged it with).
async fn endpoint(
    State(state): State<AppState>,
    Path((service, endpoint)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = answer(&state, service, &endpoint, method, uri, headers, body).await;
    if let Some(code) = response::error_code(&response) {
        state.store.metrics().oauth_error(code);
    }
    response
}

async fn answer(
    state: &AppState,
    service: String,
    endpoint: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(endpoint) = Endpoint::parse(endpoint) else {
        return response::not_found();
    };
    let (service, plugin) = match protected_service(state, service).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let realm = plugin.config.realm.clone();
    if method != Method::POST {
        return response::method_not_allowed(
            grants::method_not_allowed(method.as_str(), endpoint.label()),
            realm,
        );
    }
    if let Err(e) = crate::gateway::catch_up(state, &headers).await {
        tracing::error!(error = %e, "OAuth endpoint failed on storage");
        return oauth_error(OAuthError::from_storage(&e), None);
    }
    let request = match read_request(&plugin, &uri, &headers, body).await {
        Ok(request) => request,
        Err(e) => return response::bad_body(e),
    };
    // A JWT names the route it was issued on; opaque tokens never use the issuer (and
    // Kong's endpoints never looked at the prefix).
    let issuer = match route_issuer(state, &headers) {
        Some(issuer) => issuer,
        None if plugin.config.access_token_format == AccessTokenFormat::Jwt => {
            return oauth_error(OAuthError::invalid_request("Invalid route prefix"), None);
        }
        None => String::new(),
    };
    let ctx = Context {
        store: &state.store,
        service: &service,
        plugin: &plugin,
        replay_grace_s: state.oauth.replay_grace_s,
        client_auth: &state.client_auth,
        issuer: &issuer,
        signing: &state.signing,
    };
    let result = match endpoint {
        Endpoint::Authorize => grants::authorize::handle(&ctx, &request)
            .await
            .map(|o| response::authorize(o, request.state())),
        Endpoint::Token => grants::token::handle(&ctx, &request)
            .await
            .map(|o| response::token(o, request.state())),
        Endpoint::Introspect => introspection::introspect(&ctx, &request)
            .await
            .map_err(GrantFailure::from),
        Endpoint::Revoke => introspection::revoke(&ctx, &request)
            .await
            .map_err(GrantFailure::from),
    };
    result.unwrap_or_else(|e| {
        tracing::error!(error = %e, "OAuth endpoint failed");
        oauth_error(OAuthError::from_failure(&e), None)
    })
}

/// The route's RFC 8414 issuer: `--issuer` followed by the prefix the filter relayed
/// (`x-gateway-prefix`, none for a direct call); `None` for a prefix that is no path.
pub(crate) fn route_issuer(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let prefix = header_text(headers, "x-gateway-prefix").unwrap_or_default();
    metadata::is_route_prefix(&prefix).then(|| format!("{}{prefix}", state.oauth.issuer.as_str()))
}

async fn read_request(
    plugin: &Plugin,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Request, ParamsError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ParamsError::TooLarge)?;
    let content_type = header_text(headers, "content-type");
    let body_params = params::parse_body(content_type.as_deref(), bytes, Nesting::Flat).await?;
    let query = params::parse_form(uri.query().unwrap_or("").as_bytes(), Nesting::Flat)?;
    Ok(Request {
        params: params::merge(query, body_params),
        auth_header: header_text(headers, &plugin.config.auth_header_name),
        tls: header_text(headers, "x-gateway-tls").as_deref() == Some("on"),
        relayed: headers.contains_key("x-gateway-tls"),
        forwarded_proto: header_text(headers, "x-forwarded-proto"),
    })
}

pub(crate) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
