//! The store's configuration as a declarative file. Secrets (`client_secret`, the plugin's
//! `provision_key`) are left out: a file without them keeps the stored ones when synced, so
//! dump → sync changes nothing, and the dump can be kept in version control.

use super::sync::current;
use crate::model::{Consumer, Credential, Plugin, Service};
use crate::store::{Store, StoreResult};
use serde_json::{json, Map, Value};

/// The configuration, in Kong's declarative format (`_format_version: "3.0"`).
pub async fn dump(store: &Store) -> StoreResult<Value> {
    let current = store.read(current).await?;
    let mut services = current.services.clone();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let services: Vec<Value> = services
        .iter()
        .map(|s| {
            let plugins: Vec<Value> = current
                .plugins
                .iter()
                .filter(|p| p.service_id.as_deref() == Some(s.id.as_str()))
                .map(plugin)
                .collect();
            service(s, plugins)
        })
        .collect();
    let mut consumers = current.consumers.clone();
    consumers.sort_by(|a, b| (&a.username, &a.custom_id).cmp(&(&b.username, &b.custom_id)));
    let consumers: Vec<Value> = consumers
        .iter()
        .map(|c| {
            let mut credentials: Vec<&Credential> = current
                .credentials
                .iter()
                .filter(|k| k.consumer_id == c.id)
                .collect();
            credentials.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            consumer(c, credentials.into_iter().map(credential).collect())
        })
        .collect();
    Ok(json!({
        "_format_version": "3.0",
        "services": services,
        "consumers": consumers,
    }))
}

/// A record without its null fields (absent and null read the same).
fn record(fields: Value) -> Value {
    match fields {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

fn service(s: &Service, plugins: Vec<Value>) -> Value {
    let mut out = record(json!({"name": s.name, "url": s.url, "tags": s.tags}));
    if !plugins.is_empty() {
        out["plugins"] = Value::Array(plugins);
    }
    out
}

fn plugin(p: &Plugin) -> Value {
    let mut config = match serde_json::to_value(&p.config) {
        Ok(Value::Object(config)) => config,
        _ => Map::new(),
    };
    config.remove("provision_key");
    json!({"name": p.name, "enabled": p.enabled, "config": config})
}

fn consumer(c: &Consumer, credentials: Vec<Value>) -> Value {
    let mut out = record(json!({"username": c.username, "custom_id": c.custom_id, "tags": c.tags}));
    if !credentials.is_empty() {
        out["oauth2_credentials"] = Value::Array(credentials);
    }
    out
}

fn credential(c: &Credential) -> Value {
    record(json!({
        "name": c.name,
        "client_id": c.client_id,
        "hash_secret": c.hash_secret,
        "redirect_uris": c.redirect_uris,
        "client_type": c.client_type.as_str(),
        "tags": c.tags,
    }))
}
