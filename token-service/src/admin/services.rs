//! `/services`: what a filter protects (its Envoy config names the service).

use super::error::AdminResult;
use super::input::{Fields, Kind, Shape};
use super::named::{self, Named};
use crate::app::AppState;
use crate::model::{is_uuid, new_id, now, Service, MAX_IDENTIFIER_BYTES};
use crate::params::Params;
use crate::store::{Page, Repo, StoreResult};
use axum::Router;
use serde_json::{json, Value};

/// A service's input fields.
pub const SHAPE: Shape = &[
    ("name", Kind::String),
    ("url", Kind::String),
    ("tags", Kind::Set),
];

pub fn routes() -> Router<AppState> {
    named::routes::<Service>("/services/{service}")
}

pub async fn find(state: &AppState, key: String) -> AdminResult<Service> {
    named::find::<Service>(state, key).await
}

impl Named for Service {
    const COLLECTION: &'static str = "/services";
    const KEY_FIELD: &'static str = "name";
    const SHAPE: Shape = SHAPE;

    fn blank() -> Self {
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

    fn id(&self) -> &str {
        &self.id
    }

    fn keep_identity_of(&mut self, existing: &Self) {
        self.id.clone_from(&existing.id);
        self.created_at = existing.created_at;
    }

    fn set_id(&mut self, id: String) {
        self.id = id;
    }

    /// A service is named in the filter's Envoy configuration, so its name must be one.
    fn apply(&mut self, body: &Params) -> AdminResult<()> {
        let mut f = Fields::default();
        if let Some(v) = f.string(body, "name") {
            self.name = v;
        }
        if let Some(v) = f.string(body, "url") {
            self.url = v;
        }
        if let Some(v) = f.string_list(body, "tags", true) {
            self.tags = v;
        }
        match self.name.as_deref() {
            None | Some("") => f.error("name", "required field missing"),
            Some(name) if is_uuid(name) => f.error("name", "must not be a UUID"),
            Some(name) if name.len() > MAX_IDENTIFIER_BYTES => f.error(
                "name",
                format!("length must be at most {MAX_IDENTIFIER_BYTES}"),
            ),
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
        self.updated_at = now();
        f.finish()
    }

    fn to_json(&self) -> Value {
        json!({"id": self.id, "created_at": self.created_at, "updated_at": self.updated_at, "name": self.name, "url": self.url, "tags": self.tags})
    }

    fn find(repo: &Repo<'_>, key: &str) -> StoreResult<Option<Self>> {
        repo.service(key)
    }

    fn insert(repo: &Repo<'_>, entity: &Self) -> StoreResult<()> {
        repo.insert_service(entity)
    }

    fn update(repo: &Repo<'_>, entity: &Self) -> StoreResult<()> {
        repo.update_service(entity)
    }

    fn delete(repo: &Repo<'_>, id: &str) -> StoreResult<bool> {
        repo.delete_service(id)
    }

    fn list(repo: &Repo<'_>, offset: i64, size: i64) -> StoreResult<Page<Self>> {
        repo.list_services(offset, size)
    }
}
