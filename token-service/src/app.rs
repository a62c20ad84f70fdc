//! Application state and the two routers (gateway for Envoy, admin for operators).

use crate::config::Issuer;
use crate::store::Store;
use axum::Router;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// When set, the admin API requires it in `x-admin-key`.
    pub admin_key: Option<Arc<str>>,
    pub oauth: Arc<OAuthSettings>,
    /// Origins whose web pages may use the admin API (others are refused as cross-site).
    pub admin_origins: Arc<crate::admin::AllowedOrigins>,
    /// Names the admin API answers to besides IP addresses and `localhost` (DNS rebinding).
    pub admin_hosts: Arc<crate::admin::AllowedHosts>,
    /// Limits on client authentication at the token, introspection and revocation endpoints.
    pub client_auth: Arc<crate::grants::throttle::ClientAuthGuard>,
    /// The signing keys: what JWTs are signed with, and what the JWKS publishes.
    pub signing: Arc<crate::jwt::Signing>,
}

/// Settings of the OAuth endpoints that come from the operator, never from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// The RFC 8414 issuer, to which each route's prefix is appended.
    pub issuer: Issuer,
    /// See `grants::replay`.
    pub replay_grace_s: i64,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        OAuthSettings {
            issuer: Issuer::default(),
            replay_grace_s: crate::grants::replay::DEFAULT_GRACE_S,
        }
    }
}

impl AppState {
    pub fn new(store: Store, admin_key: Option<String>) -> Self {
        AppState {
            signing: Arc::new(crate::jwt::Signing::new(
                store.clone(),
                crate::jwt::SigningSettings::default(),
            )),
            store,
            admin_key: admin_key.map(Arc::from),
            oauth: Arc::new(OAuthSettings::default()),
            admin_origins: Arc::default(),
            admin_hosts: Arc::default(),
            client_auth: Arc::default(),
        }
    }

    pub fn with_client_auth(self, guard: crate::grants::throttle::ClientAuthGuard) -> Self {
        AppState {
            client_auth: Arc::new(guard),
            ..self
        }
    }

    pub fn with_admin_origins(self, origins: crate::admin::AllowedOrigins) -> Self {
        AppState {
            admin_origins: Arc::new(origins),
            ..self
        }
    }

    pub fn with_admin_hosts(self, hosts: crate::admin::AllowedHosts) -> Self {
        AppState {
            admin_hosts: Arc::new(hosts),
            ..self
        }
    }

    pub fn with_signing(self, settings: crate::jwt::SigningSettings) -> Self {
        AppState {
            signing: Arc::new(crate::jwt::Signing::new(self.store.clone(), settings)),
            ..self
        }
    }

    pub fn with_oauth(self, oauth: OAuthSettings) -> Self {
        AppState {
            oauth: Arc::new(oauth),
            ..self
        }
    }
}

/// The listener the filter talks to: state poll, token check and the OAuth endpoints.
pub fn gateway_router(state: AppState) -> Router {
    crate::gateway::router()
        .merge(crate::oauth::router())
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"message": "Not found"})),
            )
        })
        .method_not_allowed_fallback(|| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(serde_json::json!({"message": "Method not allowed"})),
            )
        })
        .with_state(state)
}

pub fn admin_router(state: AppState) -> Router {
    // The description is public (it is checked in as docs/openapi.json) and the same for every
    // deployment, so tools fetch it without the admin key.
    // (With the one trailing slash every admin path accepts.)
    let openapi = axum::routing::get(crate::admin::openapi::serve);
    Router::new()
        .route("/openapi.json", openapi.clone())
        .route("/openapi.json/", openapi)
        .merge(crate::admin::router(state))
}
