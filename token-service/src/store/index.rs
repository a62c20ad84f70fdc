//! The in-memory read path: what token checks and token requests read on every call (the
//! service with its plugin, the client's credential, the token with its owner), answered
//! without SQLite or a thread hop.
//!
//! It is a cache in front of the database, never the source of truth, kept exact by the writer
//! thread: every committed batch that changed tokens (the change feed's digests), services,
//! plugins or credentials is applied here before the commit (so nothing stale is visible once the change is)
//! and again after it (so a read that raced the commit cannot put a stale answer back). A read
//! that fills the index presents the generation it started under and is ignored when a batch
//! was applied meanwhile. Tokens a batch inserted are added after the commit, so a token is
//! usually in memory before its first check. Bounded: when full, the token map starts over.

use super::TokenWithOwner;
use crate::model::{Credential, Lifetime, Plugin, Service};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A service with its enabled `oauth2` plugin, if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectedService {
    pub service: Service,
    pub plugin: Option<Plugin>,
}

impl ProtectedService {
    /// Its plugin accepts tokens issued under `global_credentials`.
    pub fn accepts_global_tokens(&self) -> bool {
        self.plugin
            .as_ref()
            .is_some_and(|p| p.config.global_credentials)
    }
}

/// What a check needs of a token and its owner, and nothing more (a few hundred bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedToken {
    pub lifetime: Lifetime,
    /// The service it was issued for; `None` under `global_credentials`.
    pub service_id: Option<Box<str>>,
    pub authenticated_userid: Option<Box<str>>,
    pub scope: Option<Box<str>>,
    pub credential_id: Box<str>,
    pub client_id: Box<str>,
    pub consumer_id: Box<str>,
    pub consumer_username: Option<Box<str>>,
    pub consumer_custom_id: Option<Box<str>>,
}

impl From<TokenWithOwner> for IndexedToken {
    fn from(found: TokenWithOwner) -> IndexedToken {
        let boxed = |s: Option<String>| s.map(String::into_boxed_str);
        IndexedToken {
            lifetime: found.token.lifetime(),
            service_id: boxed(found.token.service_id),
            authenticated_userid: boxed(found.token.authenticated_userid),
            scope: boxed(found.token.scope),
            credential_id: found.credential.id.into_boxed_str(),
            client_id: found.credential.client_id.into_boxed_str(),
            consumer_id: found.consumer.id.into_boxed_str(),
            consumer_username: boxed(found.consumer.username),
            consumer_custom_id: boxed(found.consumer.custom_id),
        }
    }
}

/// A token's SHA-256, the index's key (stored as hex in the database).
type Digest = [u8; 32];

fn digest_key(hex_digest: &str) -> Option<Digest> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut key).ok()?;
    Some(key)
}

pub struct Index {
    maps: RwLock<Maps>,
    capacity: usize,
}

#[derive(Default)]
struct Maps {
    generation: u64,
    /// By service id or name; `None` remembers that no such service exists.
    services: HashMap<String, Option<Arc<ProtectedService>>>,
    /// By `client_id`; `None` remembers that no such client exists.
    credentials: HashMap<String, Option<Arc<Credential>>>,
    tokens: HashMap<Digest, Arc<IndexedToken>>,
}

/// A batch's effect on what the index may answer.
#[derive(Debug, Default)]
pub struct Invalidation {
    pub digests: Vec<String>,
    /// Services or plugins changed.
    pub services: bool,
    /// Credentials changed.
    pub credentials: bool,
    /// What changed is not known: forget everything.
    pub all: bool,
}

impl Invalidation {
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty() && !self.services && !self.credentials && !self.all
    }
}

impl Index {
    pub fn new(capacity: usize) -> Index {
        Index {
            maps: RwLock::new(Maps::default()),
            capacity: capacity.max(1),
        }
    }

    /// The generation a read starts under; pass it back with what the read learned.
    pub fn generation(&self) -> u64 {
        self.maps.read().map_or(u64::MAX, |m| m.generation)
    }

    /// `None`: not in memory (ask the database); `Some(None)`: no such service.
    pub fn service(&self, key: &str) -> Option<Option<Arc<ProtectedService>>> {
        self.maps.read().ok()?.services.get(key).cloned()
    }

    /// `None`: not in memory (ask the database); `Some(None)`: no such client.
    pub fn credential(&self, client_id: &str) -> Option<Option<Arc<Credential>>> {
        self.maps.read().ok()?.credentials.get(client_id).cloned()
    }

    /// `None` means only that the index does not hold the token.
    pub fn token(&self, digest: &str) -> Option<Arc<IndexedToken>> {
        let key = digest_key(digest)?;
        self.maps.read().ok()?.tokens.get(&key).cloned()
    }

    /// Records what a read found about a service (unless a batch was applied since the read
    /// started) and hands it back shared.
    pub fn learn_service(
        &self,
        generation: u64,
        key: &str,
        found: Option<ProtectedService>,
    ) -> Option<Arc<ProtectedService>> {
        let found = found.map(Arc::new);
        self.learn(generation, |maps| {
            bounded_insert(
                &mut maps.services,
                self.capacity,
                key.to_string(),
                found.clone(),
            );
        });
        found
    }

    pub fn learn_credential(
        &self,
        generation: u64,
        client_id: &str,
        found: Option<Credential>,
    ) -> Option<Arc<Credential>> {
        let found = found.map(Arc::new);
        // Unknown client ids are remembered too (they come from requests): bounded like tokens.
        self.learn(generation, |maps| {
            bounded_insert(
                &mut maps.credentials,
                self.capacity,
                client_id.to_string(),
                found.clone(),
            );
        });
        found
    }

    pub fn learn_token(
        &self,
        generation: u64,
        digest: &str,
        found: TokenWithOwner,
    ) -> Arc<IndexedToken> {
        let found = Arc::new(IndexedToken::from(found));
        if let Some(key) = digest_key(digest) {
            self.learn(generation, |maps| self.insert(maps, key, found.clone()));
        }
        found
    }

    fn learn(&self, generation: u64, record: impl FnOnce(&mut Maps)) {
        if let Ok(mut maps) = self.maps.write() {
            if maps.generation == generation {
                record(&mut maps);
            }
        }
    }

    /// Drops what a batch changed; called by the writer before and after its commit.
    pub(super) fn invalidate(&self, what: &Invalidation) {
        let Ok(mut maps) = self.maps.write() else {
            return;
        };
        maps.generation = maps.generation.wrapping_add(1);
        if what.services || what.all {
            maps.services.clear();
        }
        if what.credentials || what.all {
            maps.credentials.clear();
        }
        if what.all {
            maps.tokens.clear();
        }
        for key in what.digests.iter().filter_map(|d| digest_key(d)) {
            maps.tokens.remove(&key);
        }
    }

    /// Adds tokens a batch inserted (called by the writer after the commit).
    pub(super) fn add(&self, tokens: Vec<TokenWithOwner>) {
        let Ok(mut maps) = self.maps.write() else {
            return;
        };
        for token in tokens {
            if let Some(key) = digest_key(&token.token.access_token_hash) {
                self.insert(&mut maps, key, Arc::new(IndexedToken::from(token)));
            }
        }
    }

    fn insert(&self, maps: &mut Maps, key: Digest, token: Arc<IndexedToken>) {
        bounded_insert(&mut maps.tokens, self.capacity, key, token);
    }

    #[cfg(test)]
    pub fn tokens_held(&self) -> usize {
        self.maps.read().map_or(0, |m| m.tokens.len())
    }
}

/// Bounded: a full map starts over (the database still answers everything).
fn bounded_insert<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    capacity: usize,
    key: K,
    value: V,
) {
    if map.len() >= capacity && !map.contains_key(&key) {
        map.clear();
    }
    map.insert(key, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClientType, Consumer, Token};

    /// A digest as the database keeps it (hex), for a short name.
    fn d(name: &str) -> String {
        crate::secrets::token_digest(name)
    }

    fn owner(name: &str) -> TokenWithOwner {
        let digest = d(name);
        TokenWithOwner {
            token: Token {
                id: format!("id-{name}"),
                created_at: 0,
                credential_id: "c".into(),
                service_id: Some("s".into()),
                token_type: "bearer".into(),
                expires_in: 0,
                access_token_hash: digest,
                refresh_token_hash: None,
                authenticated_userid: None,
                scope: None,
                ttl_at: None,
                family_id: "f".into(),
            },
            credential: credential(),
            consumer: Consumer {
                id: "u".into(),
                created_at: 0,
                username: Some("bob".into()),
                custom_id: None,
                tags: None,
            },
        }
    }

    fn credential() -> Credential {
        Credential {
            id: "c".into(),
            created_at: 0,
            consumer_id: "u".into(),
            name: "app".into(),
            client_id: "client".into(),
            client_secret: "secret".into(),
            hash_secret: false,
            redirect_uris: None,
            client_type: ClientType::Confidential,
            tags: None,
        }
    }

    fn service() -> ProtectedService {
        ProtectedService {
            service: Service {
                id: "s".into(),
                created_at: 0,
                updated_at: 0,
                name: Some("svc".into()),
                url: None,
                tags: None,
            },
            plugin: None,
        }
    }

    #[test]
    fn answers_what_reads_learned() {
        let index = Index::new(10);
        assert!(index.service("svc").is_none());
        assert!(index.token(&d("d1")).is_none());
        index.learn_service(index.generation(), "svc", Some(service()));
        index.learn_service(index.generation(), "gone", None);
        index.learn_token(index.generation(), &d("d1"), owner("d1"));
        index.learn_credential(index.generation(), "client", Some(credential()));
        assert!(matches!(index.service("svc"), Some(Some(_))));
        assert!(matches!(index.service("gone"), Some(None)));
        assert!(index.token(&d("d1")).is_some());
        assert!(matches!(index.credential("client"), Some(Some(_))));
        assert!(!service().accepts_global_tokens());
    }

    #[test]
    fn a_read_that_raced_a_batch_is_not_recorded() {
        let index = Index::new(10);
        let started = index.generation();
        index.invalidate(&Invalidation {
            digests: vec![d("d1")],
            ..Invalidation::default()
        });
        let answered = index.learn_token(started, &d("d1"), owner("d1"));
        assert_eq!(&*answered.client_id, "client", "the read still answers");
        assert!(index.token(&d("d1")).is_none());
        index.learn_service(started, "svc", Some(service()));
        assert!(index.service("svc").is_none());
    }

    #[test]
    fn invalidation_drops_only_what_changed() {
        let index = Index::new(10);
        index.learn_service(index.generation(), "svc", Some(service()));
        index.learn_credential(index.generation(), "client", Some(credential()));
        index.learn_token(index.generation(), &d("d1"), owner("d1"));
        index.add(vec![owner("d2")]);
        index.invalidate(&Invalidation {
            digests: vec![d("d1")],
            ..Invalidation::default()
        });
        assert!(index.token(&d("d1")).is_none());
        assert!(index.token(&d("d2")).is_some());
        assert!(index.service("svc").is_some());
        index.invalidate(&Invalidation {
            credentials: true,
            ..Invalidation::default()
        });
        assert!(index.credential("client").is_none());
        assert!(index.service("svc").is_some());
        index.invalidate(&Invalidation {
            services: true,
            ..Invalidation::default()
        });
        assert!(index.service("svc").is_none());
        assert!(index.token(&d("d2")).is_some());
        index.invalidate(&Invalidation {
            all: true,
            ..Invalidation::default()
        });
        assert!(index.token(&d("d2")).is_none());
    }

    #[test]
    fn stays_within_its_capacity() {
        let index = Index::new(3);
        index.add((0..10).map(|i| owner(&format!("d{i}"))).collect());
        assert!(index.tokens_held() <= 3);
        assert!(index.token("not hex").is_none());
        assert!(index.token(&d("d9")).is_some());
        for i in 0..10 {
            index.learn_credential(index.generation(), &format!("unknown-{i}"), None);
        }
        assert!(index.credential("unknown-9").is_some());
        assert!(index.credential("unknown-0").is_none(), "started over");
    }
}
