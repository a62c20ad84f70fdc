//! The filter-facing API (docs/gateway-protocol.md §1–2): the state poll (plugin settings and
//! the change feed) and the token check made on every cache miss.

use crate::app::AppState;
use crate::grants::validity::{self, Validity};
use crate::metrics::CheckOutcome;
use crate::model::{now, Consumer, Plugin, Service};
use crate::secrets::token_digest;
use crate::store::{IndexedToken, ProtectedService, Repo, StoreError, StoreResult};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// The header with which the filter says which feed position it holds.
pub const FEED_POSITION_HEADER: &str = "x-oauth2-feed-position";

/// How many revoked digests one poll carries at most; beyond it the filter resets its cache.
const MAX_FEED_ENTRIES: i64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/gateway/v1/services/{service}/state", get(state))
        .route("/gateway/v1/services/{service}/token", get(check_token))
        .route("/gateway/v1/services/{service}/ext_authz", any(ext_authz))
        .route(
            "/gateway/v1/services/{service}/ext_authz/{*path}",
            any(ext_authz),
        )
}

/// Envoy's active health check of this replica: 200 while it can read its database, else 503
/// (so a replica cut off from PostgreSQL stops receiving checks and token requests).
async fn status(State(app): State<AppState>) -> Response {
    match app.store.read(|repo| repo.service("").map(drop)).await {
        Ok(()) => Json(json!({"database": {"reachable": true}})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: the database is unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"database": {"reachable": false}})),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
struct StateQuery {
    since: Option<i64>,
}

async fn state(
    State(app): State<AppState>,
    Path(service): Path<String>,
    Query(q): Query<StateQuery>,
) -> Response {
    let result = app
        .store
        .read(move |repo| service_state(repo, &service, q.since))
        .await;
    match result {
        Ok(body) => {
            app.store.metrics().state_polled();
            Json(body).into_response()
        }
        Err(e) => storage_failure(e),
    }
}

/// `since`: the feed position the filter has seen; absent for a filter that has seen nothing.
/// `since=0` is a position like any other: a filter that polled an empty feed (seq 0) is up
/// to date, and resetting it would drop its whole cache on every poll.
fn service_state(repo: &Repo<'_>, key: &str, since: Option<i64>) -> StoreResult<Value> {
    let Some(since) = since.filter(|s| *s >= 0) else {
        return state_answer(repo, key, repo.feed_page(0, 0)?.position, true, Vec::new());
    };
    let page = repo.feed_page(since, MAX_FEED_ENTRIES + 1)?;
    // Ahead of the feed (another database?), behind what it still holds, or too far behind
    // to catch up in one answer: the filter starts over.
    let reset =
        since > page.position || since < page.floor || page.digests.len() as i64 > MAX_FEED_ENTRIES;
    let revoked = if reset { Vec::new() } else { page.digests };
    state_answer(repo, key, page.position, reset, revoked)
}

fn state_answer(
    repo: &Repo<'_>,
    key: &str,
    seq: i64,
    reset: bool,
    revoked: Vec<String>,
) -> StoreResult<Value> {
    let service = repo.service(key)?;
    let plugin = match &service {
        Some(s) => repo.enabled_oauth2_plugin(&s.id)?,
        None => None,
    };
    let plugin = match plugin {
        Some(p) => Some(plugin_settings(repo, &p)?),
        None => None,
    };
    Ok(json!({
        "seq": seq,
        "reset": reset,
        "revoked": revoked,
        "service": service.map(|s: Service| json!({"id": s.id, "name": s.name})),
        "plugin": plugin,
    }))
}

fn plugin_settings(repo: &Repo<'_>, plugin: &Plugin) -> StoreResult<Value> {
    let config = &plugin.config;
    let anonymous = match config.anonymous.as_deref().filter(|a| !a.is_empty()) {
        Some(key) => Some((key.to_string(), repo.consumer(key)?)),
        None => None,
    };
    let (anonymous, anonymous_error) = match anonymous {
        None => (Value::Null, Value::Null),
        Some((_, Some(consumer))) => (consumer_json(&consumer), Value::Null),
        Some((key, None)) => (
            Value::Null,
            json!(format!(
                "anonymous consumer {key} is configured but doesn't exist"
            )),
        ),
    };
    Ok(json!({
        "id": plugin.id,
        "updated_at": plugin.updated_at,
        "auth_header_name": config.auth_header_name,
        "hide_credentials": config.hide_credentials,
        "realm": config.realm,
        "global_credentials": config.global_credentials,
        "anonymous": anonymous,
        "anonymous_error": anonymous_error,
    }))
}

fn consumer_json(c: &Consumer) -> Value {
    json!({"id": c.id, "username": c.username, "custom_id": c.custom_id})
}

async fn check_token(
    State(app): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = headers
        .get("x-access-token")
        .and_then(|v| v.to_str().ok())
        .map(token_digest)
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "x-access-token header is required"})),
        )
            .into_response();
    };
    if let Err(e) = catch_up(&app, &headers).await {
        return storage_failure(e);
    }
    let result = check(&app, service, token).await;
    match result {
        Ok(Some(body)) => Json(body).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Unknown service"})),
        )
            .into_response(),
        Err(e) => storage_failure(e),
    }
}

/// The filter's feed position, when a request carries one: the store's index must have
/// applied at least that much before it answers (see [`crate::store::Store::catch_up`]).
pub(crate) async fn catch_up(app: &AppState, headers: &HeaderMap) -> StoreResult<()> {
    let position = headers
        .get(FEED_POSITION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    match position {
        Some(position) => app.store.catch_up(position).await,
        None => Ok(()),
    }
}

/// The check answer for a token digest on a service; `None` when the service is unknown.
/// Both look-ups come from the store's in-memory index when it holds them.
/// Each answered check is counted by its outcome.
async fn check(app: &AppState, service: String, digest: String) -> StoreResult<Option<Value>> {
    let metrics = app.store.metrics();
    let Some(service) = app.store.protected_service(&service).await? else {
        metrics.token_checked(CheckOutcome::UnknownService);
        return Ok(None);
    };
    let token = app.store.checked_token(&digest).await?;
    let validity = token
        .as_deref()
        .map_or(Validity::Invalid, |t| token_validity(t, &service));
    metrics.token_checked(validity.into());
    Ok(Some(token_answer(token.as_deref(), validity)))
}

fn token_validity(token: &IndexedToken, service: &ProtectedService) -> Validity {
    validity::check(
        token.lifetime,
        token.service_id.as_deref(),
        &service.service.id,
        service.accepts_global_tokens(),
        now(),
    )
}

fn token_answer(token: Option<&IndexedToken>, validity: Validity) -> Value {
    match (validity, token) {
        (Validity::Active, Some(token)) => json!({
            "active": true,
            "consumer": {
                "id": token.consumer_id,
                "username": token.consumer_username,
                "custom_id": token.consumer_custom_id,
            },
            "credential": {"id": token.credential_id, "client_id": token.client_id},
            "authenticated_userid": token.authenticated_userid,
            "scope": token.scope,
            "exp": token.lifetime.access_expires_at(),
        }),
        (Validity::GlobalToken, _) => json!({"active": false, "reason": "global_token"}),
        _ => json!({"active": false, "reason": "invalid"}),
    }
}

fn storage_failure(e: StoreError) -> Response {
    tracing::error!(error = %e, "gateway request failed on storage");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"message": "storage unavailable"})),
    )
        .into_response()
}

/// Envoy's native `ext_authz` (HTTP) filter pointed here authorizes each request with one call:
/// 200 with the identity headers, or 401. It is how Envoy users solve this job without our
/// filter, and the peer `make bench` measures the filter against.
async fn ext_authz(
    State(app): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let service = params
        .into_iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, token)| token_digest(token.trim()));
    let Some(token) = token else {
        return (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")]).into_response();
    };
    if let Err(e) = catch_up(&app, &headers).await {
        return storage_failure(e);
    }
    let result = check(&app, service, token).await;
    match result {
        Ok(Some(answer)) if answer["active"] == true => {
            let mut response = StatusCode::OK.into_response();
            let h = response.headers_mut();
            let pairs = [
                ("x-consumer-id", &answer["consumer"]["id"]),
                ("x-consumer-username", &answer["consumer"]["username"]),
                ("x-authenticated-userid", &answer["authenticated_userid"]),
                ("x-authenticated-scope", &answer["scope"]),
                (
                    "x-credential-identifier",
                    &answer["credential"]["client_id"],
                ),
            ];
            for (name, value) in pairs {
                if let Some(Ok(value)) = value.as_str().map(axum::http::HeaderValue::from_str) {
                    h.insert(name, value);
                }
            }
            response
        }
        Ok(_) => (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer error=\"invalid_token\"")],
        )
            .into_response(),
        Err(e) => storage_failure(e),
    }
}
