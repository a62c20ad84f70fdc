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
use crate::model::{Credential, Plugin, Service};
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
    /// By access-token digest.
    tokens: HashMap<String, Arc<TokenWithOwner>>,
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
    pub fn token(&self, digest: &str) -> Option<Arc<TokenWithOwner>> {
        self.maps.read().ok()?.tokens.get(digest).cloned()
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
            bounded_insert(&mut maps.services, self.capacity, key, found.clone());
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
                client_id,
                found.clone(),
            );
        });
        found
    }

    pub fn learn_token(&self, generation: u64, found: TokenWithOwner) -> Arc<TokenWithOwner> {
        let found = Arc::new(found);
        self.learn(generation, |maps| self.insert(maps, found.clone()));
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
        for digest in &what.digests {
            maps.tokens.remove(digest);
        }
    }

    /// Adds tokens a batch inserted (called by the writer after the commit).
    pub(super) fn add(&self, tokens: Vec<TokenWithOwner>) {
        let Ok(mut maps) = self.maps.write() else {
            return;
        };
        for token in tokens {
            self.insert(&mut maps, Arc::new(token));
        }
    }

    fn insert(&self, maps: &mut Maps, token: Arc<TokenWithOwner>) {
        let digest = token.token.access_token_hash.clone();
        bounded_insert(&mut maps.tokens, self.capacity, &digest, token);
    }

    #[cfg(test)]
    pub fn tokens_held(&self) -> usize {
        self.maps.read().map_or(0, |m| m.tokens.len())
    }
}

/// Bounded: a full map starts over (the database still answers everything).
fn bounded_insert<V>(map: &mut HashMap<String, V>, capacity: usize, key: &str, value: V) {
    if map.len() >= capacity && !map.contains_key(key) {
        map.clear();
    }
    map.insert(key.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClientType, Consumer, Token};

    fn owner(digest: &str) -> TokenWithOwner {
        TokenWithOwner {
            token: Token {
                id: format!("id-{digest}"),
                created_at: 0,
                credential_id: "c".into(),
                service_id: Some("s".into()),
                token_type: "bearer".into(),
                expires_in: 0,
                access_token_hash: digest.into(),
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
        assert!(index.token("d1").is_none());
        index.learn_service(index.generation(), "svc", Some(service()));
        index.learn_service(index.generation(), "gone", None);
        index.learn_token(index.generation(), owner("d1"));
        index.learn_credential(index.generation(), "client", Some(credential()));
        assert!(matches!(index.service("svc"), Some(Some(_))));
        assert!(matches!(index.service("gone"), Some(None)));
        assert!(index.token("d1").is_some());
        assert!(matches!(index.credential("client"), Some(Some(_))));
        assert!(!service().accepts_global_tokens());
    }

    #[test]
    fn a_read_that_raced_a_batch_is_not_recorded() {
        let index = Index::new(10);
        let started = index.generation();
        index.invalidate(&Invalidation {
            digests: vec!["d1".into()],
            ..Invalidation::default()
        });
        let answered = index.learn_token(started, owner("d1"));
        assert_eq!(
            answered.token.access_token_hash, "d1",
            "the read still answers"
        );
        assert!(index.token("d1").is_none());
        index.learn_service(started, "svc", Some(service()));
        assert!(index.service("svc").is_none());
    }

    #[test]
    fn invalidation_drops_only_what_changed() {
        let index = Index::new(10);
        index.learn_service(index.generation(), "svc", Some(service()));
        index.learn_credential(index.generation(), "client", Some(credential()));
        index.learn_token(index.generation(), owner("d1"));
        index.add(vec![owner("d2")]);
        index.invalidate(&Invalidation {
            digests: vec!["d1".into()],
            ..Invalidation::default()
        });
        assert!(index.token("d1").is_none());
        assert!(index.token("d2").is_some());
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
        assert!(index.token("d2").is_some());
        index.invalidate(&Invalidation {
            all: true,
            ..Invalidation::default()
        });
        assert!(index.token("d2").is_none());
    }

    #[test]
    fn stays_within_its_capacity() {
        let index = Index::new(3);
        index.add((0..10).map(|i| owner(&format!("d{i}"))).collect());
        assert!(index.tokens_held() <= 3);
        assert!(index.token("d9").is_some());
        for i in 0..10 {
            index.learn_credential(index.generation(), &format!("unknown-{i}"), None);
        }
        assert!(index.credential("unknown-9").is_some());
        assert!(index.credential("unknown-0").is_none(), "started over");
    }
}
