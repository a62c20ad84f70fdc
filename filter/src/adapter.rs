//! The proxy-wasm glue: a root context per worker that polls the token-service for settings
//! and revocations, and an HTTP context per request that authenticates it.

use crate::cache::{self, Entry, TokenDigest};
use crate::config::{Endpoint, FilterConfig, IntrospectionMode, Mode};
use crate::decision::{self, Decision, Failure, Reply};
use crate::headers;
use crate::request::RequestView;
use crate::routes::{self, EndpointCall};
use crate::state::{Protection, Settings, StatePoll, Verdict};
use crate::token::{self, Found, Source};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, Status};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

const EPOCH_KEY: &str = "oauth2.epoch";
/// Entries a worker keeps in its own memory at most (each a few hundred bytes).
const LOCAL_CACHE_MAX: u32 = 4096;
const FIRST_POLL_DELAY: Duration = Duration::from_millis(20);
/// Headers of a relayed OAuth answer that reach the client.
const RELAYED_HEADERS: [&str; 4] = [
    "content-type",
    "cache-control",
    "pragma",
    "www-authenticate",
];

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &format!("oauth2 filter panicked: {info}"));
    }));
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// What the root context learned, shared with this worker's requests.
struct Shared {
    config: Rc<FilterConfig>,
    protection: Protection,
    settings: Option<Rc<Settings>>,
    seq: i64,
    /// The cache epoch (mirrors shared data, refreshed on every poll).
    epoch: u32,
    /// This worker's copy of recent answers, in front of shared data.
    local: cache::LocalCache,
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<RefCell<Shared>>>,
    poll_in_flight: bool,
    polled_once: bool,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.poll_in_flight = false;
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let ok = status_of(&header_map(MapType::HttpCallResponseHeaders)) == Some("200");
        let poll = self
            .get_http_call_response_body(0, body_size)
            .and_then(|b| StatePoll::parse(&b));
        match (ok, poll) {
            (true, Some(poll)) => apply_poll(self, &shared, poll),
            _ => log(
                LogLevel::Warn,
                "token-service state poll failed; keeping the last known settings",
            ),
        }
    }
}

/// Applies a state answer (from the root's poll, or a request's own fetch at start-up) to what
/// this worker knows: settings, the cache epoch, revoked tokens.
fn apply_poll(host: &dyn Context, shared: &Rc<RefCell<Shared>>, poll: StatePoll) {
    let mut s = shared.borrow_mut();
    let protection = poll.protection();
    let settings_changed = s.protection != protection;
    let previous_epoch = s.epoch;
    if poll.reset || settings_changed {
        s.epoch = bump_epoch(host);
    } else {
        s.epoch = current_epoch(host);
        let slots = s.config.cache.slots;
        for hex in &poll.revoked {
            if let Some(digest) = cache::digest_from_hex(hex) {
                evict(host, &digest, slots);
                s.local.remove(&digest);
            }
        }
    }
    if s.epoch != previous_epoch {
        s.local.clear();
    }
    if settings_changed {
        log(
            LogLevel::Info,
            &format!(
                "oauth2 settings for service '{}' now: {}",
                s.config.service().unwrap_or_default(),
                describe(&protection)
            ),
        );
    }
    s.settings = match &protection {
        Protection::On(settings) => Some(Rc::new(settings.clone())),
        _ => None,
    };
    s.protection = protection;
    s.seq = poll.seq;
}

fn current_epoch(host: &dyn Context) -> u32 {
    epoch_in(host.get_shared_data(EPOCH_KEY).0.as_deref())
}

fn epoch_in(bytes: Option<&[u8]>) -> u32 {
    bytes
        .and_then(|b| b.get(..4))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// Drops every cache entry at once by moving all workers to a new epoch.
fn bump_epoch(host: &dyn Context) -> u32 {
    let (bytes, cas) = host.get_shared_data(EPOCH_KEY);
    let current = epoch_in(bytes.as_deref());
    let next = current.wrapping_add(1);
    if host
        .set_shared_data(EPOCH_KEY, Some(&next.to_be_bytes()), cas)
        .is_err()
    {
        // Another worker bumped it concurrently: its new epoch serves us too.
        return current_epoch(host);
    }
    next
}

fn evict(host: &dyn Context, digest: &TokenDigest, slots: u32) {
    let key = cache::slot_key(digest, slots);
    if let (Some(bytes), cas) = host.get_shared_data(&key) {
        if Entry::decode(&bytes).is_some_and(|e| e.digest == *digest) {
            let _ = host.set_shared_data(&key, Some(&[]), cas);
        }
    }
}

impl Root {
    fn poll(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let requested = {
            let s = shared.borrow();
            request_state(self, &s, s.seq)
        };
        match requested {
            Ok(()) => self.poll_in_flight = true,
            Err(status) => log(
                LogLevel::Warn,
                &format!("cannot reach the token-service cluster: {status:?}"),
            ),
        }
    }
}

/// Asks the token-service for the service's state (settings and the change feed after `since`).
fn request_state(
    host: &dyn Context,
    shared: &Shared,
    since: i64,
) -> Result<(), proxy_wasm::types::Status> {
    let Mode::TokenService { service, endpoint } = &shared.config.mode else {
        return Err(proxy_wasm::types::Status::BadArgument);
    };
    let path = format!("/gateway/v1/services/{service}/state?since={since}");
    let headers = vec![
        (":method", "GET"),
        (":path", path.as_str()),
        (":authority", endpoint.authority.as_str()),
    ];
    let timeout = Duration::from_millis(endpoint.timeout_ms);
    host.dispatch_http_call(&endpoint.cluster, headers, None, vec![], timeout)
        .map(drop)
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

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log(
                LogLevel::Error,
                "the oauth2 filter needs a configuration (see README: filter configuration)",
            );
            return false;
        };
        match FilterConfig::parse(&bytes) {
            Ok(config) => {
                let settings = match &config.mode {
                    Mode::Introspection(mode) => Some(Rc::new(local_settings(mode))),
                    Mode::TokenService { .. } => None,
                };
                let protection = match &settings {
                    Some(settings) => Protection::On(Settings::clone(settings)),
                    None => Protection::Unknown,
                };
                let polls = matches!(config.mode, Mode::TokenService { .. });
                let local =
                    cache::LocalCache::new(config.cache.slots.min(LOCAL_CACHE_MAX) as usize);
                self.shared = Some(Rc::new(RefCell::new(Shared {
                    config: Rc::new(config),
                    protection,
                    settings,
                    seq: 0,
                    epoch: 0,
                    local,
                })));
                if polls {
                    self.set_tick_period(FIRST_POLL_DELAY);
                }
                true
            }
            Err(e) => {
                log(LogLevel::Error, &e.0);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if !self.polled_once {
            self.polled_once = true;
            if let Some(shared) = &self.shared {
                let period = shared.borrow().config.poll_interval_ms;
                self.set_tick_period(Duration::from_millis(period));
            }
        }
        if !self.poll_in_flight {
            self.poll();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Request {
            shared,
            pending: Pending::Nothing,
            settings: None,
            identity_present: 0,
            fetched_state: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// An OAuth endpoint request to relay, with what it needs of the client's request headers
/// (read with all the others in the one header-map read).
struct Relay {
    call: EndpointCall,
    method: String,
    host: String,
    headers: Vec<(String, String)>,
}

enum Pending {
    Nothing,
    /// Waiting for the whole body of an OAuth endpoint request.
    EndpointBody(Relay),
    /// Waiting for a form body that may carry `access_token`.
    FormBody,
    /// Waiting for the token-service's check of a token.
    Check {
        digest: TokenDigest,
    },
    /// Waiting for the token-service's answer to a relayed OAuth request.
    Relay,
    /// Waiting for the service's state, which this worker does not have yet.
    State,
}

struct Request {
    shared: Rc<RefCell<Shared>>,
    pending: Pending,
    settings: Option<Rc<Settings>>,
    /// Which identity headers the client sent (see `RequestView::identity_present`).
    identity_present: u8,
    /// This request already fetched the state itself (it never does twice).
    fetched_state: bool,
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let answer_headers = header_map(MapType::HttpCallResponseHeaders);
        let status = status_of(&answer_headers).map(str::to_owned);
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::Check { digest } => {
                let introspection =
                    matches!(self.shared.borrow().config.mode, Mode::Introspection(_));
                let parse = if introspection {
                    Verdict::parse_introspection
                } else {
                    Verdict::parse
                };
                let verdict = (status.as_deref() == Some("200"))
                    .then(|| parse(&body))
                    .flatten();
                let Some(verdict) = verdict else {
                    log(
                        LogLevel::Warn,
                        &format!("token check failed (status {status:?}); failing closed"),
                    );
                    self.reply(&decision::unavailable(
                        "The authorization service is unavailable",
                    ));
                    return;
                };
                self.remember(digest, &verdict);
                if let Some(settings) = self.settings.clone() {
                    if self.enact(decision::decide(&settings, Ok(&verdict))) == Action::Continue {
                        self.resume_http_request();
                    }
                }
            }
            Pending::Relay => self.relay_answer(status, &answer_headers, &body),
            Pending::State => {
                self.fetched_state = true;
                let poll = (status.as_deref() == Some("200"))
                    .then(|| StatePoll::parse(&body))
                    .flatten();
                let Some(poll) = poll else {
                    self.reply(&decision::unavailable(
                        "The authorization service is unavailable",
                    ));
                    return;
                };
                let shared = self.shared.clone();
                apply_poll(self, &shared, poll);
                // Now as if the state had been there when the request came (no body: it ended).
                if self.on_http_request_headers(0, true) == Action::Continue {
                    self.resume_http_request();
                }
            }
            _ => {}
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let ready = {
            let s = self.shared.borrow();
            match (&s.protection, &s.settings) {
                (Protection::On(_), Some(settings)) => Ok((
                    settings.clone(),
                    matches!(s.config.mode, Mode::TokenService { .. }),
                )),
                (Protection::Off, _) => return Action::Continue,
                (Protection::UnknownService, _) => Err(Some(format!(
                    "Service '{}' is not known to the authorization service",
                    s.config.service().unwrap_or_default()
                ))),
                // No state yet (a fresh VM, e.g. the new process of a hot restart): a request
                // without a body fetches it itself rather than fail in the first milliseconds.
                (Protection::Unknown, _)
                    if end_of_stream
                        && !self.fetched_state
                        && matches!(s.config.mode, Mode::TokenService { .. }) =>
                {
                    Err(None)
                }
                _ => Err(Some("The authorization service is unavailable".to_string())),
            }
        };
        let (settings, relays) = match ready {
            Ok(ready) => ready,
            Err(Some(message)) => return self.reply(&decision::unavailable(&message)),
            Err(None) => return self.fetch_state(),
        };
        self.settings = Some(settings.clone());
        // One host call for every header the decision needs.
        let view = RequestView::from_headers(
            header_map(MapType::HttpRequestHeaders),
            &settings.auth_header_name,
        );
        self.identity_present = view.identity_present;
        let path = view.path.as_str();
        if let Some(call) = routes::endpoint(path).filter(|_| relays) {
            let relay = Relay {
                method: view.method.clone(),
                host: view.authority.clone(),
                headers: view.relayed_headers(&settings.auth_header_name),
                call,
            };
            if end_of_stream {
                return self.relay(&relay, None);
            }
            self.pending = Pending::EndpointBody(relay);
            return Action::Pause;
        }
        let found = match &view.auth {
            Some(value) => token::from_header(value),
            None => match token::from_query(path) {
                Some(found) => Some(found),
                None if !end_of_stream && view.is_form_post() => {
                    if settings.hide_credentials {
                        self.set_http_request_header("content-length", None);
                    }
                    self.pending = Pending::FormBody;
                    return Action::Pause;
                }
                None => None,
            },
        };
        if settings.hide_credentials {
            self.hide(found.as_ref(), &settings, path);
        }
        self.authenticate(&settings, found)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if matches!(
            self.pending,
            Pending::Nothing | Pending::Check { .. } | Pending::Relay
        ) {
            return Action::Continue;
        }
        let limit = self.shared.borrow().config.max_body_bytes;
        if body_size > limit {
            self.pending = Pending::Nothing;
            return self.reply(&decision::too_large());
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        match std::mem::replace(&mut self.pending, Pending::Nothing) {
            Pending::EndpointBody(relay) => self.relay(&relay, Some(&body)),
            Pending::FormBody => {
                let Some(settings) = self.settings.clone() else {
                    return Action::Continue;
                };
                let found = token::from_form_body(&body);
                if settings.hide_credentials && found.is_some() {
                    self.set_http_request_body(0, body_size, &token::without_access_token(&body));
                }
                self.authenticate(&settings, found)
            }
            _ => Action::Continue,
        }
    }
}

impl Request {
    /// `hide_credentials`: the token never reaches the upstream (Kong strips it before
    /// validation, so an invalid token is removed too).
    fn hide(&self, found: Option<&Found>, settings: &Settings, path: &str) {
        match found.map(|f| &f.source) {
            Some(Source::Header) => self.set_http_request_header(&settings.auth_header_name, None),
            Some(Source::Query) => {
                self.set_http_request_header(":path", Some(&token::path_without_access_token(path)))
            }
            _ => {}
        }
    }

    fn authenticate(&mut self, settings: &Settings, found: Option<Found>) -> Action {
        let Some(found) = found else {
            return self.enact(decision::decide(settings, Err(Failure::Missing)));
        };
        if !token::plausible(&found.token) {
            return self.enact(decision::decide(settings, Ok(&Verdict::Invalid)));
        }
        let digest = cache::digest(&found.token);
        if let Some(decision) = self.cached(settings, &digest) {
            return self.enact(decision);
        }
        self.check(digest, &found.token)
    }

    /// The decision for a cached answer: this worker's copy first (no host call), then shared
    /// data (filled by every worker).
    fn cached(&self, settings: &Settings, digest: &TokenDigest) -> Option<Decision> {
        let now = self.now();
        let (slots, epoch) = {
            let s = self.shared.borrow();
            if let Some(verdict) = s.local.get(digest, s.epoch, now) {
                return Some(decision::decide(settings, Ok(verdict)));
            }
            (s.config.cache.slots, s.epoch)
        };
        let (bytes, _) = self.get_shared_data(&cache::slot_key(digest, slots));
        let entry = Entry::decode(&bytes?)?;
        if !entry.answers(digest, epoch, now) {
            return None;
        }
        let decision = decision::decide(settings, Ok(&entry.verdict));
        self.shared.borrow_mut().local.put(entry);
        Some(decision)
    }

    fn remember(&self, digest: TokenDigest, verdict: &Verdict) {
        let now = self.now();
        let mut s = self.shared.borrow_mut();
        let c = &s.config.cache;
        let key = cache::slot_key(&digest, c.slots);
        let expires_at = cache::expiry_for(verdict, now, c.max_ttl_s, c.negative_ttl_s);
        let entry = Entry {
            digest,
            epoch: s.epoch,
            expires_at,
            verdict: verdict.clone(),
        };
        let Some(bytes) = entry.encode_within(c.max_entry_bytes) else {
            return;
        };
        let _ = self.set_shared_data(&key, Some(&bytes), None);
        s.local.put(entry);
    }

    fn fetch_state(&mut self) -> Action {
        let shared = self.shared.clone();
        let requested = request_state(self, &shared.borrow(), 0);
        match requested {
            Ok(()) => {
                self.pending = Pending::State;
                Action::Pause
            }
            Err(_) => self.reply(&decision::unavailable(
                "The authorization service is unavailable",
            )),
        }
    }

    fn check(&mut self, digest: TokenDigest, token: &str) -> Action {
        let shared = self.shared.clone();
        let s = shared.borrow();
        let dispatched = match &s.config.mode {
            Mode::TokenService { service, endpoint } => {
                let path = format!("/gateway/v1/services/{service}/token");
                let headers = vec![
                    (":method", "GET"),
                    (":path", path.as_str()),
                    (":authority", endpoint.authority.as_str()),
                    ("x-access-token", token),
                ];
                self.call(endpoint, headers, None)
            }
            Mode::Introspection(mode) => {
                let body = format!(
                    "token={}&token_type_hint=access_token",
                    token::form_encode(token)
                );
                let headers = vec![
                    (":method", "POST"),
                    (":path", mode.path.as_str()),
                    (":authority", mode.endpoint.authority.as_str()),
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("accept", "application/json"),
                    ("authorization", mode.authorization.as_str()),
                ];
                self.call(&mode.endpoint, headers, Some(body.as_bytes()))
            }
        };
        match dispatched {
            Ok(()) => {
                self.pending = Pending::Check { digest };
                Action::Pause
            }
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!("cannot dispatch the token check: {status:?}"),
                );
                self.reply(&decision::unavailable(
                    "The authorization service is unavailable",
                ))
            }
        }
    }

    fn call(
        &self,
        endpoint: &Endpoint,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
    ) -> Result<(), proxy_wasm::types::Status> {
        let timeout = Duration::from_millis(endpoint.timeout_ms);
        self.dispatch_http_call(&endpoint.cluster, headers, body, vec![], timeout)
            .map(drop)
    }

    fn relay(&mut self, relay: &Relay, body: Option<&[u8]>) -> Action {
        let shared = self.shared.clone();
        let s = shared.borrow();
        let Mode::TokenService { service, endpoint } = &s.config.mode else {
            return Action::Continue;
        };
        let call = &relay.call;
        let mut path = format!("/gateway/v1/services/{service}{}", call.target);
        if let Some(query) = &call.query {
            path.push('?');
            path.push_str(query);
        }
        let tls = self
            .get_property(vec!["connection", "tls_version"])
            .is_some_and(|v| !v.is_empty());
        let method = if relay.method.is_empty() {
            "GET"
        } else {
            relay.method.as_str()
        };
        let mut headers = vec![
            (":method", method),
            (":path", path.as_str()),
            (":authority", endpoint.authority.as_str()),
            ("x-gateway-tls", if tls { "on" } else { "off" }),
            ("x-gateway-host", relay.host.as_str()),
            ("x-gateway-prefix", call.prefix.as_str()),
        ];
        headers.extend(relay.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        match self.call(endpoint, headers, body.filter(|b| !b.is_empty())) {
            Ok(()) => {
                self.pending = Pending::Relay;
                Action::Pause
            }
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!("cannot dispatch the OAuth request: {status:?}"),
                );
                self.reply(&decision::unavailable(
                    "The authorization service is unavailable",
                ))
            }
        }
    }

    fn relay_answer(&mut self, status: Option<String>, answer: &[(String, String)], body: &[u8]) {
        let code = status.as_deref().and_then(|s| s.parse::<u32>().ok());
        // Envoy answers a failed callout itself (503/504, plain text): that is an outage.
        let from_service = answer
            .iter()
            .any(|(name, value)| name == "content-type" && value.contains("json"));
        match code {
            Some(code) if from_service && code != 503 => {
                let headers: Vec<(&str, &str)> = answer
                    .iter()
                    .filter(|(name, _)| RELAYED_HEADERS.contains(&name.as_str()))
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                self.send_http_response(code, headers, Some(body));
            }
            _ => {
                self.reply(&decision::unavailable(
                    "The authorization service is unavailable",
                ));
            }
        }
    }

    fn enact(&mut self, decision: Decision) -> Action {
        match decision {
            Decision::Forward(plan) => {
                // Only headers that carry a value, or that the client sent, cost a host call.
                for (i, (name, value)) in plan.iter().enumerate() {
                    let sent_by_client = self.identity_present & (1 << i) != 0;
                    match value {
                        Some(value) if sent_by_client => {
                            self.set_http_request_header(name, Some(value))
                        }
                        Some(value) => self.add_http_request_header(name, value),
                        None if sent_by_client => self.set_http_request_header(name, None),
                        None => {}
                    }
                }
                Action::Continue
            }
            Decision::Reply(reply) => self.reply(&reply),
        }
    }

    fn reply(&mut self, reply: &Reply) -> Action {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.send_http_response(reply.status, headers, Some(reply.body.as_bytes()));
        Action::Pause
    }

    fn now(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The host's header map `map`, decoded without trusting its bytes: the SDK's readers panic
/// on a value that is not UTF-8, which any client can send (see `headers`).
fn header_map(map: MapType) -> Vec<(String, String)> {
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> Status;
    }
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the ABI call only writes the two out-pointers, which point at live locals.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
    if status != Status::Ok || data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host allocated this buffer through the SDK's `proxy_on_memory_allocate`
    // (a boxed slice of exactly `size` bytes) and gave up ownership of it; the SDK's own
    // readers take it back the same way.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    headers::decode_pairs(&bytes)
}

fn status_of(headers: &[(String, String)]) -> Option<&str> {
    headers
        .iter()
        .find(|(name, _)| name == ":status")
        .map(|(_, value)| value.as_str())
}

fn log(level: LogLevel, message: &str) {
    let _ = proxy_wasm::hostcalls::log(level, message);
}
