//! What one Envoy worker knows, shared by its requests: the configuration, each service's
//! settings from its latest state poll, the cache epoch, this worker's copy of recent answers,
//! and the counters not yet added to Envoy's stats. The root context polls every service
//! the worker has met; [`Worker::apply_poll`] keeps this exact.

use super::host::{Call, Host, Level};
use crate::cache::{self, Entry, LocalCache, TokenDigest};
use crate::config::{FilterConfig, IntrospectionMode, Mode};
use crate::distrust::Distrust;
use crate::jwt::{self, KeySet, PublishedKey};
use crate::metrics::{Counters, Metric};
use crate::state::{Identity, Protection, Settings, StatePoll, Verdict};
use crate::token;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// See [`Worker::feed_position`] and docs/gateway-protocol.md.
const FEED_POSITION_HEADER: &str = "x-oauth2-feed-position";
/// Entries a worker keeps in its own memory at most (each a few hundred bytes).
const LOCAL_CACHE_MAX: u32 = 4096;
/// Revocations a worker remembers for the checks in flight when they arrived (see
/// [`Worker::revoked_since`]).
const RECENT_REVOCATIONS: usize = 1024;
/// Services one worker tracks at most. Routes name them in Envoy's configuration (never a
/// client), so this only bounds a configuration mistake.
pub const MAX_SERVICES: usize = 1024;
/// The one "service" of introspection mode: the filter's own configuration is its settings.
pub const INTROSPECTION: &str = "";

/// How the worker stands with one service, after its latest poll.
#[derive(Debug, Clone)]
pub struct ServiceState {
    pub protection: Protection,
    /// The settings requests enforce (set exactly when `protection` is `On`).
    pub settings: Option<Rc<Settings>>,
    /// The change-feed position of the latest poll.
    pub seq: i64,
    /// The service's id (what a JWT's `service_id` names), once known.
    pub service_id: Option<String>,
    /// What JWT access tokens are verified with (shared until the keys change).
    pub jwt: Rc<JwtKeys>,
    /// JWTs to ask about rather than verify.
    pub distrust: Distrust,
    /// The distrust set needs a reset answer to be complete: the next poll carries no
    /// feed position (docs/jwt-access-tokens.md §4, `distrust_all`).
    pub wants_complete_distrust: bool,
}

impl ServiceState {
    fn unknown() -> ServiceState {
        ServiceState {
            protection: Protection::Unknown,
            settings: None,
            seq: 0,
            service_id: None,
            jwt: Rc::default(),
            distrust: Distrust::default(),
            wants_complete_distrust: false,
        }
    }

    /// Where the next poll starts: a negative position asks for a reset answer.
    fn poll_from(&self) -> i64 {
        if self.wants_complete_distrust {
            -1
        } else {
            self.seq
        }
    }
}

/// The issuer and published keys of a state answer, with the keys parsed: made again only
/// when an answer's differ (every answer carries them), never per request.
#[derive(Debug, Default)]
pub struct JwtKeys {
    pub issuer: Option<String>,
    published: Vec<PublishedKey>,
    pub keys: KeySet,
}

impl JwtKeys {
    fn of(poll: &StatePoll, previous: &Rc<JwtKeys>, host: &dyn Host) -> Rc<JwtKeys> {
        if previous.issuer == poll.issuer && previous.published == poll.keys {
            return previous.clone();
        }
        if poll.keys.len() > jwt::MAX_KEYS {
            host.log(
                Level::Warn,
                &format!(
                    "the state names {} signing keys; the first {} are used",
                    poll.keys.len(),
                    jwt::MAX_KEYS
                ),
            );
        }
        let (keys, unusable) = KeySet::from_published(&poll.keys);
        if !unusable.is_empty() {
            host.log(
                Level::Warn,
                &format!("published signing keys the filter cannot use (their JWTs are refused): {unusable:?}"),
            );
        }
        Rc::new(JwtKeys {
            issuer: poll.issuer.clone(),
            published: poll.keys.clone(),
            keys,
        })
    }
}

pub struct Worker {
    pub config: Rc<FilterConfig>,
    /// This configuration's keys in shared data (its namespace's; see
    /// [`crate::config::cache_namespace`]).
    slot_prefix: String,
    epoch_key: String,
    services: BTreeMap<String, ServiceState>,
    /// The cache epoch (mirrors shared data, refreshed on every poll).
    pub epoch: u32,
    /// This worker's copy of recent answers, in front of shared data.
    pub local: LocalCache,
    pub counters: Counters,
    /// The latest revocations applied, oldest first, each with its number in
    /// `revocations_applied`'s count.
    recent_revocations: std::collections::VecDeque<(u64, TokenDigest)>,
    revocations_applied: u64,
    /// When each service's keys were last refreshed for an unknown `kid` (Unix seconds).
    key_refreshes: BTreeMap<String, u64>,
}

/// What a worker had applied when a check was sent: its answer may only be cached (or trusted)
/// if no revocation of the token, and no reset, was applied while it was in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckMark {
    epoch: u32,
    revocations_applied: u64,
}

/// What a check's answer may still be used for, given what was applied while it was in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Nothing relevant happened: use it and cache it.
    Current,
    /// The cache was reset, or more revocations arrived than the worker remembers: use it for
    /// this request, never cache it (it may predate a revocation).
    Uncertain,
    /// The token was revoked while its check was in flight: the answer is stale.
    Revoked,
}

impl Worker {
    pub fn new(config: FilterConfig) -> Worker {
        let mut services = BTreeMap::new();
        match &config.mode {
            Mode::Introspection(mode) => {
                let settings = local_settings(mode);
                services.insert(
                    INTROSPECTION.to_string(),
                    ServiceState {
                        protection: Protection::On(settings.clone()),
                        settings: Some(Rc::new(settings)),
                        ..ServiceState::unknown()
                    },
                );
            }
            Mode::TokenService { service, .. } => {
                if let Some(service) = service {
                    services.insert(service.clone(), ServiceState::unknown());
                }
            }
        }
        let local = LocalCache::new(config.cache.slots.min(LOCAL_CACHE_MAX) as usize);
        Worker {
            slot_prefix: cache::slot_prefix(&config.namespace),
            epoch_key: cache::epoch_key(&config.namespace),
            config: Rc::new(config),
            services,
            epoch: 0,
            local,
            counters: Counters::default(),
            recent_revocations: std::collections::VecDeque::new(),
            revocations_applied: 0,
            key_refreshes: BTreeMap::new(),
        }
    }

    /// Whether this worker learns its settings by polling the token-service.
    pub fn polls(&self) -> bool {
        matches!(self.config.mode, Mode::TokenService { .. })
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.config.poll_interval_ms)
    }

    pub fn count(&mut self, metric: Metric) {
        self.counters.add(metric);
    }

    pub fn service(&self, name: &str) -> Option<&ServiceState> {
        self.services.get(name)
    }

    /// Starts tracking a service a route named (its state unknown until polled); `false` when
    /// the worker tracks as many services as it may.
    pub fn learn(&mut self, name: &str) -> bool {
        if self.services.contains_key(name) {
            return true;
        }
        if self.services.len() >= MAX_SERVICES {
            return false;
        }
        self.services
            .insert(name.to_string(), ServiceState::unknown());
        true
    }

    /// Every service to poll, with the position its change feed is at.
    pub fn polls_due(&self) -> Vec<(String, i64)> {
        if !self.polls() {
            return Vec::new();
        }
        self.services
            .iter()
            .map(|(name, state)| (name.clone(), state.poll_from()))
            .collect()
    }

    /// The cache key of a token (its digest) for `service` in this configuration.
    pub fn cache_key(&self, service: &str, token: &TokenDigest) -> TokenDigest {
        cache::scoped(&self.config.namespace, service, token)
    }

    /// Applies a state answer for `service` (from the root's poll, or a request's own fetch):
    /// settings, the cache epoch, revoked tokens.
    pub fn apply_poll(&mut self, host: &dyn Host, service: &str, poll: StatePoll) {
        let bump = poll.reset || self.settings_change(service, &poll);
        let new_epoch = bump.then(|| bump_epoch(host, &self.epoch_key));
        self.apply(host, service, poll, new_epoch);
    }

    /// Applies a state answer another thread published and judged: the native build's poller
    /// moves the cache epoch once for every worker (`bumped`) when the answer resets the feed
    /// or changes the settings, so a worker applying it late never drops what the others
    /// cached since.
    pub fn apply_published_poll(
        &mut self,
        host: &dyn Host,
        service: &str,
        poll: StatePoll,
        bumped: bool,
    ) {
        let new_epoch = bumped.then(|| current_epoch(host, &self.epoch_key));
        self.apply(host, service, poll, new_epoch);
    }

    /// Whether this answer's settings differ from what the worker holds for `service`.
    fn settings_change(&self, service: &str, poll: &StatePoll) -> bool {
        let previous = self
            .services
            .get(service)
            .map(|s| &s.protection)
            .unwrap_or(&Protection::Unknown);
        *previous != poll.protection()
    }

    /// `new_epoch`: the epoch the answer moved the cache to (every entry dropped), or `None`
    /// to evict only its revoked tokens.
    fn apply(&mut self, host: &dyn Host, service: &str, poll: StatePoll, new_epoch: Option<u32>) {
        let protection = poll.protection();
        let settings_changed = self.settings_change(service, &poll);
        let previous_epoch = self.epoch;
        if let Some(epoch) = new_epoch {
            self.epoch = epoch;
        } else {
            self.epoch = current_epoch(host, &self.epoch_key);
            for token in poll
                .revoked
                .iter()
                .filter_map(|h| cache::digest_from_hex(h))
            {
                let key = self.cache_key(service, &token);
                evict(host, &self.slot_key(&key), &key);
                self.local.remove(&key);
                self.note_revocation(key);
            }
        }
        if self.epoch != previous_epoch {
            self.local.clear();
        }
        if settings_changed {
            host.log(
                Level::Info,
                &format!(
                    "oauth2 settings for service '{service}' now: {}",
                    describe(&protection)
                ),
            );
        }
        let settings = match &protection {
            Protection::On(settings) => Some(Rc::new(settings.clone())),
            _ => None,
        };
        if !self.services.contains_key(service) && self.services.len() >= MAX_SERVICES {
            return;
        }
        let state = self
            .services
            .entry(service.to_string())
            .or_insert_with(ServiceState::unknown);
        state.jwt = JwtKeys::of(&poll, &state.jwt, host);
        state.wants_complete_distrust = state.distrust.apply(&poll, host.now());
        state.service_id = poll.service.as_ref().map(|s| s.id.clone());
        state.protection = protection;
        state.settings = settings;
        state.seq = poll.seq;
    }

    /// Replaces a service's distrust set with the poller's complete one (the native build's
    /// worker that missed answers: their distrusted JWTs are not in what it applies).
    pub fn replace_distrust(&mut self, service: &str, distrust: Distrust) {
        if let Some(state) = self.services.get_mut(service) {
            state.distrust = distrust;
        }
    }

    /// Contract §5 steps 1–6 for a JWT presented to `service`, with its latest state.
    pub fn verify_jwt(
        &self,
        service: &str,
        candidate: &jwt::Candidate,
        now: u64,
    ) -> Result<Identity, jwt::Refusal> {
        let state = self.services.get(service).ok_or(jwt::Refusal::UnknownKid)?;
        let settings = state.settings.as_ref().ok_or(jwt::Refusal::UnknownKid)?;
        let ctx = jwt::Context {
            keys: &state.jwt.keys,
            issuer: state.jwt.issuer.as_deref().unwrap_or_default(),
            service_id: state.service_id.as_deref().unwrap_or_default(),
            global_credentials: settings.global_credentials,
            now,
        };
        jwt::verify(candidate, &ctx)
    }

    /// Step 7: whether a JWT (raw digest) is distrusted for `service` and must be asked about.
    pub fn distrusts(&self, service: &str, digest: &TokenDigest, now: u64) -> bool {
        match self.services.get(service) {
            Some(state) => state.distrust.asks(digest, now),
            None => true,
        }
    }

    /// Whether an unknown `kid` may make this worker poll `service`'s state now: at most once
    /// per second per service (a client inventing key ids costs one poll a second at most).
    pub fn may_refresh_keys(&mut self, service: &str, now: u64) -> bool {
        if self.key_refreshes.get(service) == Some(&now) {
            return false;
        }
        if self.key_refreshes.len() >= MAX_SERVICES && !self.key_refreshes.contains_key(service) {
            self.key_refreshes.clear();
        }
        self.key_refreshes.insert(service.to_string(), now);
        true
    }

    /// Whether JWT access tokens are verified here: only against our own token-service (a
    /// third-party server's tokens are introspected, whatever their shape).
    pub fn verifies_jwts(&self) -> bool {
        matches!(self.config.mode, Mode::TokenService { .. })
    }

    fn note_revocation(&mut self, key: TokenDigest) {
        self.revocations_applied += 1;
        self.recent_revocations
            .push_back((self.revocations_applied, key));
        while self.recent_revocations.len() > RECENT_REVOCATIONS {
            self.recent_revocations.pop_front();
        }
    }

    /// Revocations this worker applied may be missing from what it remembers (a native worker
    /// that slept through more answers than the feed keeps): checks in flight are uncertain.
    pub fn forget_revocations(&mut self) {
        self.revocations_applied += RECENT_REVOCATIONS as u64 + 1;
        self.recent_revocations.clear();
    }

    /// What the worker has applied now, to judge a check's answer by when it comes back.
    pub fn check_mark(&self) -> CheckMark {
        CheckMark {
            epoch: self.epoch,
            revocations_applied: self.revocations_applied,
        }
    }

    /// Whether the answer to a check sent at `mark` for `key` may be used (and cached): a
    /// state poll applied while it was in flight may have revoked the token (the answering
    /// replica's index lagging the feed the poll read), and caching the stale "active" would
    /// undo the revocation for `max_ttl_s`.
    pub fn revoked_since(&self, mark: CheckMark, key: &TokenDigest) -> Freshness {
        if self.revocations_applied == mark.revocations_applied {
            return if self.epoch == mark.epoch {
                Freshness::Current
            } else {
                Freshness::Uncertain
            };
        }
        let remembered_from = self
            .recent_revocations
            .front()
            .map_or(self.revocations_applied + 1, |(n, _)| *n);
        if self
            .recent_revocations
            .iter()
            .any(|(n, revoked)| *n > mark.revocations_applied && revoked == key)
        {
            return Freshness::Revoked;
        }
        if remembered_from > mark.revocations_applied + 1 || self.epoch != mark.epoch {
            return Freshness::Uncertain;
        }
        Freshness::Current
    }

    /// The cached verdict for a cache key: this worker's copy first (no host call), then
    /// shared data (filled by every worker).
    pub fn cached(&mut self, host: &dyn Host, key: &TokenDigest) -> Option<Verdict> {
        let now = host.now();
        if let Some(verdict) = self.local.get(key, self.epoch, now) {
            let verdict = verdict.clone();
            self.count_hit(Metric::CacheHitWorker, &verdict);
            return Some(verdict);
        }
        let (bytes, _) = host.shared_get(&self.slot_key(key));
        // An entry of a token this worker saw revoked is another worker's stale answer (its
        // check was in flight when the revocation reached this worker, and answered by a
        // replica behind the feed): never taken, and removed.
        let entry = bytes
            .and_then(|b| Entry::decode(&b))
            .filter(|e| e.answers(key, self.epoch, now))
            .filter(|_| {
                let revoked = self.recent_revocations.iter().any(|(_, r)| r == key);
                if revoked {
                    evict(host, &self.slot_key(key), key);
                }
                !revoked
            });
        let Some(entry) = entry else {
            self.count(Metric::CacheMiss);
            return None;
        };
        let verdict = entry.verdict.clone();
        self.local.put(entry);
        self.count_hit(Metric::CacheHitShared, &verdict);
        Some(verdict)
    }

    fn count_hit(&mut self, metric: Metric, verdict: &Verdict) {
        self.count(metric);
        if !matches!(verdict, Verdict::Active(_)) {
            self.count(Metric::CacheHitNegative);
        }
    }

    pub fn remember(&mut self, host: &dyn Host, key: TokenDigest, verdict: &Verdict) {
        let c = &self.config.cache;
        let entry = Entry {
            digest: key,
            epoch: self.epoch,
            expires_at: cache::expiry_for(verdict, host.now(), c.max_ttl_s, c.negative_ttl_s),
            verdict: verdict.clone(),
        };
        let Some(bytes) = entry.encode_within(c.max_entry_bytes) else {
            return;
        };
        host.shared_set(&self.slot_key(&key), &bytes, None);
        self.local.put(entry);
    }

    fn slot_key(&self, key: &TokenDigest) -> String {
        cache::slot_key(&self.slot_prefix, key, self.config.cache.slots)
    }

    /// The change-feed position this worker holds for a service (0 before its first answer).
    pub fn seq(&self, service: &str) -> i64 {
        self.services
            .get(service)
            .map_or(0, ServiceState::poll_from)
    }

    /// The call asking for a service's state (settings and the change feed after `since`).
    pub fn state_call(&self, service: &str, since: i64) -> Option<Call> {
        let Mode::TokenService { endpoint, .. } = &self.config.mode else {
            return None;
        };
        let path = format!("/gateway/v1/services/{service}/state?since={since}");
        Some(Call {
            cluster: endpoint.cluster.clone(),
            headers: pairs(&[
                (":method", "GET"),
                (":path", &path),
                (":authority", &endpoint.authority),
            ]),
            body: None,
            timeout: Duration::from_millis(endpoint.timeout_ms),
        })
    }

    /// The feed position this worker holds for a service, as the token-service reads it
    /// (`x-oauth2-feed-position`): a replica that has not yet applied the revocations the
    /// worker already evicted catches up before it answers, so a stale "active" is never
    /// cached again. `None` before the first poll.
    fn feed_position(&self, service: &str) -> Option<(String, String)> {
        let state = self.services.get(service)?;
        Some((FEED_POSITION_HEADER.to_string(), state.seq.to_string()))
    }

    /// The call checking a token for a service.
    pub fn check_call(&self, service: &str, token: &str) -> Call {
        match &self.config.mode {
            Mode::TokenService { endpoint, .. } => {
                let path = format!("/gateway/v1/services/{service}/token");
                let mut headers = pairs(&[
                    (":method", "GET"),
                    (":path", &path),
                    (":authority", &endpoint.authority),
                    ("x-access-token", token),
                ]);
                headers.extend(self.feed_position(service));
                Call {
                    cluster: endpoint.cluster.clone(),
                    headers,
                    body: None,
                    timeout: Duration::from_millis(endpoint.timeout_ms),
                }
            }
            Mode::Introspection(mode) => {
                let body = format!(
                    "token={}&token_type_hint=access_token",
                    token::form_encode(token)
                );
                Call {
                    cluster: mode.endpoint.cluster.clone(),
                    headers: pairs(&[
                        (":method", "POST"),
                        (":path", &mode.path),
                        (":authority", &mode.endpoint.authority),
                        ("content-type", "application/x-www-form-urlencoded"),
                        ("accept", "application/json"),
                        ("authorization", &mode.authorization),
                    ]),
                    body: Some(body.into_bytes()),
                    timeout: Duration::from_millis(mode.endpoint.timeout_ms),
                }
            }
        }
    }

    /// Parses a check answer in the configured mode's format.
    pub fn parse_verdict(&self, body: &[u8]) -> Option<Verdict> {
        match self.config.mode {
            Mode::Introspection(_) => Verdict::parse_introspection(body),
            Mode::TokenService { .. } => Verdict::parse(body),
        }
    }

    /// The call relaying an OAuth endpoint request to the token-service, which learns from
    /// the gateway (not from the client) whether the client used TLS and which route it took.
    pub fn relay_call(
        &self,
        service: &str,
        relay: &super::Relay,
        tls: bool,
        body: &[u8],
    ) -> Option<Call> {
        let Mode::TokenService { endpoint, .. } = &self.config.mode else {
            return None;
        };
        let call = &relay.call;
        let mut path = format!("/gateway/v1/services/{service}{}", call.target);
        if let Some(query) = &call.query {
            path.push('?');
            path.push_str(query);
        }
        let method = if relay.method.is_empty() {
            "GET"
        } else {
            relay.method.as_str()
        };
        let mut headers = pairs(&[
            (":method", method),
            (":path", &path),
            (":authority", &endpoint.authority),
            ("x-gateway-tls", if tls { "on" } else { "off" }),
            ("x-gateway-host", &relay.host),
            ("x-gateway-prefix", &call.prefix),
        ]);
        headers.extend(self.feed_position(service));
        headers.extend(relay.headers.iter().cloned());
        Some(Call {
            cluster: endpoint.cluster.clone(),
            headers,
            body: (!body.is_empty()).then(|| body.to_vec()),
            timeout: Duration::from_millis(endpoint.timeout_ms),
        })
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn current_epoch(host: &dyn Host, epoch_key: &str) -> u32 {
    epoch_in(host.shared_get(epoch_key).0.as_deref())
}

fn epoch_in(bytes: Option<&[u8]>) -> u32 {
    bytes
        .and_then(|b| b.get(..4))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// Drops every cache entry of the configuration at once by moving all its workers to a new
/// epoch.
fn bump_epoch(host: &dyn Host, epoch_key: &str) -> u32 {
    bump_shared_epoch(
        epoch_key,
        |key| host.shared_get(key),
        |key, value, cas| host.shared_set(key, value, cas),
    )
}

/// [`bump_epoch`] on shared data reached without a [`Host`] (the native build's main
/// thread, which judges each published answer once for every worker).
pub fn bump_shared_epoch(
    epoch_key: &str,
    get: impl Fn(&str) -> (Option<Vec<u8>>, Option<u32>),
    set: impl Fn(&str, &[u8], Option<u32>) -> bool,
) -> u32 {
    let (bytes, cas) = get(epoch_key);
    let next = epoch_in(bytes.as_deref()).wrapping_add(1);
    if set(epoch_key, &next.to_be_bytes(), cas) {
        next
    } else {
        // Another worker bumped it concurrently: its new epoch serves us too.
        epoch_in(get(epoch_key).0.as_deref())
    }
}

/// Removes the entry of `key` from its slot, unless the slot now holds another token's.
fn evict(host: &dyn Host, slot: &str, key: &TokenDigest) {
    evict_shared(
        slot,
        key,
        &|slot: &str| host.shared_get(slot),
        &|slot: &str, value: &[u8], cas| host.shared_set(slot, value, cas),
    );
}

/// Evicts the `revoked` tokens (hex digests, as the feed names them) of `service` from the
/// shared data of `config`, without a [`Host`]: the native build's main thread does it for
/// every answer it publishes, so a revocation reaches the shared cache whether or not any
/// worker is awake to apply it.
pub fn evict_revoked_shared(
    config: &FilterConfig,
    service: &str,
    revoked: &[String],
    get: impl Fn(&str) -> (Option<Vec<u8>>, Option<u32>),
    set: impl Fn(&str, &[u8], Option<u32>) -> bool,
) {
    let prefix = cache::slot_prefix(&config.namespace);
    for token in revoked.iter().filter_map(|h| cache::digest_from_hex(h)) {
        let key = cache::scoped(&config.namespace, service, &token);
        let slot = cache::slot_key(&prefix, &key, config.cache.slots);
        evict_shared(&slot, &key, &get, &set);
    }
}

/// [`evict`] on shared data reached without a [`Host`].
pub fn evict_shared(
    slot: &str,
    key: &TokenDigest,
    get: &impl Fn(&str) -> (Option<Vec<u8>>, Option<u32>),
    set: &impl Fn(&str, &[u8], Option<u32>) -> bool,
) {
    if let (Some(bytes), cas) = get(slot) {
        if Entry::decode(&bytes).is_some_and(|e| e.digest == *key) {
            set(slot, &[], cas);
        }
    }
}

/// With a third-party authorization server, the filter's own configuration is the settings.
fn local_settings(mode: &IntrospectionMode) -> Settings {
    Settings {
        id: "introspection".into(),
        updated_at: 0,
        auth_header_name: mode.auth_header_name.clone(),
        hide_credentials: mode.hide_credentials,
        realm: mode.realm.clone(),
        global_credentials: false,
        anonymous: None,
        anonymous_error: None,
        access_token_format: Default::default(),
        identity_jwt_header: None,
        identity_headers: true,
    }
}

fn describe(p: &Protection) -> &'static str {
    match p {
        Protection::Unknown => "unknown",
        Protection::UnknownService => "service unknown to the token-service (requests fail closed)",
        Protection::Off => "no enabled oauth2 plugin (requests pass through)",
        Protection::On(_) => "protected",
    }
}
