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
//! usually in memory before its first check.
//!
//! Bounded in entries and in bytes, map by map: what it remembers comes from requests (unknown
//! client ids, tokens with long user ids), so a full map starts over rather than grows. Keys
//! longer than any stored identifier can be are refused by [`super::Store`] before any
//! look-up, and never remembered.

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

/// A token digest as the database keeps it (64 hex digits); nothing else can match one.
pub(super) fn is_digest(text: &str) -> bool {
    digest_key(text).is_some()
}

fn digest_key(hex_digest: &str) -> Option<Digest> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut key).ok()?;
    Some(key)
}

pub struct Index {
    maps: RwLock<Maps>,
}

struct Maps {
    generation: u64,
    /// By service id or name; `None` remembers that no such service exists.
    services: Bounded<String, Option<Arc<ProtectedService>>>,
    /// By `client_id`; `None` remembers that no such client exists.
    credentials: Bounded<String, Option<Arc<Credential>>>,
    tokens: Bounded<Digest, Arc<IndexedToken>>,
}

/// Bytes the token map holds at most by default (each token a few hundred bytes); the
/// service and credential maps get a quarter of it each.
pub const DEFAULT_INDEX_BYTES: usize = 64 * 1024 * 1024;

/// What one remembered answer costs beyond its strings (map slot, `Arc`, fields).
const ENTRY_OVERHEAD: usize = 128;

/// A map bounded in entries and in (approximate) bytes: full, it starts over (the database
/// still answers everything).
struct Bounded<K, V> {
    map: HashMap<K, (V, usize)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl<K: std::hash::Hash + Eq, V> Bounded<K, V> {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|(value, _)| value)
    }

    /// `weight`: the entry's approximate size in bytes, key included. An entry larger than
    /// the whole budget is not kept.
    fn insert(&mut self, key: K, value: V, weight: usize) {
        let weight = weight + ENTRY_OVERHEAD;
        if weight > self.max_bytes {
            return;
        }
        self.remove(&key);
        if self.map.len() >= self.max_entries || self.bytes + weight > self.max_bytes {
            self.clear();
        }
        self.bytes += weight;
        self.map.insert(key, (value, weight));
    }

    fn remove(&mut self, key: &K) {
        if let Some((_, weight)) = self.map.remove(key) {
            self.bytes -= weight;
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }
}

fn text_bytes<'a>(texts: impl IntoIterator<Item = Option<&'a str>>) -> usize {
    texts.into_iter().flatten().map(str::len).sum()
}

fn list_bytes(list: &Option<Vec<String>>) -> usize {
    list.iter().flatten().map(String::len).sum()
}

fn credential_bytes(c: &Credential) -> usize {
    text_bytes([
        Some(c.id.as_str()),
        Some(&c.consumer_id),
        Some(&c.name),
        Some(&c.client_id),
        Some(&c.client_secret),
    ]) + list_bytes(&c.redirect_uris)
        + list_bytes(&c.tags)
}

fn service_bytes(s: &ProtectedService) -> usize {
    let service = &s.service;
    let mut bytes = text_bytes([
        Some(service.id.as_str()),
        service.name.as_deref(),
        service.url.as_deref(),
    ]) + list_bytes(&service.tags);
    if let Some(plugin) = &s.plugin {
        let c = &plugin.config;
        bytes += text_bytes([
            Some(plugin.id.as_str()),
            plugin.service_id.as_deref(),
            Some(&c.provision_key),
            c.anonymous.as_deref(),
            Some(&c.auth_header_name),
            c.realm.as_deref(),
        ]) + list_bytes(&c.scopes)
            + ENTRY_OVERHEAD;
    }
    bytes
}

fn token_bytes(t: &IndexedToken) -> usize {
    text_bytes([
        t.service_id.as_deref(),
        t.authenticated_userid.as_deref(),
        t.scope.as_deref(),
        Some(&t.credential_id),
        Some(&t.client_id),
        Some(&t.consumer_id),
        t.consumer_username.as_deref(),
        t.consumer_custom_id.as_deref(),
    ]) + std::mem::size_of::<Digest>()
}

/// What one map of the index holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSize {
    pub entries: usize,
    /// Approximate, as the map's byte budget counts them.
    pub bytes: usize,
}

impl<K, V> Bounded<K, V> {
    fn size(&self) -> IndexSize {
        IndexSize {
            entries: self.map.len(),
            bytes: self.bytes,
        }
    }
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
    /// At most `capacity` entries per map, and [`DEFAULT_INDEX_BYTES`].
    pub fn new(capacity: usize) -> Index {
        Index::with_budget(capacity, DEFAULT_INDEX_BYTES)
    }

    /// At most `capacity` entries per map; `bytes` for tokens, a quarter of it for services
    /// and for credentials.
    pub fn with_budget(capacity: usize, bytes: usize) -> Index {
        Index {
            maps: RwLock::new(Maps {
                generation: 0,
                services: Bounded::new(capacity, bytes / 4),
                credentials: Bounded::new(capacity, bytes / 4),
                tokens: Bounded::new(capacity, bytes),
            }),
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
        let weight = key.len() + found.as_deref().map_or(0, service_bytes);
        self.learn(generation, |maps| {
            maps.services.insert(key.to_string(), found.clone(), weight);
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
        // Unknown client ids are remembered too (they come from requests): bounded in bytes.
        let weight = client_id.len() + found.as_deref().map_or(0, credential_bytes);
        self.learn(generation, |maps| {
            maps.credentials
                .insert(client_id.to_string(), found.clone(), weight);
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
        let weight = token_bytes(&token);
        maps.tokens.insert(key, token, weight);
    }

    /// What the (services, credentials, tokens) maps hold now (for the metrics).
    pub fn sizes(&self) -> [IndexSize; 3] {
        self.maps.read().map_or([IndexSize::default(); 3], |m| {
            [m.services.size(), m.credentials.size(), m.tokens.size()]
        })
    }

    #[cfg(test)]
    pub fn tokens_held(&self) -> usize {
        self.maps.read().map_or(0, |m| m.tokens.map.len())
    }

    /// Bytes held by (services, credentials, tokens).
    #[cfg(test)]
    pub fn bytes_held(&self) -> (usize, usize, usize) {
        self.maps.read().map_or((0, 0, 0), |m| {
            (m.services.bytes, m.credentials.bytes, m.tokens.bytes)
        })
    }
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

    #[test]
    fn stays_within_its_byte_budget() {
        let budget = 64 * 1024;
        let index = Index::with_budget(1_000_000, budget);
        for i in 0..1_000 {
            let client_id = format!("{i}-{}", "x".repeat(250));
            index.learn_credential(index.generation(), &client_id, None);
            index.learn_service(index.generation(), &client_id, None);
            let (services, credentials, _) = index.bytes_held();
            assert!(services <= budget / 4 && credentials <= budget / 4);
        }
        assert!(index
            .credential(&format!("999-{}", "x".repeat(250)))
            .is_some());
        for i in 0..1_000 {
            let mut token = owner(&format!("t{i}"));
            token.token.authenticated_userid = Some("u".repeat(4_000));
            index.add(vec![token]);
            assert!(index.bytes_held().2 <= budget);
        }
        assert!(index.token(&d("t999")).is_some(), "the newest is kept");
        assert!(index.tokens_held() < 1_000);
        let mut huge = owner("huge");
        huge.token.authenticated_userid = Some("u".repeat(budget));
        index.add(vec![huge]);
        assert!(index.token(&d("huge")).is_none(), "larger than the budget");
        assert!(index.token(&d("t999")).is_some(), "and it evicted nothing");
        index.invalidate(&Invalidation {
            digests: vec![d("t999")],
            ..Invalidation::default()
        });
        let held = index.bytes_held().2;
        assert!(held < budget && (held == 0) == (index.tokens_held() == 0));
        let [_, _, tokens] = index.sizes();
        assert_eq!((tokens.entries, tokens.bytes), (index.tokens_held(), held));
    }
}
