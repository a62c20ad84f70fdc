//! The per-request flow: one state machine that owns every decision about a request (token
//! sources, cache, check, relayed OAuth endpoints, header plan) and talks to Envoy only through
//! [`Host`]. The proxy-wasm adapter forwards its callbacks here; tests drive it with
//! [`mock::MockHost`].
//!
//! **The invariant, enforced in one place:** a request continues upstream only after an allow
//! decision for it. [`Flow::action`] is the only source of [`Action::Continue`] and answers it
//! only in [`Phase::Allowed`]; [`Flow::on_call_answer`] is the only caller of
//! [`Host::resume_request`] and calls it only after entering that phase. Every other callback,
//! in any order (headers, each body chunk, trailers, answers to calls, late answers for a
//! request that was already answered), leaves a request that is not allowed paused.

pub mod host;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
pub mod worker;

#[cfg(test)]
mod jwt_tests;
#[cfg(test)]
mod tests;

pub use host::{Action, Call, CallAnswer, Host, Level};
pub use worker::Worker;

use crate::body::BodyFormat;
use crate::cache::{self, TokenDigest};
use crate::config::{is_service_name, Mode};
use crate::decision::{self, Decision, Failure, Reply, IDENTITY_HEADERS};
use crate::headers::is_safe_value;
use crate::jwt::{self, Refusal};
use crate::metrics::Metric;
use crate::request::RequestView;
use crate::routes::{self, EndpointCall};
use crate::state::{IdentityJwt, Protection, Settings, StatePoll, Verdict};
use crate::token::{self, BodyToken, Found, Source};
use std::cell::RefCell;
use std::rc::Rc;

const UNAVAILABLE: &str = "The authorization service is unavailable";
/// Headers of a relayed OAuth answer that reach the client.
const RELAYED_HEADERS: [&str; 5] = [
    "content-type",
    "cache-control",
    "pragma",
    "www-authenticate",
    // A 429 for too many failed client authentications says when to try again.
    "retry-after",
];

/// Where a request stands.
#[derive(Debug)]
enum Phase {
    /// The request headers have not been seen.
    Start,
    /// Inside a callback, between two phases. A callback never ends here; if one did, the
    /// request would be answered 503 (see [`Flow::settle`]).
    Deciding,
    /// Waiting for the whole request body, then doing what it says.
    Body(AfterBody),
    /// Waiting for the answer to the call `id`.
    Call { id: u32, waiting: Waiting },
    /// Allowed upstream: the one phase in which the request continues.
    Allowed,
    /// Answered locally; it never reaches the upstream.
    Replied,
}

#[derive(Debug)]
enum AfterBody {
    /// Relay an OAuth endpoint request, body included.
    Relay(Relay),
    /// Authenticate with the token found in the header or query, unless `read_token` and the
    /// body has an `access_token` (Kong merges the body's parameters over the query's); `scrub`
    /// removes every `access_token` from the body first.
    Authenticate {
        found: Option<Found>,
        format: BodyFormat,
        read_token: bool,
        scrub: bool,
    },
}

#[derive(Debug)]
enum Waiting {
    /// The service's state, which this worker does not have yet.
    State,
    Check {
        digest: TokenDigest,
        /// What the worker had applied when the check left.
        mark: worker::CheckMark,
    },
    /// The service's state again: a JWT named a key this worker does not know.
    Keys(Found),
    Relay,
}

/// An OAuth endpoint request to relay, with what it needs of the client's request headers.
#[derive(Debug)]
pub struct Relay {
    pub call: EndpointCall,
    pub method: String,
    pub host: String,
    pub headers: Vec<(String, String)>,
}

pub struct Flow {
    worker: Rc<RefCell<Worker>>,
    phase: Phase,
    /// The service protecting the request's route (known once the headers are).
    service: String,
    /// The settings in force when the request came (a poll meanwhile does not change them).
    settings: Option<Rc<Settings>>,
    /// Bit `i` set: the client sent `IDENTITY_HEADERS[i]`.
    identity_present: u8,
    /// Client headers that an upstream could read as identity headers (`x_consumer_id`...).
    smuggled: Vec<String>,
    /// The client's request is complete (end of stream on headers, body or trailers).
    ended: bool,
    /// Bytes of request body buffered so far.
    body_size: usize,
    /// This request already fetched the state itself (it never does twice).
    fetched_state: bool,
    /// The JWT access token presented, once recognised: forwarded itself as the identity JWT
    /// when it was verified locally.
    jwt: Option<String>,
}

impl Flow {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Flow {
        Flow {
            worker,
            phase: Phase::Start,
            service: String::new(),
            settings: None,
            identity_present: 0,
            smuggled: Vec::new(),
            ended: false,
            body_size: 0,
            fetched_state: false,
            jwt: None,
        }
    }

    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        if matches!(self.phase, Phase::Start) {
            self.ended = end_of_stream;
            self.phase = Phase::Deciding;
            self.begin(host);
            self.settle(host);
        }
        self.action()
    }

    /// `body_size`: the bytes buffered so far (Envoy buffers while the filter pauses).
    pub fn on_request_body(
        &mut self,
        host: &dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        self.body_size = body_size;
        self.ended |= end_of_stream;
        if matches!(self.phase, Phase::Body(_)) {
            if body_size > self.max_body_bytes() {
                self.over_limit(host);
            } else if self.ended {
                self.body_complete(host);
            }
            self.settle(host);
        }
        self.action()
    }

    /// Trailers end the request: a body that was awaited is complete now.
    pub fn on_request_trailers(&mut self, host: &dyn Host) -> Action {
        self.ended = true;
        if matches!(self.phase, Phase::Body(_)) {
            self.body_complete(host);
            self.settle(host);
        }
        self.action()
    }

    /// The answer to a dispatched call. An answer this request is not waiting for (a late one,
    /// another call's) changes nothing.
    pub fn on_call_answer(&mut self, host: &dyn Host, id: u32, answer: &CallAnswer) {
        if !matches!(self.phase, Phase::Call { id: expected, .. } if expected == id) {
            return;
        }
        let Phase::Call { waiting, .. } = std::mem::replace(&mut self.phase, Phase::Deciding)
        else {
            return;
        };
        match waiting {
            Waiting::State => self.state_answered(host, answer),
            Waiting::Check { digest, mark } => self.check_answered(host, digest, mark, answer),
            Waiting::Keys(found) => self.keys_answered(host, found, answer),
            Waiting::Relay => self.relay_answered(host, answer),
        }
        self.settle(host);
        if self.action() == Action::Continue {
            host.resume_request();
        }
    }

    /// What the host does with the request now: the one place that lets it continue.
    pub fn action(&self) -> Action {
        match self.phase {
            Phase::Allowed => Action::Continue,
            _ => Action::Pause,
        }
    }

    /// Whether the request was allowed upstream.
    pub fn is_allowed(&self) -> bool {
        matches!(self.phase, Phase::Allowed)
    }

    /// Whether the request was answered locally.
    pub fn is_replied(&self) -> bool {
        matches!(self.phase, Phase::Replied)
    }

    /// Defence in depth: a callback that left the request undecided answers it (503) rather
    /// than leave it hanging or, worse, let a later callback continue it.
    fn settle(&mut self, host: &dyn Host) {
        if matches!(self.phase, Phase::Deciding) {
            host.log(
                Level::Error,
                "oauth2 flow left a request undecided; failing closed",
            );
            self.reply(host, &decision::unavailable(UNAVAILABLE));
        }
    }

    fn max_body_bytes(&self) -> usize {
        self.worker.borrow().config.max_body_bytes
    }

    /// The request headers are here: pass, answer, or find out what is missing.
    fn begin(&mut self, host: &dyn Host) {
        match self.route_service(host) {
            RouteService::Named(service) => self.service = service,
            RouteService::None => return self.pass(),
            RouteService::Invalid(name) => {
                host.log(
                    Level::Error,
                    &format!("route metadata names an invalid oauth2 service '{name}'"),
                );
                return self.reply(host, &decision::unavailable(UNAVAILABLE));
            }
        }
        let (settings, relays) = match self.readiness() {
            Readiness::Protected { settings, relays } => (settings, relays),
            Readiness::Pass => return self.pass(),
            Readiness::FetchState => return self.fetch_state(host),
            Readiness::Unavailable(message) => {
                return self.reply(host, &decision::unavailable(&message))
            }
        };
        self.settings = Some(settings.clone());
        let headers = host.request_headers();
        let view = RequestView::from_headers(&headers, &settings.auth_header_name);
        self.identity_present = view.identity_present;
        self.smuggled = view.smuggled.iter().map(|name| name.to_string()).collect();
        let endpoint = routes::endpoint(view.path)
            .filter(|_| relays)
            .filter(|call| routes::on_route(call, host.route_prefix().as_deref()));
        if let Some(call) = endpoint {
            let relay = Relay {
                method: view.method.to_string(),
                host: view.authority.to_string(),
                headers: view.relayed_headers(&settings.auth_header_name),
                call,
            };
            return self.await_body(host, AfterBody::Relay(relay));
        }
        let found = match view.auth {
            Some(value) => token::from_header(value),
            None => token::from_query(view.path),
        };
        if settings.hide_credentials {
            hide_outside_body(host, &view, found.as_ref(), &settings.auth_header_name);
        }
        // A body is still to come, or came while the state was fetched (`begin` runs again).
        let has_body = !self.ended || self.body_size > 0;
        let format = view.body_format().filter(|_| has_body);
        // Without a header the body may hold the token; with hide_credentials it must lose any
        // copy, whatever carried the token.
        let read_token = view.auth.is_none();
        let scrub = settings.hide_credentials;
        if let Some(format) = format.filter(|_| read_token || scrub) {
            if scrub {
                // The body may shrink: Envoy frames it anew.
                host.set_request_header("content-length", None);
            }
            let after = AfterBody::Authenticate {
                found,
                format,
                read_token,
                scrub,
            };
            return self.await_body(host, after);
        }
        self.authenticate(host, found);
    }

    /// Which service protects the route: its metadata's `oauth2.service` (an empty name
    /// opts the route out), else the filter's default. Introspection mode has one; with
    /// `route_metadata: false` the default protects every route (the metadata is not read).
    fn route_service(&self, host: &dyn Host) -> RouteService {
        let (default, route_metadata) = match &self.worker.borrow().config.mode {
            Mode::Introspection(_) => {
                return RouteService::Named(worker::INTROSPECTION.to_string())
            }
            Mode::TokenService {
                service,
                route_metadata,
                ..
            } => (service.clone(), *route_metadata),
        };
        let named = if route_metadata {
            host.route_service()
        } else {
            None
        };
        match named.or(default) {
            None => RouteService::None,
            Some(name) if name.is_empty() => RouteService::None,
            Some(name) if is_service_name(&name) => RouteService::Named(name),
            Some(name) => RouteService::Invalid(name),
        }
    }

    fn readiness(&self) -> Readiness {
        let mut w = self.worker.borrow_mut();
        if !w.learn(&self.service) {
            return Readiness::Unavailable(UNAVAILABLE.to_string());
        }
        let polls = w.polls();
        let Some(state) = w.service(&self.service) else {
            return Readiness::Unavailable(UNAVAILABLE.to_string());
        };
        match (&state.protection, &state.settings) {
            (Protection::On(_), Some(settings)) => Readiness::Protected {
                settings: settings.clone(),
                relays: polls,
            },
            (Protection::Off, _) => Readiness::Pass,
            (Protection::UnknownService, _) => Readiness::Unavailable(format!(
                "Service '{}' is not known to the authorization service",
                self.service
            )),
            // No state yet (a fresh VM, the new process of a hot restart, a route naming a
            // service this worker has not met): the request fetches it itself rather than
            // fail in the first milliseconds.
            (Protection::Unknown, _) if polls && !self.fetched_state => Readiness::FetchState,
            _ => Readiness::Unavailable(UNAVAILABLE.to_string()),
        }
    }

    fn pass(&mut self) {
        self.count(Metric::Passed);
        self.phase = Phase::Allowed;
    }

    fn count(&self, metric: Metric) {
        self.worker.borrow_mut().count(metric);
    }

    fn await_body(&mut self, host: &dyn Host, after: AfterBody) {
        self.phase = Phase::Body(after);
        if self.ended {
            self.body_complete(host);
        }
    }

    fn body_complete(&mut self, host: &dyn Host) {
        if self.body_size > self.max_body_bytes() {
            return self.over_limit(host);
        }
        let Phase::Body(after) = std::mem::replace(&mut self.phase, Phase::Deciding) else {
            return;
        };
        let body = if self.body_size == 0 {
            Vec::new()
        } else {
            host.request_body(self.body_size)
        };
        match after {
            AfterBody::Relay(relay) => self.relay(host, &relay, &body),
            AfterBody::Authenticate {
                found,
                format,
                read_token,
                scrub,
            } => {
                let found = match read_token.then(|| token::from_body(&format, &body)) {
                    Some(BodyToken::Present(in_body)) => in_body,
                    Some(BodyToken::Absent) | None => found,
                };
                if scrub {
                    if let Some(kept) = token::body_without_access_token(&format, &body) {
                        host.replace_request_body(self.body_size, &kept);
                    }
                }
                self.authenticate(host, found);
            }
        }
    }

    /// A body over `max_body_bytes` is never read. A request that needs nothing from it, one
    /// with a query token and nothing to scrub, is decided by that token (Kong would have
    /// looked for a body `access_token` too, but a large upload must not turn into a 413);
    /// any other is 413.
    fn over_limit(&mut self, host: &dyn Host) {
        match std::mem::replace(&mut self.phase, Phase::Deciding) {
            Phase::Body(AfterBody::Authenticate {
                found: Some(found),
                scrub: false,
                ..
            }) => self.authenticate(host, Some(found)),
            _ => self.too_large(host),
        }
    }

    fn authenticate(&mut self, host: &dyn Host, found: Option<Found>) {
        let Some(found) = found else {
            return self.decide(host, Err(Failure::Missing));
        };
        // Only what may be a JWT access token gets a JWT's length bound (8192, not 512).
        let plausible_opaque = token::plausible(&found.token);
        let may_be_jwt =
            self.worker.borrow().verifies_jwts() && token::plausible_jwt_shape(&found.token);
        if !(may_be_jwt || plausible_opaque) {
            return self.decide(host, Ok(&Verdict::Invalid));
        }
        let raw = cache::digest(&found.token);
        let digest = self.worker.borrow().cache_key(&self.service, &raw);
        let forwards_jwt = self
            .settings
            .as_ref()
            .is_some_and(|s| s.identity_jwt_header.is_some());
        if forwards_jwt {
            // A cached verdict of a locally verified JWT forwards the token itself.
            self.jwt = Some(found.token.clone());
        }
        // A token seen before is answered before it is parsed: its verdict is cached under
        // its digest whatever its kind, and only a verified JWT's verdict says `AccessToken`.
        let cached = self.worker.borrow_mut().cached(host, &digest);
        if let Some(verdict) = cached {
            return self.decide(host, Ok(&verdict));
        }
        // Recognised once per request, on a miss: the header is parsed here and nowhere else.
        let candidate = may_be_jwt.then(|| jwt::recognise(&found.token)).flatten();
        match candidate {
            Some(candidate) => self.verify_jwt(host, &found, &candidate, raw, digest),
            None if plausible_opaque => self.check(host, &found.token, digest),
            None => self.decide(host, Ok(&Verdict::Invalid)),
        }
    }

    /// Asks the token-service about a token (gateway-protocol.md §2).
    fn check(&mut self, host: &dyn Host, token: &str, digest: TokenDigest) {
        let mut call = self.worker.borrow().check_call(&self.service, token);
        // The identity JWT names the route's issuer (contract §6): the route prefix is read
        // only when the plugin asks for one.
        let forwards_identity = self
            .settings
            .as_ref()
            .is_some_and(|s| s.identity_jwt_header.is_some());
        if forwards_identity {
            if let Some(prefix) = host.route_prefix() {
                let prefix = prefix.trim_end_matches('/').to_string();
                call.headers.push(("x-gateway-prefix".to_string(), prefix));
            }
        }
        self.count(Metric::ChecksSent);
        let mark = self.worker.borrow().check_mark();
        self.dispatch(host, &call, Waiting::Check { digest, mark });
    }

    /// A JWT access token (contract §5): verified here with the published keys, no call,
    /// unless its key is unknown (one bounded refresh first) or it is distrusted (asked about).
    fn verify_jwt(
        &mut self,
        host: &dyn Host,
        found: &Found,
        candidate: &jwt::Candidate,
        raw: TokenDigest,
        key: TokenDigest,
    ) {
        let now = host.now();
        let outcome = self
            .worker
            .borrow()
            .verify_jwt(&self.service, candidate, now);
        let verdict = match outcome {
            Err(Refusal::UnknownKid) => return self.unknown_kid(host, found.clone()),
            Err(Refusal::GlobalToken) => Verdict::GlobalToken,
            Err(_) => Verdict::Invalid,
            Ok(_) if self.worker.borrow().distrusts(&self.service, &raw, now) => {
                self.count(Metric::JwtCheckedRemotely);
                return self.check(host, &found.token, key);
            }
            Ok(identity) => {
                self.count(Metric::JwtVerifiedLocally);
                Verdict::Active(Rc::new(identity))
            }
        };
        self.worker.borrow_mut().remember(host, key, &verdict);
        self.decide(host, Ok(&verdict));
    }

    /// An unknown `kid`: the key may have been published since this worker's last poll, so
    /// the state is asked for once (at most once a second per service per worker, and once
    /// per request); still unknown, the token is refused (not cached: the key may come).
    fn unknown_kid(&mut self, host: &dyn Host, found: Found) {
        let now = host.now();
        let may = !self.fetched_state
            && self
                .worker
                .borrow_mut()
                .may_refresh_keys(&self.service, now);
        if !may {
            return self.decide(host, Ok(&Verdict::Invalid));
        }
        self.fetched_state = true;
        let worker = self.worker.borrow();
        let call = worker.state_call(&self.service, worker.seq(&self.service));
        drop(worker);
        let Some(call) = call else {
            return self.decide(host, Ok(&Verdict::Invalid));
        };
        self.count(Metric::StatePolls);
        self.dispatch(host, &call, Waiting::Keys(found));
    }

    fn keys_answered(&mut self, host: &dyn Host, found: Found, answer: &CallAnswer) {
        // Whether the key exists is unknown without an answer: an outage, never a 401 the
        // client would take as "this token is bad" (nor a pass).
        if self.applied_poll(host, answer) {
            // The settings the request started with still decide it; only the keys are new.
            self.authenticate(host, Some(found));
        }
    }

    /// Applies a state poll's answer to the worker; answers 503 (and says false) when there
    /// is none to apply.
    fn applied_poll(&mut self, host: &dyn Host, answer: &CallAnswer) -> bool {
        let poll = (answer.status() == Some("200"))
            .then(|| StatePoll::parse(&answer.body))
            .flatten();
        let Some(poll) = poll else {
            self.count(Metric::StatePollFailed);
            self.reply(host, &decision::unavailable(UNAVAILABLE));
            return false;
        };
        let service = self.service.clone();
        self.worker.borrow_mut().apply_poll(host, &service, poll);
        true
    }

    fn fetch_state(&mut self, host: &dyn Host) {
        let call = self.worker.borrow().state_call(&self.service, 0);
        self.count(Metric::StatePolls);
        match call {
            Some(call) => self.dispatch(host, &call, Waiting::State),
            None => self.reply(host, &decision::unavailable(UNAVAILABLE)),
        }
    }

    fn dispatch(&mut self, host: &dyn Host, call: &Call, waiting: Waiting) {
        match host.dispatch(call) {
            Some(id) => self.phase = Phase::Call { id, waiting },
            None => {
                host.log(
                    Level::Warn,
                    &format!("cannot dispatch a call to cluster '{}'", call.cluster),
                );
                self.reply(host, &decision::unavailable(UNAVAILABLE));
            }
        }
    }

    fn state_answered(&mut self, host: &dyn Host, answer: &CallAnswer) {
        self.fetched_state = true;
        if self.applied_poll(host, answer) {
            // Now as if the state had been there when the request came.
            self.begin(host);
        }
    }

    fn check_answered(
        &mut self,
        host: &dyn Host,
        digest: TokenDigest,
        mark: worker::CheckMark,
        answer: &CallAnswer,
    ) {
        let verdict = if answer.status() == Some("200") {
            self.worker.borrow().parse_verdict(&answer.body)
        } else {
            None
        };
        let Some(verdict) = verdict else {
            self.count(Metric::CheckFailed);
            if answer.status() == Some("504") {
                self.count(Metric::CheckTimeout);
            }
            host.log(
                Level::Warn,
                &format!(
                    "token check failed (status {:?}); failing closed",
                    answer.status()
                ),
            );
            return self.reply(host, &decision::unavailable(UNAVAILABLE));
        };
        let freshness = self.worker.borrow().revoked_since(mark, &digest);
        let verdict = match freshness {
            worker::Freshness::Revoked => Verdict::Invalid,
            _ => verdict,
        };
        if freshness != worker::Freshness::Uncertain {
            self.worker.borrow_mut().remember(host, digest, &verdict);
        }
        self.decide(host, Ok(&verdict));
    }

    fn relay(&mut self, host: &dyn Host, relay: &Relay, body: &[u8]) {
        let call =
            self.worker
                .borrow()
                .relay_call(&self.service, relay, host.downstream_tls(), body);
        match call {
            Some(call) => {
                self.count(Metric::Relayed);
                self.dispatch(host, &call, Waiting::Relay);
            }
            None => self.reply(host, &decision::unavailable(UNAVAILABLE)),
        }
    }

    fn relay_answered(&mut self, host: &dyn Host, answer: &CallAnswer) {
        let code = answer.status().and_then(|s| s.parse::<u32>().ok());
        // Envoy answers a failed callout itself (503/504, plain text): that is an outage.
        let from_service = answer
            .header("content-type")
            .is_some_and(|c| c.contains("json"));
        match code {
            Some(code) if from_service && (200..600).contains(&code) && code != 503 => {
                let headers: Vec<(&str, &str)> = answer
                    .headers
                    .iter()
                    .filter(|(name, _)| RELAYED_HEADERS.contains(&name.as_str()))
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                host.send_reply(code, &headers, &answer.body);
                self.phase = Phase::Replied;
            }
            _ => {
                self.count(Metric::RelayFailed);
                self.reply(host, &decision::unavailable(UNAVAILABLE));
            }
        }
    }

    fn decide(&mut self, host: &dyn Host, verdict: Result<&Verdict, Failure>) {
        let Some(settings) = self.settings.clone() else {
            return self.reply(host, &decision::unavailable(UNAVAILABLE));
        };
        let outcome = decision::decide(&settings, verdict);
        if let Some(metric) = outcome_metric(verdict, &outcome) {
            self.count(metric);
        }
        match outcome {
            Decision::Forward(plan) => {
                self.allow(host, &plan);
                self.forward_identity_jwt(host, &settings, verdict);
            }
            Decision::Reply(reply) => self.reply(host, &reply),
        }
    }

    /// `identity_jwt_header` (contract §6): the check answer's identity JWT, or the JWT access
    /// token itself when it was verified locally; the header is removed otherwise (an
    /// anonymous request, an answer without one), so a client cannot send its own.
    fn forward_identity_jwt(
        &self,
        host: &dyn Host,
        settings: &Settings,
        verdict: Result<&Verdict, Failure>,
    ) {
        let Some(header) = settings.identity_jwt_header.as_deref() else {
            return;
        };
        let jwt = match verdict {
            Ok(Verdict::Active(identity)) => match &identity.identity_jwt {
                Some(IdentityJwt::AccessToken) => self.jwt.as_deref(),
                Some(IdentityJwt::Issued(jwt)) => Some(jwt.as_str()),
                None => None,
            },
            _ => None,
        }
        .filter(|jwt| is_safe_value(jwt));
        match jwt {
            Some(jwt) if header == "authorization" => {
                host.set_request_header(header, Some(&format!("Bearer {jwt}")))
            }
            Some(jwt) => host.set_request_header(header, Some(jwt)),
            None => host.set_request_header(header, None),
        }
    }

    fn too_large(&mut self, host: &dyn Host) {
        self.count(Metric::DeniedBodyTooLarge);
        self.reply(host, &decision::too_large());
    }

    /// Writes the identity headers (removing every client copy) and allows the request.
    fn allow(&mut self, host: &dyn Host, plan: &decision::HeaderPlan) {
        // Only headers that carry a value, or that the client sent, cost a host call.
        for (i, (name, value)) in plan.iter().enumerate() {
            let sent_by_client = self.identity_present & (1 << i) != 0;
            match value {
                Some(value) if sent_by_client => host.set_request_header(name, Some(value)),
                Some(value) => host.add_request_header(name, value),
                None if sent_by_client => host.set_request_header(name, None),
                None => {}
            }
        }
        for name in &self.smuggled {
            host.set_request_header(name, None);
        }
        debug_assert_eq!(plan.len(), IDENTITY_HEADERS.len());
        self.phase = Phase::Allowed;
    }

    fn reply(&mut self, host: &dyn Host, reply: &Reply) {
        if reply.status >= 500 {
            self.count(Metric::Unavailable);
        }
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        host.send_reply(reply.status, &headers, reply.body.as_bytes());
        self.phase = Phase::Replied;
    }
}

/// The counter for a decision (a 5xx answer is counted where every reply is).
fn outcome_metric(verdict: Result<&Verdict, Failure>, outcome: &Decision) -> Option<Metric> {
    Some(match (outcome, verdict) {
        (Decision::Forward(_), Ok(Verdict::Active(_))) => Metric::Allowed,
        (Decision::Forward(_), _) => Metric::AllowedAnonymous,
        (Decision::Reply(r), _) if r.status >= 500 => return None,
        (Decision::Reply(_), Err(Failure::Missing)) => Metric::DeniedMissing,
        (Decision::Reply(_), Ok(Verdict::GlobalToken) | Err(Failure::GlobalToken)) => {
            Metric::DeniedGlobalToken
        }
        (Decision::Reply(_), _) => Metric::DeniedInvalid,
    })
}

enum RouteService {
    Named(String),
    /// The route is not protected.
    None,
    Invalid(String),
}

enum Readiness {
    Protected {
        settings: Rc<Settings>,
        /// Whether `<route>/oauth2/*` is relayed (token-service mode).
        relays: bool,
    },
    Pass,
    FetchState,
    Unavailable(String),
}

/// `hide_credentials` outside the body: the token header when it carried the token (with or
/// without a scheme), and every `access_token` of the query, so no copy reaches the upstream.
/// Kong strips before validation, so an invalid token is removed too.
fn hide_outside_body(
    host: &dyn Host,
    view: &RequestView,
    found: Option<&Found>,
    auth_header_name: &str,
) {
    if matches!(
        found.map(|f| &f.source),
        Some(Source::Header | Source::RawHeader)
    ) {
        host.set_request_header(auth_header_name, None);
    }
    if view.path.contains('?') {
        let stripped = token::path_without_access_token(view.path);
        if stripped != view.path {
            host.set_request_header(":path", Some(&stripped));
        }
    }
}
