//! The filter-facing API (docs/gateway-protocol.md §1–2): the state poll (plugin settings and
//! the change feed) and the token check made on every cache miss.

use crate::app::AppState;
use crate::grants::claims;
use crate::grants::error::GrantFailure;
use crate::grants::validity::{self, Validity};
use crate::metrics::CheckOutcome;
use crate::model::{now, presented_token_digest, Consumer, Plugin, Service};
use crate::store::{IndexedToken, ProtectedService, Repo, StoreError, StoreResult};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

#[cfg(test)]
mod tests;

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
    let mut body = match result {
        Ok(body) => body,
        Err(e) => return storage_failure(e),
    };
    match signing_state(&app).await {
        Ok(signing) => {
            if let (Value::Object(body), Value::Object(signing)) = (&mut body, signing) {
                body.extend(signing);
            }
        }
        Err(crate::jwt::SigningError::Store(e)) => return storage_failure(e),
        Err(e) => {
            tracing::error!(error = %e, "state poll: the signing keys are unreadable");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"message": "signing keys unreadable"})),
            )
                .into_response();
        }
    }
    app.store.metrics().state_polled();
    Json(body).into_response()
}

/// docs/jwt-access-tokens.md §4: `issuer` (without a route prefix) and every published key,
/// on every answer, so the filter verifies JWTs with exactly the keys published now.
async fn signing_state(app: &AppState) -> Result<Value, crate::jwt::SigningError> {
    let keys: Vec<Value> = app
        .signing
        .published()
        .await?
        .into_iter()
        .map(|key| json!({"kid": key.kid, "alg": key.alg, "jwk": key.jwk}))
        .collect();
    Ok(json!({"issuer": app.oauth.issuer.as_str(), "keys": keys}))
}

/// `since`: the feed position the filter has seen; absent for a filter that has seen nothing.
/// `since=0` is a position like any other: a filter that polled an empty feed (seq 0) is up
/// to date, and resetting it would drop its whole cache on every poll.
fn service_state(repo: &Repo<'_>, key: &str, since: Option<i64>) -> StoreResult<Value> {
    let now = now();
    let Some(since) = since.filter(|s| *s >= 0) else {
        let position = repo.feed_page(0, 0)?.position;
        let feed = Feed::reset(position);
        return state_answer(repo, key, feed, Distrust::complete(repo, now)?);
    };
    let page = repo.feed_page(since, MAX_FEED_ENTRIES + 1)?;
    // Ahead of the feed (another database?), behind what it still holds, or too far behind
    // to catch up in one answer: the filter starts over.
    let reset =
        since > page.position || since < page.floor || page.digests.len() as i64 > MAX_FEED_ENTRIES;
    if reset {
        let feed = Feed::reset(page.position);
        return state_answer(repo, key, feed, Distrust::complete(repo, now)?);
    }
    let distrust = Distrust::since(repo, &page.digests, now)?;
    let feed = Feed {
        seq: page.position,
        reset: false,
        revoked: page.digests,
    };
    state_answer(repo, key, feed, distrust)
}

/// The change feed's part of a state answer.
struct Feed {
    seq: i64,
    reset: bool,
    revoked: Vec<String>,
}

impl Feed {
    fn reset(seq: i64) -> Feed {
        Feed {
            seq,
            reset: true,
            revoked: Vec::new(),
        }
    }
}

/// The JWTs the filter must stop verifying locally (docs/jwt-access-tokens.md §4).
struct Distrust {
    /// `(digest, exp)`.
    jwts: Vec<(String, i64)>,
    /// More JWTs are distrusted than an answer may carry: the filter asks about every JWT.
    all: bool,
}

impl Distrust {
    /// A reset answer's: every distrusted JWT that has not expired, or `all` when too many.
    fn complete(repo: &Repo<'_>, now: i64) -> StoreResult<Distrust> {
        let jwts = repo.distrusted_jwts(now, MAX_FEED_ENTRIES + 1)?;
        if jwts.len() as i64 > MAX_FEED_ENTRIES {
            return Ok(Distrust {
                jwts: Vec::new(),
                all: true,
            });
        }
        Ok(Distrust { jwts, all: false })
    }

    /// An incremental answer's: the JWTs among the feed's digests since the filter's position.
    /// `all` stays true while the complete list is too long, so a filter that missed part of
    /// it (it got `all` on its reset) never trusts a JWT it should not.
    fn since(repo: &Repo<'_>, digests: &[String], now: i64) -> StoreResult<Distrust> {
        let all = repo.distrusted_count(now, MAX_FEED_ENTRIES + 1)? > MAX_FEED_ENTRIES;
        let jwts = repo.distrusted_among(digests, now)?;
        Ok(Distrust { jwts, all })
    }

    fn to_json(&self) -> Value {
        self.jwts
            .iter()
            .map(|(digest, exp)| json!({"digest": digest, "exp": exp}))
            .collect()
    }
}

fn state_answer(repo: &Repo<'_>, key: &str, feed: Feed, distrust: Distrust) -> StoreResult<Value> {
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
        "seq": feed.seq,
        "reset": feed.reset,
        "revoked": feed.revoked,
        "distrusted": distrust.to_json(),
        "distrust_all": distrust.all,
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
        "access_token_format": config.access_token_format,
        "identity_jwt_header": config.identity_jwt_header,
        "identity_headers": config.identity_headers,
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
    let Some(token) = headers.get("x-access-token").and_then(|v| v.to_str().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "x-access-token header is required"})),
        )
            .into_response();
    };
    // Longer than any token (a JWT is about 1 KB): unknown without a look-up.
    let Some(token) = presented_token_digest(token) else {
        app.store.metrics().token_checked(Validity::Invalid.into());
        return Json(token_answer(None, Validity::Invalid)).into_response();
    };
    if let Err(e) = catch_up(&app, &headers).await {
        return storage_failure(e);
    }
    // The route the filter checks for, when it says (`x-gateway-prefix`), names the identity
    // JWT's issuer as it names an access token's.
    let issuer = crate::oauth::route_issuer(&app, &headers)
        .unwrap_or_else(|| app.oauth.issuer.as_str().to_string());
    let result = check(&app, service, token, Some(&issuer)).await;
    match result {
        Ok(Some(body)) => Json(body).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Unknown service"})),
        )
            .into_response(),
        Err(e) => check_failure(e),
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
/// With `issuer` (the filter's check; not `ext_authz`), an active token's answer carries the
/// identity JWT its plugin's `identity_jwt_header` asks for.
async fn check(
    app: &AppState,
    service: String,
    digest: String,
    issuer: Option<&str>,
) -> Result<Option<Value>, GrantFailure> {
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
    let mut answer = token_answer(token.as_deref(), validity);
    let wants_identity = service
        .plugin
        .as_ref()
        .is_some_and(|p| p.config.identity_jwt_header.is_some());
    if let (Validity::Active, Some(token), Some(issuer), true) =
        (validity, token.as_deref(), issuer, wants_identity)
    {
        answer["identity_jwt"] = json!(identity_jwt(app, token, issuer).await?);
    }
    Ok(Some(answer))
}

/// The phantom token (docs/jwt-access-tokens.md §6): who is asking, signed, for at most
/// five minutes and never past the access token.
async fn identity_jwt(
    app: &AppState,
    token: &IndexedToken,
    issuer: &str,
) -> Result<String, GrantFailure> {
    let subject = claims::Subject {
        client_id: &token.client_id,
        credential_id: &token.credential_id,
        consumer_id: &token.consumer_id,
        consumer_username: token.consumer_username.as_deref(),
        consumer_custom_id: token.consumer_custom_id.as_deref(),
        authenticated_userid: token.authenticated_userid.as_deref(),
        scope: token.scope.as_deref(),
    };
    let jti = crate::model::new_id();
    let exp = token.lifetime.access_expires_at();
    let claims = claims::identity(issuer, &jti, now(), exp, subject);
    Ok(app.signing.sign(claims::IDENTITY_TYP, &claims).await?)
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

/// A check that could not be answered: the database, or signing the identity JWT. The filter
/// treats 503 as "ask again later", never as a verdict.
fn check_failure(e: GrantFailure) -> Response {
    match e {
        GrantFailure::Store(e) => storage_failure(e),
        GrantFailure::Signing(e) => {
            tracing::error!(error = %e, "token check failed on signing the identity JWT");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"message": "signing unavailable"})),
            )
                .into_response()
        }
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
        .and_then(|(_, token)| presented_token_digest(token.trim()));
    let Some(token) = token else {
        return (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")]).into_response();
    };
    if let Err(e) = catch_up(&app, &headers).await {
        return storage_failure(e);
    }
    let result = check(&app, service, token, None).await;
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
        Err(e) => check_failure(e),
    }
}
