//! [`Signing`]: what the grants sign with and what the JWKS, the state poll and the admin API
//! publish. Token-service wide; the keys live in the database (see [`super::ring`] for what
//! their times mean), and each replica keeps a copy read at most [`KEYS_RELOAD`] ago, so a key
//! another replica added is known here (published, then used) within that bound, and never
//! used here before it was read from the database.

use super::keys::{self, Alg, KeyError, KeyMaterial};
use super::ring::{self, Status};
use crate::store::{SigningKeyRow, Store, StoreError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How stale a replica's copy of the keys may be: a key another replica made on first need
/// (active at once) is published here within it. One small read per interval at most.
pub const KEYS_RELOAD: Duration = Duration::from_millis(250);
/// The contract's default `--signing-key-publish-delay-s`: a new key is published this long
/// before it signs (at least two of the filter's state polls).
pub const DEFAULT_PUBLISH_DELAY_S: i64 = 5;
/// How long a key stays published after it retired when no plugin has a finite
/// `token_expiration` (Kong's default lifetime).
const DEFAULT_LONGEST_LIFETIME_S: i64 = 7200;
/// `signed_until` is recorded this far beyond the `exp` just signed, so that a replica writes
/// it at most once per this interval per key instead of once per token.
const SIGNED_UNTIL_SLACK_S: i64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningSettings {
    /// The algorithm of the key made on first need.
    pub default_alg: Alg,
    /// `--signing-key-publish-delay-s`.
    pub publish_delay_s: i64,
}

impl Default for SigningSettings {
    fn default() -> Self {
        SigningSettings {
            default_alg: Alg::RS256,
            publish_delay_s: DEFAULT_PUBLISH_DELAY_S,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The claims to sign lack a numeric `exp` (every token signed here expires: RFC 9068).
    #[error("the claims to sign have no numeric exp")]
    MissingExp,
    #[error("no signing key is active")]
    NoActiveKey,
    #[error("no signing key {0}")]
    UnknownKey(String),
    /// Retiring the only active key with no key to take over.
    #[error("{0} is the only active signing key: add a key first")]
    OnlyActiveKey(String),
}

/// A key as published (JWKS, state poll) and as the admin API lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PublicKey {
    pub kid: String,
    pub alg: String,
    pub status: Status,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
    /// When it stops being published (`None` while it is not retired).
    pub expires_at: Option<i64>,
    pub jwk: Value,
}

/// A replica's copy of the keys.
struct Ring {
    keys: Vec<SigningKeyRow>,
    read_at: Instant,
}

pub struct Signing {
    store: Store,
    settings: SigningSettings,
    ring: RwLock<Option<Arc<Ring>>>,
    /// One reload (or first-key creation) at a time; the others wait and use its result.
    reloading: tokio::sync::Mutex<()>,
    /// Parsed private keys by kid (parsing an RSA key costs more than signing with it).
    signing_keys: Mutex<HashMap<String, Arc<keys::SigningKey>>>,
    /// The `signed_until` this replica last recorded, by kid.
    recorded: Mutex<HashMap<String, i64>>,
}

impl Signing {
    pub fn new(store: Store, settings: SigningSettings) -> Self {
        Signing {
            store,
            settings,
            ring: RwLock::new(None),
            reloading: tokio::sync::Mutex::new(()),
            signing_keys: Mutex::default(),
            recorded: Mutex::default(),
        }
    }

    pub fn settings(&self) -> SigningSettings {
        self.settings
    }

    /// Makes sure a key can sign, creating the first one if there is none. Called once at
    /// start-up: generating an RSA key takes from a fraction of a second to seconds on a busy
    /// machine, which the first token request must not wait for (the filter relays it with a
    /// one-second deadline).
    pub async fn prepare(&self) -> Result<(), SigningError> {
        self.active_key(crate::model::now()).await.map(|_| ())
    }

    /// A compact JWS of `claims` with header `typ`, `alg` and `kid`, signed by the active key
    /// (made on first need: `default_alg`). `claims` must carry a numeric `exp`: the key
    /// stays published until then.
    pub async fn sign(&self, typ: &str, claims: &Value) -> Result<String, SigningError> {
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(SigningError::MissingExp)?;
        let mut key = self.active_key(crate::model::now()).await?;
        if !self.record_signed_until(&key.kid, exp).await? {
            // Deleted meanwhile (this replica's copy was stale): never sign with a key that
            // is no longer published; the database's current keys decide.
            self.forget_ring();
            key = self.active_key(crate::model::now()).await?;
            if !self.record_signed_until(&key.kid, exp).await? {
                return Err(SigningError::NoActiveKey);
            }
        }
        let alg: Alg = key.alg.parse()?;
        let signing_key = self.signing_key(&key, alg)?;
        let header = json!({"typ": typ, "alg": alg.as_str(), "kid": key.kid});
        compact_jws(&header, claims, &signing_key)
    }

    /// RFC 7517 JWK Set of every published key.
    pub async fn public_jwks(&self) -> Result<Value, SigningError> {
        let keys = self.published().await?;
        Ok(json!({"keys": keys.into_iter().map(|k| k.jwk).collect::<Vec<_>>()}))
    }

    /// Every published key (`next`, `active`, `retired`), oldest activation first.
    pub async fn published(&self) -> Result<Vec<PublicKey>, SigningError> {
        let now = crate::model::now();
        let ring = self.ring().await?;
        Ok(ring
            .keys
            .iter()
            .filter(|key| ring::is_published(key, now))
            .map(|key| public_key(key, now))
            .collect::<Result<_, _>>()?)
    }

    /// Adds a key: `next` for `--signing-key-publish-delay-s`, then `active` (the active key
    /// retiring at that moment); `active` at once when no key is.
    pub async fn add(&self, alg: Alg) -> Result<PublicKey, SigningError> {
        let material = generate(alg).await?;
        let delay = self.settings.publish_delay_s;
        let kid = material.kid.clone();
        let now = crate::model::now();
        self.store
            .transaction(move |repo| -> Result<(), SigningError> {
                repo.lock_signing_keys()?;
                let lifetime = longest_lifetime(repo)?;
                let mut keys = repo.signing_keys()?;
                let activates_at = match ring::active(&keys, now) {
                    Some(_) => now.saturating_add(delay),
                    None => now,
                };
                let row = new_row(&material, now, activates_at)?;
                repo.insert_signing_key(&row)?;
                keys.push(row);
                write_schedule(repo, &mut keys, now, lifetime)
            })
            .await?;
        self.forget_ring();
        self.find(&kid, now).await
    }

    /// Retires a key now. The active key may be retired only when a `next` key exists, which
    /// then becomes active at once.
    pub async fn retire(&self, kid: &str) -> Result<PublicKey, SigningError> {
        let now = crate::model::now();
        let target = kid.to_string();
        self.store
            .transaction(move |repo| -> Result<(), SigningError> {
                repo.lock_signing_keys()?;
                let lifetime = longest_lifetime(repo)?;
                let mut keys = repo.signing_keys()?;
                let index = keys
                    .iter()
                    .position(|key| key.kid == target)
                    .ok_or_else(|| SigningError::UnknownKey(target.clone()))?;
                match ring::status(&keys[index], now) {
                    Status::Retired => return Ok(()),
                    Status::Active => promote_next(repo, &mut keys, &target, now)?,
                    Status::Next => {}
                }
                let key = &mut keys[index];
                key.retired_at = Some(now);
                key.expires_at = Some(ring::expiry(key, now, lifetime));
                repo.update_signing_key_times(key)?;
                write_schedule(repo, &mut keys, now, lifetime)
            })
            .await?;
        self.forget_ring();
        self.find(kid, now).await
    }

    /// Every key still stored (published or about to be deleted), for the admin API.
    pub async fn list(&self) -> Result<Vec<PublicKey>, SigningError> {
        let now = crate::model::now();
        self.forget_ring();
        let ring = self.ring().await?;
        ring.keys
            .iter()
            .map(|key| public_key(key, now))
            .collect::<Result<_, _>>()
            .map_err(SigningError::from)
    }

    /// Deletes the retired keys no longer published; answers how many.
    pub async fn purge(&self, now: i64) -> Result<u64, SigningError> {
        let deleted = self
            .store
            .transaction(move |repo| -> Result<u64, SigningError> {
                repo.lock_signing_keys()?;
                let mut deleted = 0;
                for key in repo.signing_keys()? {
                    if !ring::is_published(&key, now) && repo.delete_signing_key(&key.kid)? {
                        deleted += 1;
                    }
                }
                Ok(deleted)
            })
            .await?;
        if deleted > 0 {
            self.forget_ring();
        }
        Ok(deleted)
    }

    async fn find(&self, kid: &str, now: i64) -> Result<PublicKey, SigningError> {
        let ring = self.ring().await?;
        let key = ring
            .keys
            .iter()
            .find(|key| key.kid == kid)
            .ok_or_else(|| SigningError::UnknownKey(kid.to_string()))?;
        Ok(public_key(key, now)?)
    }

    /// The key that signs now, creating the first one if there is none.
    async fn active_key(&self, now: i64) -> Result<SigningKeyRow, SigningError> {
        let ring = self.ring().await?;
        if let Some(key) = ring::active(&ring.keys, now) {
            return Ok(key.clone());
        }
        self.create_first_key(now).await?;
        let ring = self.ring().await?;
        ring::active(&ring.keys, now)
            .cloned()
            .ok_or(SigningError::NoActiveKey)
    }

    /// Makes a key active at once, unless one is (another replica, or another request here,
    /// made it meanwhile: the lock and the check in one transaction make one key, not two).
    async fn create_first_key(&self, now: i64) -> Result<(), SigningError> {
        let _turn = self.reloading.lock().await;
        if let Some(ring) = self.fresh_ring() {
            if ring::active(&ring.keys, now).is_some() {
                return Ok(());
            }
        }
        let material = generate(self.settings.default_alg).await?;
        self.store
            .transaction(move |repo| -> Result<(), SigningError> {
                repo.lock_signing_keys()?;
                let mut keys = repo.signing_keys()?;
                if ring::active(&keys, now).is_some() {
                    return Ok(());
                }
                let lifetime = longest_lifetime(repo)?;
                let row = new_row(&material, now, now)?;
                repo.insert_signing_key(&row)?;
                keys.push(row);
                write_schedule(repo, &mut keys, now, lifetime)
            })
            .await?;
        *self.write_ring() = None;
        Ok(())
    }

    /// The keys as read at most [`KEYS_RELOAD`] ago.
    async fn ring(&self) -> Result<Arc<Ring>, SigningError> {
        if let Some(ring) = self.fresh_ring() {
            return Ok(ring);
        }
        let _turn = self.reloading.lock().await;
        if let Some(ring) = self.fresh_ring() {
            return Ok(ring);
        }
        let keys = self.store.read(|repo| repo.signing_keys()).await?;
        let ring = Arc::new(Ring {
            keys,
            read_at: Instant::now(),
        });
        *self.write_ring() = Some(ring.clone());
        Ok(ring)
    }

    fn fresh_ring(&self) -> Option<Arc<Ring>> {
        let ring = self
            .ring
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()?;
        (ring.read_at.elapsed() < KEYS_RELOAD).then_some(ring)
    }

    fn write_ring(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<Ring>>> {
        self.ring
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// After a change made here: the next read sees it.
    fn forget_ring(&self) {
        *self.write_ring() = None;
    }

    fn signing_key(
        &self,
        key: &SigningKeyRow,
        alg: Alg,
    ) -> Result<Arc<keys::SigningKey>, SigningError> {
        let mut signing_keys = self
            .signing_keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(signing_key) = signing_keys.get(&key.kid) {
            return Ok(signing_key.clone());
        }
        let signing_key = Arc::new(keys::SigningKey::from_pkcs8_pem(alg, &key.private_key)?);
        signing_keys.insert(key.kid.clone(), signing_key.clone());
        Ok(signing_key)
    }

    /// Makes sure the database knows that `kid` signed a token expiring at `exp` (so the key
    /// stays published until then), writing at most once per [`SIGNED_UNTIL_SLACK_S`].
    /// `false` when the key is no longer stored. (A key is deleted only once
    /// `signed_until` has passed, so a key this replica recorded cannot vanish under a token
    /// it signed.)
    async fn record_signed_until(&self, kid: &str, exp: i64) -> Result<bool, SigningError> {
        let known = self.recorded_until(kid);
        if known.is_some_and(|until| exp <= until) {
            return Ok(true);
        }
        let until = exp.saturating_add(SIGNED_UNTIL_SLACK_S);
        let owned = kid.to_string();
        let stored = self
            .store
            .write(move |repo| repo.record_signed_until(&owned, until))
            .await?;
        if stored {
            self.recorded
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(kid.to_string(), until);
        }
        Ok(stored)
    }

    fn recorded_until(&self, kid: &str) -> Option<i64> {
        self.recorded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(kid)
            .copied()
    }
}

/// RFC 7515 §7.1 compact serialisation: `BASE64URL(header) . BASE64URL(claims) . BASE64URL(signature)`.
fn compact_jws(
    header: &Value,
    claims: &Value,
    key: &keys::SigningKey,
) -> Result<String, SigningError> {
    let mut jws = URL_SAFE_NO_PAD.encode(header.to_string());
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut jws);
    let signature = key.sign(jws.as_bytes())?;
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
    Ok(jws)
}

/// Key generation off the async workers (RSA takes tens to hundreds of milliseconds).
async fn generate(alg: Alg) -> Result<KeyMaterial, SigningError> {
    tokio::task::spawn_blocking(move || keys::generate(alg))
        .await
        .map_err(|e| SigningError::Key(KeyError::Generation(e.to_string())))?
        .map_err(SigningError::from)
}

fn new_row(material: &KeyMaterial, now: i64, activates_at: i64) -> Result<SigningKeyRow, KeyError> {
    Ok(SigningKeyRow {
        kid: material.kid.clone(),
        alg: material.alg.as_str().to_string(),
        private_key: material.private_pkcs8_pem.clone(),
        public_jwk: material.public_jwk.to_string(),
        created_at: now,
        activates_at,
        retired_at: None,
        expires_at: None,
        signed_until: None,
    })
}

fn longest_lifetime(repo: &crate::store::Repo<'_>) -> Result<i64, StoreError> {
    Ok(repo
        .longest_token_expiration()?
        .unwrap_or(DEFAULT_LONGEST_LIFETIME_S))
}

fn write_schedule(
    repo: &crate::store::Repo<'_>,
    keys: &mut [SigningKeyRow],
    now: i64,
    lifetime: i64,
) -> Result<(), SigningError> {
    for changed in ring::reschedule(keys, now, lifetime) {
        repo.update_signing_key_times(&changed)?;
    }
    Ok(())
}

/// Retiring the active key `kid`: the earliest `next` key takes over now, or the retirement
/// is refused.
fn promote_next(
    repo: &crate::store::Repo<'_>,
    keys: &mut [SigningKeyRow],
    kid: &str,
    now: i64,
) -> Result<(), SigningError> {
    let successor = ring::first_next(keys, now)
        .map(|key| key.kid.clone())
        .ok_or_else(|| SigningError::OnlyActiveKey(kid.to_string()))?;
    if let Some(key) = keys.iter_mut().find(|key| key.kid == successor) {
        key.activates_at = now;
        repo.update_signing_key_times(key)?;
    }
    Ok(())
}

fn public_key(key: &SigningKeyRow, now: i64) -> Result<PublicKey, KeyError> {
    let jwk = serde_json::from_str(&key.public_jwk)
        .map_err(|e| KeyError::Unreadable(format!("public JWK of {}: {e}", key.kid)))?;
    Ok(PublicKey {
        kid: key.kid.clone(),
        alg: key.alg.clone(),
        status: ring::status(key, now),
        created_at: key.created_at,
        activates_at: key.activates_at,
        retired_at: key.retired_at,
        expires_at: ring::published_until(key),
        jwk,
    })
}
