//! The signing keys' rows (docs/jwt-access-tokens.md §3). Only rows: what a key's times mean
//! (which key signs, which are published) is decided by `crate::jwt`, not here.

use super::repo::Repo;
use super::sql::{params, Dialect, Row};
use super::StoreResult;

/// The `pg_advisory_xact_lock` key that serializes changes to the signing keys across
/// replicas (two replicas creating the first key at once create one).
const SIGNING_KEYS_LOCK: i64 = 0x6f61_7574_6832_0004;

/// One signing key as stored. `private_key` is PKCS#8 PEM and must never reach an answer.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub private_key: String,
    /// The public JWK, JSON text.
    pub public_jwk: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub signed_until: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRow {
    /// Without the private key (logs, test failures).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("retired_at", &self.retired_at)
            .field("expires_at", &self.expires_at)
            .field("signed_until", &self.signed_until)
            .finish_non_exhaustive()
    }
}

fn signing_key_from(row: &Row) -> StoreResult<SigningKeyRow> {
    Ok(SigningKeyRow {
        kid: row.get("kid")?,
        alg: row.get("alg")?,
        private_key: row.get("private_key")?,
        public_jwk: row.get("public_jwk")?,
        created_at: row.get("created_at")?,
        activates_at: row.get("activates_at")?,
        retired_at: row.get("retired_at")?,
        expires_at: row.get("expires_at")?,
        signed_until: row.get("signed_until")?,
    })
}

impl Repo<'_> {
    /// Holds, until this transaction ends, the lock that serializes changes to the signing
    /// keys across PostgreSQL replicas. SQLite's single writer serializes them already.
    pub fn lock_signing_keys(&self) -> StoreResult<()> {
        match self.dialect_of_connection() {
            Dialect::Sqlite => Ok(()),
            Dialect::Postgres => self
                .one(
                    "SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS locked",
                    params![SIGNING_KEYS_LOCK],
                    |row| row.at::<i64>(0),
                )
                .map(drop),
        }
    }

    /// Every stored key, oldest activation first.
    pub fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        self.all(
            "SELECT * FROM signing_keys ORDER BY activates_at, kid",
            &[],
            signing_key_from,
        )
    }

    pub fn insert_signing_key(&self, k: &SigningKeyRow) -> StoreResult<()> {
        self.exec(
            "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at, activates_at, retired_at, expires_at, signed_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            params![
                &k.kid,
                &k.alg,
                &k.private_key,
                &k.public_jwk,
                k.created_at,
                k.activates_at,
                k.retired_at,
                k.expires_at,
                k.signed_until
            ],
        )
        .map(drop)
    }

    /// Writes a key's times (the rest of a key never changes).
    pub fn update_signing_key_times(&self, k: &SigningKeyRow) -> StoreResult<()> {
        self.exec(
            "UPDATE signing_keys SET activates_at = $2, retired_at = $3, expires_at = $4, signed_until = $5 WHERE kid = $1",
            params![&k.kid, k.activates_at, k.retired_at, k.expires_at, k.signed_until],
        )
        .map(drop)
    }

    /// Raises a key's `signed_until` to at least `until` (never lowers it: replicas record
    /// concurrently). `false` when the key is gone.
    pub fn record_signed_until(&self, kid: &str, until: i64) -> StoreResult<bool> {
        self.exec(
            "UPDATE signing_keys SET signed_until = CASE WHEN signed_until IS NULL OR signed_until < $2 THEN $2 ELSE signed_until END WHERE kid = $1",
            params![kid, until],
        )
        .map(|rows| rows > 0)
    }

    pub fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        Ok(self.exec("DELETE FROM signing_keys WHERE kid = $1", params![kid])? > 0)
    }
}
