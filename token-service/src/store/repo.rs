//! The storage vocabulary, written once for both backends (see [`super::sql`]).

use super::index::ExpiresAt;
use super::sql::{params, Dialect, Row, Sql, Value};
use super::{StoreError, StoreResult};
use crate::model::{
    AuthorizationCode, ClientType, Consumer, Credential, Lifetime, OAuth2Config, Plugin, Service,
    Token,
};

/// The storage vocabulary over one connection, inside a transaction (or savepoint) the
/// [`super::Store`] opened: a closure given a `Repo` sees and writes one consistent state.
pub struct Repo<'a> {
    db: &'a dyn Sql,
}

/// The `pg_advisory_xact_lock` key that serializes declarative syncs across replicas.
const DECLARATIVE_SYNC_LOCK: i64 = 0x6f61_7574_6832_0003;

/// One poll of the change feed (docs/gateway-protocol.md §1).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FeedPage {
    /// The position to poll from next: every change before it is in `digests` or was
    /// answered before.
    pub position: i64,
    /// A poller whose position is below this may have missed changes the feed no longer
    /// holds (pruned after their retention): it must reset.
    pub floor: i64,
    /// Access-token digests changed at or after the asked position, oldest first.
    pub digests: Vec<String>,
}

/// One page of a list: the rows and the offset of the next page, if any.
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_offset: Option<i64>,
}

pub struct NewToken {
    /// The row's id (a JWT's `jti`, so chosen before the JWT is signed).
    pub id: String,
    pub credential_id: String,
    pub service_id: Option<String>,
    pub access_token_hash: String,
    pub refresh_token_hash: Option<String>,
    pub authenticated_userid: Option<String>,
    pub scope: Option<String>,
    pub expires_in: i64,
    pub ttl_at: Option<i64>,
    pub family_id: String,
    pub created_at: i64,
    /// A JWT access token's `exp` (see [`Token::jwt_exp`]).
    pub jwt_exp: Option<i64>,
}

pub struct NewCode {
    pub code_hash: String,
    pub credential_id: String,
    pub service_id: Option<String>,
    pub plugin_id: Option<String>,
    pub authenticated_userid: Option<String>,
    pub scope: Option<String>,
    pub challenge: Option<String>,
    pub challenge_method: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A refresh token rotated away: its grant, and when it was replaced (`None` for rows
/// retired before that was recorded). What a replay means is the grants' decision.
pub struct RetiredRefresh {
    pub family_id: String,
    pub retired_at: Option<i64>,
}

/// How long past its `exp` a distrusted JWT is kept (and listed): longer than the filter's
/// clock skew (30 s), so a filter whose clock lags still learns of it. The schema's
/// triggers (store/schema.rs) use the same number.
pub const DISTRUST_MARGIN_S: i64 = 60;

/// Rows one purge deleted, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub authorization_codes: u64,
    pub tokens: u64,
    pub retired_refresh_tokens: u64,
    /// Distrusted JWTs past their `exp` (and the margin).
    pub distrusted_jwts: u64,
    /// Change-feed entries older than the feed's retention.
    pub changes: u64,
}

impl Purged {
    /// Codes and tokens (feed entries are bookkeeping, not data).
    pub fn codes_and_tokens(&self) -> u64 {
        self.authorization_codes + self.tokens + self.retired_refresh_tokens
    }

    pub fn add(&mut self, other: &Purged) {
        self.authorization_codes += other.authorization_codes;
        self.tokens += other.tokens;
        self.retired_refresh_tokens += other.retired_refresh_tokens;
        self.distrusted_jwts += other.distrusted_jwts;
        self.changes += other.changes;
    }

    /// One kind filled a whole batch: there may be more of it.
    pub fn any_kind_reached(&self, batch: u64) -> bool {
        [
            self.authorization_codes,
            self.tokens,
            self.retired_refresh_tokens,
            self.distrusted_jwts,
            self.changes,
        ]
        .iter()
        .any(|n| *n >= batch)
    }
}

/// One entry of PostgreSQL's change feed: what changed (`token`, with the digest; `service`
/// or `credential`), and in which transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedChange {
    pub txid: i64,
    pub kind: String,
    pub digest: String,
}

pub struct TokenWithOwner {
    pub token: Token,
    pub credential: Credential,
    pub consumer: Consumer,
}

const TOKEN_WITH_OWNER: &str =
    "SELECT t.*, c.id AS c_id, c.created_at AS c_created_at, c.consumer_id, c.name, c.client_id,
            c.client_secret, c.hash_secret, c.redirect_uris, c.client_type, c.tags AS c_tags,
            u.created_at AS u_created_at, u.username, u.custom_id, u.tags AS u_tags
     FROM oauth2_tokens t
     JOIN oauth2_credentials c ON c.id = t.credential_id
     JOIN consumers u ON u.id = c.consumer_id";

/// What the digest set keeps of a token row.
const TOKEN_EXPIRY: &str =
    "SELECT access_token_hash, created_at, expires_in, ttl_at FROM oauth2_tokens";

fn expiry_from(row: &Row) -> StoreResult<(String, ExpiresAt)> {
    expiry_at(row, 0)
}

/// A digest and its expiry, from the columns at `first` on (as [`TOKEN_EXPIRY`] has them).
fn expiry_at(row: &Row, first: usize) -> StoreResult<(String, ExpiresAt)> {
    let lifetime = Lifetime {
        created_at: row.at(first + 1)?,
        expires_in: row.at(first + 2)?,
        ttl_at: row.at(first + 3)?,
    };
    Ok((row.at(first)?, super::index::expires_at(lifetime)))
}

fn token_with_owner_from(row: &Row) -> StoreResult<TokenWithOwner> {
    let credential = credential_in(row, ["c_id", "c_created_at", "c_tags"])?;
    let consumer = consumer_in(row, ["consumer_id", "u_created_at", "u_tags"])?;
    Ok(TokenWithOwner {
        token: token_from(row)?,
        credential,
        consumer,
    })
}

fn json_list(value: &Option<Vec<String>>) -> Option<String> {
    value.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

/// A list column; text that is not a JSON list of strings is corrupt (never silently "none":
/// `redirect_uris` decide where codes and tokens go).
fn parse_list(row: &Row, id: &str, column: &str) -> StoreResult<Option<Vec<String>>> {
    let text: Option<String> = row.get(column)?;
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| corrupt(row, id, column, e))
}

/// A column whose text cannot be read back: an error naming the row (by its `id` column,
/// which a join renames), never a default (a defaulted plugin config had an empty
/// `provision_key`, which authorize then accepted).
fn corrupt(row: &Row, id: &str, column: &str, error: impl std::fmt::Display) -> StoreError {
    let id: String = row.get(id).unwrap_or_default();
    StoreError::Corrupt(format!(
        "column '{column}' of row '{id}' cannot be read: {error}"
    ))
}

fn consumer_from(row: &Row) -> StoreResult<Consumer> {
    consumer_in(row, ["id", "created_at", "tags"])
}

/// A consumer from a row whose `id`, `created_at` and `tags` columns carry these names (a
/// join renames them).
fn consumer_in(row: &Row, [id, created_at, tags]: [&str; 3]) -> StoreResult<Consumer> {
    Ok(Consumer {
        id: row.get(id)?,
        created_at: row.get(created_at)?,
        username: row.get("username")?,
        custom_id: row.get("custom_id")?,
        tags: parse_list(row, id, tags)?,
    })
}

fn service_from(row: &Row) -> StoreResult<Service> {
    Ok(Service {
        id: row.get("id")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        name: row.get("name")?,
        url: row.get("url")?,
        tags: parse_list(row, "id", "tags")?,
    })
}

fn plugin_from(row: &Row) -> StoreResult<Plugin> {
    let config: String = row.get("config")?;
    Ok(Plugin {
        id: row.get("id")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        name: row.get("name")?,
        service_id: row.get("service_id")?,
        enabled: row.get("enabled")?,
        config: plugin_config(row, &config)?,
    })
}

/// Fields missing from a stored config take their defaults (older versions wrote fewer),
/// except the provision key: every plugin has one, and an empty one would let anyone
/// authorize.
fn plugin_config(row: &Row, text: &str) -> StoreResult<OAuth2Config> {
    let config =
        serde_json::from_str::<OAuth2Config>(text).map_err(|e| corrupt(row, "id", "config", e))?;
    if config.provision_key.is_empty() {
        return Err(corrupt(row, "id", "config", "the provision_key is missing"));
    }
    Ok(config)
}

fn credential_from(row: &Row) -> StoreResult<Credential> {
    credential_in(row, ["id", "created_at", "tags"])
}

/// A credential from a row whose `id`, `created_at` and `tags` columns carry these names (a
/// join renames them).
fn credential_in(row: &Row, [id, created_at, tags]: [&str; 3]) -> StoreResult<Credential> {
    let client_type: String = row.get("client_type")?;
    Ok(Credential {
        id: row.get(id)?,
        created_at: row.get(created_at)?,
        consumer_id: row.get("consumer_id")?,
        name: row.get("name")?,
        client_id: row.get("client_id")?,
        client_secret: row.get("client_secret")?,
        hash_secret: row.get("hash_secret")?,
        redirect_uris: parse_list(row, id, "redirect_uris")?,
        client_type: match client_type.as_str() {
            "public" => ClientType::Public,
            "confidential" => ClientType::Confidential,
            other => return Err(corrupt(row, id, "client_type", format!("'{other}'"))),
        },
        tags: parse_list(row, id, tags)?,
    })
}

fn token_from(row: &Row) -> StoreResult<Token> {
    Ok(Token {
        id: row.get("id")?,
        created_at: row.get("created_at")?,
        credential_id: row.get("credential_id")?,
        service_id: row.get("service_id")?,
        token_type: row.get("token_type")?,
        expires_in: row.get("expires_in")?,
        access_token_hash: row.get("access_token_hash")?,
        refresh_token_hash: row.get("refresh_token_hash")?,
        authenticated_userid: row.get("authenticated_userid")?,
        scope: row.get("scope")?,
        ttl_at: row.get("ttl_at")?,
        family_id: row.get("family_id")?,
        jwt_exp: row.get("jwt_exp")?,
    })
}

fn code_from(row: &Row) -> StoreResult<AuthorizationCode> {
    Ok(AuthorizationCode {
        id: row.get("id")?,
        created_at: row.get("created_at")?,
        code_hash: row.get("code_hash")?,
        credential_id: row.get("credential_id")?,
        service_id: row.get("service_id")?,
        plugin_id: row.get("plugin_id")?,
        authenticated_userid: row.get("authenticated_userid")?,
        scope: row.get("scope")?,
        challenge: row.get("challenge")?,
        challenge_method: row.get("challenge_method")?,
        expires_at: row.get("expires_at")?,
        used_at: row.get("used_at")?,
    })
}

/// An update that matched no row: the row was deleted meanwhile.
fn updated(rows: u64) -> StoreResult<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

impl<'a> Repo<'a> {
    /// Waits for, and holds until this transaction ends, the lock that serializes declarative
    /// syncs: replicas started with the same `--declarative-config` at once would otherwise
    /// each plan against a database without the other's entities and collide on their names.
    /// SQLite's single writer serializes them already.
    pub fn lock_declarative_sync(&self) -> StoreResult<()> {
        match self.db.dialect() {
            Dialect::Sqlite => Ok(()),
            Dialect::Postgres => self
                .db
                .query(
                    "SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked",
                    params![DECLARATIVE_SYNC_LOCK],
                )
                .map(|_| ()),
        }
    }

    pub(super) fn dialect_of_connection(&self) -> Dialect {
        self.db.dialect()
    }

    pub(super) fn new(db: &'a dyn Sql) -> Self {
        Repo { db }
    }

    pub(super) fn one<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnOnce(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        self.db.query(sql, params)?.first().map(map).transpose()
    }

    pub(super) fn all<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnMut(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.db.query(sql, params)?.iter().map(map).collect()
    }

    fn page<T>(
        &self,
        sql: &str,
        params: &[Value],
        offset: i64,
        size: i64,
        map: impl FnMut(&Row) -> StoreResult<T>,
    ) -> StoreResult<Page<T>> {
        let next = params.len() + 1;
        let sql = format!(
            "{sql} ORDER BY created_at, id LIMIT ${next} OFFSET ${}",
            next + 1
        );
        let mut all = params.to_vec();
        all.push(Value::Int(size + 1));
        all.push(Value::Int(offset));
        let mut data = self.all(&sql, &all, map)?;
        let next_offset = if data.len() as i64 > size {
            data.truncate(size as usize);
            Some(offset + size)
        } else {
            None
        };
        Ok(Page { data, next_offset })
    }

    pub(super) fn exec(&self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        self.db.execute(sql, params)
    }

    /// In a write on PostgreSQL, the row `found` names, read again with a row lock: a
    /// read-modify-write (an admin PATCH) on one replica then waits for a concurrent one on
    /// another and works on what it committed, instead of overwriting it. SQLite's one writer
    /// already serializes them.
    fn for_update<T>(
        &self,
        table: &str,
        found: Option<T>,
        id: impl FnOnce(&T) -> &str,
        map: impl FnOnce(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        match found {
            Some(row) if self.db.locks_rows() => self.one(
                &format!("SELECT * FROM {table} WHERE id = $1 FOR UPDATE"),
                params![id(&row)],
                map,
            ),
            found => Ok(found),
        }
    }

    // ----- consumers -----

    pub fn insert_consumer(&self, c: &Consumer) -> StoreResult<()> {
        self.exec(
            "INSERT INTO consumers (id, created_at, username, custom_id, tags) VALUES ($1, $2, $3, $4, $5)",
            params![&c.id, c.created_at, &c.username, &c.custom_id, json_list(&c.tags)],
        )
        .map(drop)
    }

    pub fn update_consumer(&self, c: &Consumer) -> StoreResult<()> {
        self.exec(
            "UPDATE consumers SET username = $2, custom_id = $3, tags = $4 WHERE id = $1",
            params![&c.id, &c.username, &c.custom_id, json_list(&c.tags)],
        )
        .and_then(updated)
    }

    /// The field of `c` that another consumer's key already is: `username` when it is
    /// another's id, `id` when it is another's username. Either way
    /// `/consumers/{id or username}` would name two consumers.
    pub fn consumer_key_clash(&self, c: &Consumer) -> StoreResult<Option<&'static str>> {
        let exists = |sql: &str, key: &Option<String>| -> StoreResult<bool> {
            Ok(self
                .one(sql, params![&c.id, key], |row| row.at::<i64>(0))?
                .is_some())
        };
        let id = Some(c.id.clone());
        if exists(
            "SELECT 1 FROM consumers WHERE id != $1 AND id = $2",
            &c.username,
        )? {
            Ok(Some("username"))
        } else if exists(
            "SELECT 1 FROM consumers WHERE id != $1 AND username = $2",
            &id,
        )? {
            Ok(Some("id"))
        } else {
            Ok(None)
        }
    }

    /// By id, or else by username.
    pub fn consumer(&self, key: &str) -> StoreResult<Option<Consumer>> {
        let found = self.one(
            "SELECT * FROM consumers WHERE id = $1 UNION ALL SELECT * FROM consumers WHERE username = $1 LIMIT 1",
            params![key],
            consumer_from,
        )?;
        self.for_update("consumers", found, |c| &c.id, consumer_from)
    }

    pub fn list_consumers(&self, offset: i64, size: i64) -> StoreResult<Page<Consumer>> {
        self.page("SELECT * FROM consumers", &[], offset, size, consumer_from)
    }

    pub fn delete_consumer(&self, id: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM consumers WHERE id = $1", params![id])? > 0)
    }

    // ----- services -----

    pub fn insert_service(&self, s: &Service) -> StoreResult<()> {
        self.exec(
            "INSERT INTO services (id, created_at, updated_at, name, url, tags) VALUES ($1, $2, $3, $4, $5, $6)",
            params![&s.id, s.created_at, s.updated_at, &s.name, &s.url, json_list(&s.tags)],
        )
        .map(drop)
    }

    pub fn update_service(&self, s: &Service) -> StoreResult<()> {
        self.exec(
            "UPDATE services SET updated_at = $2, name = $3, url = $4, tags = $5 WHERE id = $1",
            params![&s.id, s.updated_at, &s.name, &s.url, json_list(&s.tags)],
        )
        .and_then(updated)
    }

    /// By id, or else by name.
    pub fn service(&self, key: &str) -> StoreResult<Option<Service>> {
        let found = self.one(
            "SELECT * FROM services WHERE id = $1 UNION ALL SELECT * FROM services WHERE name = $1 LIMIT 1",
            params![key],
            service_from,
        )?;
        self.for_update("services", found, |s| &s.id, service_from)
    }

    pub fn list_services(&self, offset: i64, size: i64) -> StoreResult<Page<Service>> {
        self.page("SELECT * FROM services", &[], offset, size, service_from)
    }

    pub fn delete_service(&self, id: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM services WHERE id = $1", params![id])? > 0)
    }

    // ----- plugins -----

    pub fn insert_plugin(&self, p: &Plugin) -> StoreResult<()> {
        let config =
            serde_json::to_string(&p.config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.exec(
            "INSERT INTO plugins (id, created_at, updated_at, name, service_id, enabled, config)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![
                &p.id,
                p.created_at,
                p.updated_at,
                &p.name,
                &p.service_id,
                p.enabled,
                config,
            ],
        )
        .map(drop)
    }

    pub fn update_plugin(&self, p: &Plugin) -> StoreResult<()> {
        let config =
            serde_json::to_string(&p.config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.exec(
            "UPDATE plugins SET updated_at = $2, enabled = $3, config = $4, service_id = $5 WHERE id = $1",
            params![&p.id, p.updated_at, p.enabled, config, &p.service_id],
        )
        .and_then(updated)
    }

    pub fn plugin(&self, id: &str) -> StoreResult<Option<Plugin>> {
        let found = self.one(
            "SELECT * FROM plugins WHERE id = $1",
            params![id],
            plugin_from,
        )?;
        self.for_update("plugins", found, |p| &p.id, plugin_from)
    }

    pub fn list_plugins(
        &self,
        service_id: Option<&str>,
        offset: i64,
        size: i64,
    ) -> StoreResult<Page<Plugin>> {
        match service_id {
            Some(id) => self.page(
                "SELECT * FROM plugins WHERE service_id = $1",
                params![id],
                offset,
                size,
                plugin_from,
            ),
            None => self.page("SELECT * FROM plugins", &[], offset, size, plugin_from),
        }
    }

    /// The longest finite `token_expiration` (seconds) of any plugin, `None` when none has
    /// one: how long a token signed now may live (signing keys stay published that long).
    pub fn longest_token_expiration(&self) -> StoreResult<Option<i64>> {
        let plugins = self.all("SELECT * FROM plugins", &[], plugin_from)?;
        Ok(plugins
            .iter()
            .map(|p| p.config.token_expiration)
            .filter(|seconds| *seconds > 0)
            .max())
    }

    pub fn delete_plugin(&self, id: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM plugins WHERE id = $1", params![id])? > 0)
    }

    /// The service's `oauth2` plugin, if it has one and it is enabled.
    pub fn enabled_oauth2_plugin(&self, service_id: &str) -> StoreResult<Option<Plugin>> {
        self.one(
            "SELECT * FROM plugins WHERE service_id = $1 AND name = 'oauth2' AND enabled = 1",
            params![service_id],
            plugin_from,
        )
    }

    // ----- credentials -----

    pub fn insert_credential(&self, c: &Credential) -> StoreResult<()> {
        self.exec(
            "INSERT INTO oauth2_credentials
               (id, created_at, consumer_id, name, client_id, client_secret, hash_secret, redirect_uris, client_type, tags)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            params![
                c.id,
                c.created_at,
                c.consumer_id,
                c.name,
                c.client_id,
                c.client_secret,
                c.hash_secret,
                json_list(&c.redirect_uris),
                c.client_type.as_str(),
                json_list(&c.tags)
            ],
        )
        .map(drop)
    }

    pub fn update_credential(&self, c: &Credential) -> StoreResult<()> {
        self.exec(
            "UPDATE oauth2_credentials SET consumer_id = $2, name = $3, client_id = $4, client_secret = $5,
               hash_secret = $6, redirect_uris = $7, client_type = $8, tags = $9 WHERE id = $1",
            params![
                c.id,
                c.consumer_id,
                c.name,
                c.client_id,
                c.client_secret,
                c.hash_secret,
                json_list(&c.redirect_uris),
                c.client_type.as_str(),
                json_list(&c.tags)
            ],
        )
        .and_then(updated)
    }

    /// By id, or else by client_id.
    pub fn credential(&self, key: &str) -> StoreResult<Option<Credential>> {
        let found = self.one(
            "SELECT * FROM oauth2_credentials WHERE id = $1
             UNION ALL SELECT * FROM oauth2_credentials WHERE client_id = $1 LIMIT 1",
            params![key],
            credential_from,
        )?;
        self.for_update("oauth2_credentials", found, |c| &c.id, credential_from)
    }

    pub fn credential_by_client_id(&self, client_id: &str) -> StoreResult<Option<Credential>> {
        self.one(
            "SELECT * FROM oauth2_credentials WHERE client_id = $1",
            params![client_id],
            credential_from,
        )
    }

    pub fn list_credentials(
        &self,
        consumer_id: Option<&str>,
        offset: i64,
        size: i64,
    ) -> StoreResult<Page<Credential>> {
        match consumer_id {
            Some(id) => self.page(
                "SELECT * FROM oauth2_credentials WHERE consumer_id = $1",
                params![id],
                offset,
                size,
                credential_from,
            ),
            None => self.page(
                "SELECT * FROM oauth2_credentials",
                &[],
                offset,
                size,
                credential_from,
            ),
        }
    }

    pub fn delete_credential(&self, id: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM oauth2_credentials WHERE id = $1", params![id])? > 0)
    }

    // ----- tokens -----

    pub fn insert_token(&self, t: &NewToken) -> StoreResult<Token> {
        let token = Token {
            id: t.id.clone(),
            created_at: t.created_at,
            credential_id: t.credential_id.clone(),
            service_id: t.service_id.clone(),
            token_type: "bearer".to_string(),
            expires_in: t.expires_in,
            access_token_hash: t.access_token_hash.clone(),
            refresh_token_hash: t.refresh_token_hash.clone(),
            authenticated_userid: t.authenticated_userid.clone(),
            scope: t.scope.clone(),
            ttl_at: t.ttl_at,
            family_id: t.family_id.clone(),
            jwt_exp: t.jwt_exp,
        };
        self.insert_token_row(&token)?;
        Ok(token)
    }

    /// Inserts a complete row (the admin API's PUT keeps the id it was given).
    pub fn insert_token_row(&self, token: &Token) -> StoreResult<()> {
        self.exec(
            "INSERT INTO oauth2_tokens (id, created_at, credential_id, service_id, token_type, expires_in,
               access_token_hash, refresh_token_hash, authenticated_userid, scope, ttl_at, family_id, jwt_exp)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            params![
                token.id,
                token.created_at,
                token.credential_id,
                token.service_id,
                token.token_type,
                token.expires_in,
                token.access_token_hash,
                token.refresh_token_hash,
                token.authenticated_userid,
                token.scope,
                token.ttl_at,
                token.family_id,
                token.jwt_exp
            ],
        )?;
        self.db.inserted_token(&token.id);
        Ok(())
    }

    pub fn update_token(&self, t: &Token) -> StoreResult<()> {
        self.exec(
            "UPDATE oauth2_tokens SET created_at = $2, credential_id = $3, service_id = $4, expires_in = $5,
               access_token_hash = $6, refresh_token_hash = $7, authenticated_userid = $8, scope = $9, ttl_at = $10
             WHERE id = $1",
            params![
                t.id,
                t.created_at,
                t.credential_id,
                t.service_id,
                t.expires_in,
                t.access_token_hash,
                t.refresh_token_hash,
                t.authenticated_userid,
                t.scope,
                t.ttl_at
            ],
        )
        .and_then(updated)
    }

    /// By id, or else by access-token digest.
    pub fn token(&self, id: &str, access_hash: &str) -> StoreResult<Option<Token>> {
        let found = self.one(
            "SELECT * FROM oauth2_tokens WHERE id = $1 UNION ALL SELECT * FROM oauth2_tokens WHERE access_token_hash = $2 LIMIT 1",
            params![id, access_hash],
            token_from,
        )?;
        self.for_update("oauth2_tokens", found, |t| &t.id, token_from)
    }

    /// By id, locking the row until the transaction ends (PostgreSQL; SQLite's one writer
    /// needs no lock): of replicas replacing one token at once, the second waits for the
    /// first to commit and then reads what it wrote.
    pub fn token_for_update(&self, id: &str) -> StoreResult<Option<Token>> {
        let lock = match self.db.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        };
        self.one(
            &format!("SELECT * FROM oauth2_tokens WHERE id = $1{lock}"),
            params![id],
            token_from,
        )
    }

    pub fn token_by_refresh_hash(&self, refresh_hash: &str) -> StoreResult<Option<Token>> {
        self.one(
            "SELECT * FROM oauth2_tokens WHERE refresh_token_hash = $1",
            params![refresh_hash],
            token_from,
        )
    }

    /// The token with its credential and consumer, in one indexed look-up (the filter's check).
    pub fn token_with_owner(&self, access_hash: &str) -> StoreResult<Option<TokenWithOwner>> {
        self.one(
            &format!("{TOKEN_WITH_OWNER} WHERE t.access_token_hash = $1"),
            params![access_hash],
            token_with_owner_from,
        )
    }

    /// Tokens by SQLite row id (rows a write just inserted), with their owners, in one query;
    /// ids of rows that are gone are skipped.
    pub fn tokens_with_owner_by_rowid(&self, rowids: &[i64]) -> StoreResult<Vec<TokenWithOwner>> {
        debug_assert_eq!(self.db.dialect(), Dialect::Sqlite);
        let ids = serde_json::to_string(rowids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.all(
            &format!("{TOKEN_WITH_OWNER} WHERE t.rowid IN (SELECT value FROM json_each($1))"),
            params![ids],
            token_with_owner_from,
        )
    }

    /// PostgreSQL: tokens by id with their owners, in one query; ids of rows that are gone
    /// are skipped.
    pub fn tokens_with_owner_by_id(&self, ids: &[String]) -> StoreResult<Vec<TokenWithOwner>> {
        let ids = serde_json::to_string(ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.all(
            &format!(
                "{TOKEN_WITH_OWNER} WHERE t.id IN (SELECT jsonb_array_elements_text($1::text::jsonb))"
            ),
            params![ids],
            token_with_owner_from,
        )
    }

    /// One page of the in-memory digest set's load: at most `limit` live tokens' digests with
    /// their expiries, after the position `after` (`""` at first), and the position of the
    /// page's end. SQLite pages by rowid (the table's order: one sequential pass; in digest
    /// order a load of 1M tokens took 4 times as long); PostgreSQL by digest, in the
    /// snapshot of the caller's transaction.
    pub fn token_expiries_page(
        &self,
        after: &str,
        limit: i64,
    ) -> StoreResult<(Vec<(String, ExpiresAt)>, String)> {
        let (sql, params) = match self.db.dialect() {
            Dialect::Sqlite => (
                "SELECT rowid, access_token_hash, created_at, expires_in, ttl_at FROM oauth2_tokens
                 WHERE rowid > $1 ORDER BY rowid LIMIT $2",
                params![after.parse::<i64>().unwrap_or(i64::MIN), limit],
            ),
            Dialect::Postgres => (
                "SELECT access_token_hash, access_token_hash, created_at, expires_in, ttl_at
                 FROM oauth2_tokens WHERE access_token_hash > $1 ORDER BY access_token_hash LIMIT $2",
                params![after, limit],
            ),
        };
        let rows = self.all(sql, params, |row| {
            let position = match self.db.dialect() {
                Dialect::Sqlite => row.at::<i64>(0)?.to_string(),
                Dialect::Postgres => row.at::<String>(0)?,
            };
            Ok((position, expiry_at(row, 1)?))
        })?;
        let end = rows.last().map_or_else(String::new, |(p, _)| p.clone());
        Ok((rows.into_iter().map(|(_, expiry)| expiry).collect(), end))
    }

    /// `texts` as one parameter ($1, a JSON array) and the subquery that lists its elements,
    /// for `… IN (<subquery>)`: one statement whatever the count, in both dialects.
    fn text_list(&self, texts: &[String]) -> StoreResult<(String, &'static str)> {
        let list = serde_json::to_string(texts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let elements = match self.db.dialect() {
            Dialect::Sqlite => "SELECT value FROM json_each($1)",
            Dialect::Postgres => "SELECT jsonb_array_elements_text($1::text::jsonb)",
        };
        Ok((list, elements))
    }

    /// Of these digests, those a token row holds, with their expiries.
    pub fn token_expiries_of(&self, digests: &[String]) -> StoreResult<Vec<(String, ExpiresAt)>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let (list, elements) = self.text_list(digests)?;
        self.all(
            &format!("{TOKEN_EXPIRY} WHERE access_token_hash IN ({elements})"),
            params![list],
            expiry_from,
        )
    }

    /// SQLite: the digests and expiries of the token rows with these row ids (rows a batch
    /// inserted or changed); ids of rows that are gone are skipped.
    pub fn token_expiries_by_rowid(&self, rowids: &[i64]) -> StoreResult<Vec<(String, ExpiresAt)>> {
        debug_assert_eq!(self.db.dialect(), Dialect::Sqlite);
        if rowids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(rowids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.all(
            &format!("{TOKEN_EXPIRY} WHERE rowid IN (SELECT value FROM json_each($1))"),
            params![ids],
            expiry_from,
        )
    }

    pub fn list_tokens(&self, offset: i64, size: i64) -> StoreResult<Page<Token>> {
        self.page("SELECT * FROM oauth2_tokens", &[], offset, size, token_from)
    }

    pub fn delete_token(&self, id: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM oauth2_tokens WHERE id = $1", params![id])? > 0)
    }

    /// Revokes every token descending from one grant.
    pub fn revoke_family(&self, family_id: &str) -> StoreResult<u64> {
        self.exec(
            "DELETE FROM oauth2_retired_refresh_tokens WHERE family_id = $1",
            params![family_id],
        )?;
        self.exec(
            "DELETE FROM oauth2_tokens WHERE family_id = $1",
            params![family_id],
        )
    }

    /// Replaces `old` by `new` (refresh without reuse): the old pair dies with the same commit,
    /// and the old refresh token is remembered (with when it was replaced) so a replay can
    /// revoke the family.
    ///
    /// The delete is the decision: of several writers rotating one token at once (replicas on
    /// one PostgreSQL, each having read the row), the one whose delete removes the row wins;
    /// the others wait on its row lock, then delete nothing and get [`StoreError::NotFound`].
    pub fn rotate_token(&self, old: &Token, new: &NewToken) -> StoreResult<Token> {
        if !self.delete_token(&old.id)? {
            return Err(StoreError::NotFound);
        }
        if let Some(hash) = &old.refresh_token_hash {
            self.exec(
                "INSERT INTO oauth2_retired_refresh_tokens (refresh_token_hash, family_id, expires_at, retired_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (refresh_token_hash) DO UPDATE SET family_id = excluded.family_id,
                   expires_at = excluded.expires_at, retired_at = excluded.retired_at",
                params![hash, &old.family_id, old.ttl_at, new.created_at],
            )?;
        }
        self.insert_token(new)
    }

    /// Replaces `old` by `new`, which keeps its refresh token (`reuse_refresh_token` with JWT
    /// access tokens: each JWT has a row, and so a `jti`, of its own). Decided by the delete,
    /// as [`Repo::rotate_token`] is.
    pub fn renew_token(&self, old: &Token, new: &NewToken) -> StoreResult<Token> {
        if !self.delete_token(&old.id)? {
            return Err(StoreError::NotFound);
        }
        self.insert_token(new)
    }

    /// A refresh token that matches no live row: was it rotated away, and when?
    pub fn retired_refresh(&self, refresh_hash: &str) -> StoreResult<Option<RetiredRefresh>> {
        self.one(
            "SELECT family_id, retired_at FROM oauth2_retired_refresh_tokens WHERE refresh_token_hash = $1",
            params![refresh_hash],
            |row| {
                Ok(RetiredRefresh {
                    family_id: row.at(0)?,
                    retired_at: row.at(1)?,
                })
            },
        )
    }

    // ----- authorization codes -----

    pub fn insert_code(&self, c: &NewCode) -> StoreResult<()> {
        self.exec(
            "INSERT INTO oauth2_authorization_codes (id, created_at, code_hash, credential_id, service_id, plugin_id,
               authenticated_userid, scope, challenge, challenge_method, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            params![
                crate::model::new_id(),
                c.created_at,
                &c.code_hash,
                &c.credential_id,
                &c.service_id,
                &c.plugin_id,
                &c.authenticated_userid,
                &c.scope,
                &c.challenge,
                &c.challenge_method,
                c.expires_at,
            ],
        )
        .map(drop)
    }

    pub fn code_by_hash(&self, code_hash: &str) -> StoreResult<Option<AuthorizationCode>> {
        self.one(
            "SELECT * FROM oauth2_authorization_codes WHERE code_hash = $1",
            params![code_hash],
            code_from,
        )
    }

    /// Marks a code spent; `false` when another exchange spent it first.
    pub fn spend_code(&self, code_id: &str, now: i64) -> StoreResult<bool> {
        Ok(self.exec(
            "UPDATE oauth2_authorization_codes SET used_at = $2 WHERE id = $1 AND used_at IS NULL",
            params![code_id, now],
        )? == 1)
    }

    // ----- change feed and housekeeping -----

    /// The change feed from `since` on, at most `limit` digests (`limit + 1` tells the caller
    /// there were more). SQLite's positions are the feed's `seq`: one writer commits in seq
    /// order. PostgreSQL's are transaction ids (see [`super::postgres`]): replicas commit
    /// out of seq order, so a position there is a horizon below which every transaction ended.
    pub fn feed_page(&self, since: i64, limit: i64) -> StoreResult<FeedPage> {
        match self.db.dialect() {
            Dialect::Sqlite => self.sqlite_feed_page(since, limit),
            Dialect::Postgres => self.postgres_feed_page(since, limit),
        }
    }

    fn sqlite_feed_page(&self, since: i64, limit: i64) -> StoreResult<FeedPage> {
        let oldest: Option<i64> = self
            .one("SELECT MIN(seq) FROM changes", &[], |row| row.at(0))?
            .flatten();
        let position = self.newest_change()?;
        let digests = self.all(
            "SELECT access_token_hash FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            params![since, limit],
            |row| row.at(0),
        )?;
        Ok(FeedPage {
            position,
            // Every entry up to `oldest - 1` is gone (pruned), or all of them when none is left.
            floor: oldest.map_or(position, |oldest| oldest - 1),
            digests,
        })
    }

    fn postgres_feed_page(&self, since: i64, limit: i64) -> StoreResult<FeedPage> {
        let position = self.postgres_horizon()?;
        let floor = self.postgres_feed_floor()?;
        let digests = self.all(
            "SELECT access_token_hash FROM changes
             WHERE kind = 'token' AND txid >= $1::bigint::text::xid8 AND txid < $2::bigint::text::xid8
             ORDER BY txid, seq LIMIT $3",
            params![since, position, limit],
            |row| row.at(0),
        )?;
        Ok(FeedPage {
            position,
            floor,
            digests,
        })
    }

    /// PostgreSQL: feed positions below this may have lost entries to the purge.
    pub fn postgres_feed_floor(&self) -> StoreResult<i64> {
        Ok(self
            .one("SELECT floor FROM feed_floor", &[], |row| row.at(0))?
            .unwrap_or(0))
    }

    /// PostgreSQL: the oldest transaction still running (or the next to start): every change
    /// made by a transaction below it is committed or rolled back, for good.
    pub fn postgres_horizon(&self) -> StoreResult<i64> {
        self.one(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
            &[],
            |row| row.at(0),
        )?
        .ok_or_else(|| StoreError::Corrupt("no snapshot horizon".into()))
    }

    /// PostgreSQL: what transactions in `[from, to)` changed, as `(transaction, kind, digest)`
    /// (token digests; `service` and `credential` rows for admin changes), for a replica's
    /// in-memory index.
    pub fn postgres_changes_between(&self, from: i64, to: i64) -> StoreResult<Vec<FeedChange>> {
        self.all(
            "SELECT txid::text::bigint, kind, access_token_hash FROM changes
             WHERE txid >= $1::bigint::text::xid8 AND txid < $2::bigint::text::xid8",
            params![from, to],
            |row| {
                Ok(FeedChange {
                    txid: row.at(0)?,
                    kind: row.at(1)?,
                    digest: row.at(2)?,
                })
            },
        )
    }

    /// PostgreSQL: what the current transaction has changed so far, as `(kind, digest)`.
    pub fn postgres_own_changes(&self) -> StoreResult<Vec<(String, String)>> {
        self.all(
            "SELECT kind, access_token_hash FROM changes WHERE txid = pg_current_xact_id_if_assigned()",
            &[],
            |row| Ok((row.at(0)?, row.at(1)?)),
        )
    }

    /// PostgreSQL: the current transaction's id, once it has written something.
    pub fn postgres_transaction_id(&self) -> StoreResult<Option<i64>> {
        Ok(self
            .one(
                "SELECT pg_current_xact_id_if_assigned()::text::bigint",
                &[],
                |row| row.at(0),
            )?
            .flatten())
    }

    /// SQLite: access-token digests the feed received after `since`, with the newest seq seen.
    pub fn changed_digests_after(&self, since: i64) -> StoreResult<(i64, Vec<String>)> {
        let rows = self.all(
            "SELECT seq, access_token_hash FROM changes WHERE seq > $1 ORDER BY seq",
            params![since],
            |row| Ok((row.at::<i64>(0)?, row.at::<String>(1)?)),
        )?;
        let newest = rows.last().map_or(since, |(seq, _)| *seq);
        Ok((newest, rows.into_iter().map(|(_, digest)| digest).collect()))
    }

    /// SQLite: the newest seq the change feed has handed out (AUTOINCREMENT never reuses
    /// numbers, even when the feed was pruned empty).
    pub fn newest_change(&self) -> StoreResult<i64> {
        Ok(self
            .one(
                "SELECT seq FROM sqlite_sequence WHERE name = 'changes'",
                &[],
                |row| row.at(0),
            )?
            .unwrap_or(0))
    }

    // ----- distrusted JWTs (docs/jwt-access-tokens.md §4) -----

    /// Of these digests (a feed page's), the JWTs distrusted and not yet expired at `now`
    /// (give or take [`DISTRUST_MARGIN_S`]), with their `exp`.
    pub fn distrusted_among(
        &self,
        digests: &[String],
        now: i64,
    ) -> StoreResult<Vec<(String, i64)>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let (list, elements) = self.text_list(digests)?;
        self.all(
            &format!(
                "SELECT access_token_hash, exp FROM distrusted_jwts
                 WHERE exp >= $2 AND access_token_hash IN ({elements})"
            ),
            params![list, now - DISTRUST_MARGIN_S],
            |row| Ok((row.at(0)?, row.at(1)?)),
        )
    }

    /// Every distrusted JWT not yet expired at `now`, at most `limit` (the longest-lived
    /// first; `limit + 1` rows tell the caller there are more).
    pub fn distrusted_jwts(&self, now: i64, limit: i64) -> StoreResult<Vec<(String, i64)>> {
        self.all(
            "SELECT access_token_hash, exp FROM distrusted_jwts WHERE exp >= $1
             ORDER BY exp DESC, access_token_hash LIMIT $2",
            params![now - DISTRUST_MARGIN_S, limit],
            |row| Ok((row.at(0)?, row.at(1)?)),
        )
    }

    /// Tests: a distrusted JWT without a token row behind it (to fill the list quickly).
    #[cfg(test)]
    pub fn distrust_jwt(&self, digest: &str, exp: i64) -> StoreResult<()> {
        self.exec(
            "INSERT INTO distrusted_jwts (access_token_hash, exp) VALUES ($1, $2)",
            params![digest, exp],
        )
        .map(drop)
    }

    /// How many JWTs are distrusted and not yet expired at `now`, counting up to `limit`.
    pub fn distrusted_count(&self, now: i64, limit: i64) -> StoreResult<i64> {
        Ok(self
            .one(
                "SELECT COUNT(*) FROM (SELECT 1 FROM distrusted_jwts WHERE exp >= $1 LIMIT $2) AS d",
                params![now - DISTRUST_MARGIN_S, limit],
                |row| row.at(0),
            )?
            .unwrap_or(0))
    }

    /// Deletes at most `limit` rows of each kind of expired data (codes, tokens, retired
    /// refresh tokens) and of feed entries older than `feed_retention_s`; the store repeats it
    /// while there is more, so no purge holds locks (or PostgreSQL's feed horizon) for long.
    /// Rows another replica's purge has locked are skipped, not waited for.
    pub fn purge_expired_batch(
        &self,
        now: i64,
        feed_retention_s: i64,
        limit: i64,
    ) -> StoreResult<Purged> {
        let skip_locked = match self.db.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let purge = |table: &str, key: &str, expired: &str, before: i64| {
            self.exec(
                &format!(
                    "DELETE FROM {table} WHERE {key} IN
                       (SELECT {key} FROM {table} WHERE {expired} LIMIT $2{skip_locked})"
                ),
                params![before, limit],
            )
        };
        let authorization_codes = purge(
            "oauth2_authorization_codes",
            "id",
            "expires_at < $1",
            now - crate::grants::CODE_REPLAY_MEMORY_S,
        )?;
        let tokens = purge(
            "oauth2_tokens",
            "id",
            "ttl_at IS NOT NULL AND ttl_at < $1",
            now,
        )?;
        let retired_refresh_tokens = purge(
            "oauth2_retired_refresh_tokens",
            "refresh_token_hash",
            "expires_at IS NOT NULL AND expires_at < $1",
            now,
        )?;
        let distrusted_jwts = purge(
            "distrusted_jwts",
            "access_token_hash",
            "exp < $1",
            now - DISTRUST_MARGIN_S,
        )?;
        let changes = match self.db.dialect() {
            Dialect::Sqlite => purge("changes", "seq", "created_at < $1", now - feed_retention_s)?,
            Dialect::Postgres => self.postgres_purge_feed(now - feed_retention_s, limit)?,
        };
        Ok(Purged {
            authorization_codes,
            tokens,
            retired_refresh_tokens,
            distrusted_jwts,
            changes,
        })
    }

    /// PostgreSQL: deletes old feed entries and raises the feed's floor past them, so a
    /// filter that had not seen them resets.
    fn postgres_purge_feed(&self, before: i64, limit: i64) -> StoreResult<u64> {
        let (deleted, newest): (i64, Option<i64>) = self
            .one(
                "WITH gone AS (
                   DELETE FROM changes WHERE seq IN
                     (SELECT seq FROM changes WHERE created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
                   RETURNING txid)
                 SELECT COUNT(*), MAX(txid::text::bigint) FROM gone",
                params![before, limit],
                |row| Ok((row.at(0)?, row.at(1)?)),
            )?
            .unwrap_or((0, None));
        if let Some(newest) = newest {
            self.exec(
                "UPDATE feed_floor SET floor = GREATEST(floor, $1)",
                params![newest + 1],
            )?;
        }
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}
