//! Reading a declarative file: Kong's format (`_format_version`, `services` with nested
//! `plugins`, top-level `plugins` naming their `service`, `consumers` with nested
//! `oauth2_credentials`, `tags`, `_info.select_tags`). Each entity is checked by the admin
//! API's own rules (its field table, then its entity's `apply`), so a file accepts exactly
//! what the admin API accepts; then the constraints across entities (unique names and
//! `client_id`s, a plugin's service) are checked, and `{vault://env/NAME}` secrets resolved.
//! Every problem is collected, each named by its path in the file.

use super::{DeclarativeError, Problem};
use crate::admin::credentials::{apply_fields, blank as blank_credential};
use crate::admin::error::AdminError;
use crate::admin::input::Shape;
use crate::admin::named::Named;
use crate::admin::plugins::{check_name, config_from, config_input};
use crate::admin::{consumers, credentials, plugins, services, AdminBody, Encoding};
use crate::model::{Consumer, Credential, OAuth2Config, Service};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// How a file is written. YAML is read by a YAML 1.2 parser, which reads JSON too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// Format versions of Kong's declarative files this reader understands (same entities).
const FORMAT_VERSIONS: [&str; 3] = ["1.1", "2.1", "3.0"];

/// The fields of a file's top level.
pub const TOP_LEVEL_FIELDS: [&str; 7] = [
    "_format_version",
    "_info",
    "_transform",
    "_comment",
    "services",
    "plugins",
    "consumers",
];

/// The state a file declares, every entity checked.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Only stored entities carrying all these tags are managed (decK's `select_tags`); every
    /// entity of the file gets them. Empty: everything is managed.
    pub select_tags: Vec<String>,
    pub services: Vec<DesiredService>,
    pub plugins: Vec<DesiredPlugin>,
    pub consumers: Vec<DesiredConsumer>,
    pub credentials: Vec<DesiredCredential>,
}

#[derive(Debug, Clone)]
pub struct DesiredService {
    pub path: String,
    pub service: Service,
}

impl DesiredService {
    pub fn name(&self) -> &str {
        self.service.name.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct DesiredPlugin {
    pub path: String,
    /// The name of the service (of this file) it protects.
    pub service: String,
    pub enabled: bool,
    /// An empty `provision_key` keeps the stored one (or generates one for a new plugin).
    pub config: OAuth2Config,
}

#[derive(Debug, Clone)]
pub struct DesiredConsumer {
    pub path: String,
    pub consumer: Consumer,
}

impl DesiredConsumer {
    /// What a sync matches the stored consumer by: the username, else the custom_id.
    pub fn key(&self) -> ConsumerKey {
        match (&self.consumer.username, &self.consumer.custom_id) {
            (Some(u), _) if !u.is_empty() => ConsumerKey::Username(u.clone()),
            (_, Some(c)) => ConsumerKey::CustomId(c.clone()),
            _ => ConsumerKey::Username(String::new()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConsumerKey {
    Username(String),
    CustomId(String),
}

impl ConsumerKey {
    pub fn matches(&self, c: &Consumer) -> bool {
        match self {
            ConsumerKey::Username(u) => c.username.as_deref() == Some(u.as_str()),
            ConsumerKey::CustomId(id) => c.custom_id.as_deref() == Some(id.as_str()),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            ConsumerKey::Username(s) | ConsumerKey::CustomId(s) => s,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DesiredCredential {
    pub path: String,
    /// Index of its consumer in [`Desired::consumers`].
    pub consumer: usize,
    /// Its fields; `client_secret` is empty here (see `secret`), `consumer_id` unset.
    pub credential: Credential,
    /// The plaintext secret (resolved from the environment); `None` keeps the stored one (or
    /// generates one for a new credential).
    pub secret: Option<String>,
}

/// Reads and checks a file. `env` resolves `{vault://env/NAME}` references (the process
/// environment in the service; a map in tests).
pub fn parse(
    bytes: &[u8],
    format: Format,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Desired, DeclarativeError> {
    let document = match format {
        Format::Json => serde_json::from_slice::<Value>(bytes)
            .map_err(|e| DeclarativeError::file("", format!("not valid JSON: {e}")))?,
        Format::Yaml => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| DeclarativeError::file("", "the file is not valid UTF-8"))?;
            // YAML 1.2's booleans only: `client_id: no` is the text "no" (the Norway problem).
            let mut options = serde_saphyr::Options::default();
            options.strict_booleans = true;
            serde_saphyr::from_str_with_options::<Value>(text, options)
                .map_err(|e| DeclarativeError::file("", format!("not valid YAML: {e}")))?
        }
    };
    let Value::Object(top) = document else {
        return Err(DeclarativeError::file(
            "",
            "the file must be a mapping of _format_version, services, consumers, plugins",
        ));
    };
    let mut reader = Reader {
        env,
        problems: Vec::new(),
    };
    let desired = reader.document(top);
    if reader.problems.is_empty() {
        Ok(desired)
    } else {
        Err(DeclarativeError::Invalid(reader.problems))
    }
}

struct Reader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

/// Where an entity is, for its problems.
struct At<'p> {
    path: &'p str,
    entity_type: &'static str,
    name: Option<String>,
}

impl Reader<'_> {
    fn problem(&mut self, at: &At<'_>, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            entity: at.path.to_string(),
            entity_type: at.entity_type,
            name: at.name.clone(),
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn file_problem(&mut self, field: &str, message: impl Into<String>) {
        let at = At {
            path: "",
            entity_type: "file",
            name: None,
        };
        self.problem(&at, field, message);
    }

    /// The admin API's error of an entity, as problems (a schema violation's fields
    /// flattened into paths).
    fn admin_error(&mut self, at: &At<'_>, error: AdminError) {
        match error {
            AdminError::Schema(fields) => self.flatten(at, "", &Value::Object(fields)),
            other => self.problem(at, "", other.to_string()),
        }
    }

    fn flatten(&mut self, at: &At<'_>, prefix: &str, error: &Value) {
        match error {
            Value::Object(fields) => {
                for (name, inner) in fields {
                    match name.strip_prefix('@') {
                        // `@entity` (and `@config`): messages about the record as a whole.
                        Some(_) => self.messages(at, prefix, inner),
                        None if prefix.is_empty() => self.flatten(at, name, inner),
                        None => self.flatten(at, &format!("{prefix}.{name}"), inner),
                    }
                }
            }
            // A list's errors, element by element (null where an element is good).
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().filter(|(_, v)| !v.is_null()) {
                    self.flatten(at, &format!("{prefix}[{i}]"), item);
                }
            }
            other => self.messages(at, prefix, other),
        }
    }

    fn messages(&mut self, at: &At<'_>, field: &str, messages: &Value) {
        let text = match messages {
            Value::String(message) => message.clone(),
            Value::Array(items) => {
                let texts: Vec<String> = items
                    .iter()
                    .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
                    .collect();
                texts.join("; ")
            }
            other => other.to_string(),
        };
        self.problem(at, field, text);
    }

    fn document(&mut self, mut top: Map<String, Value>) -> Desired {
        let mut desired = Desired::default();
        self.format_version(top.remove("_format_version"));
        if let Some(info) = top.remove("_info") {
            desired.select_tags = self.info(info);
        }
        match top.remove("_transform") {
            None | Some(Value::Bool(_)) => {}
            Some(_) => self.file_problem("_transform", "expected a boolean"),
        }
        match top.remove("_comment") {
            None | Some(Value::String(_)) => {}
            Some(_) => self.file_problem("_comment", "expected a string"),
        }
        let services = self.list(&mut top, "services");
        let plugins = self.list(&mut top, "plugins");
        let consumers = self.list(&mut top, "consumers");
        for name in top.keys() {
            self.file_problem(name, "unknown field");
        }
        for (i, service) in services.into_iter().enumerate() {
            self.service(&format!("services[{i}]"), service, &mut desired);
        }
        for (i, plugin) in plugins.into_iter().enumerate() {
            let path = format!("plugins[{i}]");
            if let Some(plugin) = self.plugin(&path, plugin, None) {
                desired.plugins.push(plugin);
            }
        }
        for (i, consumer) in consumers.into_iter().enumerate() {
            self.consumer(&format!("consumers[{i}]"), consumer, &mut desired);
        }
        self.add_select_tags(&mut desired);
        self.check_constraints(&desired);
        desired
    }

    fn format_version(&mut self, version: Option<Value>) {
        match version {
            None => self.file_problem("_format_version", "required field missing"),
            Some(Value::String(v)) if FORMAT_VERSIONS.contains(&v.as_str()) => {}
            Some(other) => self.file_problem(
                "_format_version",
                format!(
                    "expected one of: {} (got {other})",
                    FORMAT_VERSIONS.join(", ")
                ),
            ),
        }
    }

    fn info(&mut self, info: Value) -> Vec<String> {
        let Value::Object(mut info) = info else {
            self.file_problem("_info", "expected a record");
            return Vec::new();
        };
        let tags = match info.remove("select_tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(|t| t.as_str().is_some_and(is_tag)) => {
                items
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            }
            Some(_) => {
                self.file_problem("_info.select_tags", "expected a set of non-empty tags");
                Vec::new()
            }
        };
        for name in info.keys() {
            self.file_problem(&format!("_info.{name}"), "unknown field");
        }
        tags
    }

    /// The array under `field` of `record` (taken out of it); absent or null is empty.
    fn array_of(
        &mut self,
        at: &At<'_>,
        record: &mut Map<String, Value>,
        field: &str,
    ) -> Vec<Value> {
        match record.remove(field) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.problem(at, field, "expected an array");
                Vec::new()
            }
        }
    }

    fn list(&mut self, top: &mut Map<String, Value>, field: &str) -> Vec<Value> {
        let at = At {
            path: "",
            entity_type: "file",
            name: None,
        };
        self.array_of(&at, top, field)
    }

    /// The entity's fields, once every one is in the admin API's table for it.
    fn record(&mut self, at: &At<'_>, value: Value, shape: Shape) -> Option<Map<String, Value>> {
        let Value::Object(fields) = value else {
            self.problem(at, "", "expected a record");
            return None;
        };
        let body = AdminBody {
            params: fields,
            encoding: Encoding::Json,
        };
        match body.checked(shape) {
            Ok(fields) => Some(fields),
            Err(e) => {
                self.admin_error(at, e);
                None
            }
        }
    }

    fn service(&mut self, path: &str, value: Value, desired: &mut Desired) {
        let name = key_of(&value, "name");
        let at = At {
            path,
            entity_type: "service",
            name: name.clone(),
        };
        let mut value = value;
        let nested = match &mut value {
            Value::Object(fields) => self.array_of(&at, fields, "plugins"),
            _ => Vec::new(),
        };
        let Some(fields) = self.record(&at, value, services::SHAPE) else {
            return;
        };
        let mut service = Service::blank();
        if let Err(e) = service.apply(&fields) {
            return self.admin_error(&at, e);
        }
        for (i, plugin) in nested.into_iter().enumerate() {
            let plugin_path = format!("{path}.plugins[{i}]");
            if let Some(plugin) = self.plugin(&plugin_path, plugin, name.as_deref()) {
                desired.plugins.push(plugin);
            }
        }
        desired.services.push(DesiredService {
            path: path.to_string(),
            service,
        });
    }

    /// A plugin, nested in the service `owner` names or (top level) naming its `service`.
    fn plugin(&mut self, path: &str, value: Value, owner: Option<&str>) -> Option<DesiredPlugin> {
        let at = At {
            path,
            entity_type: "plugin",
            name: key_of(&value, "name"),
        };
        let mut value = value;
        let service = match (&mut value, owner) {
            (Value::Object(fields), None) => self.service_reference(&at, fields.remove("service")),
            (_, owner) => owner.map(str::to_owned),
        };
        let mut fields = self.record(&at, value, plugins::SHAPE)?;
        let checked = check_name(&fields).and_then(|()| {
            let mut input = config_input(&fields)?;
            self.resolve_secret(&at, &mut input, "config.provision_key", "provision_key");
            config_from(&input)
        });
        let config = match checked {
            Ok(config) => config,
            Err(e) => {
                self.admin_error(&at, e);
                return None;
            }
        };
        let enabled = match fields.remove("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                self.problem(&at, "enabled", "expected a boolean");
                return None;
            }
        };
        Some(DesiredPlugin {
            path: path.to_string(),
            service: service?,
            enabled,
            config,
        })
    }

    /// A top-level plugin's `service`: the name of a service (or `{name: ...}`).
    fn service_reference(&mut self, at: &At<'_>, reference: Option<Value>) -> Option<String> {
        let name = match reference {
            Some(Value::String(name)) => Some(name),
            Some(Value::Object(mut fields)) if fields.len() == 1 => match fields.remove("name") {
                Some(Value::String(name)) => Some(name),
                _ => None,
            },
            None | Some(Value::Null) => {
                self.problem(at, "service", "required field missing");
                return None;
            }
            Some(_) => None,
        };
        if name.is_none() {
            self.problem(at, "service", "expected a service name (or {name: ...})");
        }
        name
    }

    fn consumer(&mut self, path: &str, value: Value, desired: &mut Desired) {
        let name = key_of(&value, "username").or_else(|| key_of(&value, "custom_id"));
        let at = At {
            path,
            entity_type: "consumer",
            name,
        };
        let mut value = value;
        let nested = match &mut value {
            Value::Object(fields) => self.array_of(&at, fields, "oauth2_credentials"),
            _ => Vec::new(),
        };
        let Some(fields) = self.record(&at, value, consumers::SHAPE) else {
            return;
        };
        let mut consumer = Consumer::blank();
        if let Err(e) = consumer.apply(&fields) {
            return self.admin_error(&at, e);
        }
        let index = desired.consumers.len();
        desired.consumers.push(DesiredConsumer {
            path: path.to_string(),
            consumer,
        });
        for (i, credential) in nested.into_iter().enumerate() {
            let credential_path = format!("{path}.oauth2_credentials[{i}]");
            if let Some(credential) = self.credential(&credential_path, credential, index) {
                desired.credentials.push(credential);
            }
        }
    }

    fn credential(
        &mut self,
        path: &str,
        value: Value,
        consumer: usize,
    ) -> Option<DesiredCredential> {
        let at = At {
            path,
            entity_type: "oauth2_credential",
            name: key_of(&value, "client_id"),
        };
        let mut value = value;
        let secret = match &mut value {
            // Nested under its consumer: a `consumer` of its own would say something else.
            Value::Object(fields) if fields.contains_key("consumer") => {
                self.problem(
                    &at,
                    "consumer",
                    "unknown field (the credential is nested in its consumer)",
                );
                return None;
            }
            Value::Object(fields) => {
                self.resolve_secret(&at, fields, "client_secret", "client_secret");
                fields.remove("client_secret")
            }
            _ => None,
        };
        let fields = self.record(&at, value, credentials::SHAPE)?;
        let secret = match secret {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(Value::String(_)) => {
                self.problem(
                    &at,
                    "client_secret",
                    "must not be empty (leave it out to keep the stored one)",
                );
                return None;
            }
            Some(_) => {
                self.problem(&at, "client_secret", "expected a string");
                return None;
            }
        };
        let hash_secret = match fields.get("hash_secret") {
            None | Some(Value::Null) => false,
            Some(v) => v.as_bool().unwrap_or_default(),
        };
        if fields
            .get("client_id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            // Generated ids would make every sync a new credential: the file names it.
            self.problem(
                &at,
                "client_id",
                "required field missing (a sync matches credentials by it)",
            );
            return None;
        }
        let mut credential = blank_credential(String::new());
        credential.hash_secret = hash_secret;
        if let Err(e) = apply_fields(&mut credential, &fields) {
            self.admin_error(&at, e);
            return None;
        }
        Some(DesiredCredential {
            path: path.to_string(),
            consumer,
            credential,
            secret,
        })
    }

    /// Replaces a `{vault://env/NAME}` string at `record[field]` by the variable's value.
    fn resolve_secret(
        &mut self,
        at: &At<'_>,
        record: &mut Map<String, Value>,
        shown: &str,
        field: &str,
    ) {
        let Some(Value::String(text)) = record.get(field) else {
            return;
        };
        match resolve_vault(text, self.env) {
            Ok(None) => {}
            Ok(Some(value)) => {
                record.insert(field.to_string(), Value::String(value));
            }
            Err(message) => self.problem(at, shown, message),
        }
    }

    /// decK puts the `select_tags` on every entity of the file.
    fn add_select_tags(&mut self, desired: &mut Desired) {
        let tags = desired.select_tags.clone();
        if tags.is_empty() {
            return;
        }
        let add = |own: &mut Option<Vec<String>>| {
            let list = own.get_or_insert_with(Vec::new);
            for tag in &tags {
                if !list.contains(tag) {
                    list.push(tag.clone());
                }
            }
        };
        desired
            .services
            .iter_mut()
            .for_each(|s| add(&mut s.service.tags));
        desired
            .consumers
            .iter_mut()
            .for_each(|c| add(&mut c.consumer.tags));
        desired
            .credentials
            .iter_mut()
            .for_each(|c| add(&mut c.credential.tags));
    }

    /// What no single entity shows: names and client_ids given twice, a plugin whose service
    /// the file does not declare, two plugins on one service.
    fn check_constraints(&mut self, desired: &Desired) {
        let mut keys = Keys::default();
        for s in &desired.services {
            keys.note("name", s.service.name.as_deref(), &s.path);
        }
        for c in &desired.consumers {
            keys.note("username", c.consumer.username.as_deref(), &c.path);
            keys.note("custom_id", c.consumer.custom_id.as_deref(), &c.path);
        }
        for c in &desired.credentials {
            keys.note("client_id", Some(&c.credential.client_id), &c.path);
        }
        for (path, field, key, earlier) in keys.duplicates {
            self.problems.push(Problem {
                entity_type: entity_type_at(&path),
                entity: path,
                name: Some(key.clone()),
                field: field.to_string(),
                message: format!("'{key}' is given twice (also at {earlier})"),
            });
        }
        let mut protected: HashMap<&str, &str> = HashMap::new();
        for p in &desired.plugins {
            let at = At {
                path: &p.path,
                entity_type: "plugin",
                name: Some("oauth2".into()),
            };
            if !desired.services.iter().any(|s| s.name() == p.service) {
                let message = format!("the file declares no service named '{}'", p.service);
                self.problem(&at, "service", message);
            } else if let Some(earlier) = protected.insert(&p.service, &p.path) {
                let message = format!(
                    "service '{}' has an oauth2 plugin already (at {earlier})",
                    p.service
                );
                self.problem(&at, "name", message);
            }
        }
    }
}

/// Unique keys seen so far, and the entities that repeat one.
#[derive(Default)]
struct Keys {
    first: HashMap<(&'static str, String), String>,
    /// (path, field, key, path of the first)
    duplicates: Vec<(String, &'static str, String, String)>,
}

impl Keys {
    fn note(&mut self, field: &'static str, key: Option<&str>, path: &str) {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return;
        };
        match self.first.get(&(field, key.to_string())) {
            Some(earlier) => {
                let earlier = earlier.clone();
                self.duplicates
                    .push((path.to_string(), field, key.to_string(), earlier));
            }
            None => {
                self.first
                    .insert((field, key.to_string()), path.to_string());
            }
        }
    }
}

/// `services[0]` → service, `consumers[1].oauth2_credentials[0]` → oauth2_credential.
fn entity_type_at(path: &str) -> &'static str {
    if path.contains("oauth2_credentials") {
        "oauth2_credential"
    } else if path.contains("plugins") {
        "plugin"
    } else if path.starts_with("consumers") {
        "consumer"
    } else {
        "service"
    }
}

/// A string field of a record, to name it in problems.
fn key_of(value: &Value, field: &str) -> Option<String> {
    value.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn is_tag(tag: &str) -> bool {
    !tag.is_empty() && !tag.contains(',') && tag.chars().all(|c| !c.is_control())
}

/// Kong's `{vault://env/NAME}`: the environment variable NAME upper-cased, `-` read as `_`
/// (`{vault://env/shoe-fly-secret}` is `SHOE_FLY_SECRET`). `Ok(None)` for a plain value. A
/// variable unset or empty is an error: a secret never silently becomes empty.
pub fn resolve_vault(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let Some(reference) = text.strip_prefix("{vault://") else {
        return Ok(None);
    };
    let Some(reference) = reference.strip_suffix('}') else {
        return Err(format!(
            "'{text}' is not a vault reference {{vault://env/NAME}}"
        ));
    };
    let Some(name) = reference.strip_prefix("env/") else {
        return Err(format!(
            "'{text}': only the env vault ({{vault://env/NAME}}) is available"
        ));
    };
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(format!(
            "'{text}': the variable name may have only letters, digits, '_' and '-'"
        ));
    }
    let variable = name.to_ascii_uppercase().replace('-', "_");
    match env(&variable) {
        Some(value) if !value.is_empty() => Ok(Some(value)),
        Some(_) => Err(format!(
            "{text}: the environment variable {variable} is empty"
        )),
        None => Err(format!(
            "{text}: the environment variable {variable} is not set"
        )),
    }
}
