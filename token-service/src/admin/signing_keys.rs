//! `/signing-keys`: the keys the token-service signs JWTs with (docs/jwt-access-tokens.md §3).
//! Only public halves are ever shown; keys are added and retired, never edited or uploaded.

use super::error::{fields, AdminError, AdminResult};
use super::input::{Fields, Kind, Shape};
use super::read_body;
use crate::app::AppState;
use crate::jwt::{Alg, PublicKey};
use crate::params::Params;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// A new key's input fields.
pub const SHAPE: Shape = &[("alg", Kind::String)];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signing-keys", get(list).post(create))
        .route("/signing-keys/{kid}", get(show))
        .route("/signing-keys/{kid}/retire", post(retire))
}

fn to_json(key: &PublicKey) -> Value {
    json!({
        "kid": key.kid,
        "alg": key.alg,
        "status": key.status.as_str(),
        "created_at": key.created_at,
        "activates_at": key.activates_at,
        "retired_at": key.retired_at,
        "expires_at": key.expires_at,
        "jwk": key.jwk,
    })
}

/// Every stored key, in one page (a handful at most: one active, the next, the retired ones
/// still published), in Kong's list shape.
async fn list(State(state): State<AppState>) -> AdminResult<Json<Value>> {
    let keys = state.signing.list().await?;
    let data: Vec<Value> = keys.iter().map(to_json).collect();
    Ok(Json(json!({"data": data, "next": null, "offset": null})))
}

async fn show(State(state): State<AppState>, Path(kid): Path<String>) -> AdminResult<Json<Value>> {
    let keys = state.signing.list().await?;
    let key = keys
        .iter()
        .find(|key| key.kid == kid)
        .ok_or(AdminError::NotFound)?;
    Ok(Json(to_json(key)))
}

/// `alg` (RS256 when absent): the new key is `next` for `--signing-key-publish-delay-s`, then
/// signs (or signs at once when no key does).
async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    let alg = requested_alg(&body, state.signing.settings().default_alg)?;
    let key = state.signing.add(alg).await?;
    Ok((StatusCode::CREATED, Json(to_json(&key))))
}

fn requested_alg(body: &Params, default: Alg) -> AdminResult<Alg> {
    let mut f = Fields::default();
    let requested = f.string(body, "alg");
    f.finish()?;
    match requested.flatten() {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            AdminError::Schema(fields([(
                "alg",
                json!("expected one of: RS256, ES256, EdDSA"),
            )]))
        }),
    }
}

/// Stops the key signing now; it stays published until the tokens it signed have expired.
/// The active key can be retired only once another key is `next` (which then signs at once).
async fn retire(
    State(state): State<AppState>,
    Path(kid): Path<String>,
) -> AdminResult<Json<Value>> {
    let key = state.signing.retire(&kid).await?;
    Ok(Json(to_json(&key)))
}

#[cfg(test)]
mod tests {
    use crate::app::{admin_router, AppState};
    use crate::store::Store;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{json, Value};
    use tower::ServiceExt;

    fn admin() -> (tempfile::TempDir, axum::Router) {
        let (dir, router, _) = admin_and_state();
        (dir, router)
    }

    fn admin_and_state() -> (tempfile::TempDir, axum::Router, AppState) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("keys.db")).expect("store");
        let state = AppState::new(store, None);
        (dir, admin_router(state.clone()), state)
    }

    async fn send(
        router: &axum::Router,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (StatusCode, Value) {
        let request = Request::builder().method(method).uri(path);
        let request = match body {
            Some((content_type, body)) => request
                .header("content-type", content_type)
                .body(Body::from(body)),
            None => request.body(Body::empty()),
        }
        .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    async fn post_json(router: &axum::Router, path: &str, body: Value) -> (StatusCode, Value) {
        send(
            router,
            "POST",
            path,
            Some(("application/json", body.to_string())),
        )
        .await
    }

    #[tokio::test]
    async fn a_bad_alg_is_a_schema_violation_naming_alg() {
        let (_dir, r) = admin();
        for alg in [
            json!("HS256"),
            json!("none"),
            json!("rs256"),
            json!(""),
            json!(256),
        ] {
            let (status, body) = post_json(&r, "/signing-keys", json!({"alg": alg})).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{alg}: {body}");
            assert_eq!(body["name"], "schema violation", "{body}");
            assert!(body["fields"]["alg"].is_string(), "{body}");
        }
        let (status, body) = post_json(&r, "/signing-keys", json!({"d": "x"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["fields"]["d"], "unknown field");
        let (_, listed) = send(&r, "GET", "/signing-keys", None).await;
        assert_eq!(listed["data"], json!([]), "no key was made");
    }

    #[tokio::test]
    async fn keys_are_added_listed_and_retired_in_kong_shape_without_private_keys() {
        let (_dir, r, state) = admin_and_state();
        let (status, first) = post_json(&r, "/signing-keys", json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!(first["alg"], "RS256");
        assert_eq!(first["status"], "active", "the first key signs at once");
        assert_eq!(first["jwk"]["kty"], "RSA");
        assert_eq!(first["jwk"]["kid"], first["kid"]);
        let kid = first["kid"].as_str().expect("kid").to_string();
        let exp = crate::model::now() + 3600;
        let token = state.signing.sign("at+jwt", &json!({"exp": exp})).await;
        assert!(token.is_ok(), "{token:?}");

        let (status, body) = send(&r, "POST", &format!("/signing-keys/{kid}/retire"), None).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains(&kid),
            "{body}"
        );

        let form = ("application/x-www-form-urlencoded", "alg=ES256".to_string());
        let (status, next) = send(&r, "POST", "/signing-keys", Some(form)).await;
        assert_eq!(status, StatusCode::CREATED, "{next}");
        assert_eq!(next["status"], "next");
        assert_eq!(next["alg"], "ES256");
        assert_eq!(
            next["activates_at"],
            json!(next["created_at"].as_i64().unwrap() + 5)
        );
        assert_eq!(next["jwk"]["crv"], "P-256");

        let (status, listed) = send(&r, "GET", "/signing-keys/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");
        assert_eq!(listed["next"], Value::Null);
        let text = listed.to_string();
        for private in ["PRIVATE", "\"d\":", "\"p\":", "\"q\":"] {
            assert!(!text.contains(private), "{private} in {text}");
        }
        let (status, shown) = send(&r, "GET", &format!("/signing-keys/{kid}"), None).await;
        assert_eq!((status, &shown["kid"]), (StatusCode::OK, &json!(kid)));

        let (status, retired) =
            send(&r, "POST", &format!("/signing-keys/{kid}/retire"), None).await;
        assert_eq!(status, StatusCode::OK, "{retired}");
        assert_eq!(retired["status"], "retired");
        // Published until the token it signed has expired.
        assert!(retired["expires_at"].as_i64() >= Some(exp), "{retired}");
        let next_kid = next["kid"].as_str().expect("kid");
        let (_, took_over) = send(&r, "GET", &format!("/signing-keys/{next_kid}"), None).await;
        assert_eq!(took_over["status"], "active", "{took_over}");

        for path in ["/signing-keys/nope", "/signing-keys/nope/retire"] {
            let method = if path.ends_with("retire") {
                "POST"
            } else {
                "GET"
            };
            let (status, body) = send(&r, method, path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert_eq!(body["message"], "Not found");
        }
    }
}
