//! The CRUD every top-level entity addressed by id or by a natural key shares (consumers by
//! `username`, services by `name`): Kong's POST / GET list / GET / PATCH / PUT / DELETE.
//!
//! Every write reads, validates and writes in one write transaction: two concurrent PATCHes
//! of one row both land, and an update of a row deleted meanwhile is a 404.

use super::error::{AdminError, AdminResult};
use super::input::Shape;
use super::{list_page, read_body, ListQuery};
use crate::app::AppState;
use crate::model::is_uuid;
use crate::params::Params;
use crate::store::{Page, Repo, StoreResult};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

pub trait Named: Clone + Send + Sync + 'static {
    /// The collection's path, e.g. `/consumers`.
    const COLLECTION: &'static str;
    /// The field a non-UUID key of a PUT names (`username`, `name`).
    const KEY_FIELD: &'static str;
    /// The fields a body may carry, with their types.
    const SHAPE: Shape;

    fn blank() -> Self;
    fn id(&self) -> &str;
    /// Keeps an existing row's identity when a PUT replaces it.
    fn keep_identity_of(&mut self, existing: &Self);
    fn set_id(&mut self, id: String);
    /// Applies body fields over `self` and validates the result.
    fn apply(&mut self, body: &Params) -> AdminResult<()>;
    fn to_json(&self) -> Value;

    /// Checks against the other stored rows, in the transaction that writes `self`.
    fn check_against(&self, _repo: &Repo<'_>) -> AdminResult<()> {
        Ok(())
    }
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

/// The entity `key` names, inside a transaction.
pub fn find_in<E: Named>(repo: &Repo<'_>, key: &str) -> AdminResult<E> {
    E::find(repo, key)?.ok_or(AdminError::NotFound)
}

async fn create<E: Named>(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?.checked(E::SHAPE)?;
    let mut entity = E::blank();
    entity.apply(&body)?;
    let stored = entity.clone();
    state
        .store
        .transaction(move |repo| {
            stored.check_against(repo)?;
            Ok::<_, AdminError>(E::insert(repo, &stored)?)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(entity.to_json())))
}

async fn list<E: Named>(State(state): State<AppState>, q: ListQuery) -> AdminResult<Json<Value>> {
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
    let body = read_body(&headers, body).await?.checked(E::SHAPE)?;
    let entity = state
        .store
        .transaction(move |repo| {
            let mut entity = find_in::<E>(repo, &key)?;
            entity.apply(&body)?;
            entity.check_against(repo)?;
            E::update(repo, &entity)?;
            Ok::<_, AdminError>(entity)
        })
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
    let mut body = read_body(&headers, body).await?.checked(E::SHAPE)?;
    let entity = state
        .store
        .transaction(move |repo| {
            let existing = E::find(repo, &key)?;
            let mut entity = E::blank();
            match &existing {
                Some(found) => entity.keep_identity_of(found),
                None if is_uuid(&key) => entity.set_id(key),
                None => {
                    body.entry(E::KEY_FIELD).or_insert(Value::String(key));
                }
            }
            entity.apply(&body)?;
            entity.check_against(repo)?;
            match existing {
                Some(_) => E::update(repo, &entity)?,
                None => E::insert(repo, &entity)?,
            }
            Ok::<_, AdminError>(entity)
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
