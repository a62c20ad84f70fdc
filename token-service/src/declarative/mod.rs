//! Declarative configuration: the operator's desired services, plugins, consumers and
//! credentials in one file in Kong's declarative format (YAML or JSON), applied like decK's
//! sync: what the file manages is created, updated or deleted to match it, in one transaction.
//! Tokens and codes are runtime state, never in the file: they stay valid across syncs because
//! entities keep their ids, and they go (on every Envoy, through the change feed) with the
//! consumer or credential a sync deletes, exactly as when the admin API deletes it.
//!
//! - [`document`]: reading and checking a file (the admin API's own field rules).
//! - [`sync`]: the diff against the store, and applying it.
//! - [`dump`]: the store's configuration as a file, secrets left out.

pub mod cli;
pub mod document;
pub mod dump;
pub mod sync;

#[cfg(test)]
mod tests;

pub use document::{parse, Desired, Format};
pub use dump::dump;
pub use sync::{diff, sync, Action, Change, Diff};

use crate::store::StoreError;

/// The largest declarative file accepted (the admin API's bound on `POST /config`).
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// One thing wrong with a file: where (the entity's path in the file, e.g.
/// `consumers[0].oauth2_credentials[1]`, and its name), which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The entity's place in the file; empty for the file itself.
    pub entity: String,
    /// `service`, `plugin`, `consumer`, `oauth2_credential`, or `file`.
    pub entity_type: &'static str,
    /// The entity's natural key (name, username, client_id) when it has one.
    pub name: Option<String>,
    /// The field within the entity (dotted for nested fields: `config.scopes`); empty when
    /// the problem is the entity as a whole.
    pub field: String,
    pub message: String,
}

impl Problem {
    /// The full field path, `consumers[0].oauth2_credentials[1].client_id`.
    pub fn path(&self) -> String {
        match (self.entity.is_empty(), self.field.is_empty()) {
            (true, _) => self.field.clone(),
            (false, true) => self.entity.clone(),
            (false, false) => format!("{}.{}", self.entity, self.field),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path();
        match &self.name {
            Some(name) => write!(
                f,
                "{path} ({} '{name}'): {}",
                self.entity_type, self.message
            ),
            None if path.is_empty() => write!(f, "{}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeclarativeError {
    /// The file does not parse, or its content breaks a rule: nothing was applied.
    #[error("declarative config is invalid: {}", list(.0))]
    Invalid(Vec<Problem>),
    #[error("the declarative file is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// `POST /config` with a body that is neither JSON, YAML, nor a form carrying `config`.
    #[error("send the file as application/json, application/yaml, or a multipart field 'config'")]
    UnsupportedMediaType,
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

fn list(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("; ")
}

impl DeclarativeError {
    /// A problem with the file as a whole (it does not parse, say).
    pub fn file(field: &str, message: impl Into<String>) -> DeclarativeError {
        DeclarativeError::Invalid(vec![Problem {
            entity: String::new(),
            entity_type: "file",
            name: None,
            field: field.to_string(),
            message: message.into(),
        }])
    }
}
