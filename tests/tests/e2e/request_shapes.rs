//! Fail closed on every request shape (issue 9), proven through a real Envoy.
//!
//! The matrix sends requests of every method, body shape, token, token source, cache state and
//! protocol to a route whose upstream records everything it receives, and asserts the one
//! invariant of the filter: a request reaches the upstream only after an allow decision for it,
//! and then with the real identity and nothing the client made up. Then the Envoy template's
//! own hardening: header names with underscores, a bound on slow request headers, and the
//! scheme taken from Envoy rather than from the client.

use e2e::kong::{oauth_error, Kong};
use e2e::recorder::{Recorded, Recorder};
use e2e::wire::{Body, Protocol, Reply, Shape, Wire};
use e2e::{GatewayOptions, Text};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVICE: &str = "shapes";
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/// The filter's default `max_body_bytes`: the matrix runs the shipped default.
const MAX_BODY_BYTES: usize = 65_536;
/// Requests in flight at once.
const PARALLEL: usize = 12;
const FORM: &str = "application/x-www-form-urlencoded";
/// A body that is not a form: its `access_token=` is not a token source.
const TEXT: &str = "text/plain";

/// What a client sends in place of the identity the gateway sets (each must never arrive).
const FORGED: [(&str, &str); 7] = [
    ("X-Consumer-ID", "forged"),
    ("X-Consumer-Custom-ID", "forged"),
    ("X-Consumer-Username", "admin"),
    ("X-Credential-Identifier", "forged"),
    ("X-Authenticated-Userid", "admin"),
    ("X-Authenticated-Scope", "admin"),
    ("X-Anonymous-Consumer", "true"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum BodyKind {
    None,
    Small,
    /// Larger than one read or DATA frame (16 KB), within `max_body_bytes`.
    Large,
    /// Several pieces without a length (HTTP/1.1 chunked, several DATA frames).
    Chunked,
    /// Over `max_body_bytes`.
    Over,
}

const BODIES: [BodyKind; 5] = [
    BodyKind::None,
    BodyKind::Small,
    BodyKind::Large,
    BodyKind::Chunked,
    BodyKind::Over,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TokenKind {
    None,
    Unknown,
    Valid,
    Revoked,
}

const TOKENS: [TokenKind; 4] = [
    TokenKind::None,
    TokenKind::Unknown,
    TokenKind::Valid,
    TokenKind::Revoked,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Source {
    /// `Authorization: Bearer <token>`.
    Header,
    /// `?access_token=<token>`.
    Query,
    /// An `access_token` field of a form body, last in the body.
    Form,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum CacheState {
    /// The filter never saw the token.
    Miss,
    /// The filter allowed the token just before.
    Hit,
    /// The filter refused the token just before.
    Negative,
    /// The filter allowed the token, then it was revoked (the cached answer must go).
    Stale,
}

impl TokenKind {
    fn cache_states(self) -> &'static [CacheState] {
        match self {
            TokenKind::None => &[CacheState::Miss],
            TokenKind::Unknown => &[CacheState::Miss, CacheState::Negative],
            TokenKind::Valid => &[CacheState::Miss, CacheState::Hit],
            TokenKind::Revoked => &[CacheState::Miss, CacheState::Negative, CacheState::Stale],
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    id: usize,
    method: &'static str,
    body: BodyKind,
    token: TokenKind,
    source: Source,
    cache: CacheState,
    protocol: Protocol,
    /// The body's content type.
    content_type: &'static str,
}

/// What the client must see, and whether the upstream may see the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 200 from the upstream, with the real identity.
    Forwarded,
    /// 401 `invalid_request`: no token the filter may read.
    Missing,
    /// 401 `invalid_token`.
    Invalid,
    /// 413: the filter must read a form body larger than `max_body_bytes`.
    TooLarge,
}

impl Case {
    fn path(&self) -> String {
        format!("/case/{}", self.id)
    }

    /// Kong's rule: a form body is read only for POST, PUT and PATCH with a form content type.
    fn body_is_read(&self) -> bool {
        matches!(self.method, "POST" | "PUT" | "PATCH")
            && self.body != BodyKind::None
            && self.content_type == FORM
    }

    fn expect(&self) -> Expect {
        let has_token = self.token != TokenKind::None;
        let readable = has_token && (self.source != Source::Form || self.body_is_read());
        // The header, then the query; the body only when neither had a token.
        let reads_body = self.body_is_read() && (!has_token || self.source == Source::Form);
        if reads_body && self.body == BodyKind::Over {
            return Expect::TooLarge;
        }
        match (readable, self.token) {
            (false, _) | (_, TokenKind::None) => Expect::Missing,
            (true, TokenKind::Valid) => Expect::Forwarded,
            (true, _) => Expect::Invalid,
        }
    }

    fn label(&self) -> String {
        format!(
            "{:?} {} body={:?} ({}) token={:?} source={:?} cache={:?}",
            self.protocol,
            self.method,
            self.body,
            self.content_type,
            self.token,
            self.source,
            self.cache
        )
    }
}

/// Every (protocol, method, body, token); for each token every source a body can carry (a form
/// token needs a body), and the token's cache states in rotation, so every (token, source,
/// cache state) occurs many times without multiplying the matrix by it.
fn matrix() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut rotation = 0usize;
    for protocol in Protocol::ALL {
        for method in METHODS {
            for body in BODIES {
                for token in TOKENS {
                    let sources: &[Source] = match token {
                        TokenKind::None => &[Source::Header],
                        _ => &[Source::Header, Source::Query, Source::Form],
                    };
                    for &source in sources {
                        if source == Source::Form && body == BodyKind::None {
                            continue;
                        }
                        let states = token.cache_states();
                        let cache = states[rotation % states.len()];
                        rotation += 1;
                        cases.push(Case {
                            id: cases.len(),
                            method,
                            body,
                            token,
                            source,
                            cache,
                            protocol,
                            content_type: FORM,
                        });
                    }
                }
            }
        }
    }
    cases.extend(not_forms(cases.len()));
    cases
}

/// Bodies of the methods whose forms are read, but not forms: an `access_token=` in them is
/// no token (401 missing), and an oversized one is not read (no 413).
fn not_forms(first_id: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    for protocol in Protocol::ALL {
        for method in ["POST", "PUT", "PATCH"] {
            for body in [BodyKind::Small, BodyKind::Chunked, BodyKind::Over] {
                for (token, source) in [
                    (TokenKind::None, Source::Header),
                    (TokenKind::Valid, Source::Form),
                    (TokenKind::Unknown, Source::Form),
                    (TokenKind::Valid, Source::Header),
                ] {
                    cases.push(Case {
                        id: first_id + cases.len(),
                        method,
                        body,
                        token,
                        source,
                        cache: CacheState::Miss,
                        protocol,
                        content_type: TEXT,
                    });
                }
            }
        }
    }
    cases
}

/// The pruned matrix still covers every axis, every (method, body, token, protocol) and every
/// (token, source, cache state).
fn assert_coverage(cases: &[Case]) {
    let quads: BTreeSet<_> = cases
        .iter()
        .map(|c| (c.method, c.body, c.token, format!("{:?}", c.protocol)))
        .collect();
    assert_eq!(quads.len(), METHODS.len() * BODIES.len() * TOKENS.len() * 3);
    let triples: BTreeSet<_> = cases.iter().map(|c| (c.token, c.source, c.cache)).collect();
    let wanted: usize = TOKENS
        .iter()
        .map(|t| {
            let sources = if *t == TokenKind::None { 1 } else { 3 };
            sources * t.cache_states().len()
        })
        .sum();
    assert_eq!(triples.len(), wanted, "{triples:?}");
    let expectations: BTreeSet<_> = cases.iter().map(|c| format!("{:?}", c.expect())).collect();
    assert_eq!(expectations.len(), 4, "{expectations:?}");
}

/// A case with its token and the request the client writes.
struct Prepared {
    case: Case,
    token: Option<String>,
    shape: Shape,
}

fn body_bytes(case: &Case, token: Option<&str>) -> Vec<u8> {
    let size = match case.body {
        BodyKind::None => return Vec::new(),
        BodyKind::Small => 8,
        BodyKind::Large => 48 * 1024,
        BodyKind::Chunked => 20 * 1024,
        BodyKind::Over => MAX_BODY_BYTES + 35 * 1024,
    };
    let mut body = format!("case={}&pad={}", case.id, "p".repeat(size));
    if let (Source::Form, Some(token)) = (case.source, token) {
        // Last, so the filter must read the body to its end to find it.
        body.push_str("&access_token=");
        body.push_str(token);
    }
    body.into_bytes()
}

fn shape_of(case: &Case, token: Option<&str>, prefix: &str) -> Shape {
    let mut target = format!("{prefix}{}", case.path());
    let mut headers: Vec<(String, String)> = FORGED
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    headers.push(("x-case".into(), case.id.to_string()));
    match (case.source, token) {
        (Source::Header, Some(t)) => headers.push(("Authorization".into(), format!("Bearer {t}"))),
        (Source::Query, Some(t)) => target.push_str(&format!("?access_token={t}")),
        _ => {}
    }
    let bytes = body_bytes(case, token);
    if !bytes.is_empty() {
        headers.push(("Content-Type".into(), case.content_type.into()));
    }
    let body = match case.body {
        BodyKind::None => Body::None,
        BodyKind::Chunked => Body::Chunked(
            bytes
                .chunks(bytes.len() / 4 + 1)
                .map(<[u8]>::to_vec)
                .collect(),
        ),
        _ => Body::Fixed(bytes),
    };
    // h2c requests end with trailers (HEADERS then trailers when there is no body), one of
    // them a forged identity.
    let trailers = match case.protocol {
        Protocol::H2c => vec![
            ("x-case-trailer".to_string(), case.id.to_string()),
            (
                "x-consumer-username".to_string(),
                "trailer-admin".to_string(),
            ),
        ],
        _ => Vec::new(),
    };
    Shape {
        method: case.method.to_string(),
        target,
        headers,
        body,
        trailers,
    }
}

/// The fixture: consumer bob's `clientid123`, and tokens minted through the admin API (fast,
/// and each with its own `authenticated_userid`, so the identity upstream names the case).
struct Fixture {
    kong: Kong,
    gw: usize,
    recorder: Recorder,
    service_id: String,
    credential_id: String,
}

impl Fixture {
    fn start() -> Fixture {
        let recorder = Recorder::start();
        let mut kong = Kong::start();
        let options = GatewayOptions {
            upstream_port: Some(recorder.port),
            ..GatewayOptions::default()
        };
        let gw = kong.protect_with(SERVICE, json!({"enable_client_credentials": true}), options);
        let service_id = kong
            .stack
            .admin_get(&format!("/services/{SERVICE}"))
            .json()
            .text("id");
        let credential_id = kong.credential_id("clientid123");
        Fixture {
            kong,
            gw,
            recorder,
            service_id,
            credential_id,
        }
    }

    fn mint(&self, userid: &str) -> String {
        let answer = self.kong.post(
            &self.kong.stack.admin("/oauth2_tokens"),
            json!({"credential": {"id": self.credential_id}, "service": {"id": self.service_id},
                   "expires_in": 3600, "authenticated_userid": userid, "scope": "email"}),
        );
        assert_eq!(answer.status, 201, "minting a token: {}", answer.text);
        answer.json().text("access_token")
    }

    fn revoke(&self, token: &str) {
        let answer = self
            .kong
            .stack
            .client
            .delete(&self.kong.stack.admin(&format!("/oauth2_tokens/{token}")));
        assert_eq!(answer.status, 204, "revoking a token: {}", answer.text);
    }

    fn wire(&self) -> Wire {
        self.kong.gw(self.gw).wire()
    }

    fn prefix(&self) -> String {
        self.kong.gw(self.gw).prefix.clone()
    }
}

fn userid_of(case: &Case) -> String {
    format!("user-{}", case.id)
}

/// Tokens for every case, minted on a few threads (the admin API is the slow part).
fn tokens_for(fixture: &Fixture, cases: &[Case]) -> Vec<Option<String>> {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut tokens: Vec<Option<String>> = vec![None; cases.len()];
    std::thread::scope(|scope| {
        let chunks: Vec<_> = tokens.chunks_mut(cases.len() / 4 + 1).enumerate().collect();
        for (chunk_index, chunk) in chunks {
            let offset = chunk_index * (cases.len() / 4 + 1);
            scope.spawn(move || {
                for (i, slot) in chunk.iter_mut().enumerate() {
                    let case = &cases[offset + i];
                    *slot = match case.token {
                        TokenKind::None => None,
                        TokenKind::Unknown => Some(format!("unknown{}x{started}", case.id)),
                        TokenKind::Valid | TokenKind::Revoked => {
                            Some(fixture.mint(&userid_of(case)))
                        }
                    };
                }
            });
        }
    });
    tokens
}

/// A GET carrying `token` in the header, to put the token in the filter's cache.
fn warm_shape(prefix: &str, id: usize, token: &str) -> Shape {
    Shape {
        method: "GET".into(),
        target: format!("{prefix}/warm/{id}"),
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        body: Body::None,
        trailers: Vec::new(),
    }
}

async fn warm(
    wire: &Wire,
    prefix: &str,
    id: usize,
    token: &str,
    status: u16,
) -> Result<(), String> {
    let reply = wire
        .send(Protocol::Http1, &warm_shape(prefix, id, token))
        .await?;
    if reply.status != status {
        return Err(format!(
            "warm-up answered {} (expected {status}): {}",
            reply.status,
            reply.text()
        ));
    }
    Ok(())
}

/// Runs one case: its warm-up (hit, negative), then its request.
async fn run_case(wire: Wire, prefix: String, prepared: Arc<Prepared>) -> Result<Reply, String> {
    let case = &prepared.case;
    if let (Some(token), CacheState::Hit | CacheState::Negative) = (&prepared.token, case.cache) {
        let status = if case.cache == CacheState::Hit {
            200
        } else {
            401
        };
        warm(&wire, &prefix, case.id, token, status).await?;
    }
    wire.send(case.protocol, &prepared.shape).await
}

/// Everything wrong with one case's outcome (empty: the case holds).
fn check(
    prepared: &Prepared,
    reply: &Result<Reply, String>,
    recorded: &[Recorded],
    bob_id: &str,
) -> Vec<String> {
    let case = &prepared.case;
    let expect = case.expect();
    let mut problems = Vec::new();
    if expect != Expect::Forwarded && !recorded.is_empty() {
        let forged: Vec<String> = recorded[0].values("x-consumer-username");
        problems.push(format!(
            "LEAK: the upstream received {} request(s) (expected none, {expect:?}); x-consumer-username upstream: {forged:?}",
            recorded.len()
        ));
    }
    for r in recorded {
        problems.extend(identity_problems(case, r, bob_id));
    }
    if expect == Expect::Forwarded {
        match recorded {
            [r] => problems.extend(forwarded_problems(prepared, r)),
            _ => problems.push(format!(
                "the upstream received {} requests (expected one)",
                recorded.len()
            )),
        }
    }
    match reply {
        Err(e) => problems.push(format!("no answer: {e}")),
        Ok(reply) => problems.extend(reply_problems(case, expect, reply)),
    }
    problems
}

/// For a forwarded request: exactly the real identity; for any other, no identity at all.
fn identity_problems(case: &Case, r: &Recorded, bob_id: &str) -> Vec<String> {
    let forwarded = case.expect() == Expect::Forwarded;
    let userid = userid_of(case);
    let wanted: [(&str, Option<&str>); 7] = [
        ("x-consumer-id", forwarded.then_some(bob_id)),
        ("x-consumer-custom-id", None),
        ("x-consumer-username", forwarded.then_some("bob")),
        (
            "x-credential-identifier",
            forwarded.then_some("clientid123"),
        ),
        (
            "x-authenticated-userid",
            forwarded.then_some(userid.as_str()),
        ),
        ("x-authenticated-scope", forwarded.then_some("email")),
        ("x-anonymous-consumer", None),
    ];
    let mut problems = Vec::new();
    for (name, value) in wanted {
        let got = r.values(name);
        let expected: Vec<String> = value.map(str::to_string).into_iter().collect();
        if got != expected {
            problems.push(format!("upstream {name}: {got:?}, expected {expected:?}"));
        }
    }
    for (name, _) in &r.trailers {
        if FORGED.iter().any(|(f, _)| f.eq_ignore_ascii_case(name)) {
            problems.push(format!("an identity trailer reached the upstream: {name}"));
        }
    }
    problems
}

fn forwarded_problems(prepared: &Prepared, r: &Recorded) -> Vec<String> {
    let case = &prepared.case;
    let mut problems = Vec::new();
    if r.method != case.method {
        problems.push(format!("upstream method {}", r.method));
    }
    let sent_query = prepared.shape.target.split_once('?').map(|(_, q)| q);
    let got_query = r.target.split_once('?').map(|(_, q)| q);
    if r.path() != case.path() || got_query != sent_query {
        problems.push(format!("upstream target {}", r.target));
    }
    if r.body != prepared.shape.body.bytes() {
        problems.push(format!(
            "upstream body of {} bytes differs from the {} sent",
            r.body.len(),
            prepared.shape.body.bytes().len()
        ));
    }
    if let Some(e) = &r.body_error {
        problems.push(format!("upstream body cut: {e}"));
    }
    problems
}

fn reply_problems(case: &Case, expect: Expect, reply: &Reply) -> Vec<String> {
    let status = match expect {
        Expect::Forwarded => 200,
        Expect::Missing | Expect::Invalid => 401,
        Expect::TooLarge => 413,
    };
    if reply.status != status {
        return vec![format!(
            "status {} (expected {status}): {:.200}",
            reply.status,
            reply.text()
        )];
    }
    let mut problems = Vec::new();
    let head = case.method == "HEAD";
    let error = match expect {
        Expect::Forwarded => None,
        Expect::Missing => Some(oauth_error(
            "invalid_request",
            "The access token is missing",
        )),
        Expect::Invalid => Some(oauth_error(
            "invalid_token",
            "The access token is invalid or has expired",
        )),
        Expect::TooLarge => Some(oauth_error(
            "invalid_request",
            "The request body is too large",
        )),
    };
    let body: Option<Value> = serde_json::from_slice(&reply.body).ok();
    match (head, error) {
        (true, _) => {
            if !reply.body.is_empty() {
                problems.push("a HEAD answer with a body".into());
            }
        }
        (false, Some(error)) => {
            if body.as_ref() != Some(&error) {
                problems.push(format!(
                    "answer body {:.200}, expected {error}",
                    reply.text()
                ));
            }
        }
        (false, None) => {
            if body.as_ref().map(|b| b["recorded"] == json!(true)) != Some(true) {
                problems.push(format!(
                    "answer not from the upstream: {:.200}",
                    reply.text()
                ));
            }
        }
    }
    if matches!(expect, Expect::Missing | Expect::Invalid) {
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        let names_error = challenge.contains("error=\"invalid_token\"");
        if !challenge.starts_with("Bearer realm=") || names_error != (expect == Expect::Invalid) {
            problems.push(format!("www-authenticate {challenge:?}"));
        }
    }
    problems
}

/// Revokes the stale cases' tokens after the filter allowed them, and waits until every
/// worker has dropped its cached answer (a token revoked last must be refused repeatedly).
fn make_stale(fixture: &Fixture, runtime: &tokio::runtime::Runtime, stale: &[(usize, String)]) {
    let wire = fixture.wire();
    let prefix = fixture.prefix();
    let sentinel = fixture.mint("sentinel");
    let mut warmed: Vec<(usize, String)> = stale.to_vec();
    warmed.push((usize::MAX, sentinel.clone()));
    runtime.block_on(async {
        for (id, token) in &warmed {
            warm(&wire, &prefix, *id, token, 200)
                .await
                .unwrap_or_else(|e| panic!("stale warm-up: {e}"));
        }
    });
    for (_, token) in &warmed {
        fixture.revoke(token);
    }
    let mut streak = 0;
    let refused = e2e::stack::wait_until(Duration::from_secs(10), || {
        let status = runtime
            .block_on(wire.send(Protocol::Http1, &warm_shape(&prefix, usize::MAX, &sentinel)))
            .map(|r| r.status)
            .unwrap_or(0);
        streak = if status == 401 { streak + 1 } else { 0 };
        streak >= 8
    });
    assert!(refused, "a revoked token was still allowed after 10 s");
    // One more poll period for the worker that may have answered none of the probes.
    std::thread::sleep(Duration::from_millis(3 * e2e::stack::POLL_INTERVAL_MS));
}

#[test]
fn no_request_shape_reaches_the_upstream_without_an_allow_decision() {
    let started = Instant::now();
    let cases = matrix();
    assert_coverage(&cases);
    let fixture = Fixture::start();
    let tokens = tokens_for(&fixture, &cases);
    let prefix = fixture.prefix();
    let prepared: Vec<Arc<Prepared>> = cases
        .iter()
        .zip(tokens)
        .map(|(case, token)| {
            let shape = shape_of(case, token.as_deref(), &prefix);
            Arc::new(Prepared {
                case: case.clone(),
                token,
                shape,
            })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the clients");
    let stale: Vec<(usize, String)> = prepared
        .iter()
        .filter(|p| p.case.cache == CacheState::Stale)
        .filter_map(|p| Some((p.case.id, p.token.clone()?)))
        .collect();
    make_stale(&fixture, &runtime, &stale);
    // Revoked tokens of the other cache states are revoked before the filter sees them.
    for p in &prepared {
        if let (TokenKind::Revoked, CacheState::Miss | CacheState::Negative, Some(t)) =
            (p.case.token, p.case.cache, &p.token)
        {
            fixture.revoke(t);
        }
    }
    let set_up = started.elapsed();

    let wire = fixture.wire();
    let replies: Vec<Result<Reply, String>> = runtime.block_on(async {
        let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let mut tasks = Vec::new();
        for p in &prepared {
            let (wire, prefix, p, limit) = (wire.clone(), prefix.clone(), p.clone(), limit.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                run_case(wire, prefix, p).await
            }));
        }
        let mut replies = Vec::new();
        for task in tasks {
            replies.push(
                task.await
                    .unwrap_or_else(|e| Err(format!("client task: {e}"))),
            );
        }
        replies
    });
    // Anything Envoy had in flight to the upstream has landed by now.
    std::thread::sleep(Duration::from_millis(300));

    let recorded = fixture.recorder.all();
    let mut by_path: BTreeMap<&str, Vec<Recorded>> = BTreeMap::new();
    for r in &recorded {
        by_path.entry(r.path()).or_default().push(r.clone());
    }
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut failing_cases = 0;
    for (p, reply) in prepared.iter().zip(&replies) {
        let path = p.case.path();
        let got = by_path
            .get(path.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let problems = check(p, reply, got, &fixture.kong.bob_id);
        if !problems.is_empty() {
            failing_cases += 1;
            failures.entry(p.case.label()).or_default().push(format!(
                "#{}: {}",
                p.case.id,
                problems.join("; ")
            ));
        }
    }
    // Requests at no case's path: only the warm-ups may be there.
    let strays: Vec<&Recorded> = recorded
        .iter()
        .filter(|r| {
            !r.path().starts_with("/case/")
                && !r.path().starts_with("/warm/")
                && r.path() != "/__probe"
        })
        .collect();
    println!(
        "request-shape matrix: {} cases ({} protocols x {} methods x {} bodies x {} tokens, sources and cache states rotated; non-form bodies), {} requests upstream; set-up {:.1?}, total {:.1?}",
        cases.len(),
        Protocol::ALL.len(),
        METHODS.len(),
        BODIES.len(),
        TOKENS.len(),
        recorded.len(),
        set_up,
        started.elapsed()
    );
    let mut report = String::new();
    for (label, problems) in &failures {
        report.push_str(&format!("{label}: {}\n", problems.join(" | ")));
    }
    assert!(
        failures.is_empty() && strays.is_empty(),
        "{failing_cases} of {} cases fail:\n{report}requests at unexpected paths: {:?}",
        cases.len(),
        strays.iter().map(|r| &r.target).collect::<Vec<_>>()
    );
}

// ---- The Envoy template's own hardening ----

/// A request over HTTP/1.1 with `headers`, on a fresh connection.
fn h1_get(wire: &Wire, target: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    let shape = Shape {
        method: "GET".into(),
        target: target.into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Body::None,
        trailers: Vec::new(),
    };
    client_runtime().block_on(wire.send(Protocol::Http1, &shape))
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the client")
}

#[test]
fn header_names_with_underscores_are_refused_before_any_upstream() {
    let fixture = Fixture::start();
    let token = fixture.mint("underscore-user");
    let wire = fixture.wire();
    let target = format!("{}/underscores", fixture.prefix());
    let bearer = format!("Bearer {token}");
    // CGI, WSGI and Rack turn `X_Consumer_Username` into the same variable as the gateway's
    // `X-Consumer-Username`: spelled with underscores, a forged identity would be the real one.
    for (name, value) in [
        ("X_Consumer_Username", "admin"),
        ("x_authenticated_userid", "admin"),
        ("X_Consumer_ID", "forged"),
        ("x_anonymous_consumer", "true"),
    ] {
        let headers = [("authorization", bearer.as_str()), (name, value)];
        let answer = h1_get(&wire, &target, &headers).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.status, 400, "{name}: {}", answer.text());
        let shape = Shape {
            method: "GET".into(),
            target: target.clone(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Body::None,
            trailers: Vec::new(),
        };
        for protocol in [Protocol::H2Tls, Protocol::H2c] {
            // HTTP/2: Envoy resets the stream (or answers 400); either way nothing goes on.
            let answer = client_runtime().block_on(wire.send(protocol, &shape));
            assert!(
                answer.as_ref().map_or(true, |a| a.status == 400),
                "{protocol:?} {name}: {answer:?}"
            );
        }
    }
    assert!(
        fixture.recorder.at("/underscores").is_empty(),
        "{:?}",
        fixture.recorder.at("/underscores")
    );
    // The same request without the underscore header goes through, with the real identity.
    let answer = h1_get(&wire, &target, &[("authorization", bearer.as_str())]).expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let upstream = fixture.recorder.at("/underscores");
    assert_eq!(upstream.len(), 1);
    assert_eq!(
        upstream[0].values("x-authenticated-userid"),
        ["underscore-user"]
    );
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use std::io::{Read, Write};
    let fixture = Fixture::start();
    let port = fixture.kong.gw(fixture.gw).http_port;
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // A slowloris client: the request line and one header, then nothing.
    tcp.write_all(b"GET /shapes/slow HTTP/1.1\r\nhost: localhost\r\n")
        .expect("write");
    tcp.set_read_timeout(Some(Duration::from_secs(25)))
        .expect("read timeout");
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    let waited = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408") && waited < Duration::from_secs(20),
        "after {waited:?}: {answer:?}"
    );
    assert!(fixture.recorder.at("/slow").is_empty());
}

/// `client_credentials` on the plain listener, as a client that claims `X-Forwarded-Proto: https`.
fn token_over_http_claiming_https(kong: &Kong, gw: usize) -> e2e::Answer {
    let client = &kong.stack.client;
    client.send(
        client
            .raw()
            .post(kong.gw(gw).http("/oauth2/token"))
            .header("x-forwarded-proto", "https")
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "clientid123"),
                ("client_secret", "secret123"),
                ("scope", "email"),
            ]),
    )
}

#[test]
fn the_scheme_comes_from_envoy_unless_a_proxy_in_front_is_trusted() {
    let mut kong = Kong::start();
    let plugin =
        json!({"enable_client_credentials": true, "accept_http_if_already_terminated": true});
    // The template's default: nothing in front of Envoy is trusted, so a client's own
    // X-Forwarded-Proto is replaced by the scheme of its connection (Kong trusts the header
    // only from `trusted_ips`).
    let edge = kong.protect("edge", plugin.clone());
    let refused = token_over_http_claiming_https(&kong, edge);
    assert_eq!(
        (refused.status, refused.json()),
        (400, oauth_error("access_denied", "You must use HTTPS"))
    );
    // HTTPS itself is unaffected.
    let client = &kong.stack.client;
    let tls = client.send(
        client
            .raw()
            .post(kong.gw(edge).https("/oauth2/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "clientid123"),
                ("client_secret", "secret123"),
                ("scope", "email"),
            ]),
    );
    assert_eq!(tls.status, 200, "{}", tls.text);
    // An operator behind a TLS-terminating load balancer trusts it (`xff_num_trusted_hops: 1`):
    // then the header the balancer sets is believed.
    let behind = kong.protect_with(
        "behind-lb",
        plugin,
        GatewayOptions {
            trusted_hops: 1,
            ..GatewayOptions::default()
        },
    );
    let accepted = token_over_http_claiming_https(&kong, behind);
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.json().text("token_type"), "bearer");
}

/// The OAuth endpoints are answered by the token-service whatever the request's shape: a body
/// in one piece or several, none at all, trailers after it or instead of it (h2c). The request,
/// which carries `client_secret`, never reaches the upstream.
#[test]
fn oauth_endpoint_requests_of_every_shape_are_answered_by_the_gateway() {
    let fixture = Fixture::start();
    let wire = fixture.wire();
    let form =
        "grant_type=client_credentials&client_id=clientid123&client_secret=secret123&scope=email";
    let over = format!("pad={}&{form}", "p".repeat(MAX_BODY_BYTES));
    let bodies = [
        ("none", Body::None),
        ("small", Body::Fixed(form.as_bytes().to_vec())),
        (
            "chunked",
            Body::Chunked(form.as_bytes().chunks(20).map(<[u8]>::to_vec).collect()),
        ),
        ("over", Body::Fixed(over.into_bytes())),
    ];
    let runtime = client_runtime();
    let mut problems = Vec::new();
    for protocol in Protocol::ALL {
        for (what, body) in &bodies {
            let mut headers: Vec<(String, String)> = FORGED
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            headers.push(("content-type".into(), FORM.into()));
            let trailers = match protocol {
                Protocol::H2c => vec![("x-trailer".to_string(), "after the body".to_string())],
                _ => Vec::new(),
            };
            let shape = Shape {
                method: "POST".into(),
                target: format!("{}/oauth2/token", fixture.prefix()),
                headers,
                body: body.clone(),
                trailers,
            };
            let reply = match runtime.block_on(wire.send(protocol, &shape)) {
                Ok(reply) => reply,
                Err(e) => {
                    problems.push(format!("{protocol:?} {what}: no answer: {e}"));
                    continue;
                }
            };
            let json: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            // Plain HTTP is refused by the token-service (no accept_http_if_already_terminated).
            let expected = match (*what, protocol) {
                ("over", _) => (413, "error"),
                ("small" | "chunked", Protocol::H2Tls) => (200, "access_token"),
                _ => (400, "error"),
            };
            if (reply.status, json.get(expected.1).is_some()) != (expected.0, true) {
                problems.push(format!(
                    "{protocol:?} {what}: {} {:.200} (expected {} with `{}`)",
                    reply.status,
                    reply.text(),
                    expected.0,
                    expected.1
                ));
            }
        }
    }
    let leaked: Vec<String> = fixture
        .recorder
        .all()
        .iter()
        .filter(|r| r.path().contains("oauth2"))
        .map(|r| {
            format!(
                "{} {} body {:?}",
                r.method,
                r.target,
                String::from_utf8_lossy(&r.body)
            )
        })
        .collect();
    assert!(
        problems.is_empty() && leaked.is_empty(),
        "{problems:#?}\nreached the upstream: {leaked:#?}"
    );
}

/// Requests Envoy's own codec refuses (smuggling shapes, malformed framing and headers) get
/// 400 from Envoy, carry a valid token and forged identity, and reach neither the filter's
/// decision nor the upstream — including the request smuggled behind the first.
#[test]
fn malformed_http1_is_refused_by_envoy_before_any_upstream() {
    let fixture = Fixture::start();
    let token = fixture.mint("malformed-user");
    let wire = fixture.wire();
    let p = fixture.prefix();
    let auth = format!("authorization: Bearer {token}\r\nx-consumer-id: forged\r\n");
    let smuggled = format!("GET {p}/smuggled HTTP/1.1\r\nhost: a\r\n{auth}\r\n");
    let cases = [
        (
            "content-length and transfer-encoding",
            format!("POST {p}/refused HTTP/1.1\r\nhost: a\r\n{auth}content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "two different content-lengths",
            format!("POST {p}/refused HTTP/1.1\r\nhost: a\r\n{auth}content-length: 3\r\ncontent-length: 60\r\n\r\nabc{smuggled}"),
        ),
        (
            "a chunk size that is not hex",
            format!("POST {p}/refused HTTP/1.1\r\nhost: a\r\n{auth}transfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "a space before the colon",
            format!("GET {p}/refused HTTP/1.1\r\nhost: a\r\n{auth}x-consumer-username : admin\r\n\r\n"),
        ),
        (
            "a NUL in a header value",
            format!("GET {p}/refused HTTP/1.1\r\nhost: a\r\n{auth}x-consumer-username: ad\0min\r\n\r\n"),
        ),
        (
            "an underscore header",
            format!("GET {p}/refused HTTP/1.1\r\nhost: a\r\n{auth}x_consumer_username: admin\r\n\r\n"),
        ),
    ];
    let runtime = client_runtime();
    for (what, request) in cases {
        let reply = runtime
            .block_on(wire.raw_http1(request.as_bytes()))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
    }
    let reached: Vec<String> = fixture
        .recorder
        .all()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert!(reached.is_empty(), "reached the upstream: {reached:?}");
}

// ---- Tokens in JSON and multipart bodies (Kong R11, C19) ----

/// A service with `hide_credentials`, on the second route of the matrix's Envoy.
const HIDDEN: &str = "hidden";

/// A multipart/form-data body (boundary `b0undary`): a binary file part, then `fields`.
fn multipart_body(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = b"--b0undary\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\0\xff\r\n".to_vec();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--b0undary\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(b"--b0undary--\r\n");
    body
}

/// One body-token request: where it goes, what it carries, what must come of it.
struct BodyCase {
    what: &'static str,
    service: &'static str,
    method: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    /// 200 with this case's identity, else the 401's `error`.
    expect: Result<(), &'static str>,
    /// What the upstream must receive as the body (forwarded cases).
    upstream_body: Vec<u8>,
}

/// Through a real Envoy (either build): a valid token in a JSON or multipart body of a POST,
/// PUT or PATCH is checked and the request forwarded with its identity, the body as sent; a
/// forged one is refused; `hide_credentials` takes the member or part out of what reaches the
/// upstream (the recorder is the witness), every other byte kept; a GET's body and a broken
/// body are not read.
#[test]
fn json_and_multipart_body_tokens_are_read_and_hidden() {
    const JSON_TYPE: &str = "application/json";
    const MULTIPART: &str = "multipart/form-data; boundary=b0undary";
    let recorder = Recorder::start();
    let mut kong = Kong::start();
    let plugin = json!({"enable_client_credentials": true});
    kong.configure(
        HIDDEN,
        json!({"enable_client_credentials": true, "hide_credentials": true}),
    );
    let options = GatewayOptions {
        upstream_port: Some(recorder.port),
        second_route: Some((HIDDEN.to_string(), format!("/{HIDDEN}"))),
        ..GatewayOptions::default()
    };
    let gw = kong.protect_with(SERVICE, plugin, options);
    let credential_id = kong.credential_id("clientid123");
    let mint = |service: &str, userid: &str| -> String {
        let service_id = kong
            .stack
            .admin_get(&format!("/services/{service}"))
            .json()
            .text("id");
        let answer = kong.post(
            &kong.stack.admin("/oauth2_tokens"),
            json!({"credential": {"id": credential_id}, "service": {"id": service_id},
                   "expires_in": 3600, "authenticated_userid": userid, "scope": "email"}),
        );
        assert_eq!(answer.status, 201, "minting a token: {}", answer.text);
        answer.json().text("access_token")
    };
    let open = mint(SERVICE, "body-user");
    let hidden = mint(HIDDEN, "body-user");
    let forged = "forged-token-0123456789";
    let json_with = |token: &str| {
        format!(
            "{{\"a\": 1.50e3, \"access_token\": \"{token}\",\n \"n\": {{\"access_token\": 7}}}}"
        )
    };
    let case =
        |what, service, method, content_type, body: Vec<u8>, expect, upstream_body| BodyCase {
            what,
            service,
            method,
            content_type,
            body,
            expect,
            upstream_body,
        };
    let cases = vec![
        case("JSON", SERVICE, "POST", JSON_TYPE, json_with(&open).into_bytes(), Ok(()), json_with(&open).into_bytes()),
        case("JSON, charset", SERVICE, "PATCH", "application/json; charset=utf-8", json_with(&open).into_bytes(), Ok(()), json_with(&open).into_bytes()),
        case("multipart", SERVICE, "PUT", MULTIPART, multipart_body(&[("access_token", &open), ("note", "hi")]), Ok(()), multipart_body(&[("access_token", &open), ("note", "hi")])),
        case("JSON, forged", SERVICE, "POST", JSON_TYPE, json_with(forged).into_bytes(), Err("invalid_token"), Vec::new()),
        case("multipart, forged", SERVICE, "POST", MULTIPART, multipart_body(&[("access_token", forged)]), Err("invalid_token"), Vec::new()),
        case("JSON, hidden", HIDDEN, "POST", JSON_TYPE, json_with(&hidden).into_bytes(), Ok(()), b"{\"a\": 1.50e3, \"n\": {\"access_token\": 7}}".to_vec()),
        case("multipart, hidden", HIDDEN, "PATCH", MULTIPART, multipart_body(&[("access_token", &hidden), ("note", "hi")]), Ok(()), multipart_body(&[("note", "hi")])),
        case("JSON in a GET", SERVICE, "GET", JSON_TYPE, json_with(&open).into_bytes(), Err("invalid_request"), Vec::new()),
        case("truncated JSON", SERVICE, "POST", JSON_TYPE, format!("{{\"access_token\": \"{open}\"").into_bytes(), Err("invalid_request"), Vec::new()),
        case("a token nested, not top-level", SERVICE, "POST", JSON_TYPE, format!("{{\"data\": {{\"access_token\": \"{open}\"}}}}").into_bytes(), Err("invalid_request"), Vec::new()),
        case("a JSON number", SERVICE, "POST", JSON_TYPE, b"{\"access_token\": 12345}".to_vec(), Err("invalid_request"), Vec::new()),
        case("multipart without its close", SERVICE, "POST", MULTIPART, format!("--b0undary\r\nContent-Disposition: form-data; name=\"access_token\"\r\n\r\n{open}\r\n").into_bytes(), Err("invalid_request"), Vec::new()),
    ];
    let wire = kong.gw(gw).wire();
    let runtime = client_runtime();
    let mut problems = Vec::new();
    let mut id = 0;
    for c in &cases {
        for protocol in Protocol::ALL {
            id += 1;
            let path = format!("/body/{id}");
            let body = match protocol {
                // HTTP/2: the body in several DATA frames, no length.
                Protocol::H2c => Body::Chunked(c.body.chunks(16).map(<[u8]>::to_vec).collect()),
                _ => Body::Fixed(c.body.clone()),
            };
            let shape = Shape {
                method: c.method.into(),
                target: format!("/{}{path}", c.service),
                headers: vec![
                    ("content-type".into(), c.content_type.into()),
                    ("x-consumer-username".into(), "admin".into()),
                ],
                body,
                trailers: Vec::new(),
            };
            let label = format!("{} ({protocol:?} {})", c.what, c.method);
            let reply = match runtime.block_on(wire.send(protocol, &shape)) {
                Ok(reply) => reply,
                Err(e) => {
                    problems.push(format!("{label}: no answer: {e}"));
                    continue;
                }
            };
            let upstream = recorder.at(&path);
            match c.expect {
                Ok(()) => {
                    if reply.status != 200 || upstream.len() != 1 {
                        problems.push(format!(
                            "{label}: {} {:.200}, {} upstream",
                            reply.status,
                            reply.text(),
                            upstream.len()
                        ));
                        continue;
                    }
                    let r = &upstream[0];
                    let identity = (
                        r.values("x-consumer-username"),
                        r.values("x-authenticated-userid"),
                    );
                    if identity != (vec!["bob".to_string()], vec!["body-user".to_string()]) {
                        problems.push(format!("{label}: upstream identity {identity:?}"));
                    }
                    if r.body != c.upstream_body || r.body_error.is_some() {
                        problems.push(format!(
                            "{label}: upstream body {:?} ({:?}), expected {:?}",
                            String::from_utf8_lossy(&r.body),
                            r.body_error,
                            String::from_utf8_lossy(&c.upstream_body)
                        ));
                    }
                    let length = r.values("content-length");
                    if !(length.is_empty() || length == [r.body.len().to_string()]) {
                        problems.push(format!(
                            "{label}: content-length {length:?} for {} bytes",
                            r.body.len()
                        ));
                    }
                    if c.service == HIDDEN && String::from_utf8_lossy(&r.body).contains(&hidden) {
                        problems.push(format!("{label}: the token reached the upstream"));
                    }
                }
                Err(error) => {
                    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                    if reply.status != 401 || body["error"] != error || !upstream.is_empty() {
                        problems.push(format!(
                            "{label}: {} {:.200} (expected 401 {error}), {} upstream",
                            reply.status,
                            reply.text(),
                            upstream.len()
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
