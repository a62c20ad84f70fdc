//! Schema migrations, applied in order at start-up: SQLite's recorded in `PRAGMA user_version`,
//! PostgreSQL's in `schema_version`, under an advisory lock so replicas starting at once
//! migrate one after the other. The two schemas hold the same tables, columns and constraints;
//! PostgreSQL's feed also records each change's transaction (see [`super::postgres`]).

use super::sqlite::classify as map_err;
use super::StoreResult;
use rusqlite::Connection;

const SQLITE_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE consumers (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    username    TEXT UNIQUE,
    custom_id   TEXT UNIQUE,
    tags        TEXT
);
CREATE TABLE services (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    name        TEXT UNIQUE,
    url         TEXT,
    tags        TEXT
);
CREATE TABLE plugins (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    name        TEXT NOT NULL,
    service_id  TEXT REFERENCES services(id) ON DELETE CASCADE,
    enabled     INTEGER NOT NULL,
    config      TEXT NOT NULL,
    UNIQUE (service_id, name)
);
CREATE TABLE oauth2_credentials (
    id             TEXT PRIMARY KEY,
    created_at     INTEGER NOT NULL,
    consumer_id    TEXT NOT NULL REFERENCES consumers(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    client_id      TEXT NOT NULL UNIQUE,
    client_secret  TEXT NOT NULL,
    hash_secret    INTEGER NOT NULL,
    redirect_uris  TEXT,
    client_type    TEXT NOT NULL,
    tags           TEXT
);
CREATE INDEX oauth2_credentials_consumer ON oauth2_credentials(consumer_id);
CREATE TABLE oauth2_authorization_codes (
    id                    TEXT PRIMARY KEY,
    created_at            INTEGER NOT NULL,
    code_hash             TEXT NOT NULL UNIQUE,
    credential_id         TEXT NOT NULL REFERENCES oauth2_credentials(id) ON DELETE CASCADE,
    service_id            TEXT REFERENCES services(id) ON DELETE CASCADE,
    plugin_id             TEXT,
    authenticated_userid  TEXT,
    scope                 TEXT,
    challenge             TEXT,
    challenge_method      TEXT,
    expires_at            INTEGER NOT NULL,
    used_at               INTEGER
);
CREATE INDEX oauth2_codes_expiry ON oauth2_authorization_codes(expires_at);
CREATE TABLE oauth2_tokens (
    id                    TEXT PRIMARY KEY,
    created_at            INTEGER NOT NULL,
    credential_id         TEXT NOT NULL REFERENCES oauth2_credentials(id) ON DELETE CASCADE,
    service_id            TEXT REFERENCES services(id) ON DELETE CASCADE,
    token_type            TEXT NOT NULL,
    expires_in            INTEGER NOT NULL,
    access_token_hash     TEXT NOT NULL UNIQUE,
    refresh_token_hash    TEXT UNIQUE,
    authenticated_userid  TEXT,
    scope                 TEXT,
    ttl_at                INTEGER,
    family_id             TEXT NOT NULL
);
CREATE INDEX oauth2_tokens_credential ON oauth2_tokens(credential_id);
CREATE INDEX oauth2_tokens_family ON oauth2_tokens(family_id);
CREATE INDEX oauth2_tokens_ttl ON oauth2_tokens(ttl_at);
-- Refresh tokens rotated away: presenting one again revokes its whole family (RFC 9700 4.14).
CREATE TABLE oauth2_retired_refresh_tokens (
    refresh_token_hash  TEXT PRIMARY KEY,
    family_id           TEXT NOT NULL,
    expires_at          INTEGER
);
CREATE TABLE changes (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    access_token_hash  TEXT NOT NULL,
    created_at         INTEGER NOT NULL
);
CREATE TRIGGER token_deleted AFTER DELETE ON oauth2_tokens BEGIN
    INSERT INTO changes (access_token_hash, created_at) VALUES (OLD.access_token_hash, unixepoch());
END;
CREATE TRIGGER token_changed AFTER UPDATE ON oauth2_tokens BEGIN
    INSERT INTO changes (access_token_hash, created_at) VALUES (OLD.access_token_hash, unixepoch());
END;
CREATE TRIGGER credential_changed AFTER UPDATE ON oauth2_credentials BEGIN
    INSERT INTO changes (access_token_hash, created_at)
        SELECT access_token_hash, unixepoch() FROM oauth2_tokens WHERE credential_id = OLD.id;
END;
CREATE TRIGGER consumer_changed AFTER UPDATE ON consumers BEGIN
    INSERT INTO changes (access_token_hash, created_at)
        SELECT t.access_token_hash, unixepoch() FROM oauth2_tokens t
        JOIN oauth2_credentials c ON c.id = t.credential_id WHERE c.consumer_id = OLD.id;
END;
"#,
    // When each refresh token was rotated away: a replay soon after is a lost race (grants::replay).
    r#"
ALTER TABLE oauth2_retired_refresh_tokens ADD COLUMN retired_at INTEGER;
"#,
    // The token-service's signing keys (issue 21, docs/jwt-access-tokens.md §3). A key's
    // status is a function of its times (see `jwt::ring`): `activates_at` when it starts
    // signing, `retired_at` when it stops, published until `expires_at` and `signed_until`
    // (the latest `exp` it signed, rounded up) have both passed.
    r#"
CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL,
    private_key   TEXT NOT NULL,
    public_jwk    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    activates_at  INTEGER NOT NULL,
    retired_at    INTEGER,
    expires_at    INTEGER,
    signed_until  INTEGER
);
"#,
    // JWT access tokens (docs/jwt-access-tokens.md §4): a JWT row that changes or goes is
    // distrusted (the filter stops verifying it locally) until its `exp` plus a margin for
    // clocks; rows that change after that add nothing. Written in the same transaction as the
    // feed entry, so a poll sees both or neither.
    r#"
ALTER TABLE oauth2_tokens ADD COLUMN jwt_exp INTEGER;
CREATE TABLE distrusted_jwts (
    access_token_hash  TEXT PRIMARY KEY,
    exp                INTEGER NOT NULL
);
CREATE INDEX distrusted_jwts_exp ON distrusted_jwts(exp);
CREATE TRIGGER jwt_deleted AFTER DELETE ON oauth2_tokens
    WHEN OLD.jwt_exp IS NOT NULL AND OLD.jwt_exp + 60 >= unixepoch() BEGIN
    INSERT OR IGNORE INTO distrusted_jwts (access_token_hash, exp)
        VALUES (OLD.access_token_hash, OLD.jwt_exp);
END;
CREATE TRIGGER jwt_changed AFTER UPDATE ON oauth2_tokens
    WHEN OLD.jwt_exp IS NOT NULL AND OLD.jwt_exp + 60 >= unixepoch() BEGIN
    INSERT OR IGNORE INTO distrusted_jwts (access_token_hash, exp)
        VALUES (OLD.access_token_hash, OLD.jwt_exp);
END;
CREATE TRIGGER jwt_credential_changed AFTER UPDATE ON oauth2_credentials BEGIN
    INSERT OR IGNORE INTO distrusted_jwts (access_token_hash, exp)
        SELECT access_token_hash, jwt_exp FROM oauth2_tokens
        WHERE credential_id = OLD.id AND jwt_exp + 60 >= unixepoch();
END;
CREATE TRIGGER jwt_consumer_changed AFTER UPDATE ON consumers BEGIN
    INSERT OR IGNORE INTO distrusted_jwts (access_token_hash, exp)
        SELECT t.access_token_hash, t.jwt_exp FROM oauth2_tokens t
        JOIN oauth2_credentials c ON c.id = t.credential_id
        WHERE c.consumer_id = OLD.id AND t.jwt_exp + 60 >= unixepoch();
END;
"#,
];

pub fn migrate_sqlite(conn: &mut Connection) -> StoreResult<()> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(map_err)?;
    for (index, sql) in SQLITE_MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction().map_err(map_err)?;
        tx.execute_batch(sql).map_err(map_err)?;
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        tracing::info!(version = index + 1, "database schema migrated");
    }
    Ok(())
}

/// Unique constraints are named `<table>__<column>`: a conflict names its column (SQLSTATE
/// 23505 carries the constraint's name, never a column). Integers are `BIGINT`, booleans 0/1,
/// as in SQLite, so one row type reads both.
const POSTGRES_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE consumers (
    id          TEXT CONSTRAINT consumers__id PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    username    TEXT CONSTRAINT consumers__username UNIQUE,
    custom_id   TEXT CONSTRAINT consumers__custom_id UNIQUE,
    tags        TEXT
);
CREATE TABLE services (
    id          TEXT CONSTRAINT services__id PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    name        TEXT CONSTRAINT services__name UNIQUE,
    url         TEXT,
    tags        TEXT
);
CREATE TABLE plugins (
    id          TEXT CONSTRAINT plugins__id PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    service_id  TEXT REFERENCES services(id) ON DELETE CASCADE,
    enabled     BIGINT NOT NULL,
    config      TEXT NOT NULL,
    CONSTRAINT plugins__name UNIQUE (service_id, name)
);
CREATE TABLE oauth2_credentials (
    id             TEXT CONSTRAINT oauth2_credentials__id PRIMARY KEY,
    created_at     BIGINT NOT NULL,
    consumer_id    TEXT NOT NULL REFERENCES consumers(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    client_id      TEXT NOT NULL CONSTRAINT oauth2_credentials__client_id UNIQUE,
    client_secret  TEXT NOT NULL,
    hash_secret    BIGINT NOT NULL,
    redirect_uris  TEXT,
    client_type    TEXT NOT NULL,
    tags           TEXT
);
CREATE INDEX oauth2_credentials_consumer ON oauth2_credentials(consumer_id);
CREATE TABLE oauth2_authorization_codes (
    id                    TEXT CONSTRAINT oauth2_authorization_codes__id PRIMARY KEY,
    created_at            BIGINT NOT NULL,
    code_hash             TEXT NOT NULL CONSTRAINT oauth2_authorization_codes__code_hash UNIQUE,
    credential_id         TEXT NOT NULL REFERENCES oauth2_credentials(id) ON DELETE CASCADE,
    service_id            TEXT REFERENCES services(id) ON DELETE CASCADE,
    plugin_id             TEXT,
    authenticated_userid  TEXT,
    scope                 TEXT,
    challenge             TEXT,
    challenge_method      TEXT,
    expires_at            BIGINT NOT NULL,
    used_at               BIGINT
);
CREATE INDEX oauth2_codes_expiry ON oauth2_authorization_codes(expires_at);
CREATE INDEX oauth2_codes_credential ON oauth2_authorization_codes(credential_id);
CREATE TABLE oauth2_tokens (
    id                    TEXT CONSTRAINT oauth2_tokens__id PRIMARY KEY,
    created_at            BIGINT NOT NULL,
    credential_id         TEXT NOT NULL REFERENCES oauth2_credentials(id) ON DELETE CASCADE,
    service_id            TEXT REFERENCES services(id) ON DELETE CASCADE,
    token_type            TEXT NOT NULL,
    expires_in            BIGINT NOT NULL,
    access_token_hash     TEXT NOT NULL CONSTRAINT oauth2_tokens__access_token_hash UNIQUE,
    refresh_token_hash    TEXT CONSTRAINT oauth2_tokens__refresh_token_hash UNIQUE,
    authenticated_userid  TEXT,
    scope                 TEXT,
    ttl_at                BIGINT,
    family_id             TEXT NOT NULL
);
CREATE INDEX oauth2_tokens_credential ON oauth2_tokens(credential_id);
CREATE INDEX oauth2_tokens_service ON oauth2_tokens(service_id);
CREATE INDEX oauth2_tokens_family ON oauth2_tokens(family_id);
CREATE INDEX oauth2_tokens_ttl ON oauth2_tokens(ttl_at);
CREATE TABLE oauth2_retired_refresh_tokens (
    refresh_token_hash  TEXT CONSTRAINT oauth2_retired_refresh_tokens__refresh_token_hash PRIMARY KEY,
    family_id           TEXT NOT NULL,
    expires_at          BIGINT,
    retired_at          BIGINT
);
CREATE INDEX oauth2_retired_family ON oauth2_retired_refresh_tokens(family_id);
-- The change feed: `token` rows carry a changed access-token digest, `service` rows say that
-- services or plugins changed, `credential` rows that credentials did. `txid` is the writing
-- transaction.
CREATE TABLE changes (
    seq                BIGSERIAL PRIMARY KEY,
    txid               xid8 NOT NULL DEFAULT pg_current_xact_id(),
    kind               TEXT NOT NULL DEFAULT 'token',
    access_token_hash  TEXT NOT NULL,
    created_at         BIGINT NOT NULL DEFAULT extract(epoch FROM now())::bigint
);
CREATE INDEX changes_txid ON changes(txid);
CREATE INDEX changes_created ON changes(created_at);
-- Feed positions below `floor` may have lost entries to the purge: a poller there resets.
CREATE TABLE feed_floor (floor BIGINT NOT NULL);
INSERT INTO feed_floor VALUES (0);

CREATE FUNCTION feed_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO changes (access_token_hash) VALUES (OLD.access_token_hash);
    RETURN NULL;
END $$;
CREATE TRIGGER token_deleted AFTER DELETE ON oauth2_tokens
    FOR EACH ROW EXECUTE FUNCTION feed_token_changed();
CREATE TRIGGER token_changed AFTER UPDATE ON oauth2_tokens
    FOR EACH ROW EXECUTE FUNCTION feed_token_changed();

CREATE FUNCTION feed_credential_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO changes (access_token_hash)
        SELECT access_token_hash FROM oauth2_tokens WHERE credential_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER credential_changed AFTER UPDATE ON oauth2_credentials
    FOR EACH ROW EXECUTE FUNCTION feed_credential_changed();

CREATE FUNCTION feed_consumer_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO changes (access_token_hash)
        SELECT t.access_token_hash FROM oauth2_tokens t
        JOIN oauth2_credentials c ON c.id = t.credential_id WHERE c.consumer_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER consumer_changed AFTER UPDATE ON consumers
    FOR EACH ROW EXECUTE FUNCTION feed_consumer_changed();

CREATE FUNCTION feed_entity_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO changes (kind, access_token_hash) VALUES (TG_ARGV[0], '');
    RETURN NULL;
END $$;
CREATE TRIGGER service_changed AFTER INSERT OR UPDATE OR DELETE ON services
    FOR EACH STATEMENT EXECUTE FUNCTION feed_entity_changed('service');
CREATE TRIGGER plugin_changed AFTER INSERT OR UPDATE OR DELETE ON plugins
    FOR EACH STATEMENT EXECUTE FUNCTION feed_entity_changed('service');
CREATE TRIGGER credential_entity_changed AFTER INSERT OR UPDATE OR DELETE ON oauth2_credentials
    FOR EACH STATEMENT EXECUTE FUNCTION feed_entity_changed('credential');
"#,
    // Issued tokens reach every replica's digest set (`issued` rows carry the new digest of
    // an inserted or updated token; the filter's feed reads only `token` rows).
    r#"
CREATE FUNCTION feed_token_issued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO changes (kind, access_token_hash) VALUES ('issued', NEW.access_token_hash);
    RETURN NULL;
END $$;
CREATE TRIGGER token_issued AFTER INSERT OR UPDATE ON oauth2_tokens
    FOR EACH ROW EXECUTE FUNCTION feed_token_issued();
"#,
    // The token-service's signing keys (see the SQLite migration of the same name).
    r#"
CREATE TABLE signing_keys (
    kid           TEXT CONSTRAINT signing_keys__kid PRIMARY KEY,
    alg           TEXT NOT NULL,
    private_key   TEXT NOT NULL,
    public_jwk    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    activates_at  BIGINT NOT NULL,
    retired_at    BIGINT,
    expires_at    BIGINT,
    signed_until  BIGINT
);
"#,
    // JWT access tokens: as SQLite's third migration.
    r#"
ALTER TABLE oauth2_tokens ADD COLUMN jwt_exp BIGINT;
CREATE TABLE distrusted_jwts (
    access_token_hash  TEXT CONSTRAINT distrusted_jwts__access_token_hash PRIMARY KEY,
    exp                BIGINT NOT NULL
);
CREATE INDEX distrusted_jwts_exp ON distrusted_jwts(exp);

CREATE FUNCTION distrust_old_jwt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.jwt_exp IS NOT NULL AND OLD.jwt_exp + 60 >= extract(epoch FROM now())::bigint THEN
        INSERT INTO distrusted_jwts (access_token_hash, exp)
            VALUES (OLD.access_token_hash, OLD.jwt_exp) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jwt_deleted AFTER DELETE ON oauth2_tokens
    FOR EACH ROW EXECUTE FUNCTION distrust_old_jwt();
CREATE TRIGGER jwt_changed AFTER UPDATE ON oauth2_tokens
    FOR EACH ROW EXECUTE FUNCTION distrust_old_jwt();

CREATE FUNCTION distrust_credential_jwts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO distrusted_jwts (access_token_hash, exp)
        SELECT access_token_hash, jwt_exp FROM oauth2_tokens
        WHERE credential_id = OLD.id AND jwt_exp + 60 >= extract(epoch FROM now())::bigint
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER jwt_credential_changed AFTER UPDATE ON oauth2_credentials
    FOR EACH ROW EXECUTE FUNCTION distrust_credential_jwts();

CREATE FUNCTION distrust_consumer_jwts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO distrusted_jwts (access_token_hash, exp)
        SELECT t.access_token_hash, t.jwt_exp FROM oauth2_tokens t
        JOIN oauth2_credentials c ON c.id = t.credential_id
        WHERE c.consumer_id = OLD.id AND t.jwt_exp + 60 >= extract(epoch FROM now())::bigint
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER jwt_consumer_changed AFTER UPDATE ON consumers
    FOR EACH ROW EXECUTE FUNCTION distrust_consumer_jwts();
"#,
];

/// Brings a PostgreSQL database up to date, holding an advisory lock meanwhile.
pub fn migrate_postgres(client: &mut postgres::Client) -> StoreResult<()> {
    use super::postgres::{classify, migration_lock, migration_unlock};
    migration_lock(client)?;
    let result = (|| -> Result<(), postgres::Error> {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
        let current = client
            .query_opt("SELECT version FROM schema_version", &[])?
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()?
            .unwrap_or(0);
        let current = usize::try_from(current).unwrap_or(usize::MAX);
        for (index, sql) in POSTGRES_MIGRATIONS.iter().enumerate().skip(current) {
            let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
            let mut tx = client.transaction()?;
            tx.batch_execute(sql)?;
            tx.execute("DELETE FROM schema_version", &[])?;
            tx.execute("INSERT INTO schema_version VALUES ($1)", &[&version])?;
            tx.commit()?;
            tracing::info!(version, "PostgreSQL schema migrated");
        }
        Ok(())
    })();
    migration_unlock(client);
    result.map_err(classify)
}
