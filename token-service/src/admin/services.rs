//! `/services`: what a filter protects (its Envoy config names the service).

use super::error::{AdminError, AdminResult};
use super::input::Fields;
use super::{page_json, read_body, ListQuery};
use crate::app::AppState;
use crate::model::{is_uuid, new_id, now, Service};
use crate::params::Params;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/services", get(list).post(create))
        .route(
            "/services/{service}",
            get(show).patch(update).put(upsert).delete(remove),
        )
}

pub fn to_json(s: &Service) -> Value {
    json!({"id": s.id, "created_at": s.created_at, "updated_at": s.updated_at, "name": s.name, "url": s.url, "tags": s.tags})
}

fn apply(service: &mut Service, body: &Params) -> AdminResult<()> {
    let mut f = Fields::default();
    if let Some(v) = f.string(body, "name") {
        service.name = v;
    }
    if let Some(v) = f.string(body, "url") {
        service.url = v;
    }
    if let Some(v) = f.string_list(body, "tags", true) {
        service.tags = v;
    }
    match service.name.as_deref() {
        None | Some("") => f.error("name", "required field missing"),
        Some(name) if is_uuid(name) => f.error("name", "must not be a UUID"),
        Some(name)
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)) =>
        {
            f.error(
                "name",
                "invalid value: only letters, digits, '-', '.', '_' and '~' are allowed",
            )
        }
        Some(_) => {}
    }
    service.updated_at = now();
    f.finish()
}

pub async fn find(state: &AppState, key: String) -> AdminResult<Service> {
    state
        .store
        .read(move |repo| repo.service(&key))
        .await?
        .ok_or(AdminError::NotFound)
}

fn blank_service() -> Service {
    let t = now();
    Service {
        id: new_id(),
        created_at: t,
        updated_at: t,
        name: None,
        url: None,
        tags: None,
    }
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?;
    let mut service = blank_service();
    apply(&mut service, &body)?;
    let stored = service.clone();
    state
        .store
        .write(move |repo| repo.insert_service(&stored))
        .await?;
    Ok((StatusCode::CREATED, Json(to_json(&service))))
}

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> AdminResult<Json<Value>> {
    let (offset, size) = q.window()?;
    let page = state
        .store
        .read(move |repo| repo.list_services(offset, size))
        .await?;
    Ok(page_json("/services", page, size, to_json))
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
    let mut service = find(&state, key).await?;
    apply(&mut service, &body)?;
    let stored = service.clone();
    state
        .store
        .write(move |repo| repo.update_service(&stored))
        .await?;
    Ok(Json(to_json(&service)))
}

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
            move |repo| repo.service(&key)
        })
        .await?;
    let mut service = blank_service();
    match &existing {
        Some(found) => {
            service.id = found.id.clone();
            service.created_at = found.created_at;
        }
        None if is_uuid(&key) => service.id = key,
        None => {
            body.entry("name").or_insert(Value::String(key));
        }
    }
    apply(&mut service, &body)?;
    let stored = service.clone();
    let exists = existing.is_some();
    state
        .store
        .write(move |repo| {
            if exists {
                repo.update_service(&stored)
            } else {
                repo.insert_service(&stored)
            }
        })
        .await?;
    Ok(Json(to_json(&service)))
}

async fn remove(State(state): State<AppState>, Path(key): Path<String>) -> AdminResult<StatusCode> {
    state
        .store
        .write(move |repo| match repo.service(&key)? {
            Some(s) => repo.delete_service(&s.id).map(drop),
            None => Ok(()),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
