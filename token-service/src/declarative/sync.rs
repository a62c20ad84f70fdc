//! Syncing: the writes that make the managed entities match a file, decided and made in one
//! write transaction (so concurrent admin writes land wholly before or after it, and a failing
//! write rolls everything back), with the store operations the admin API uses (so deletions
//! reach the change feed, and every Envoy, the same way).
//!
//! Entities are matched by their natural keys (service `name`, consumer `username` or else
//! `custom_id`, credential `client_id`, a service's `oauth2` plugin), and matched ones are
//! updated in place: ids stay, and so do the tokens issued to them. Only what differs is
//! written, so a second sync of the same file writes nothing.
//!
//! Hashed client secrets are compared with the stored hash (PBKDF2 when the secret was chosen
//! by a person), never re-hashed when they match. PBKDF2 is slow by design, so a sync first
//! plans on a read snapshot, doing every hash and check there, and the transaction then plans
//! again with those answers at hand (a check it lacks, after a concurrent change, it does
//! itself).

use super::document::{ConsumerKey, Desired};
use super::{DeclarativeError, Problem};
use crate::admin::error::AdminError;
use crate::admin::named::Named;
use crate::model::{new_id, now, Consumer, Credential, Plugin, Service};
use crate::secrets::{constant_time_eq, hash_client_secret, random_string, verify_client_secret};
use crate::store::{Page, Repo, Store, StoreError, StoreResult};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

/// What a sync does (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub action: Action,
    /// `service`, `plugin`, `consumer`, `oauth2_credential`.
    pub entity_type: &'static str,
    pub id: String,
    /// Its natural key (name, username, client_id; a plugin's service).
    pub name: String,
    /// For an update, the fields that change.
    pub fields: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    /// `{"created": [...], "updated": [...], "deleted": [...], "summary": {...}}`; secrets
    /// never appear (an update names the field `client_secret`, not its value).
    pub fn to_json(&self, dry_run: bool) -> Value {
        let of = |action: Action| -> Vec<Value> {
            self.changes
                .iter()
                .filter(|c| c.action == action)
                .map(|c| {
                    let mut entry = json!({"type": c.entity_type, "id": c.id, "name": c.name});
                    if action == Action::Update {
                        entry["fields"] = json!(c.fields);
                    }
                    entry
                })
                .collect()
        };
        json!({
            "dry_run": dry_run,
            "created": of(Action::Create),
            "updated": of(Action::Update),
            "deleted": of(Action::Delete),
            "summary": {
                "create": self.count(Action::Create),
                "update": self.count(Action::Update),
                "delete": self.count(Action::Delete),
            },
        })
    }

    /// decK's lines: `creating consumer 'Shoe Fly Shoe'`, ...
    pub fn lines(&self) -> Vec<String> {
        self.changes
            .iter()
            .map(|c| {
                let verb = match c.action {
                    Action::Create => "creating",
                    Action::Update => "updating",
                    Action::Delete => "deleting",
                };
                let fields = if c.fields.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.fields.join(", "))
                };
                format!("{verb} {} '{}' {}{fields}", c.entity_type, c.name, c.id)
            })
            .collect()
    }
}

/// The diff applying `desired` would make, changing nothing.
pub async fn diff(store: &Store, desired: Desired) -> Result<Diff, DeclarativeError> {
    store
        .read(move |repo| Ok(plan(repo, &desired, &mut Secrets::default()).map(|p| p.diff())))
        .await?
}

/// Applies `desired` in one transaction; answers what it changed.
pub async fn sync(store: &Store, desired: Desired) -> Result<Diff, DeclarativeError> {
    // The slow part (hashing and checking secrets) off the writer, on a snapshot.
    let (desired, mut secrets) = store
        .read(move |repo| {
            let mut secrets = Secrets::default();
            Ok(plan(repo, &desired, &mut secrets).map(|_| (desired, secrets)))
        })
        .await??;
    store
        .transaction(move |repo| {
            repo.lock_declarative_sync()?;
            let plan = plan(repo, &desired, &mut secrets)?;
            plan.apply(repo)?;
            Ok(plan.diff())
        })
        .await
}

/// Secret checks and hashes, remembered from the planning pass for the transaction's.
#[derive(Default)]
struct Secrets {
    /// (stored form, plaintext) → whether they match.
    checks: HashMap<(String, String), bool>,
    /// (client_id, plaintext) → the hashed form to store.
    hashes: HashMap<(String, String), String>,
}

impl Secrets {
    fn matches(&mut self, stored: &Credential, plain: &str) -> bool {
        if !stored.hash_secret {
            return constant_time_eq(stored.client_secret.as_bytes(), plain.as_bytes());
        }
        *self
            .checks
            .entry((stored.client_secret.clone(), plain.to_string()))
            .or_insert_with(|| verify_client_secret(plain, &stored.client_secret, true))
    }

    /// The stored form of a secret the file sets.
    fn stored_form(&mut self, client_id: &str, plain: &str, hash: bool) -> String {
        if !hash {
            return plain.to_string();
        }
        self.hashes
            .entry((client_id.to_string(), plain.to_string()))
            .or_insert_with(|| hash_client_secret(plain, false))
            .clone()
    }
}

/// The configuration entities in the store.
pub(super) struct Current {
    pub services: Vec<Service>,
    pub plugins: Vec<Plugin>,
    pub consumers: Vec<Consumer>,
    pub credentials: Vec<Credential>,
}

/// Every row of a paged listing.
fn all<T>(read: impl Fn(i64, i64) -> StoreResult<Page<T>>) -> StoreResult<Vec<T>> {
    const PAGE: i64 = 1000;
    let mut rows = Vec::new();
    let mut offset = 0;
    loop {
        let page = read(offset, PAGE)?;
        rows.extend(page.data);
        match page.next_offset {
            Some(next) => offset = next,
            None => return Ok(rows),
        }
    }
}

pub(super) fn current(repo: &Repo<'_>) -> StoreResult<Current> {
    Ok(Current {
        services: all(|o, s| repo.list_services(o, s))?,
        plugins: all(|o, s| repo.list_plugins(None, o, s))?,
        consumers: all(|o, s| repo.list_consumers(o, s))?,
        credentials: all(|o, s| repo.list_credentials(None, o, s))?,
    })
}

/// One write of a sync.
#[derive(Debug, Clone)]
enum Entity {
    Service(Service),
    Plugin(Plugin),
    Consumer(Consumer),
    Credential(Credential),
}

#[derive(Debug, Clone)]
struct Write {
    action: Action,
    entity: Entity,
    /// Where the file declares it (none for a deletion).
    path: Option<String>,
    /// Its natural key, for the diff.
    name: String,
    fields: Vec<String>,
}

impl Write {
    fn entity_type(&self) -> &'static str {
        match self.entity {
            Entity::Service(_) => "service",
            Entity::Plugin(_) => "plugin",
            Entity::Consumer(_) => "consumer",
            Entity::Credential(_) => "oauth2_credential",
        }
    }

    fn id(&self) -> &str {
        match &self.entity {
            Entity::Service(s) => &s.id,
            Entity::Plugin(p) => &p.id,
            Entity::Consumer(c) => &c.id,
            Entity::Credential(c) => &c.id,
        }
    }

    /// The admin API's checks against the other stored rows (a username that is another
    /// consumer's id would make `/consumers/{id or username}` ambiguous).
    fn check_against(&self, repo: &Repo<'_>) -> Result<(), DeclarativeError> {
        let (Entity::Consumer(c), Some(path)) = (&self.entity, &self.path) else {
            return Ok(());
        };
        match c.check_against(repo) {
            Ok(()) => Ok(()),
            Err(AdminError::Conflict(field)) => Err(DeclarativeError::Invalid(vec![Problem {
                entity: path.clone(),
                entity_type: "consumer",
                name: Some(self.name.clone()),
                message: format!("another consumer's key is this {field}"),
                field,
            }])),
            Err(AdminError::Store(e)) => Err(DeclarativeError::Store(e)),
            Err(other) => Err(DeclarativeError::Store(StoreError::Task(other.to_string()))),
        }
    }

    fn run(&self, repo: &Repo<'_>) -> StoreResult<()> {
        use Action::*;
        match (&self.entity, self.action) {
            (Entity::Service(s), Create) => repo.insert_service(s),
            (Entity::Service(s), Update) => repo.update_service(s),
            (Entity::Service(s), Delete) => repo.delete_service(&s.id).map(drop),
            (Entity::Plugin(p), Create) => repo.insert_plugin(p),
            (Entity::Plugin(p), Update) => repo.update_plugin(p),
            (Entity::Plugin(p), Delete) => repo.delete_plugin(&p.id).map(drop),
            (Entity::Consumer(c), Create) => repo.insert_consumer(c),
            (Entity::Consumer(c), Update) => repo.update_consumer(c),
            (Entity::Consumer(c), Delete) => repo.delete_consumer(&c.id).map(drop),
            (Entity::Credential(c), Create) => repo.insert_credential(c),
            (Entity::Credential(c), Update) => repo.update_credential(c),
            (Entity::Credential(c), Delete) => repo.delete_credential(&c.id).map(drop),
        }
    }
}

/// The writes, in an order the constraints allow: deletions first (plugins and credentials
/// before what owns them), then each kind's updates before its creations (a name an update
/// gives up may be a new entity's), owners before what they own.
#[derive(Default)]
struct Plan {
    deletes: Vec<Write>,
    services: Vec<Write>,
    plugins: Vec<Write>,
    consumers: Vec<Write>,
    credentials: Vec<Write>,
}

impl Plan {
    fn writes(&self) -> impl Iterator<Item = &Write> {
        fn ordered(writes: &[Write]) -> impl Iterator<Item = &Write> {
            let updates = writes.iter().filter(|w| w.action == Action::Update);
            updates.chain(writes.iter().filter(|w| w.action == Action::Create))
        }
        self.deletes
            .iter()
            .chain(ordered(&self.services))
            .chain(ordered(&self.plugins))
            .chain(ordered(&self.consumers))
            .chain(ordered(&self.credentials))
    }

    fn diff(&self) -> Diff {
        Diff {
            changes: self
                .writes()
                .map(|w| Change {
                    action: w.action,
                    entity_type: w.entity_type(),
                    id: w.id().to_string(),
                    name: w.name.clone(),
                    fields: w.fields.clone(),
                })
                .collect(),
        }
    }

    /// A unique constraint an entity outside the file holds is the file's problem, named.
    fn apply(&self, repo: &Repo<'_>) -> Result<(), DeclarativeError> {
        for write in self.writes() {
            write.check_against(repo)?;
            write.run(repo).map_err(|e| match (e, &write.path) {
                (StoreError::Conflict(field), Some(path)) => {
                    DeclarativeError::Invalid(vec![Problem {
                        entity: path.clone(),
                        entity_type: write.entity_type(),
                        name: Some(write.name.clone()),
                        message: format!(
                            "another {} has this {field} already",
                            write.entity_type()
                        ),
                        field,
                    }])
                }
                (e, _) => DeclarativeError::Store(e),
            })?;
        }
        Ok(())
    }
}

/// Whether a stored entity with these tags is one the file manages.
fn managed(select_tags: &[String], tags: &Option<Vec<String>>) -> bool {
    select_tags
        .iter()
        .all(|t| tags.iter().flatten().any(|own| own == t))
}

/// Tags are a set: order and absence-vs-empty do not make a difference.
fn same_tags(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    let set =
        |t: &Option<Vec<String>>| -> HashSet<String> { t.iter().flatten().cloned().collect() };
    set(a) == set(b)
}

fn changed(fields: &mut Vec<String>, name: &str, differs: bool) {
    if differs {
        fields.push(name.to_string());
    }
}

/// A stored entity the file names but does not manage (it lacks the select_tags).
fn unmanaged(path: &str, entity_type: &'static str, name: &str, field: &str) -> Problem {
    Problem {
        entity: path.to_string(),
        entity_type,
        name: Some(name.to_string()),
        field: field.to_string(),
        message: format!(
            "a stored {entity_type} has this {field} but lacks the file's select_tags: the file does not manage it"
        ),
    }
}

fn plan(
    repo: &Repo<'_>,
    desired: &Desired,
    secrets: &mut Secrets,
) -> Result<Plan, DeclarativeError> {
    let current = current(repo)?;
    let tags = &desired.select_tags;
    let mut plan = Plan::default();
    let mut problems = Vec::new();

    // Services, by name.
    let mut service_ids: HashMap<&str, String> = HashMap::new();
    let mut kept_services = HashSet::new();
    for d in &desired.services {
        let stored = current.services.iter().find(|s| s.name == d.service.name);
        let mut wanted = d.service.clone();
        let action = match stored {
            Some(s) if !managed(tags, &s.tags) => {
                problems.push(unmanaged(&d.path, "service", d.name(), "name"));
                continue;
            }
            Some(s) => {
                kept_services.insert(s.id.clone());
                wanted.id.clone_from(&s.id);
                wanted.created_at = s.created_at;
                let mut fields = Vec::new();
                changed(&mut fields, "url", s.url != wanted.url);
                changed(&mut fields, "tags", !same_tags(&s.tags, &wanted.tags));
                if fields.is_empty() {
                    service_ids.insert(d.name(), s.id.clone());
                    continue;
                }
                Some(fields)
            }
            None => None,
        };
        service_ids.insert(d.name(), wanted.id.clone());
        plan.services.push(Write {
            action: if action.is_some() {
                Action::Update
            } else {
                Action::Create
            },
            name: d.name().to_string(),
            entity: Entity::Service(wanted),
            path: Some(d.path.clone()),
            fields: action.unwrap_or_default(),
        });
    }
    let service_managed = |id: &Option<String>| {
        current
            .services
            .iter()
            .find(|s| Some(&s.id) == id.as_ref())
            .is_some_and(|s| managed(tags, &s.tags))
    };

    // Plugins, one oauth2 plugin per service.
    let mut kept_plugins = HashSet::new();
    for d in &desired.plugins {
        let Some(service_id) = service_ids.get(d.service.as_str()) else {
            continue; // its service was refused above
        };
        let stored = current
            .plugins
            .iter()
            .find(|p| p.service_id.as_deref() == Some(service_id) && p.name == "oauth2");
        let mut config = d.config.clone();
        let t = now();
        let (action, wanted, fields) = match stored {
            Some(p) => {
                kept_plugins.insert(p.id.clone());
                if config.provision_key.is_empty() {
                    config.provision_key.clone_from(&p.config.provision_key);
                }
                let fields = config_changes(&p.config, &config, p.enabled != d.enabled);
                if fields.is_empty() {
                    continue;
                }
                let wanted = Plugin {
                    updated_at: t,
                    enabled: d.enabled,
                    config,
                    ..p.clone()
                };
                (Action::Update, wanted, fields)
            }
            None => {
                if config.provision_key.is_empty() {
                    config.provision_key = random_string();
                }
                let wanted = Plugin {
                    id: new_id(),
                    created_at: t,
                    updated_at: t,
                    name: "oauth2".into(),
                    service_id: Some(service_id.clone()),
                    enabled: d.enabled,
                    config,
                };
                (Action::Create, wanted, Vec::new())
            }
        };
        plan.plugins.push(Write {
            action,
            entity: Entity::Plugin(wanted),
            path: Some(d.path.clone()),
            name: d.service.clone(),
            fields,
        });
    }

    // Consumers, by username (or custom_id).
    let mut consumer_ids: Vec<Option<String>> = Vec::new();
    let mut kept_consumers = HashSet::new();
    for d in &desired.consumers {
        let key = d.key();
        let stored = current.consumers.iter().find(|c| key.matches(c));
        let mut wanted = d.consumer.clone();
        let field = match key {
            ConsumerKey::Username(_) => "username",
            ConsumerKey::CustomId(_) => "custom_id",
        };
        let fields = match stored {
            Some(c) if !managed(tags, &c.tags) => {
                problems.push(unmanaged(&d.path, "consumer", key.text(), field));
                consumer_ids.push(None);
                continue;
            }
            Some(c) => {
                kept_consumers.insert(c.id.clone());
                wanted.id.clone_from(&c.id);
                wanted.created_at = c.created_at;
                let mut fields = Vec::new();
                changed(&mut fields, "username", c.username != wanted.username);
                changed(&mut fields, "custom_id", c.custom_id != wanted.custom_id);
                changed(&mut fields, "tags", !same_tags(&c.tags, &wanted.tags));
                Some(fields)
            }
            None => None,
        };
        consumer_ids.push(Some(wanted.id.clone()));
        let action = match &fields {
            Some(f) if f.is_empty() => continue,
            Some(_) => Action::Update,
            None => Action::Create,
        };
        plan.consumers.push(Write {
            action,
            entity: Entity::Consumer(wanted),
            path: Some(d.path.clone()),
            name: key.text().to_string(),
            fields: fields.unwrap_or_default(),
        });
    }

    // Credentials, by client_id.
    let mut kept_credentials = HashSet::new();
    for d in &desired.credentials {
        let Some(Some(consumer_id)) = consumer_ids.get(d.consumer) else {
            continue; // its consumer was refused above
        };
        let client_id = &d.credential.client_id;
        let stored = current
            .credentials
            .iter()
            .find(|c| &c.client_id == client_id);
        let mut wanted = d.credential.clone();
        wanted.consumer_id.clone_from(consumer_id);
        let write = match stored {
            Some(c) if !managed(tags, &c.tags) => {
                problems.push(unmanaged(
                    &d.path,
                    "oauth2_credential",
                    client_id,
                    "client_id",
                ));
                continue;
            }
            Some(c) => {
                kept_credentials.insert(c.id.clone());
                wanted.id.clone_from(&c.id);
                wanted.created_at = c.created_at;
                let mut fields = credential_changes(c, &wanted);
                match (&d.secret, c.hash_secret == wanted.hash_secret) {
                    (Some(plain), same_hashing) => {
                        if same_hashing && secrets.matches(c, plain) {
                            wanted.client_secret.clone_from(&c.client_secret);
                        } else {
                            wanted.client_secret =
                                secrets.stored_form(client_id, plain, wanted.hash_secret);
                            fields.push("client_secret".into());
                        }
                    }
                    (None, true) => wanted.client_secret.clone_from(&c.client_secret),
                    (None, false) => {
                        problems.push(Problem {
                            entity: d.path.clone(),
                            entity_type: "oauth2_credential",
                            name: Some(client_id.clone()),
                            field: "client_secret".into(),
                            message: "required to change hash_secret (the stored secret cannot be re-read)".into(),
                        });
                        continue;
                    }
                }
                if fields.is_empty() {
                    continue;
                }
                (Action::Update, fields)
            }
            None => {
                let (plain, generated) = match &d.secret {
                    Some(plain) => (plain.clone(), false),
                    None => (random_string(), true),
                };
                wanted.client_secret = match (wanted.hash_secret, generated) {
                    (false, _) => plain,
                    (true, true) => hash_client_secret(&plain, true),
                    (true, false) => secrets.stored_form(client_id, &plain, true),
                };
                (Action::Create, Vec::new())
            }
        };
        plan.credentials.push(Write {
            action: write.0,
            entity: Entity::Credential(wanted),
            path: Some(d.path.clone()),
            name: client_id.clone(),
            fields: write.1,
        });
    }

    if !problems.is_empty() {
        return Err(DeclarativeError::Invalid(problems));
    }

    // What the file manages and no longer declares goes: plugins of managed services,
    // managed credentials, consumers and services.
    let delete = |entity: Entity, name: String| Write {
        action: Action::Delete,
        entity,
        path: None,
        name,
        fields: Vec::new(),
    };
    for p in &current.plugins {
        if !kept_plugins.contains(&p.id) && service_managed(&p.service_id) {
            let service = current
                .services
                .iter()
                .find(|s| Some(&s.id) == p.service_id.as_ref())
                .and_then(|s| s.name.clone())
                .unwrap_or_default();
            plan.deletes
                .push(delete(Entity::Plugin(p.clone()), service));
        }
    }
    for c in &current.credentials {
        if !kept_credentials.contains(&c.id) && managed(tags, &c.tags) {
            plan.deletes
                .push(delete(Entity::Credential(c.clone()), c.client_id.clone()));
        }
    }
    for c in &current.consumers {
        if !kept_consumers.contains(&c.id) && managed(tags, &c.tags) {
            let name = c
                .username
                .clone()
                .or_else(|| c.custom_id.clone())
                .unwrap_or_default();
            plan.deletes.push(delete(Entity::Consumer(c.clone()), name));
        }
    }
    for s in &current.services {
        if !kept_services.contains(&s.id) && managed(tags, &s.tags) {
            let name = s.name.clone().unwrap_or_default();
            plan.deletes.push(delete(Entity::Service(s.clone()), name));
        }
    }
    Ok(plan)
}

/// The plugin's fields that differ: `enabled`, and `config.<field>` for each config field.
fn config_changes(
    stored: &crate::model::OAuth2Config,
    wanted: &crate::model::OAuth2Config,
    enabled_differs: bool,
) -> Vec<String> {
    let mut fields = Vec::new();
    changed(&mut fields, "enabled", enabled_differs);
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(stored), serde_json::to_value(wanted))
    else {
        fields.push("config".into());
        return fields;
    };
    for (name, value) in &b {
        if a.get(name) != Some(value) {
            fields.push(format!("config.{name}"));
        }
    }
    fields
}

/// The credential's fields that differ, the secret aside.
fn credential_changes(stored: &Credential, wanted: &Credential) -> Vec<String> {
    let mut fields = Vec::new();
    changed(
        &mut fields,
        "consumer",
        stored.consumer_id != wanted.consumer_id,
    );
    changed(&mut fields, "name", stored.name != wanted.name);
    changed(
        &mut fields,
        "redirect_uris",
        stored.redirect_uris != wanted.redirect_uris,
    );
    changed(
        &mut fields,
        "client_type",
        stored.client_type != wanted.client_type,
    );
    changed(
        &mut fields,
        "hash_secret",
        stored.hash_secret != wanted.hash_secret,
    );
    changed(&mut fields, "tags", !same_tags(&stored.tags, &wanted.tags));
    fields
}
