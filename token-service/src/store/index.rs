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
//!
//! Beside those caches it holds [`Digests`]: the digest and expiry of *every* live token
//! (loaded at start-up, kept by the writers and, on PostgreSQL, by the change feed), so a token
//! it does not hold, or holds as expired, is invalid without a read: distinct made-up tokens
//! cost no database read. It only ever holds too much, never too little (a digest enters
//! before its row commits and leaves once no row holds it), and when it cannot be complete
//! (over its bound, a load that failed) it says so and every check reads again.

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
    digests: RwLock<Digests>,
}

/// When a token stops being good for access (as [`Lifetime::access_expires_at`]); `i64::MAX`
/// for never.
pub type ExpiresAt = i64;

/// The expiry [`Digests`] keeps for a token with this lifetime.
pub fn expires_at(lifetime: Lifetime) -> ExpiresAt {
    lifetime.access_expires_at().unwrap_or(ExpiresAt::MAX)
}

/// What the set of live token digests says of one digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// No live token has it.
    Absent,
    /// A token has it, and it expired (`now` is past its expiry).
    Expired,
    /// A token may have it: only a read tells what it is.
    Present,
    /// The set is not complete: only a read tells.
    Unknown,
}

/// The digest and expiry of every live token, 32 + 8 bytes each plus the hash table's slot.
/// A superset: a digest enters before its row commits and leaves after no row holds it, so
/// what it lacks no row holds (while `complete`).
struct Digests {
    map: HashMap<Digest, ExpiresAt>,
    complete: bool,
    /// More tokens than this and the set gives up (frees itself, `complete` false) until a
    /// reload finds fewer.
    max: usize,
    /// Set when it gave up for its bound: a reload would find too many again.
    overflowed: bool,
}

/// What a batch of writes (or of feed changes) did to tokens, as [`Digests`] learns it: read
/// in the transaction that made the changes, or in the snapshot that saw them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TokenChanges {
    /// Digests a row holds (inserted, changed, or only mentioned by the feed), with expiries.
    pub live: Vec<(String, ExpiresAt)>,
    /// Digests the changes named that no row holds any more.
    pub gone: Vec<String>,
}

impl TokenChanges {
    /// `named` are the digests the changes mention; `live` what the rows say of (some of) them.
    pub fn new(named: Vec<String>, live: Vec<(String, ExpiresAt)>) -> TokenChanges {
        let held: std::collections::HashSet<&str> = live.iter().map(|(d, _)| d.as_str()).collect();
        let mut gone: Vec<String> = named
            .into_iter()
            .filter(|d| !held.contains(d.as_str()))
            .collect();
        gone.sort_unstable();
        gone.dedup();
        TokenChanges { live, gone }
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.gone.is_empty()
    }
}

/// How [`Index::apply_tokens`] sets the expiry of a live digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Before the commit: never earlier than the one held (the old row still answers).
    Raise,
    /// Once committed (or read from a snapshot): exactly the row's.
    Exact,
}

/// Tokens the digest set holds at most by default. Measured with the release binary on 1M
/// live tokens: an 86 MB hash table (90 MB more resident memory than with none), so at most
/// about 370 MB at this bound.
pub const DEFAULT_MAX_DIGESTS: usize = 4 * 1024 * 1024;

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

impl Digests {
    /// Frees the set: until a reload, it answers nothing.
    fn give_up(&mut self, overflowed: bool) {
        self.map = HashMap::new();
        self.complete = false;
        self.overflowed = overflowed;
    }

    /// The hash table's allocation: each slot is a key, a value and a control byte.
    fn size(&self) -> IndexSize {
        let slot = std::mem::size_of::<(Digest, ExpiresAt)>() + 1;
        let slots = if self.map.capacity() == 0 {
            0
        } else {
            // hashbrown keeps at most 7/8 of its (power of two) buckets full.
            (self.map.capacity() * 8 / 7).next_power_of_two()
        };
        IndexSize {
            entries: self.map.len(),
            bytes: slots * slot,
        }
    }
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
            digests: RwLock::new(Digests {
                map: HashMap::new(),
                complete: false,
                max: DEFAULT_MAX_DIGESTS,
                overflowed: false,
            }),
        }
    }

    /// At most `max` tokens in the digest set (see [`DEFAULT_MAX_DIGESTS`]).
    pub fn with_max_digests(self, max: usize) -> Index {
        if let Ok(mut digests) = self.digests.write() {
            digests.max = max;
        }
        self
    }

    /// What the digest set says of `digest` at `now`.
    pub fn presence(&self, digest: &str, now: i64) -> Presence {
        let (Some(key), Ok(digests)) = (digest_key(digest), self.digests.read()) else {
            return Presence::Unknown;
        };
        match digests.map.get(&key) {
            Some(expires) if now > *expires => Presence::Expired,
            Some(_) => Presence::Present,
            None if digests.complete => Presence::Absent,
            None => Presence::Unknown,
        }
    }

    /// Whether the set is complete, or (`false`) would be after a reload (a load or a commit
    /// failed), or neither (over its bound: `None`).
    pub fn digests_complete(&self) -> Option<bool> {
        let digests = self.digests.read().ok()?;
        (!digests.overflowed || digests.complete).then_some(digests.complete)
    }

    /// Replaces the digest set by every live token, read page by page (`next_page(after)`:
    /// the digests after the position `after`, `""` at first, with their expiries, and the
    /// page's end; an empty page at the end). Complete unless the tokens are more than its
    /// bound; an error leaves it incomplete.
    pub fn load_digests(
        &self,
        mut next_page: impl FnMut(&str) -> super::StoreResult<(Vec<(String, ExpiresAt)>, String)>,
    ) -> super::StoreResult<()> {
        let max = self.digests.read().map_or(DEFAULT_MAX_DIGESTS, |d| d.max);
        let mut map = HashMap::new();
        let mut after = String::new();
        let outcome = loop {
            let (page, end) = match next_page(&after) {
                Ok(page) => page,
                Err(e) => break Err(e),
            };
            if page.is_empty() {
                break Ok(true);
            }
            after = end;
            map.extend(page.iter().filter_map(|(d, e)| Some((digest_key(d)?, *e))));
            if map.len() > max {
                break Ok(false);
            }
        };
        let Ok(mut digests) = self.digests.write() else {
            return outcome.map(drop);
        };
        match outcome {
            Ok(true) => {
                map.shrink_to_fit();
                digests.map = map;
                digests.complete = true;
                digests.overflowed = false;
                Ok(())
            }
            Ok(false) => {
                tracing::warn!(max, "more live tokens than the digest set holds: every unknown token's check reads the database");
                digests.give_up(true);
                Ok(())
            }
            Err(e) => {
                digests.give_up(false);
                Err(e)
            }
        }
    }

    /// Learns what a batch did to tokens: live digests enter (or get their expiry), gone ones
    /// leave.
    pub fn apply_tokens(&self, changes: &TokenChanges, expiry: Expiry) {
        if changes.is_empty() {
            return;
        }
        let Ok(mut digests) = self.digests.write() else {
            return;
        };
        for key in changes.gone.iter().filter_map(|d| digest_key(d)) {
            digests.map.remove(&key);
        }
        if !digests.complete {
            return;
        }
        for (digest, expires) in &changes.live {
            let Some(key) = digest_key(digest) else {
                continue;
            };
            let expires = match (expiry, digests.map.get(&key)) {
                (Expiry::Raise, Some(held)) => (*held).max(*expires),
                _ => *expires,
            };
            digests.map.insert(key, expires);
        }
        if digests.map.len() > digests.max {
            tracing::warn!(max = digests.max, "more live tokens than the digest set holds: every unknown token's check reads the database");
            digests.give_up(true);
        }
    }

    /// The set may lack a live token (a commit whose outcome is unknown removed digests):
    /// checks read until a reload.
    pub fn digests_incomplete(&self) {
        if let Ok(mut digests) = self.digests.write() {
            digests.give_up(false);
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

    /// What the (services, credentials, tokens, digests) maps hold now (for the metrics).
    pub fn sizes(&self) -> [IndexSize; 4] {
        let digests = self
            .digests
            .read()
            .map_or(IndexSize::default(), |d| d.size());
        self.maps.read().map_or([IndexSize::default(); 4], |m| {
            [
                m.services.size(),
                m.credentials.size(),
                m.tokens.size(),
                digests,
            ]
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
                jwt_exp: None,
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
        let [_, _, tokens, _] = index.sizes();
        assert_eq!((tokens.entries, tokens.bytes), (index.tokens_held(), held));
    }

    fn changes(live: &[(&str, i64)], gone: &[&str]) -> TokenChanges {
        TokenChanges {
            live: live.iter().map(|(n, e)| (d(n), *e)).collect(),
            gone: gone.iter().map(|n| d(n)).collect(),
        }
    }

    fn loaded(index: &Index, tokens: &[(&str, i64)]) {
        let mut pages = vec![tokens.iter().map(|(n, e)| (d(n), *e)).collect::<Vec<_>>()];
        pages[0].sort();
        index
            .load_digests(|_| Ok((pages.pop().unwrap_or_default(), String::new())))
            .expect("load");
    }

    #[test]
    fn the_digest_set_answers_only_once_complete() {
        let index = Index::new(10);
        assert_eq!(index.presence(&d("a"), 0), Presence::Unknown, "not loaded");
        index.apply_tokens(&changes(&[("a", 100)], &[]), Expiry::Exact);
        assert_eq!(
            index.presence(&d("a"), 0),
            Presence::Unknown,
            "still not loaded"
        );
        loaded(&index, &[("a", 100), ("never", i64::MAX)]);
        assert_eq!(index.digests_complete(), Some(true));
        assert_eq!(index.presence(&d("a"), 100), Presence::Present);
        assert_eq!(index.presence(&d("a"), 101), Presence::Expired);
        assert_eq!(index.presence(&d("never"), i64::MAX - 1), Presence::Present);
        assert_eq!(index.presence(&d("b"), 0), Presence::Absent);
        assert_eq!(index.presence("not hex", 0), Presence::Unknown);
        index.digests_incomplete();
        assert_eq!(index.presence(&d("b"), 0), Presence::Unknown);
        assert_eq!(index.digests_complete(), Some(false), "a reload would help");
    }

    #[test]
    fn before_a_commit_an_expiry_only_rises_and_after_it_is_exact() {
        let index = Index::new(10);
        loaded(&index, &[("a", 100)]);
        index.apply_tokens(&changes(&[("a", 50), ("b", 10)], &[]), Expiry::Raise);
        assert_eq!(
            index.presence(&d("a"), 60),
            Presence::Present,
            "the old row still answers"
        );
        assert_eq!(index.presence(&d("b"), 5), Presence::Present);
        index.apply_tokens(&changes(&[("a", 50)], &["b"]), Expiry::Exact);
        assert_eq!(index.presence(&d("a"), 60), Presence::Expired);
        assert_eq!(index.presence(&d("b"), 5), Presence::Absent);
    }

    #[test]
    fn over_its_bound_the_digest_set_gives_up_and_frees_itself() {
        let index = Index::new(10).with_max_digests(3);
        loaded(&index, &[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
        assert_eq!(
            index.digests_complete(),
            None,
            "a reload would find too many again"
        );
        assert_eq!(index.presence(&d("z"), 0), Presence::Unknown);
        let index = Index::new(10).with_max_digests(3);
        loaded(&index, &[("a", 1), ("b", 1), ("c", 1)]);
        index.apply_tokens(&changes(&[("d", 1)], &[]), Expiry::Raise);
        assert_eq!(index.presence(&d("z"), 0), Presence::Unknown);
        assert_eq!(index.sizes()[3], IndexSize::default(), "freed");
        let failing = Index::new(10);
        let load = failing.load_digests(|_| Err(crate::store::StoreError::NotFound));
        assert!(load.is_err());
        assert_eq!(failing.digests_complete(), Some(false));
    }

    #[test]
    fn token_changes_name_what_no_row_holds_any_more() {
        let found = TokenChanges::new(
            vec![d("kept"), d("gone"), d("gone")],
            vec![(d("kept"), 5), (d("new"), 6)],
        );
        assert_eq!(found.gone, vec![d("gone")]);
        assert_eq!(found.live.len(), 2);
    }
}
