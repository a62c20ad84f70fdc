//! The shapes of the admin API's bodies, for its OpenAPI description (`openapi.rs`). Handlers
//! build their JSON with `json!`; these types only describe it. The admin tests read real
//! answers back into them (`deny_unknown_fields`), so a field added to or dropped from an
//! answer without its description here fails a test.
// Descriptive types: built only by serde in tests, never by the service itself.
#![allow(dead_code)]

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// A reference to another entity: `{"id": "<uuid>"}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    #[schema(format = Uuid)]
    pub id: String,
}

/// Kong's error body: a one-line `message`, field errors under `fields`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Error {
    pub message: String,
    /// Kong's error code (2: schema violation, 5: unique constraint violation).
    pub code: Option<i64>,
    pub name: Option<String>,
    /// Per field: a message, a list of messages, or nested field errors (`config`).
    #[schema(value_type = Option<Object>)]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// An invalid declarative file's problems grouped by entity (`entity_path`,
    /// `entity_type`, `entity_name`, `errors`: `[{field, message, type}]`).
    #[schema(value_type = Option<Vec<Object>>)]
    pub flattened_errors: Option<Vec<serde_json::Value>>,
}

/// The `size` and `offset` of one page of a list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Entities per page (Kong's default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub size: Option<i64>,
    /// Where the page starts: the `offset` a previous page answered.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub offset: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    #[schema(format = Uuid)]
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    #[schema(required)]
    pub username: Option<String>,
    #[schema(required)]
    pub custom_id: Option<String>,
    #[schema(required)]
    pub tags: Option<Vec<String>>,
}

/// A consumer needs a non-empty `username` or `custom_id`; neither holds control characters.
/// Other fields are refused (the input types here are those the handlers check, in
/// `input::Shape`s; a test compares the two).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerInput {
    #[schema(pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub username: Option<String>,
    #[schema(pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub custom_id: Option<String>,
    pub tags: Option<Vec<String>>,
}

/// An `oauth2` credential (an OAuth 2.0 client). `client_secret` is shown in plain text in
/// the answer that set it; later answers show the stored form (hashed with `hash_secret`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    #[schema(format = Uuid)]
    pub id: String,
    pub created_at: i64,
    pub consumer: Reference,
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    pub hash_secret: bool,
    #[schema(required)]
    pub redirect_uris: Option<Vec<String>>,
    pub client_type: ClientType,
    #[schema(required)]
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    Confidential,
    Public,
}

/// On `/oauth2` (no consumer in the path) the body names the credential's consumer.
#[derive(Deserialize, ToSchema)]
pub struct OAuth2CredentialInput {
    pub consumer: Reference,
    #[serde(flatten)]
    pub credential: CredentialInput,
}

/// A client's redirect URI: absolute, with a host, without fragment, spaces or control
/// characters (the pattern is a simple subset of what is accepted).
#[derive(Deserialize, ToSchema)]
#[schema(pattern = "^https?://[A-Za-z0-9.-]+(:[0-9]{1,4})?(/[!$&-;=?-Z_a-z~]*)?$")]
pub struct RedirectUri(pub String);

/// The seed's `redirect_uri`: one URI, or a list.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMoreRedirectUris {
    One(RedirectUri),
    More(Vec<RedirectUri>),
}

/// A scope: printable ASCII without spaces, `"` or `\` (RFC 6749 3.3).
#[derive(Deserialize, ToSchema)]
#[schema(pattern = "^[!#-\\[\\]-~]+$")]
pub struct Scope(pub String);

/// `client_id` and `client_secret` are generated when missing. `redirect_uri` (one URI or a
/// list) is the seed tutorial's spelling of `redirect_uris`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    #[schema(min_length = 1)]
    pub name: String,
    /// At most 256 bytes.
    #[schema(nullable = false, min_length = 1, max_length = 256)]
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    #[schema(nullable = false)]
    pub hash_secret: Option<bool>,
    pub redirect_uris: Option<Vec<RedirectUri>>,
    pub redirect_uri: Option<OneOrMoreRedirectUris>,
    pub client_type: Option<ClientType>,
    pub tags: Option<Vec<String>>,
    /// Required on `/oauth2`; the path names the consumer on `/consumers/{consumer}/oauth2`.
    pub consumer: Option<Reference>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[schema(format = Uuid)]
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub name: String,
    #[schema(required)]
    pub url: Option<String>,
    #[schema(required)]
    pub tags: Option<Vec<String>>,
}

/// The name is the one a filter's Envoy configuration gives: not a UUID, at most 255 bytes
/// of letters, digits, `-`, `.`, `_` and `~`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceInput {
    #[schema(pattern = "^[A-Za-z0-9._~-]+$", max_length = 256)]
    pub name: String,
    pub url: Option<String>,
    pub tags: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    #[schema(format = Uuid)]
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    #[schema(value_type = String, pattern = "^oauth2$")]
    pub name: String,
    #[schema(required)]
    pub service: Option<Reference>,
    /// Always null: plugins belong to services.
    #[schema(value_type = Option<Object>, required)]
    pub route: Option<serde_json::Value>,
    /// Always null: plugins belong to services.
    #[schema(value_type = Option<Object>, required)]
    pub consumer: Option<serde_json::Value>,
    pub enabled: bool,
    pub protocols: Vec<String>,
    pub config: PluginConfig,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Pkce {
    None,
    Lax,
    Strict,
}

/// Kong's `oauth2` plugin configuration, every field with its value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    #[schema(required)]
    pub scopes: Option<Vec<String>>,
    pub mandatory_scope: bool,
    pub provision_key: String,
    /// Seconds; 0 = never.
    pub token_expiration: i64,
    pub enable_authorization_code: bool,
    pub enable_implicit_grant: bool,
    pub enable_client_credentials: bool,
    pub enable_password_grant: bool,
    pub hide_credentials: bool,
    pub accept_http_if_already_terminated: bool,
    #[schema(required)]
    pub anonymous: Option<String>,
    pub global_credentials: bool,
    pub auth_header_name: String,
    /// Seconds; 0 = never.
    pub refresh_token_ttl: i64,
    pub reuse_refresh_token: bool,
    pub pkce: Pkce,
    #[schema(required)]
    pub realm: Option<String>,
    pub access_token_format: AccessTokenFormat,
    /// The request header carrying the identity JWT to the upstream; null: none.
    #[schema(required)]
    pub identity_jwt_header: Option<String>,
    pub identity_headers: bool,
}

/// What the grants issue as access tokens: `opaque` (Kong's) or RFC 9068 `jwt`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessTokenFormat {
    Opaque,
    Jwt,
}

/// The configuration fields a request sets; the others keep Kong's defaults (on create) or
/// their values (on update). At least one `enable_*` grant must end up true.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginConfigInput {
    /// A form body gives `config.scopes=a,b`.
    pub scopes: Option<Vec<Scope>>,
    #[schema(nullable = false)]
    pub mandatory_scope: Option<bool>,
    /// Generated when missing.
    pub provision_key: Option<String>,
    #[schema(nullable = false, minimum = 0, maximum = 100_000_000)]
    pub token_expiration: Option<i64>,
    #[schema(nullable = false)]
    pub enable_authorization_code: Option<bool>,
    #[schema(nullable = false)]
    pub enable_implicit_grant: Option<bool>,
    #[schema(nullable = false)]
    pub enable_client_credentials: Option<bool>,
    #[schema(nullable = false)]
    pub enable_password_grant: Option<bool>,
    #[schema(nullable = false)]
    pub hide_credentials: Option<bool>,
    #[schema(nullable = false)]
    pub accept_http_if_already_terminated: Option<bool>,
    pub anonymous: Option<String>,
    #[schema(nullable = false)]
    pub global_credentials: Option<bool>,
    /// A header name: letters, digits, `-` and `_`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub auth_header_name: Option<String>,
    #[schema(nullable = false, minimum = 0, maximum = 100_000_000)]
    pub refresh_token_ttl: Option<i64>,
    #[schema(nullable = false)]
    pub reuse_refresh_token: Option<bool>,
    /// Older configurations' name of `reuse_refresh_token`.
    #[schema(nullable = false)]
    pub persistent_refresh_token: Option<bool>,
    pub pkce: Option<Pkce>,
    /// Printable ASCII without `"` or `\`.
    #[schema(pattern = "^[ !#-\\[\\]-~]*$", max_length = 128)]
    pub realm: Option<String>,
    /// `jwt` requires a `token_expiration` above 0.
    pub access_token_format: Option<AccessTokenFormat>,
    /// A header name (lower-cased), not one of the framing or identity headers; `authorization`
    /// replaces the client's credential with `Bearer <identity JWT>`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub identity_jwt_header: Option<String>,
    /// `false` requires `identity_jwt_header`.
    #[schema(nullable = false)]
    pub identity_headers: Option<bool>,
}

/// Only the `oauth2` plugin exists.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginInput {
    #[schema(value_type = String, pattern = "^oauth2$")]
    pub name: String,
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
    pub config: Option<PluginConfigInput>,
}

/// What a PATCH of a plugin may change (its `name` stays `oauth2`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginUpdate {
    #[schema(value_type = Option<String>, nullable = false, pattern = "^oauth2$")]
    pub name: Option<String>,
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
    pub config: Option<PluginConfigInput>,
}

/// A token row. The token texts are stored as digests: `access_token` and `refresh_token`
/// appear only in the answer that set them.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Token {
    #[schema(format = Uuid)]
    pub id: String,
    pub created_at: i64,
    pub credential: Reference,
    #[schema(required)]
    pub service: Option<Reference>,
    #[schema(value_type = String, pattern = "^bearer$")]
    pub token_type: String,
    /// Seconds; 0 = never.
    pub expires_in: i64,
    #[schema(required)]
    pub authenticated_userid: Option<String>,
    #[schema(required)]
    pub scope: Option<String>,
    /// Seconds until the row (and its refresh token) is deleted; null = kept.
    #[schema(required)]
    pub ttl: Option<i64>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
}

/// Tokens given here are 1 to 512 printable ASCII characters; `access_token` is generated
/// when missing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    pub credential: Reference,
    pub service: Option<Reference>,
    #[schema(minimum = 0, maximum = 100_000_000)]
    pub expires_in: i64,
    #[schema(value_type = Option<String>, pattern = "^bearer$")]
    pub token_type: Option<String>,
    pub authenticated_userid: Option<String>,
    pub scope: Option<String>,
    #[schema(pattern = "^[!-~]{1,512}$")]
    pub access_token: Option<String>,
    #[schema(pattern = "^[!-~]{1,512}$")]
    pub refresh_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Root {
    pub tagline: String,
    pub version: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub database: DatabaseStatus,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseStatus {
    pub reachable: bool,
}

/// Kong's list shape: one page of `data`, and where the next one starts.
macro_rules! page {
    ($page:ident, $item:ty) => {
        #[derive(Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $page {
            pub data: Vec<$item>,
            /// The path and query of the next page; null on the last.
            #[schema(required)]
            pub next: Option<String>,
            /// The `offset` of the next page; null on the last.
            #[schema(required)]
            pub offset: Option<String>,
        }
    };
}

page!(ConsumerPage, Consumer);
page!(CredentialPage, Credential);
page!(ServicePage, Service);
page!(PluginPage, Plugin);
page!(TokenPage, Token);
page!(SigningKeyPage, SigningKey);

/// A signing key's algorithm: RS256 (2048-bit RSA), ES256 (P-256) or EdDSA (Ed25519).
#[derive(Deserialize, ToSchema)]
pub enum SigningAlg {
    RS256,
    ES256,
    EdDSA,
}

/// A signing key's state: `next` (published, not signing yet), `active` (the one key that
/// signs), `retired` (published until the last token it signed has expired, then deleted).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SigningKeyStatus {
    Next,
    Active,
    Retired,
}

/// A key the token-service signs JWTs with: only its public half (the private key is never
/// shown).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKey {
    /// The key's id: the RFC 7638 thumbprint of its public JWK.
    pub kid: String,
    pub alg: SigningAlg,
    pub status: SigningKeyStatus,
    /// Unix seconds.
    pub created_at: i64,
    /// When it starts (or started) signing.
    pub activates_at: i64,
    /// When it stops (or stopped) signing; null while no successor is scheduled.
    #[schema(required)]
    pub retired_at: Option<i64>,
    /// When it stops being published and is deleted; null while not retired.
    #[schema(required)]
    pub expires_at: Option<i64>,
    /// The public key as published in the JWKS (RFC 7517: `kty`, `kid`, `alg`, `use: sig`
    /// and the key's public members).
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
}

/// A new signing key: `alg` (RS256 when absent).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyInput {
    pub alg: Option<SigningAlg>,
}

/// A declarative file in Kong's format, as JSON (`application/yaml` and the multipart field
/// `config` carry the same as text). Entities take the admin API's fields: `services` (with
/// nested `plugins`), `consumers` (with nested `oauth2_credentials`, matched by `client_id`),
/// top-level `plugins` naming their `service`. Secrets may be `{vault://env/NAME}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclarativeFile {
    #[serde(rename = "_format_version")]
    #[schema(pattern = "^(1\\.1|2\\.1|3\\.0)$")]
    pub format_version: String,
    #[serde(rename = "_info")]
    pub info: Option<DeclarativeInfo>,
    #[serde(rename = "_transform")]
    pub transform: Option<bool>,
    #[serde(rename = "_comment")]
    pub comment: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub services: Option<Vec<serde_json::Value>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub plugins: Option<Vec<serde_json::Value>>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub consumers: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclarativeInfo {
    /// Only entities carrying all these tags are managed (and the file's entities get them).
    pub select_tags: Option<Vec<String>>,
}

/// `curl -F config=@kong.yml`: the file (YAML or JSON) in the field `config`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclarativeUpload {
    #[schema(format = Binary)]
    pub config: String,
}

/// `?dry_run=true` answers the diff and changes nothing.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigParams {
    pub dry_run: Option<bool>,
}

/// What a sync changed (or, dry, would change).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigDiff {
    pub dry_run: bool,
    pub created: Vec<ConfigChange>,
    pub updated: Vec<ConfigChange>,
    pub deleted: Vec<ConfigChange>,
    pub summary: ConfigSummary,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    /// `service`, `plugin`, `consumer` or `oauth2_credential`.
    #[serde(rename = "type")]
    pub entity_type: String,
    #[schema(format = Uuid)]
    pub id: String,
    /// Its natural key: name, username (or custom_id), client_id; a plugin's service.
    pub name: String,
    /// For an update, the fields that change (a secret by name, never its value).
    pub fields: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigSummary {
    pub create: u64,
    pub update: u64,
    pub delete: u64,
}
