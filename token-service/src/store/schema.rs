//! Schema migrations, applied in order at start-up and recorded in `PRAGMA user_version`.

use super::{map_err, StoreResult};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
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
];

pub fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(map_err)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction().map_err(map_err)?;
        tx.execute_batch(sql).map_err(map_err)?;
        tx.pragma_update(None, "user_version", index + 1)
            .map_err(map_err)?;
        tx.commit().map_err(map_err)?;
        tracing::info!(version = index + 1, "database schema migrated");
    }
    Ok(())
}
