//! The in-memory read path for token checks: what a check needs (the service and its plugin's
//! `global_credentials`, the token with its owner), answered without SQLite or a thread hop.
//!
//! It is a cache in front of the database, never the source of truth, kept exact by the writer
//! thread: every committed batch that changed tokens (the change feed's digests), services or
//! plugins is applied here before the commit (so nothing stale is visible once the change is)
//! and again after it (so a read that raced the commit cannot put a stale answer back). A read
//! that fills the index presents the generation it started under and is ignored when a batch
//! was applied meanwhile. Tokens a batch inserted are added after the commit, so a token is
//! usually in memory before its first check. Bounded: when full, the token map starts over.

use super::TokenWithOwner;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A service as checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub id: String,
    /// Its enabled oauth2 plugin accepts tokens issued under `global_credentials`.
    pub global: bool,
}

pub struct Index {
    maps: RwLock<Maps>,
    capacity: usize,
}

#[derive(Default)]
struct Maps {
    generation: u64,
    /// By service id or name; `None` remembers that no such service exists.
    services: HashMap<String, Option<ServiceEntry>>,
    /// By access-token digest.
    tokens: HashMap<String, Arc<TokenWithOwner>>,
}

/// A batch's effect on what checks may answer.
#[derive(Debug, Default)]
pub struct Invalidation {
    pub digests: Vec<String>,
    pub services: bool,
    /// What changed is not known: forget everything.
    pub all: bool,
}

impl Invalidation {
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty() && !self.services && !self.all
    }
}

/// What the index knows about a check.
pub enum Known {
    /// No such service.
    UnknownService,
    /// The service, and the token when the index holds it.
    Service(ServiceEntry, Option<Arc<TokenWithOwner>>),
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

    /// `None` when the service itself is not in memory (the database must be asked).
    pub fn lookup(&self, service: &str, digest: &str) -> Option<Known> {
        let maps = self.maps.read().ok()?;
        Some(match maps.services.get(service)? {
            None => Known::UnknownService,
            Some(entry) => Known::Service(entry.clone(), maps.tokens.get(digest).cloned()),
        })
    }

    /// Records what a read found, unless a batch was applied since it started.
    pub fn learn(
        &self,
        generation: u64,
        service: &str,
        entry: Option<ServiceEntry>,
        token: Option<TokenWithOwner>,
    ) {
        let Ok(mut maps) = self.maps.write() else {
            return;
        };
        if maps.generation != generation {
            return;
        }
        maps.services.insert(service.to_string(), entry);
        if let Some(token) = token {
            self.insert(&mut maps, token);
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
            self.insert(&mut maps, token);
        }
    }

    fn insert(&self, maps: &mut Maps, token: TokenWithOwner) {
        if maps.tokens.len() >= self.capacity {
            maps.tokens.clear();
        }
        maps.tokens
            .insert(token.token.access_token_hash.clone(), Arc::new(token));
    }

    #[cfg(test)]
    pub fn tokens_held(&self) -> usize {
        self.maps.read().map_or(0, |m| m.tokens.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClientType, Consumer, Credential, Token};

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
            credential: Credential {
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
            },
            consumer: Consumer {
                id: "u".into(),
                created_at: 0,
                username: Some("bob".into()),
                custom_id: None,
                tags: None,
            },
        }
    }

    fn service() -> Option<ServiceEntry> {
        Some(ServiceEntry {
            id: "s".into(),
            global: false,
        })
    }

    fn held(index: &Index, digest: &str) -> bool {
        matches!(
            index.lookup("svc", digest),
            Some(Known::Service(_, Some(_)))
        )
    }

    #[test]
    fn answers_what_a_read_learned() {
        let index = Index::new(10);
        assert!(index.lookup("svc", "d1").is_none());
        index.learn(index.generation(), "svc", service(), Some(owner("d1")));
        assert!(held(&index, "d1"));
        assert!(matches!(
            index.lookup("svc", "d2"),
            Some(Known::Service(_, None))
        ));
        index.learn(index.generation(), "gone", None, None);
        assert!(matches!(
            index.lookup("gone", "d1"),
            Some(Known::UnknownService)
        ));
    }

    #[test]
    fn a_read_that_raced_a_batch_is_not_recorded() {
        let index = Index::new(10);
        let started = index.generation();
        index.invalidate(&Invalidation {
            digests: vec!["d1".into()],
            ..Invalidation::default()
        });
        index.learn(started, "svc", service(), Some(owner("d1")));
        assert!(index.lookup("svc", "d1").is_none());
    }

    #[test]
    fn invalidation_drops_changed_tokens_and_services() {
        let index = Index::new(10);
        index.learn(index.generation(), "svc", service(), Some(owner("d1")));
        index.add(vec![owner("d2")]);
        index.invalidate(&Invalidation {
            digests: vec!["d1".into()],
            ..Invalidation::default()
        });
        assert!(!held(&index, "d1"));
        assert!(held(&index, "d2"));
        index.invalidate(&Invalidation {
            services: true,
            ..Invalidation::default()
        });
        assert!(index.lookup("svc", "d2").is_none());
    }

    #[test]
    fn stays_within_its_capacity() {
        let index = Index::new(3);
        index.add((0..10).map(|i| owner(&format!("d{i}"))).collect());
        assert!(index.tokens_held() <= 3);
        index.learn(index.generation(), "svc", service(), None);
        assert!(held(&index, "d9"));
    }
}
