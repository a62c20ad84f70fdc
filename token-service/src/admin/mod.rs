//! The admin API (`:8001`), in Kong's shape: consumers, their `oauth2` credentials, services,
//! `oauth2` plugins and tokens. Bodies may be JSON, form-encoded or multipart.

mod config;
pub(crate) mod consumers;
pub(crate) mod credentials;
pub mod error;
pub(crate) mod input;
pub(crate) mod named;
pub mod openapi;
mod origin;
pub(crate) mod plugins;
mod schema;
pub(crate) mod services;
pub(crate) mod signing_keys;
mod tokens;

#[cfg(test)]
mod tests;

use crate::app::AppState;
use crate::params::{self, Nesting, ParamsError, MAX_BODY_BYTES};
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::{AdminError, AdminResult};
pub use input::{AdminBody, Encoding};
use serde_json::{json, Value};

pub use origin::{AllowedHost, AllowedHosts, AllowedOrigins, Origin};

pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/", get(root))
        .route("/status", get(status))
        .route("/metrics", get(crate::metrics::serve))
        .merge(consumers::routes())
        .merge(credentials::routes())
        .merge(services::routes())
        .merge(plugins::routes())
        .merge(tokens::routes())
        .merge(signing_keys::routes())
        .merge(config::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_admin_key,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            origin::refuse_cross_site,
        ))
        // Outermost: a DNS-rebinding page is refused before anything else looks at it.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            origin::refuse_foreign_host,
        ))
        .with_state(state);
    // Routing happens inside `routes`, so the path is trimmed before it is matched.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::map_request(strip_trailing_slash))
        .layer(middleware::map_response(json_rejections))
}

/// axum's own extractor rejections (a path segment that is not UTF-8 once percent-decoded)
/// are plain text; the admin API answers every error as JSON in Kong's shape.
async fn json_rejections(response: Response) -> Response {
    let plain_text = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(response.status().is_client_error() && plain_text) {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection texts are one short line; a longer one is cut, not an error.
    let text = axum::body::to_bytes(body, 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    (
        parts.status,
        Json(json!({"name": "bad request", "message": text})),
    )
        .into_response()
}

/// Kong accepts one trailing slash on every admin path (`POST /consumers/`).
async fn strip_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if let Some(trimmed) = path.strip_suffix('/').filter(|t| !t.is_empty()) {
        let rewritten = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = rewritten.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

async fn not_found() -> AdminError {
    AdminError::NotFound
}

async fn method_not_allowed() -> Response {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"message": "Method not allowed"})),
    )
        .into_response()
}

async fn root() -> Json<Value> {
    Json(json!({
        "tagline": "Welcome to the OAuth 2.0 token service for Envoy",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn status(State(state): State<AppState>) -> Response {
    match state
        .store
        .read(|repo| repo.list_services(0, 1).map(|_| ()))
        .await
    {
        Ok(()) => Json(json!({"database": {"reachable": true}})).into_response(),
        Err(e) => AdminError::from(e).into_response(),
    }
}

/// With `--admin-key`, every request must carry it in `x-admin-key` (compared in constant time).
async fn require_admin_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(expected) = state.admin_key.as_deref() {
        let presented = request
            .headers()
            .get("x-admin-key")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !crate::secrets::constant_time_eq(presented, expected.as_bytes()) {
            return AdminError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// Reads and parses an admin request body (dotted form keys nest: `config.scopes=a`); the
/// handler then checks it against its entity's fields (`AdminBody::checked`).
/// Public for the fuzz target that feeds it any content type and body.
pub async fn read_body(headers: &HeaderMap, body: Body) -> AdminResult<AdminBody> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ParamsError::TooLarge)?;
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let encoding = if params::is_json(content_type) {
        Encoding::Json
    } else {
        Encoding::Text
    };
    let params = params::parse_body(content_type, bytes, Nesting::Dotted).await?;
    Ok(AdminBody { params, encoding })
}

/// `?size=` and `?offset=` of a list. Extracted by hand rather than with axum's `Query`, whose
/// rejections (a repeated `size`) are plain text, not the admin API's JSON errors.
pub(crate) struct ListQuery {
    size: Option<String>,
    offset: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> AdminResult<Self> {
        ListQuery::parse(parts.uri.query().unwrap_or(""))
    }
}

impl ListQuery {
    /// Other parameters are ignored, as in Kong; `size` or `offset` given twice is ambiguous.
    fn parse(query: &str) -> AdminResult<ListQuery> {
        let mut q = ListQuery {
            size: None,
            offset: None,
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let (name, slot) = match key.as_ref() {
                "size" => ("size", &mut q.size),
                "offset" => ("offset", &mut q.offset),
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(AdminError::Schema(error::fields([(
                    name,
                    json!("expected a single value"),
                )])));
            }
        }
        Ok(q)
    }

    /// `(offset, size)`; Kong's defaults (100) and bounds (1..=1000).
    pub fn window(&self) -> AdminResult<(i64, i64)> {
        let size = match &self.size {
            None => 100,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    return Err(AdminError::Schema(error::fields([(
                        "size",
                        json!("must be an integer between 1 and 1000"),
                    )])))
                }
            },
        };
        let offset = match &self.offset {
            None => 0,
            Some(o) => o.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                AdminError::Schema(error::fields([("offset", json!("invalid offset"))]))
            })?,
        };
        Ok((offset, size))
    }
}

/// One page of the collection at `path`: the `(offset, size)` window read from the store, in
/// Kong's list shape.
pub(crate) async fn list_page<T, F>(
    state: &AppState,
    (offset, size): (i64, i64),
    path: &str,
    read: F,
    to_json: impl Fn(&T) -> Value,
) -> AdminResult<Json<Value>>
where
    T: Send + 'static,
    F: FnOnce(
            &crate::store::Repo<'_>,
            i64,
            i64,
        ) -> crate::store::StoreResult<crate::store::Page<T>>
        + Send
        + 'static,
{
    let page = state
        .store
        .read(move |repo| read(repo, offset, size))
        .await?;
    Ok(page_json(path, page, size, to_json))
}

/// Kong's list shape: `{"data": [...], "next": url|null, "offset": ...}`.
fn page_json<T>(
    path: &str,
    page: crate::store::Page<T>,
    size: i64,
    to_json: impl Fn(&T) -> Value,
) -> Json<Value> {
    let data: Vec<Value> = page.data.iter().map(to_json).collect();
    let next = page
        .next_offset
        .map(|o| format!("{path}?offset={o}&size={size}"));
    Json(json!({"data": data, "next": next, "offset": page.next_offset.map(|o| o.to_string())}))
}
