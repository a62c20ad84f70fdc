//! Application state and the two routers (gateway for Envoy, admin for operators).

use crate::store::Store;
use axum::Router;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// When set, the admin API requires it in `x-admin-key`.
    pub admin_key: Option<Arc<str>>,
}

impl AppState {
    pub fn new(store: Store, admin_key: Option<String>) -> Self {
        AppState {
            store,
            admin_key: admin_key.map(Arc::from),
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
    crate::admin::router(state)
}
