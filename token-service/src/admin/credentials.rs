//! OAuth 2.0 client credentials: `/consumers/{c}/oauth2` and `/oauth2`.

use super::error::{fields, AdminError, AdminResult};
use super::input::Fields;
use super::{consumers, list_page, read_body, ListQuery};
use crate::app::AppState;
use crate::grants::redirect::registration_error;
use crate::model::{is_uuid, new_id, now, ClientType, Credential};
use crate::params::Params;
use crate::secrets::{hash_client_secret, random_string};
use crate::store::Repo;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/consumers/{consumer}/oauth2",
            get(list_for_consumer).post(create_for_consumer),
        )
        .route(
            "/consumers/{consumer}/oauth2/{credential}",
            get(show_for_consumer)
                .patch(update_for_consumer)
                .put(upsert_for_consumer)
                .delete(remove_for_consumer),
        )
        .route("/oauth2", get(list_all).post(create))
        .route(
            "/oauth2/{credential}",
            get(show).patch(update).put(upsert).delete(remove),
        )
}

/// `plain_secret` replaces the stored (possibly hashed) secret in the answer that created it.
fn to_json(c: &Credential, plain_secret: Option<&str>) -> Value {
    json!({
        "id": c.id,
        "created_at": c.created_at,
        "consumer": {"id": c.consumer_id},
        "name": c.name,
        "client_id": c.client_id,
        "client_secret": plain_secret.unwrap_or(&c.client_secret),
        "hash_secret": c.hash_secret,
        "redirect_uris": c.redirect_uris,
        "client_type": c.client_type.as_str(),
        "tags": c.tags,
    })
}

/// Applies body fields; returns the plaintext secret when it was set or generated here.
fn apply(c: &mut Credential, body: &Params, creating: bool) -> AdminResult<Option<String>> {
    let mut f = Fields::default();
    if let Some(v) = f.string(body, "name") {
        c.name = v.unwrap_or_default();
    }
    if let Some(v) = f.string(body, "client_id") {
        c.client_id = v.unwrap_or_default();
    }
    let uris = f
        .string_list(body, "redirect_uris", false)
        .or_else(|| f.string_list(body, "redirect_uri", false));
    if let Some(uris) = uris {
        let problems: Vec<Value> = uris
            .iter()
            .flatten()
            .map(|u| registration_error(u).map_or(Value::Null, Value::String))
            .collect();
        if problems.iter().any(|p| !p.is_null()) {
            f.error("redirect_uris", problems);
        }
        c.redirect_uris = uris;
    }
    if let Some(v) = f.string_list(body, "tags", true) {
        c.tags = v;
    }
    if let Some(v) = f.string(body, "client_type") {
        match v.as_deref() {
            Some("public") => c.client_type = ClientType::Public,
            Some("confidential") | None => c.client_type = ClientType::Confidential,
            Some(_) => f.error("client_type", "expected one of: confidential, public"),
        }
    }
    let secret = f
        .string(body, "client_secret")
        .map(Option::unwrap_or_default);
    let hash = f.boolean(body, "hash_secret");
    if !creating && secret.is_some() != hash.is_some() {
        f.error(
            "@entity",
            json!(["all or none of these fields must be set: 'hash_secret', 'client_secret'"]),
        );
    }
    if c.name.is_empty() {
        f.error("name", "required field missing");
    }
    if creating && c.client_id.is_empty() {
        c.client_id = random_string();
    }
    if c.client_id.is_empty() {
        f.error("client_id", "required field missing");
    }
    f.finish()?;
    if let Some(hash) = hash {
        c.hash_secret = hash;
    }
    let (plain, generated) = match secret.filter(|s| !s.is_empty()) {
        Some(s) => (Some(s), false),
        None if creating => (Some(random_string()), true),
        None => (None, false),
    };
    if let Some(plain) = &plain {
        c.client_secret = if c.hash_secret {
            hash_client_secret(plain, generated)
        } else {
            plain.clone()
        };
    }
    Ok(plain)
}

fn blank(consumer_id: String) -> Credential {
    Credential {
        id: new_id(),
        created_at: now(),
        consumer_id,
        name: String::new(),
        client_id: String::new(),
        client_secret: String::new(),
        hash_secret: false,
        redirect_uris: None,
        client_type: ClientType::Confidential,
        tags: None,
    }
}

async fn find(
    state: &AppState,
    key: String,
    consumer_id: Option<String>,
) -> AdminResult<Credential> {
    let found = state.store.read(move |repo| repo.credential(&key)).await?;
    found
        .filter(|c| consumer_id.as_ref().is_none_or(|id| *id == c.consumer_id))
        .ok_or(AdminError::NotFound)
}

async fn insert(
    state: &AppState,
    consumer_id: String,
    body: Params,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let mut credential = blank(consumer_id);
    let plain = apply(&mut credential, &body, true)?;
    let stored = credential.clone();
    state
        .store
        .write(move |repo| repo.insert_credential(&stored))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(to_json(&credential, plain.as_deref())),
    ))
}

async fn create_for_consumer(
    State(state): State<AppState>,
    Path(consumer): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?;
    let consumer = consumers::find(&state, consumer).await?;
    insert(&state, consumer.id, body).await
}

/// The owning consumer named in a `/oauth2` body (`{"consumer": {"id": ...}}`).
async fn consumer_from_body(state: &AppState, body: &Params) -> AdminResult<String> {
    let mut f = Fields::default();
    let reference = f.reference(body, "consumer").flatten();
    f.finish()?;
    let Some(key) = reference else {
        return Err(AdminError::Schema(fields([(
            "consumer",
            json!("required field missing"),
        )])));
    };
    let consumer = consumers::find(state, key).await.map_err(|_| {
        AdminError::Schema(fields([("consumer", json!("the consumer does not exist"))]))
    })?;
    Ok(consumer.id)
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?;
    let consumer_id = consumer_from_body(&state, &body).await?;
    insert(&state, consumer_id, body).await
}

async fn list_for_consumer(
    State(state): State<AppState>,
    Path(consumer): Path<String>,
    Query(q): Query<ListQuery>,
) -> AdminResult<Json<Value>> {
    let window = q.window()?;
    let consumer = consumers::find(&state, consumer).await?;
    let path = format!("/consumers/{}/oauth2", consumer.id);
    let read = move |repo: &Repo<'_>, offset, size| {
        repo.list_credentials(Some(&consumer.id), offset, size)
    };
    list_page(&state, window, &path, read, |c| to_json(c, None)).await
}

async fn list_all(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> AdminResult<Json<Value>> {
    let read = |repo: &Repo<'_>, offset, size| repo.list_credentials(None, offset, size);
    list_page(&state, q.window()?, "/oauth2", read, |c| to_json(c, None)).await
}

async fn show_for_consumer(
    State(state): State<AppState>,
    Path((consumer, key)): Path<(String, String)>,
) -> AdminResult<Json<Value>> {
    let consumer = consumers::find(&state, consumer).await?;
    Ok(Json(to_json(
        &find(&state, key, Some(consumer.id)).await?,
        None,
    )))
}

async fn show(State(state): State<AppState>, Path(key): Path<String>) -> AdminResult<Json<Value>> {
    Ok(Json(to_json(&find(&state, key, None).await?, None)))
}

async fn patch(
    state: &AppState,
    key: String,
    consumer_id: Option<String>,
    body: Params,
) -> AdminResult<Json<Value>> {
    let mut credential = find(state, key, consumer_id).await?;
    let plain = apply(&mut credential, &body, false)?;
    let stored = credential.clone();
    state
        .store
        .write(move |repo| repo.update_credential(&stored))
        .await?;
    Ok(Json(to_json(&credential, plain.as_deref())))
}

async fn update_for_consumer(
    State(state): State<AppState>,
    Path((consumer, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?;
    let consumer = consumers::find(&state, consumer).await?;
    patch(&state, key, Some(consumer.id), body).await
}

async fn update(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?;
    patch(&state, key, None, body).await
}

/// PUT replaces or creates; a key that is not a UUID becomes the `client_id`.
async fn put(
    state: &AppState,
    key: String,
    consumer_id: String,
    mut body: Params,
) -> AdminResult<Json<Value>> {
    let existing = state
        .store
        .read({
            let key = key.clone();
            move |repo| repo.credential(&key)
        })
        .await?;
    let mut credential = blank(consumer_id);
    match &existing {
        Some(found) => {
            credential.id = found.id.clone();
            credential.created_at = found.created_at;
            credential.client_id = found.client_id.clone();
        }
        None if is_uuid(&key) => credential.id = key,
        None => {
            body.entry("client_id").or_insert(Value::String(key));
        }
    }
    let plain = apply(&mut credential, &body, true)?;
    let stored = credential.clone();
    let exists = existing.is_some();
    state
        .store
        .write(move |repo| {
            if exists {
                repo.update_credential(&stored)
            } else {
                repo.insert_credential(&stored)
            }
        })
        .await?;
    Ok(Json(to_json(&credential, plain.as_deref())))
}

async fn upsert_for_consumer(
    State(state): State<AppState>,
    Path((consumer, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?;
    let consumer = consumers::find(&state, consumer).await?;
    put(&state, key, consumer.id, body).await
}

async fn upsert(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?;
    let consumer_id = consumer_from_body(&state, &body).await?;
    put(&state, key, consumer_id, body).await
}

async fn remove_for_consumer(
    State(state): State<AppState>,
    Path((consumer, key)): Path<(String, String)>,
) -> AdminResult<StatusCode> {
    let consumer = consumers::find(&state, consumer).await?;
    let credential = find(&state, key, Some(consumer.id)).await?;
    state
        .store
        .write(move |repo| repo.delete_credential(&credential.id).map(drop))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(State(state): State<AppState>, Path(key): Path<String>) -> AdminResult<StatusCode> {
    let credential = find(&state, key, None).await?;
    state
        .store
        .write(move |repo| repo.delete_credential(&credential.id).map(drop))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
