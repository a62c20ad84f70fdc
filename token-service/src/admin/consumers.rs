//! `/consumers`: the people and applications tokens are issued to.

use super::error::{AdminError, AdminResult};
use super::input::Fields;
use super::{page_json, read_body, ListQuery};
use crate::app::AppState;
use crate::model::{is_uuid, new_id, now, Consumer};
use crate::params::Params;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/consumers", get(list).post(create))
        .route(
            "/consumers/{consumer}",
            get(show).patch(update).put(upsert).delete(remove),
        )
}

pub fn to_json(c: &Consumer) -> Value {
    json!({"id": c.id, "created_at": c.created_at, "username": c.username, "custom_id": c.custom_id, "tags": c.tags})
}

/// Applies body fields over `consumer` and checks Kong's rule that one name is present.
fn apply(consumer: &mut Consumer, body: &Params) -> AdminResult<()> {
    let mut f = Fields::default();
    if let Some(v) = f.string(body, "username") {
        consumer.username = v;
    }
    if let Some(v) = f.string(body, "custom_id") {
        consumer.custom_id = v;
    }
    if let Some(v) = f.string_list(body, "tags", true) {
        consumer.tags = v;
    }
    let blank = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
    if blank(&consumer.username) && blank(&consumer.custom_id) {
        f.error(
            "@entity",
            json!(["at least one of these fields must be non-empty: 'custom_id', 'username'"]),
        );
    }
    f.finish()
}

pub async fn find(state: &AppState, key: String) -> AdminResult<Consumer> {
    state
        .store
        .read(move |repo| repo.consumer(&key))
        .await?
        .ok_or(AdminError::NotFound)
}

fn blank_consumer() -> Consumer {
    Consumer {
        id: new_id(),
        created_at: now(),
        username: None,
        custom_id: None,
        tags: None,
    }
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?;
    let mut consumer = blank_consumer();
    apply(&mut consumer, &body)?;
    let stored = consumer.clone();
    state
        .store
        .write(move |repo| repo.insert_consumer(&stored))
        .await?;
    Ok((StatusCode::CREATED, Json(to_json(&consumer))))
}

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> AdminResult<Json<Value>> {
    let (offset, size) = q.window()?;
    let page = state
        .store
        .read(move |repo| repo.list_consumers(offset, size))
        .await?;
    Ok(page_json("/consumers", page, size, to_json))
}

async fn show(State(state): State<AppState>, Path(key): Path<String>) -> AdminResult<Json<Value>> {
    Ok(Json(to_json(&find(&state, key).await?)))
}

async fn update(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?;
    let mut consumer = find(&state, key).await?;
    apply(&mut consumer, &body)?;
    let stored = consumer.clone();
    state
        .store
        .write(move |repo| repo.update_consumer(&stored))
        .await?;
    Ok(Json(to_json(&consumer)))
}

/// PUT creates or replaces; a key that is not a UUID names the consumer's username.
async fn upsert(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let mut body = read_body(&headers, body).await?;
    let existing = state
        .store
        .read({
            let key = key.clone();
            move |repo| repo.consumer(&key)
        })
        .await?;
    let mut consumer = blank_consumer();
    match &existing {
        Some(found) => {
            consumer.id = found.id.clone();
            consumer.created_at = found.created_at;
        }
        None if is_uuid(&key) => consumer.id = key,
        None => {
            body.entry("username").or_insert(Value::String(key));
        }
    }
    apply(&mut consumer, &body)?;
    let stored = consumer.clone();
    let exists = existing.is_some();
    state
        .store
        .write(move |repo| {
            if exists {
                repo.update_consumer(&stored)
            } else {
                repo.insert_consumer(&stored)
            }
        })
        .await?;
    Ok(Json(to_json(&consumer)))
}

async fn remove(State(state): State<AppState>, Path(key): Path<String>) -> AdminResult<StatusCode> {
    state
        .store
        .write(move |repo| match repo.consumer(&key)? {
            Some(c) => repo.delete_consumer(&c.id).map(drop),
            None => Ok(()),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
