//! The CRUD every top-level entity addressed by id or by a natural key shares (consumers by
//! `username`, services by `name`): Kong's POST / GET list / GET / PATCH / PUT / DELETE.

use super::error::{AdminError, AdminResult};
use super::{list_page, read_body, ListQuery};
use crate::app::AppState;
use crate::model::is_uuid;
use crate::params::Params;
use crate::store::{Page, Repo, StoreResult};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

pub trait Named: Clone + Send + Sync + 'static {
    /// The collection's path, e.g. `/consumers`.
    const COLLECTION: &'static str;
    /// The field a non-UUID key of a PUT names (`username`, `name`).
    const KEY_FIELD: &'static str;

    fn blank() -> Self;
    fn id(&self) -> &str;
    /// Keeps an existing row's identity when a PUT replaces it.
    fn keep_identity_of(&mut self, existing: &Self);
    fn set_id(&mut self, id: String);
    /// Applies body fields over `self` and validates the result.
    fn apply(&mut self, body: &Params) -> AdminResult<()>;
    fn to_json(&self) -> Value;

    fn find(repo: &Repo<'_>, key: &str) -> StoreResult<Option<Self>>;
    fn insert(repo: &Repo<'_>, entity: &Self) -> StoreResult<()>;
    fn update(repo: &Repo<'_>, entity: &Self) -> StoreResult<()>;
    fn delete(repo: &Repo<'_>, id: &str) -> StoreResult<bool>;
    fn list(repo: &Repo<'_>, offset: i64, size: i64) -> StoreResult<Page<Self>>;
}

pub fn routes<E: Named>(item_path: &str) -> Router<AppState> {
    Router::new()
        .route(E::COLLECTION, get(list::<E>).post(create::<E>))
        .route(
            item_path,
            get(show::<E>)
                .patch(update::<E>)
                .put(upsert::<E>)
                .delete(remove::<E>),
        )
}

pub async fn find<E: Named>(state: &AppState, key: String) -> AdminResult<E> {
    state
        .store
        .read(move |repo| E::find(repo, &key))
        .await?
        .ok_or(AdminError::NotFound)
}

async fn create<E: Named>(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?;
    let mut entity = E::blank();
    entity.apply(&body)?;
    let stored = entity.clone();
    state
        .store
        .write(move |repo| E::insert(repo, &stored))
        .await?;
    Ok((StatusCode::CREATED, Json(entity.to_json())))
}

async fn list<E: Named>(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> AdminResult<Json<Value>> {
    list_page(&state, q.window()?, E::COLLECTION, E::list, E::to_json).await
}

async fn show<E: Named>(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> AdminResult<Json<Value>> {
    Ok(Json(find::<E>(&state, key).await?.to_json()))
}

async fn update<E: Named>(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?;
    let mut entity = find::<E>(&state, key).await?;
    entity.apply(&body)?;
    let stored = entity.clone();
    state
        .store
        .write(move |repo| E::update(repo, &stored))
        .await?;
    Ok(Json(entity.to_json()))
}

/// PUT creates or replaces; a key that is not a UUID is the natural key of a new entity.
async fn upsert<E: Named>(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let mut body = read_body(&headers, body).await?;
    let lookup = key.clone();
    let existing = state.store.read(move |repo| E::find(repo, &lookup)).await?;
    let mut entity = E::blank();
    match &existing {
        Some(found) => entity.keep_identity_of(found),
        None if is_uuid(&key) => entity.set_id(key),
        None => {
            body.entry(E::KEY_FIELD).or_insert(Value::String(key));
        }
    }
    entity.apply(&body)?;
    let stored = entity.clone();
    let exists = existing.is_some();
    state
        .store
        .write(move |repo| {
            if exists {
                E::update(repo, &stored)
            } else {
                E::insert(repo, &stored)
            }
        })
        .await?;
    Ok(Json(entity.to_json()))
}

/// Idempotent, as in Kong.
async fn remove<E: Named>(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> AdminResult<StatusCode> {
    state
        .store
        .write(move |repo| match E::find(repo, &key)? {
            Some(entity) => E::delete(repo, entity.id()).map(drop),
            None => Ok(()),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
