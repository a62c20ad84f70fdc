//! `/consumers`: the people and applications tokens are issued to.

use super::error::{AdminError, AdminResult};
use super::input::{Fields, Kind, Shape};
use super::named::{self, Named};
use crate::app::AppState;
use crate::model::{new_id, now, Consumer};
use crate::params::Params;
use crate::store::{Page, Repo, StoreResult};
use axum::Router;
use serde_json::{json, Value};

/// A consumer's input fields (Kong's consumer schema, less what is generated).
pub const SHAPE: Shape = &[
    ("username", Kind::String),
    ("custom_id", Kind::String),
    ("tags", Kind::Set),
];

pub fn routes() -> Router<AppState> {
    named::routes::<Consumer>("/consumers/{consumer}")
}

pub async fn find(state: &AppState, key: String) -> AdminResult<Consumer> {
    named::find::<Consumer>(state, key).await
}

impl Named for Consumer {
    const COLLECTION: &'static str = "/consumers";
    const KEY_FIELD: &'static str = "username";
    const SHAPE: Shape = SHAPE;

    fn blank() -> Self {
        Consumer {
            id: new_id(),
            created_at: now(),
            username: None,
            custom_id: None,
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

    /// Kong's rule: a consumer needs a username or a custom_id.
    fn apply(&mut self, body: &Params) -> AdminResult<()> {
        let mut f = Fields::default();
        if let Some(v) = f.string(body, "username") {
            self.username = v;
        }
        if let Some(v) = f.string(body, "custom_id") {
            self.custom_id = v;
        }
        if let Some(v) = f.string_list(body, "tags", true) {
            self.tags = v;
        }
        // Both reach upstreams as X-Consumer-Username / X-Consumer-Custom-ID.
        for (field, value) in [("username", &self.username), ("custom_id", &self.custom_id)] {
            if value
                .as_deref()
                .is_some_and(|v| v.chars().any(char::is_control))
            {
                f.error(field, "must not contain control characters");
            }
        }
        let blank = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
        if blank(&self.username) && blank(&self.custom_id) {
            f.error(
                "@entity",
                json!(["at least one of these fields must be non-empty: 'custom_id', 'username'"]),
            );
        }
        f.finish()
    }

    fn to_json(&self) -> Value {
        json!({"id": self.id, "created_at": self.created_at, "username": self.username, "custom_id": self.custom_id, "tags": self.tags})
    }

    /// A username that is another consumer's id (or an id that is another's username) would
    /// make `/consumers/{id or username}` ambiguous: refused as the clash it is (409, Kong's
    /// answer to a taken username), not as malformed input.
    fn check_against(&self, repo: &Repo<'_>) -> AdminResult<()> {
        match repo.consumer_key_clash(self)? {
            Some(field) => Err(AdminError::Conflict(field.to_string())),
            None => Ok(()),
        }
    }

    fn find(repo: &Repo<'_>, key: &str) -> StoreResult<Option<Self>> {
        repo.consumer(key)
    }

    fn insert(repo: &Repo<'_>, entity: &Self) -> StoreResult<()> {
        repo.insert_consumer(entity)
    }

    fn update(repo: &Repo<'_>, entity: &Self) -> StoreResult<()> {
        repo.update_consumer(entity)
    }

    fn delete(repo: &Repo<'_>, id: &str) -> StoreResult<bool> {
        repo.delete_consumer(id)
    }

    fn list(repo: &Repo<'_>, offset: i64, size: i64) -> StoreResult<Page<Self>> {
        repo.list_consumers(offset, size)
    }
}
