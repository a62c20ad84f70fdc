//! `/services/{s}/plugins`, `/plugins`: the `oauth2` plugin and its Kong configuration.
//! `/apis/{api}/plugins` is the seed tutorial's older spelling: `value.x` means `config.x`, and
//! the authorization code grant is on unless the request enables a grant itself.

use super::error::{fields, AdminError, AdminResult};
use super::input::{Fields, Kind, Shape};
use super::named::find_in as find_named;
use super::{list_page, read_body, services, ListQuery};
use crate::app::AppState;
use crate::model::{
    new_id, now, AccessTokenFormat, OAuth2Config, PkceMode, Plugin, Service, MAX_LIFETIME_S,
};
use crate::params::Params;
use crate::secrets::random_string;
use crate::store::Repo;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

const GRANT_FLAGS: [&str; 4] = [
    "enable_authorization_code",
    "enable_implicit_grant",
    "enable_client_credentials",
    "enable_password_grant",
];

/// The `oauth2` plugin's configuration fields (Kong's, and the older name
/// `persistent_refresh_token` of `reuse_refresh_token`).
pub const CONFIG_SHAPE: Shape = &[
    ("scopes", Kind::Array),
    ("mandatory_scope", Kind::Boolean),
    ("provision_key", Kind::String),
    ("token_expiration", Kind::Integer),
    ("enable_authorization_code", Kind::Boolean),
    ("enable_implicit_grant", Kind::Boolean),
    ("enable_client_credentials", Kind::Boolean),
    ("enable_password_grant", Kind::Boolean),
    ("hide_credentials", Kind::Boolean),
    ("accept_http_if_already_terminated", Kind::Boolean),
    ("anonymous", Kind::String),
    ("global_credentials", Kind::Boolean),
    ("auth_header_name", Kind::String),
    ("refresh_token_ttl", Kind::Integer),
    ("reuse_refresh_token", Kind::Boolean),
    ("persistent_refresh_token", Kind::Boolean),
    ("pkce", Kind::String),
    ("realm", Kind::String),
    ("access_token_format", Kind::String),
    ("identity_jwt_header", Kind::String),
    ("identity_headers", Kind::Boolean),
];

/// A plugin's input fields.
pub const SHAPE: Shape = &[
    ("name", Kind::String),
    ("enabled", Kind::Boolean),
    ("config", Kind::Record(CONFIG_SHAPE)),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/services/{service}/plugins",
            get(list_for_service).post(create_for_service),
        )
        .route(
            "/apis/{service}/plugins",
            get(list_for_service).post(create_for_api),
        )
        .route("/plugins", get(list_all))
        .route("/plugins/{id}", get(show).patch(update).delete(remove))
}

pub fn to_json(p: &Plugin) -> Value {
    json!({
        "id": p.id,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "name": p.name,
        "service": p.service_id.as_ref().map(|id| json!({"id": id})),
        "route": null,
        "consumer": null,
        "enabled": p.enabled,
        "protocols": ["http", "https"],
        "config": p.config,
    })
}

/// Applies the `config` object of a request over `config`, with Kong's field validation.
fn apply_config(
    config: &mut OAuth2Config,
    input: &Map<String, Value>,
) -> Result<(), Map<String, Value>> {
    let mut f = Fields::default();
    if let Some(v) = f.string_list(input, "scopes", true) {
        config.scopes = v;
    }
    // Older configurations' name for reuse_refresh_token.
    if let Some(v) = f.boolean(input, "persistent_refresh_token") {
        config.reuse_refresh_token = v;
    }
    let flags: [(&str, &mut bool); 10] = [
        ("mandatory_scope", &mut config.mandatory_scope),
        (
            "enable_authorization_code",
            &mut config.enable_authorization_code,
        ),
        ("enable_implicit_grant", &mut config.enable_implicit_grant),
        (
            "enable_client_credentials",
            &mut config.enable_client_credentials,
        ),
        ("enable_password_grant", &mut config.enable_password_grant),
        ("hide_credentials", &mut config.hide_credentials),
        (
            "accept_http_if_already_terminated",
            &mut config.accept_http_if_already_terminated,
        ),
        ("global_credentials", &mut config.global_credentials),
        ("reuse_refresh_token", &mut config.reuse_refresh_token),
        ("identity_headers", &mut config.identity_headers),
    ];
    for (name, slot) in flags {
        if let Some(v) = f.boolean(input, name) {
            *slot = v;
        }
    }
    if let Some(v) = f.string(input, "provision_key") {
        config.provision_key = v.unwrap_or_default();
    }
    if let Some(v) = f.string(input, "anonymous") {
        config.anonymous = v.filter(|a| !a.is_empty());
    }
    if let Some(v) = f.string(input, "auth_header_name") {
        config.auth_header_name = v
            .unwrap_or_else(|| "authorization".into())
            .to_ascii_lowercase();
    }
    if let Some(v) = f.string(input, "realm") {
        config.realm = v;
    }
    if let Some(v) = f.integer(input, "token_expiration") {
        config.token_expiration = v;
    }
    if let Some(v) = f.integer(input, "refresh_token_ttl") {
        config.refresh_token_ttl = v;
    }
    if let Some(v) = f.string(input, "pkce") {
        match v.as_deref() {
            Some("none") => config.pkce = PkceMode::None,
            Some("lax") | None => config.pkce = PkceMode::Lax,
            Some("strict") => config.pkce = PkceMode::Strict,
            Some(_) => f.error("pkce", "expected one of: none, lax, strict"),
        }
    }
    if let Some(v) = f.string(input, "access_token_format") {
        match v.as_deref() {
            Some("opaque") | None => config.access_token_format = AccessTokenFormat::Opaque,
            Some("jwt") => config.access_token_format = AccessTokenFormat::Jwt,
            Some(_) => f.error("access_token_format", "expected one of: opaque, jwt"),
        }
    }
    if let Some(v) = f.string(input, "identity_jwt_header") {
        config.identity_jwt_header = v.map(|name| name.to_ascii_lowercase());
    }
    check_config(config, &mut f);
    f.finish().map_err(|e| match e {
        AdminError::Schema(errors) => errors,
        _ => Map::new(),
    })
}

fn check_config(config: &OAuth2Config, f: &mut Fields) {
    // Kong bounds refresh_token_ttl so; token_expiration gets the same bound, so that a
    // lifetime added to a time can never overflow (about three years is far beyond any use).
    let lifetimes = [
        ("refresh_token_ttl", config.refresh_token_ttl),
        ("token_expiration", config.token_expiration),
    ];
    for (name, seconds) in lifetimes {
        if !(0..=MAX_LIFETIME_S).contains(&seconds) {
            f.error(
                name,
                format!("value should be between 0 and {MAX_LIFETIME_S}"),
            );
        }
    }
    if config.mandatory_scope && config.scopes.as_ref().is_none_or(Vec::is_empty) {
        f.error("scopes", "required field missing");
    }
    // Granted scopes reach upstreams in X-Authenticated-Scope, space-separated.
    let scope_token = |s: &String| {
        s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    };
    if !config.scopes.iter().flatten().all(scope_token) {
        f.error(
            "scopes",
            "each scope must be printable ASCII without spaces, '\"' or '\\' (RFC 6749 3.3)",
        );
    }
    if !is_header_name(&config.auth_header_name) {
        f.error("auth_header_name", "expected a valid header name");
    }
    if let Some(problem) = config.realm.as_deref().and_then(realm_error) {
        f.error("realm", problem);
    }
    check_jwt_settings(config, f);
    let grants = [
        config.enable_authorization_code,
        config.enable_implicit_grant,
        config.enable_client_credentials,
        config.enable_password_grant,
    ];
    if !grants.contains(&true) {
        f.error(
            "@config",
            format!(
                "at least one of these fields must be true: {}",
                GRANT_FLAGS.join(", ")
            ),
        );
    }
}

/// The combination rules of docs/jwt-access-tokens.md §1.
fn check_jwt_settings(config: &OAuth2Config, f: &mut Fields) {
    if config.access_token_format == AccessTokenFormat::Jwt && config.token_expiration == 0 {
        f.error(
            "access_token_format",
            "jwt requires a token_expiration greater than 0 (RFC 9068: a JWT access token expires)",
        );
    }
    if let Some(problem) = config
        .identity_jwt_header
        .as_deref()
        .and_then(identity_header_error)
    {
        f.error("identity_jwt_header", problem);
    }
    if !config.identity_headers && config.identity_jwt_header.is_none() {
        f.error(
            "identity_headers",
            "false requires identity_jwt_header (the upstream must learn who is asking)",
        );
    }
}

/// Headers the filter must not set for the upstream: framing and routing headers, and the
/// identity headers it sets (or strips) itself.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "cookie",
    "x-consumer-id",
    "x-consumer-username",
    "x-consumer-custom-id",
    "x-credential-identifier",
    "x-authenticated-userid",
    "x-authenticated-scope",
    "x-anonymous-consumer",
];

/// `identity_jwt_header` (already lower-cased): a header name the filter may set.
fn identity_header_error(name: &str) -> Option<&'static str> {
    if !is_header_name(name) {
        return Some("expected a valid header name");
    }
    RESERVED_HEADERS
        .contains(&name)
        .then_some("this header cannot carry the identity JWT")
}

/// Longest `realm` and `auth_header_name`: both are written into headers.
const MAX_HEADER_TEXT: usize = 128;

/// An HTTP header name (RFC 9110 token), in the spelling the filter can look up: letters,
/// digits, `-` and `_`.
fn is_header_name(name: &str) -> bool {
    (1..=MAX_HEADER_TEXT).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The realm goes into `WWW-Authenticate: Bearer realm="..."` of every 401, as a quoted
/// string: printable ASCII without `"` or `\`, so it can neither end the quote nor the header.
fn realm_error(realm: &str) -> Option<String> {
    if realm.len() > MAX_HEADER_TEXT {
        return Some(format!("length must be at most {MAX_HEADER_TEXT}"));
    }
    let printable = |b: u8| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\';
    (!realm.bytes().all(printable))
        .then(|| "must be printable ASCII without control characters, '\"' or '\\'".to_string())
}

/// Kong reports record-level config errors as the string `config`, field errors nested.
fn config_errors(mut errors: Map<String, Value>) -> AdminError {
    let config = match errors.remove("@config") {
        Some(record) if errors.is_empty() => record,
        Some(_) | None => Value::Object(errors),
    };
    AdminError::Schema(fields([("config", config)]))
}

/// A plugin's whole configuration from a `config` record (Kong's defaults for what it leaves
/// out), with the admin API's validation and errors. `provision_key` stays empty when not given.
pub(crate) fn config_from(input: &Map<String, Value>) -> AdminResult<OAuth2Config> {
    let mut config = OAuth2Config::default();
    apply_config(&mut config, input).map_err(config_errors)?;
    Ok(config)
}

pub(crate) fn config_input(body: &Params) -> AdminResult<Map<String, Value>> {
    match body.get("config") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(config)) => Ok(config.clone()),
        Some(_) => Err(AdminError::Schema(fields([(
            "config",
            json!("expected a record"),
        )]))),
    }
}

pub(crate) fn check_name(body: &Params) -> AdminResult<()> {
    match body.get("name").and_then(Value::as_str) {
        Some("oauth2") => Ok(()),
        Some(other) => Err(AdminError::Schema(fields([(
            "name",
            json!(format!(
                "plugin '{other}' not enabled; only 'oauth2' is available"
            )),
        )]))),
        None => Err(AdminError::Schema(fields([(
            "name",
            json!("required field missing"),
        )]))),
    }
}

async fn insert(
    state: &AppState,
    service_key: String,
    body: Params,
    seed_defaults: bool,
) -> AdminResult<(StatusCode, Json<Value>)> {
    check_name(&body)?;
    let mut input = config_input(&body)?;
    if seed_defaults && !GRANT_FLAGS.iter().any(|flag| input.contains_key(*flag)) {
        input.insert("enable_authorization_code".into(), Value::Bool(true));
    }
    let mut config = OAuth2Config::default();
    apply_config(&mut config, &input).map_err(config_errors)?;
    if config.provision_key.is_empty() {
        config.provision_key = random_string();
    }
    let mut f = Fields::default();
    let enabled = f.boolean(&body, "enabled").unwrap_or(true);
    f.finish()?;
    let plugin = state
        .store
        .transaction(move |repo| {
            let service = find_named::<Service>(repo, &service_key)?;
            let t = now();
            let plugin = Plugin {
                id: new_id(),
                created_at: t,
                updated_at: t,
                name: "oauth2".into(),
                service_id: Some(service.id),
                enabled,
                config,
            };
            repo.insert_plugin(&plugin)?;
            Ok::<_, AdminError>(plugin)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(to_json(&plugin))))
}

async fn create_for_service(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    insert(&state, service, body, false).await
}

async fn create_for_api(
    State(state): State<AppState>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<(StatusCode, Json<Value>)> {
    let mut body = read_body(&headers, body).await?;
    value_as_config(&mut body.params)?;
    insert(&state, service, body.checked(SHAPE)?, true).await
}

/// The seed's `value.x` is `config.x`. Given both ways, a field would be ambiguous.
fn value_as_config(body: &mut Params) -> AdminResult<()> {
    let Some(value) = body.remove("value") else {
        return Ok(());
    };
    match (body.get_mut("config"), value) {
        (None, value) => {
            body.insert("config".into(), value);
        }
        (Some(Value::Object(config)), Value::Object(value)) => {
            for (name, v) in value {
                if config.contains_key(&name) {
                    let error = format!("given as both config.{name} and value.{name}");
                    return Err(AdminError::Schema(fields([(
                        "value",
                        json!({ name: error }),
                    )])));
                }
                config.insert(name, v);
            }
        }
        (Some(_), value) => {
            // One of the two is not a record at all.
            let field = if value.is_object() { "config" } else { "value" };
            return Err(AdminError::Schema(fields([(
                field,
                json!("expected a record"),
            )])));
        }
    }
    Ok(())
}

async fn list_for_service(
    State(state): State<AppState>,
    Path(service): Path<String>,
    q: ListQuery,
) -> AdminResult<Json<Value>> {
    let window = q.window()?;
    let service = services::find(&state, service).await?;
    let path = format!("/services/{}/plugins", service.id);
    let read =
        move |repo: &Repo<'_>, offset, size| repo.list_plugins(Some(&service.id), offset, size);
    list_page(&state, window, &path, read, to_json).await
}

async fn list_all(State(state): State<AppState>, q: ListQuery) -> AdminResult<Json<Value>> {
    let read = |repo: &Repo<'_>, offset, size| repo.list_plugins(None, offset, size);
    list_page(&state, q.window()?, "/plugins", read, to_json).await
}

async fn find(state: &AppState, id: String) -> AdminResult<Plugin> {
    state
        .store
        .read(move |repo| repo.plugin(&id))
        .await?
        .ok_or(AdminError::NotFound)
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> AdminResult<Json<Value>> {
    Ok(Json(to_json(&find(&state, id).await?)))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AdminResult<Json<Value>> {
    let body = read_body(&headers, body).await?.checked(SHAPE)?;
    if body.contains_key("name") {
        check_name(&body)?;
    }
    let input = config_input(&body)?;
    let mut f = Fields::default();
    let enabled = f.boolean(&body, "enabled");
    f.finish()?;
    // Read, change and write in one transaction, so concurrent PATCHes all land.
    let plugin = state
        .store
        .transaction(move |repo| {
            let mut plugin = repo.plugin(&id)?.ok_or(AdminError::NotFound)?;
            apply_config(&mut plugin.config, &input).map_err(config_errors)?;
            if plugin.config.provision_key.is_empty() {
                plugin.config.provision_key = random_string();
            }
            if let Some(enabled) = enabled {
                plugin.enabled = enabled;
            }
            plugin.updated_at = now();
            repo.update_plugin(&plugin)?;
            Ok::<_, AdminError>(plugin)
        })
        .await?;
    Ok(Json(to_json(&plugin)))
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> AdminResult<StatusCode> {
    state
        .store
        .write(move |repo| repo.delete_plugin(&id).map(drop))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(input: Value) -> Value {
        let mut config = OAuth2Config::default();
        match apply_config(&mut config, input.as_object().unwrap_or(&Map::new())) {
            Ok(()) => Value::Null,
            Err(e) => match config_errors(e) {
                AdminError::Schema(f) => Value::Object(f),
                _ => Value::Null,
            },
        }
    }

    #[test]
    fn a_grant_must_be_enabled() {
        assert_eq!(
            errors(json!({})),
            json!({"config": "at least one of these fields must be true: enable_authorization_code, enable_implicit_grant, enable_client_credentials, enable_password_grant"})
        );
    }

    #[test]
    fn mandatory_scope_needs_scopes() {
        assert_eq!(
            errors(json!({"enable_authorization_code": true, "mandatory_scope": true})),
            json!({"config": {"scopes": "required field missing"}})
        );
    }

    #[test]
    fn refresh_token_ttl_is_bounded() {
        assert_eq!(
            errors(json!({"enable_authorization_code": true, "refresh_token_ttl": 252979200})),
            json!({"config": {"refresh_token_ttl": "value should be between 0 and 100000000"}})
        );
    }

    #[test]
    fn form_strings_are_coerced_and_scopes_split() {
        let mut config = OAuth2Config::default();
        let input = json!({"enable_authorization_code": "true", "scopes": "a,b", "token_expiration": "60", "persistent_refresh_token": "true"});
        assert_eq!(
            apply_config(&mut config, input.as_object().unwrap_or(&Map::new())),
            Ok(())
        );
        assert_eq!(config.scopes, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(config.token_expiration, 60);
        assert!(config.reuse_refresh_token);
    }

    /// The configuration the input makes, or the errors it gets.
    fn applied(input: Value) -> Result<OAuth2Config, Value> {
        let mut config = OAuth2Config::default();
        match apply_config(&mut config, input.as_object().unwrap_or(&Map::new())) {
            Ok(()) => Ok(config),
            Err(_) => Err(errors(input)),
        }
    }

    #[test]
    fn jwt_settings_default_to_kongs_behaviour() {
        let config = applied(json!({"enable_authorization_code": true})).expect("valid");
        assert_eq!(config.access_token_format, AccessTokenFormat::Opaque);
        assert_eq!(config.identity_jwt_header, None);
        assert!(config.identity_headers);
    }

    #[test]
    fn jwt_settings_are_read_and_header_names_lower_cased() {
        let config = applied(
            json!({"enable_password_grant": true, "access_token_format": "jwt",
            "identity_jwt_header": "X-Identity-JWT", "identity_headers": "false"}),
        )
        .expect("valid");
        assert_eq!(config.access_token_format, AccessTokenFormat::Jwt);
        assert_eq!(
            config.identity_jwt_header.as_deref(),
            Some("x-identity-jwt")
        );
        assert!(!config.identity_headers);
        let config = applied(json!({"enable_password_grant": true,
            "identity_jwt_header": "Authorization", "access_token_format": null}))
        .expect("valid");
        assert_eq!(config.identity_jwt_header.as_deref(), Some("authorization"));
        assert_eq!(config.access_token_format, AccessTokenFormat::Opaque);
    }

    #[test]
    fn an_unknown_access_token_format_is_refused_by_name() {
        for bad in [json!("JWT"), json!("paseto"), json!("")] {
            assert_eq!(
                errors(json!({"enable_password_grant": true, "access_token_format": bad})),
                json!({"config": {"access_token_format": "expected one of: opaque, jwt"}})
            );
        }
        assert_eq!(
            errors(json!({"enable_password_grant": true, "access_token_format": 1})),
            json!({"config": {"access_token_format": "expected a string"}})
        );
    }

    #[test]
    fn a_jwt_must_expire() {
        assert_eq!(
            errors(
                json!({"enable_password_grant": true, "access_token_format": "jwt", "token_expiration": 0})
            ),
            json!({"config": {"access_token_format": "jwt requires a token_expiration greater than 0 (RFC 9068: a JWT access token expires)"}})
        );
        // Updating a jwt plugin to tokens that never expire is refused the same way.
        let mut config =
            applied(json!({"enable_password_grant": true, "access_token_format": "jwt"}))
                .expect("valid");
        let update = json!({"token_expiration": 0});
        assert!(apply_config(&mut config, update.as_object().unwrap_or(&Map::new())).is_err());
    }

    #[test]
    fn identity_headers_off_requires_an_identity_jwt() {
        assert_eq!(
            errors(json!({"enable_password_grant": true, "identity_headers": false})),
            json!({"config": {"identity_headers": "false requires identity_jwt_header (the upstream must learn who is asking)"}})
        );
    }

    #[test]
    fn the_identity_jwt_header_must_be_a_header_the_filter_may_set() {
        for bad in ["", "x identity", "x-id\n", &"x".repeat(129)] {
            assert_eq!(
                errors(json!({"enable_password_grant": true, "identity_jwt_header": bad})),
                json!({"config": {"identity_jwt_header": "expected a valid header name"}}),
                "{bad:?}"
            );
        }
        for reserved in [
            "Host",
            "content-length",
            "X-Consumer-ID",
            "x-authenticated-scope",
        ] {
            assert_eq!(
                errors(json!({"enable_password_grant": true, "identity_jwt_header": reserved})),
                json!({"config": {"identity_jwt_header": "this header cannot carry the identity JWT"}}),
                "{reserved}"
            );
        }
    }
}
