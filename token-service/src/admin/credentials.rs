//! OAuth 2.0 client credentials: `/consumers/{c}/oauth2` and `/oauth2`.

use super::error::{fields, AdminError, AdminResult};
use super::input::{Fields, Kind, Shape};
use super::named::find_in as find_named;
use super::{consumers, list_page, read_body, ListQuery};
use crate::app::AppState;
use crate::grants::redirect::registration_error;
use crate::model::{is_uuid, new_id, now, ClientType, Consumer, Credential, MAX_IDENTIFIER_BYTES};
use crate::params::Params;
use crate::secrets::{hash_client_secret, random_string};
use crate::store::Repo;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// A credential's input fields. `redirect_uri` is the seed's spelling of `redirect_uris`;
/// `consumer` names the owner on `/oauth2` (the path names it on `/consumers/{c}/oauth2`).
pub const SHAPE: Shape = &[
    ("name", Kind::String),
    ("client_id", Kind::String),
    ("client_secret", Kind::String),
    ("hash_secret", Kind::Boolean),
    ("redirect_uris", Kind::Array),
    ("redirect_uri", Kind::StringOrArray),
    ("client_type", Kind::String),
    ("tags", Kind::Set),
    ("consumer", Kind::Reference),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/consumers/{consumer}/oauth2",
            get(list_for_consumer).post(create_for_consumer),
        )
        .route(
            "/consumers/{consumer}/oauth2/{credential}",
            get(show_for_consumer)
                .patch(update_for_consumer)
                .put(upsert_for_consumer)
                .delete(remove_for_consumer),
        )
        .route("/oauth2", get(list_all).post(create))
        .route(
            "/oauth2/{credential}",
            get(show).patch(update).put(upsert).delete(remove),
        )
}

/// `plain_secret` replaces the stored (possibly hashed) secret in the answer that created it.
fn to_json(c: &Credential, plain_secret: Option<&str>) -> Value {
    json!({
        "id": c.id,
        "created_at": c.created_at,
        "consumer": {"id": c.consumer_id},
        "name": c.name,
        "client_id": c.client_id,
        "client_secret": plain_secret.unwrap_or(&c.client_secret),
        "hash_secret": c.hash_secret,
        "redirect_uris": c.redirect_uris,
        "client_type": c.client_type.as_str(),
        "tags": c.tags,
    })
}

/// The client secret a body sets, in its stored form. Prepared before the write transaction:
/// hashing is slow and must not hold up the store's writer.
struct Secret {
    hash_secret: Option<bool>,
    /// What the answer shows: the plaintext, when set or generated here.
    plain: Option<String>,
    stored: Option<String>,
}

fn read_secret(body: &Params, creating: bool) -> AdminResult<Secret> {
    let mut f = Fields::default();
    let secret = f
        .string(body, "client_secret")
        .map(Option::unwrap_or_default);
    let hash = f.boolean(body, "hash_secret");
    if !creating && secret.is_some() != hash.is_some() {
        f.error(
            "@entity",
            json!(["all or none of these fields must be set: 'hash_secret', 'client_secret'"]),
        );
    }
    f.finish()?;
    let (plain, generated) = match secret.filter(|s| !s.is_empty()) {
        Some(s) => (Some(s), false),
        None if creating => (Some(random_string()), true),
        None => (None, false),
    };
    // A new secret comes with `hash_secret` when updating; a new credential hashes only
    // when asked to.
    let stored = plain.as_ref().map(|p| match hash {
        Some(true) => hash_client_secret(p, generated),
        _ => p.clone(),
    });
    Ok(Secret {
        hash_secret: hash,
        plain,
        stored,
    })
}

/// Why a redirect URI cannot be registered: Kong's rules (absolute, with a host, no
/// fragment), and no control characters or spaces, which the URL parser would silently drop
/// or escape while the stored text (matched exactly later, and sent back in `Location`-like
/// answers) kept them.
fn redirect_uri_error(uri: &str) -> Option<String> {
    // Kong's own rules (and texts) first.
    if let Some(error) = registration_error(uri) {
        return Some(error);
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some(format!(
            "'{}' contains control characters or spaces",
            uri.escape_default()
        ));
    }
    // The parser reads `https:///x` as `https://x/`; the text must name its host itself.
    let names_host = uri
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
    (!names_host).then(|| format!("'{uri}' is not an absolute URI with a host"))
}

/// Applies body fields (and the prepared secret) over `c` and validates the result.
fn apply(c: &mut Credential, body: &Params, creating: bool, secret: &Secret) -> AdminResult<()> {
    let mut f = Fields::default();
    if let Some(v) = f.string(body, "name") {
        c.name = v.unwrap_or_default();
    }
    if let Some(v) = f.string(body, "client_id") {
        c.client_id = v.unwrap_or_default();
    }
    let uris = f
        .string_list(body, "redirect_uris", false)
        .or_else(|| f.string_list(body, "redirect_uri", false));
    if let Some(uris) = uris {
        let problems: Vec<Value> = uris
            .iter()
            .flatten()
            .map(|u| redirect_uri_error(u).map_or(Value::Null, Value::String))
            .collect();
        if problems.iter().any(|p| !p.is_null()) {
            f.error("redirect_uris", problems);
        }
        c.redirect_uris = uris;
    }
    if let Some(v) = f.string_list(body, "tags", true) {
        c.tags = v;
    }
    if let Some(v) = f.string(body, "client_type") {
        match v.as_deref() {
            Some("public") => c.client_type = ClientType::Public,
            Some("confidential") | None => c.client_type = ClientType::Confidential,
            Some(_) => f.error("client_type", "expected one of: confidential, public"),
        }
    }
    if c.name.is_empty() {
        f.error("name", "required field missing");
    }
    if creating && c.client_id.is_empty() {
        c.client_id = random_string();
    }
    if c.client_id.is_empty() {
        f.error("client_id", "required field missing");
    } else if c.client_id.len() > MAX_IDENTIFIER_BYTES {
        f.error(
            "client_id",
            format!("length must be at most {MAX_IDENTIFIER_BYTES}"),
        );
    }
    f.finish()?;
    if let Some(hash) = secret.hash_secret {
        c.hash_secret = hash;
    }
    if let Some(stored) = &secret.stored {
        c.client_secret.clone_from(stored);
    }
    Ok(())
}

/// Applies the fields of a body that sets no secret (a declarative file's credential, whose
/// secret the sync compares and stores itself) over `c`, with the admin API's validation.
pub(crate) fn apply_fields(c: &mut Credential, body: &Params) -> AdminResult<()> {
    let no_secret = Secret {
        hash_secret: None,
        plain: None,
        stored: None,
    };
    apply(c, body, false, &no_secret)
}

pub(crate) fn blank(consumer_id: String) -> Credential {
    Credential {
        id: new_id(),
        created_at: now(),
        consumer_id,
        name: String::new(),
        client_id: String::new(),
        client_secret: String::new(),
        hash_secret: false,
        redirect_uris: None,
        client_type: ClientType::Confidential,
        tags: None,
    }
}

/// The credential `key` names (of `consumer_id`, when given), inside a transaction.
fn find_in(repo: &Repo<'_>, key: &str, consumer_id: Option<&str>) -> AdminResult<Credential> {
    repo.credential(key)?
        .filter(|c| consumer_id.is_none_or(|id| id == c.consumer_id))
        .ok_or(AdminError::NotFound)
}

/// The id of the consumer a path names (`/consumers/{consumer}/oauth2`), or of the one a
/// `/oauth2` body references (`{"consumer": {"id": ...}}`).
enum Owner {
    Path(String),
    Body,
}

impl Owner {
    fn id_in(&self, repo: &Repo<'_>, body: &Params) -> AdminResult<String> {
        match self {
            Owner::Path(key) => Ok(find_named::<Consumer>(repo, key)?.id),
            Owner::Body => consumer_from_body(repo, body),
        }
    }
}

fn consumer_from_body(repo: &Repo<'_>, body: &Params) -> AdminResult<String> {
    let mut f = Fields::default();
    let reference = f.reference(body, "consumer").flatten();
    f.finish()?;
    let Some(key) = reference else {
        return Err(AdminError::Schema(fields([(
            "consumer",
            json!("required field missing"),
        )])));
    };
    match find_named::<Consumer>(repo, &key) {
        Ok(consumer) => Ok(consumer.id),
        Err(AdminError::NotFound) => Err(AdminError::Schema(fields([(
            "consumer",
            json!("the consumer does not exist"),
        )]))),
        Err(other) => Err(other),
    }
}

/// POST: a new credential of the owner.
async fn insert(
    state: &AppState,
    owner: Owner,
    body: Params,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let secret = read_secret(&body, true)?;
    let plain = secret.plain.clone();
    let credential = state
        .store
        .transaction(move |repo| {
            let mut credential = blank(owner.id_in(repo, &body)?);
            apply(&mut credential, &body, true, &secret)?;
            repo.insert_credential(&credential)?;
            Ok::<_, AdminError>(credential)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(to_json(&credential, plain.as_deref())),
    ))
}

async fn create_for_consumer(
    State(state): State<AppState>,
    Path(consumer): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    insert(&state, Owner::Path(consumer), body).await
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    insert(&state, Owner::Body, body).await
}

async fn list_for_consumer(
    State(state): State<AppState>,
    Path(consumer): Path<String>,
    q: ListQuery,
) -> AdminResult<Json<Value>> {
    let window = q.window()?;
    let consumer = consumers::find(&state, consumer).await?;
    let path = format!("/consumers/{}/oauth2", consumer.id);
    let read = move |repo: &Repo<'_>, offset, size| {
        repo.list_credentials(Some(&consumer.id), offset, size)
    };
    list_page(&state, window, &path, read, |c| to_json(c, None)).await
}

async fn list_all(State(state): State<AppState>, q: ListQuery) -> AdminResult<Json<Value>> {
    let read = |repo: &Repo<'_>, offset, size| repo.list_credentials(None, offset, size);
    list_page(&state, q.window()?, "/oauth2", read, |c| to_json(c, None)).await
}

async fn show_for_consumer(
    State(state): State<AppState>,
    Path((consumer, key)): Path<(String, String)>,
) -> AdminResult<Json<Value>> {
    let credential = state
        .store
        .read(move |repo| {
            Ok(find_named::<Consumer>(repo, &consumer)
                .and_then(|consumer| find_in(repo, &key, Some(&consumer.id))))
        })
        .await??;
    Ok(Json(to_json(&credential, None)))
}

async fn show(State(state): State<AppState>, Path(key): Path<String>) -> AdminResult<Json<Value>> {
    let credential = state
        .store
        .read(move |repo| Ok(find_in(repo, &key, None)))
        .await??;
    Ok(Json(to_json(&credential, None)))
}

/// PATCH: read, change and write in one transaction.
async fn patch(
    state: &AppState,
    key: String,
    consumer: Option<String>,
    body: Params,
) -> AdminResult<Json<Value>> {
    let secret = read_secret(&body, false)?;
    let plain = secret.plain.clone();
    let credential = state
        .store
        .transaction(move |repo| {
            let consumer_id = match consumer {
                Some(key) => Some(find_named::<Consumer>(repo, &key)?.id),
                None => None,
            };
            let mut credential = find_in(repo, &key, consumer_id.as_deref())?;
            apply(&mut credential, &body, false, &secret)?;
            repo.update_credential(&credential)?;
            Ok::<_, AdminError>(credential)
        })
        .await?;
    Ok(Json(to_json(&credential, plain.as_deref())))
}

async fn update_for_consumer(
    State(state): State<AppState>,
    Path((consumer, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    patch(&state, key, Some(consumer), body).await
}

async fn update(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    patch(&state, key, None, body).await
}

/// PUT replaces or creates; a key that is not a UUID becomes the `client_id`.
async fn put(
    state: &AppState,
    key: String,
    owner: Owner,
    mut body: Params,
) -> AdminResult<Json<Value>> {
    let secret = read_secret(&body, true)?;
    let plain = secret.plain.clone();
    let credential = state
        .store
        .transaction(move |repo| {
            let existing = repo.credential(&key)?;
            let mut credential = blank(owner.id_in(repo, &body)?);
            match &existing {
                Some(found) => {
                    credential.id.clone_from(&found.id);
                    credential.created_at = found.created_at;
                    credential.client_id.clone_from(&found.client_id);
                }
                None if is_uuid(&key) => credential.id = key,
                None => {
                    body.entry("client_id").or_insert(Value::String(key));
                }
            }
            apply(&mut credential, &body, true, &secret)?;
            match existing {
                Some(_) => repo.update_credential(&credential)?,
                None => repo.insert_credential(&credential)?,
            }
            Ok::<_, AdminError>(credential)
        })
        .await?;
    Ok(Json(to_json(&credential, plain.as_deref())))
}

async fn upsert_for_consumer(
    State(state): State<AppState>,
    Path((consumer, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    put(&state, key, Owner::Path(consumer), body).await
}

async fn upsert(
    State(state): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    put(&state, key, Owner::Body, body).await
}

/// DELETE of a credential the path names (404 when it does not, as before).
async fn delete(
    state: &AppState,
    key: String,
    consumer: Option<String>,
) -> AdminResult<StatusCode> {
    state
        .store
        .transaction(move |repo| {
            let consumer_id = match consumer {
                Some(key) => Some(find_named::<Consumer>(repo, &key)?.id),
                None => None,
            };
            let credential = find_in(repo, &key, consumer_id.as_deref())?;
            repo.delete_credential(&credential.id)?;
            Ok::<_, AdminError>(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_for_consumer(
    State(state): State<AppState>,
    Path((consumer, key)): Path<(String, String)>,
) -> AdminResult<StatusCode> {
    delete(&state, key, Some(consumer)).await
}

async fn remove(State(state): State<AppState>, Path(key): Path<String>) -> AdminResult<StatusCode> {
    delete(&state, key, None).await
}
