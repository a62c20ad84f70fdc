//! `/oauth2_tokens`: tokens made or inspected by operators. Tokens are stored as digests, so
//! the plaintext appears only in the answer that created (or replaced) it; look-ups by
//! `access_token` hash the key.

use super::error::{AdminError, AdminResult};
use super::input::{Fields, Kind, Shape};
use super::{list_page, read_body, ListQuery};
use crate::app::AppState;
use crate::model::{
    is_uuid, new_id, now, presented_token_digest, Token, MAX_LIFETIME_S, MAX_TOKEN_BYTES,
};
use crate::params::Params;
use crate::secrets::{random_string, token_digest};
use crate::store::Repo;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// A token's input fields.
pub const SHAPE: Shape = &[
    ("credential", Kind::Reference),
    ("service", Kind::Reference),
    ("expires_in", Kind::Integer),
    ("token_type", Kind::String),
    ("authenticated_userid", Kind::String),
    ("scope", Kind::String),
    ("access_token", Kind::String),
    ("refresh_token", Kind::String),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth2_tokens", get(list).post(create))
        .route(
            "/oauth2_tokens/{token}",
            get(show).patch(update).put(upsert).delete(remove),
        )
}

fn to_json(t: &Token, plain: Option<&Plain>) -> Value {
    let mut body = json!({
        "id": t.id,
        "created_at": t.created_at,
        "credential": {"id": t.credential_id},
        "service": t.service_id.as_ref().map(|id| json!({"id": id})),
        "token_type": t.token_type,
        "expires_in": t.expires_in,
        "authenticated_userid": t.authenticated_userid,
        "scope": t.scope,
        "ttl": t.ttl_at.map(|at| at.saturating_sub(now()).max(0)),
    });
    if let (Some(plain), Value::Object(map)) = (plain, &mut body) {
        map.insert("access_token".into(), json!(plain.access_token));
        map.insert("refresh_token".into(), json!(plain.refresh_token));
    }
    body
}

struct Plain {
    access_token: Option<String>,
    refresh_token: Option<String>,
}

const TOKEN_TEXT_RULE: &str = "must be 1 to 512 printable ASCII characters without spaces";
const _: () = assert!(MAX_TOKEN_BYTES == 512, "TOKEN_TEXT_RULE names the bound");

/// Tokens an operator supplies must be something a client can send in a header.
fn token_text_error(token: &str) -> Option<&'static str> {
    let printable = token.bytes().all(|b| (0x21..=0x7e).contains(&b));
    (!printable || token.is_empty() || token.len() > MAX_TOKEN_BYTES).then_some(TOKEN_TEXT_RULE)
}

/// Applies body fields over `t`; returns plaintexts that were set here.
fn apply(t: &mut Token, body: &Params, creating: bool) -> AdminResult<Plain> {
    let mut f = Fields::default();
    let mut plain = Plain {
        access_token: None,
        refresh_token: None,
    };
    if let Some(credential) = f.reference(body, "credential") {
        t.credential_id = credential.unwrap_or_default();
    }
    if let Some(service) = f.reference(body, "service") {
        t.service_id = service;
    }
    if let Some(v) = f.integer(body, "expires_in") {
        if !(0..=MAX_LIFETIME_S).contains(&v) {
            f.error(
                "expires_in",
                format!("value should be between 0 and {MAX_LIFETIME_S}"),
            );
        }
        t.expires_in = v;
    } else if creating && !body.contains_key("expires_in") {
        f.error("expires_in", "required field missing");
    }
    if let Some(v) = f.string(body, "token_type") {
        if v.as_deref().is_some_and(|t| t != "bearer") {
            f.error("token_type", "expected one of: bearer");
        }
    }
    if let Some(v) = f.string(body, "authenticated_userid") {
        t.authenticated_userid = v;
    }
    if let Some(v) = f.string(body, "scope") {
        t.scope = v;
    }
    if let Some(v) = f.string(body, "access_token") {
        match v.filter(|s| !s.is_empty()) {
            Some(s) => {
                if let Some(e) = token_text_error(&s) {
                    f.error("access_token", e);
                }
                t.access_token_hash = token_digest(&s);
                plain.access_token = Some(s);
            }
            None => f.error("access_token", "required field missing"),
        }
    }
    if let Some(v) = f.string(body, "refresh_token") {
        if let Some(e) = v.as_deref().and_then(token_text_error) {
            f.error("refresh_token", e);
        }
        t.refresh_token_hash = v.as_deref().map(token_digest);
        plain.refresh_token = v;
    }
    if t.credential_id.is_empty() {
        f.error("credential", "required field missing");
    }
    f.finish()?;
    if creating && plain.access_token.is_none() {
        let generated = random_string();
        t.access_token_hash = token_digest(&generated);
        plain.access_token = Some(generated);
    }
    Ok(plain)
}

fn blank() -> Token {
    Token {
        id: new_id(),
        created_at: now(),
        credential_id: String::new(),
        service_id: None,
        token_type: "bearer".into(),
        expires_in: 0,
        access_token_hash: String::new(),
        refresh_token_hash: None,
        authenticated_userid: None,
        scope: None,
        ttl_at: None,
        family_id: new_id(),
        jwt_exp: None,
    }
}

/// Checks that the referenced credential (and service) exist, for a clear 400.
fn check_references(repo: &Repo<'_>, t: &Token) -> AdminResult<()> {
    let mut errors = Vec::new();
    if repo.credential(&t.credential_id)?.is_none() {
        errors.push(("credential", json!("the credential does not exist")));
    }
    if let Some(service) = &t.service_id {
        if repo.service(service)?.is_none() {
            errors.push(("service", json!("the service does not exist")));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AdminError::Schema(
            errors
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        ))
    }
}

/// The token `key` names: its id, or the access token itself (a JWT's is longer than
/// [`MAX_TOKEN_BYTES`]). No token is longer than
/// [`crate::model::MAX_PRESENTED_TOKEN_BYTES`], so a longer
/// key is unknown without a look-up.
fn find_in(repo: &Repo<'_>, key: &str) -> AdminResult<Option<Token>> {
    let Some(digest) = presented_token_digest(key) else {
        return Ok(None);
    };
    Ok(repo.token(key, &digest)?)
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    let mut token = blank();
    let plain = apply(&mut token, &body, true)?;
    let stored = token.clone();
    state
        .store
        .transaction(move |repo| {
            check_references(repo, &stored)?;
            Ok::<_, AdminError>(repo.insert_token_row(&stored)?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(to_json(&token, Some(&plain)))))
}

async fn list(State(state): State<AppState>, q: ListQuery) -> AdminResult<Json<Value>> {
    let read = |repo: &Repo<'_>, offset, size| repo.list_tokens(offset, size);
    list_page(&state, q.window()?, "/oauth2_tokens", read, |t| {
        to_json(t, None)
    })
    .await
}

async fn show(State(state): State<AppState>, Path(key): Path<String>) -> AdminResult<Json<Value>> {
    let token = state
        .store
        .read(move |repo| Ok(find_in(repo, &key)))
        .await??
        .ok_or(AdminError::NotFound)?;
    Ok(Json(to_json(&token, None)))
}

/// PATCH: read, change and write in one transaction.
async fn update(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    let (token, plain) = state
        .store
        .transaction(move |repo| {
            let mut token = find_in(repo, &key)?.ok_or(AdminError::NotFound)?;
            let plain = apply(&mut token, &body, false)?;
            check_references(repo, &token)?;
            repo.update_token(&token)?;
            Ok::<_, AdminError>((token, plain))
        })
        .await?;
    let shown = (plain.access_token.is_some() || plain.refresh_token.is_some()).then_some(&plain);
    Ok(Json(to_json(&token, shown)))
}

/// PUT creates or replaces; a key that is not a UUID is the access token itself.
async fn upsert(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let mut body = read_body(&headers, body).await?.checked(SHAPE)?;
    let (token, plain) = state
        .store
        .transaction(move |repo| {
            let existing = find_in(repo, &key)?;
            let mut token = blank();
            match &existing {
                Some(found) => {
                    token.id.clone_from(&found.id);
                    token.family_id.clone_from(&found.family_id);
                }
                None if is_uuid(&key) => token.id = key,
                None => {
                    body.entry("access_token").or_insert(Value::String(key));
                }
            }
            let plain = apply(&mut token, &body, true)?;
            check_references(repo, &token)?;
            match existing {
                Some(_) => repo.update_token(&token)?,
                None => repo.insert_token_row(&token)?,
            }
            Ok::<_, AdminError>((token, plain))
        })
        .await?;
    Ok(Json(to_json(&token, Some(&plain))))
}

/// Idempotent, as in Kong: deleting an unknown token answers 204 too.
async fn remove(State(state): State<AppState>, Path(key): Path<String>) -> AdminResult<StatusCode> {
    state
        .store
        .transaction(move |repo| {
            if let Some(token) = find_in(repo, &key)? {
                repo.delete_token(&token.id)?;
            }
            Ok::<_, AdminError>(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
