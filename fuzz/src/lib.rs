//! Fuzz targets: every function that parses untrusted bytes, called with arbitrary input.
//! A target passes when it returns (any result) without panicking, overflowing its stack or
//! breaking one of the properties it asserts.
//!
//! `cargo fuzz` (libFuzzer, coverage-guided) drives them through the thin wrappers in
//! `fuzz_targets/`; `tests/replay.rs` runs every file of `corpus/<target>/` and
//! `regressions/<target>/` through them on stable, so each crash found becomes a test.
//! Adding a target: its function here (or in a module of this crate), one entry in [`TARGETS`],
//! and `fuzz_targets/<name>.rs` with its `[[bin]]` entry in `Cargo.toml`; the replay test names
//! whatever of these is missing.

// Reading libFuzzer's thread-local stack counter needs `#[thread_local]` on an extern static:
// only the `cargo fuzz` build (RUSTC_BOOTSTRAP=1) compiles that code.
#![cfg_attr(fuzzing, feature(thread_local))]

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use oauth2_filter::body::{self, BodyFormat};
use oauth2_filter::{cache, config, decision, headers, request, routes, state, token};
use token_service::grants::{client_auth, pkce, redirect, scope};
use token_service::model::OAuth2Config;
use token_service::params::{self, Nesting};

pub type Target = fn(&[u8]);

pub mod flow;
pub mod jwt;

pub const TARGETS: &[(&str, Target)] = &[
    ("filter_flow", flow::filter_flow),
    ("filter_token_sources", filter_token_sources),
    ("filter_cache_entry", filter_cache_entry),
    ("filter_state_and_check", filter_state_and_check),
    ("filter_config", filter_config),
    ("filter_routes", filter_routes),
    ("filter_header_map", filter_header_map),
    ("filter_jwt", jwt::filter_jwt),
    ("service_form_params", service_form_params),
    ("service_json_params", service_json_params),
    ("service_multipart_params", service_multipart_params),
    ("service_admin_body", service_admin_body),
    ("service_grant_rules", service_grant_rules),
    ("service_declarative_file", service_declarative_file),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The stack a token-service handler runs on: tokio's worker threads get 2 MiB. Recursion
/// that input controls overflows there long before it would on the fuzzer's 8 MiB main thread,
/// so the service targets hold to this budget (the form-key nesting crash shows up this way,
/// well within the 64 KiB body limit).
pub const SERVICE_STACK_BYTES: usize = 2 * 1024 * 1024;

/// Runs `f` within the token-service's stack budget.
///
/// Under libFuzzer a real overflow is a bare SIGSEGV (its `main` is C, so Rust never installs
/// its overflow handler, and libFuzzer's own handler cannot run on the exhausted stack): no
/// crash file is written. So there `f` runs on the fuzzer's thread and the depth it reached is
/// read from the coverage instrumentation's lowest stack pointer; over budget is a panic, which
/// libFuzzer saves. The same counter guides libFuzzer towards deeper stacks, which a thread
/// per input would hide from it.
#[cfg(fuzzing)]
pub fn on_service_stack<R>(f: impl FnOnce() -> R) -> R {
    let (result, used) = stack_depth::measure(f);
    assert!(
        used <= SERVICE_STACK_BYTES,
        "the input needs {} KiB of stack; a token-service worker has {} KiB",
        used / 1024,
        SERVICE_STACK_BYTES / 1024
    );
    result
}

/// Runs `f` on a thread with the token-service's stack, named like the calling thread so that
/// Rust's overflow message names the input (the replay test names its threads after them).
#[cfg(not(fuzzing))]
pub fn on_service_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let name = std::thread::current().name().unwrap_or("fuzz").to_string();
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name(name)
            .stack_size(SERVICE_STACK_BYTES)
            .spawn_scoped(scope, f);
        match worker {
            Ok(handle) => match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // Out of threads is the machine's problem, not a finding.
            Err(e) => panic!("cannot start a thread for the target: {e}"),
        }
    })
}

#[cfg(fuzzing)]
mod stack_depth {
    extern "C" {
        /// Kept by `-sanitizer-coverage-stack-depth` (cargo fuzz sets it on Linux): every
        /// instrumented function lowers it to its stack pointer. Defined by libFuzzer.
        #[thread_local]
        static mut __sancov_lowest_stack: usize;
    }

    /// `f`'s result and the bytes of stack it used below this frame.
    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let marker = 0u8;
        let top = std::ptr::addr_of!(marker) as usize;
        // SAFETY: a thread-local of this thread, read and written only by this thread (the
        // instrumentation's updates are plain stores on the same thread).
        unsafe { __sancov_lowest_stack = top };
        let result = std::hint::black_box(f)();
        // SAFETY: as above.
        let lowest = unsafe { __sancov_lowest_stack };
        (result, top.saturating_sub(lowest))
    }
}
/// Two inputs in one: up to the first `\n`, and the rest (both whole when there is none).
fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    let mut parts = data.splitn(2, |b| *b == b'\n');
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The token in a header value, a query string and a form body, and removing it again
/// (`hide_credentials`): what is stripped must be gone, and nothing else.
pub fn filter_token_sources(data: &[u8]) {
    let s = text(data);
    if let Some(found) = token::from_header(&s) {
        let _ = token::plausible(&found.token);
    }
    let _ = token::from_query(&s);
    let _ = token::from_form_body(data);
    let _ = token::has_access_token(data);
    let stripped = token::without_access_token(data);
    assert!(stripped.len() <= data.len(), "stripping never grows a body");
    assert!(
        !token::has_access_token(&stripped),
        "a stripped body carries no access_token pair: {stripped:?}"
    );
    let path = token::path_without_access_token(&s);
    assert!(
        token::from_query(&path).is_none(),
        "a stripped path carries no token: {path:?}"
    );
    let encoded = format!("a=1&access_token={}", token::form_encode(&s));
    if !s.is_empty() {
        assert_eq!(
            token::from_form_body(encoded.as_bytes()).map(|f| f.token),
            Some(s.clone()),
            "a form-encoded token reads back"
        );
    }
    let _ = BodyFormat::of(&s);
    for format in [
        BodyFormat::Form,
        BodyFormat::Json,
        BodyFormat::Multipart {
            boundary: "XX".into(),
        },
    ] {
        body_token_sources(&format, data);
    }
}

/// The same bytes as a form, JSON and multipart body (boundary `XX`): whatever `hide_credentials`
/// leaves has no `access_token`, is no longer, and keeps every other parameter as it was.
fn body_token_sources(format: &BodyFormat, data: &[u8]) {
    let read = token::from_body(format, data);
    let Some(stripped) = token::body_without_access_token(format, data) else {
        if !matches!(format, BodyFormat::Form) {
            assert_eq!(read, token::BodyToken::Absent, "a token left in the body");
        }
        return;
    };
    assert!(stripped.len() < data.len(), "stripping shrinks the body");
    assert_eq!(
        token::from_body(format, &stripped),
        token::BodyToken::Absent,
        "a stripped body carries no access_token: {stripped:?}"
    );
    let is_token = |name: &str| name == "access_token";
    match format {
        BodyFormat::Json => {
            let others = |body: &[u8]| -> Option<Vec<(String, String)>> {
                let members = body::json_members(body)?;
                Some(
                    members
                        .iter()
                        .filter(|m| !is_token(&m.key))
                        .map(|m| (m.key.clone(), m.value.get().to_string()))
                        .collect(),
                )
            };
            let after = others(&stripped);
            assert!(after.is_some(), "stripped JSON is still JSON");
            assert_eq!(after, others(data), "the other members are kept");
        }
        BodyFormat::Multipart { boundary } => {
            let others = |body: &[u8]| -> Option<Vec<(Option<String>, Vec<u8>)>> {
                let parts = body::multipart_parts(body, boundary)?;
                Some(
                    parts
                        .iter()
                        .filter(|p| !p.name.as_deref().is_some_and(is_token))
                        .map(|p| {
                            let content = body.get(p.content.clone()).unwrap_or_default();
                            (p.name.clone(), content.to_vec())
                        })
                        .collect(),
                )
            };
            let after = others(&stripped);
            assert!(after.is_some(), "stripped multipart is still multipart");
            assert_eq!(after, others(data), "the other parts are kept");
        }
        BodyFormat::Form => {}
    }
}

/// Shared-data cache entries (another VM, another filter version may have written them).
pub fn filter_cache_entry(data: &[u8]) {
    if let Some(entry) = cache::Entry::decode(data) {
        let encoded = entry.encode();
        let again = cache::Entry::decode(&encoded);
        assert_eq!(again.as_ref(), Some(&entry), "entries round-trip");
        assert_eq!(
            entry.encode_within(encoded.len()),
            Some(encoded.clone()),
            "an entry fits its own size"
        );
        let _ = entry.answers(&entry.digest, 0, 0);
    }
    let _ = cache::digest_from_hex(&text(data));
    let _ = cache::slot_key("p", &cache::digest(&text(data)), (data.len() as u32) % 7);
}

/// The token-service's state and check answers (and a third-party introspection answer),
/// and every reply or header plan the filter derives from them: whatever the answers hold,
/// no header value the filter writes may carry a control character (header injection).
pub fn filter_state_and_check(data: &[u8]) {
    let (state_bytes, check_bytes) = split_line(data);
    let settings = state::StatePoll::parse(state_bytes)
        .or_else(|| state::StatePoll::parse(data))
        .and_then(|poll| match poll.protection() {
            state::Protection::On(settings) => Some(settings),
            _ => None,
        });
    let verdicts = [
        state::Verdict::parse(check_bytes),
        state::Verdict::parse(data),
        state::Verdict::parse_introspection(data),
    ];
    for verdict in verdicts.iter().flatten() {
        let _ = cache::expiry_for(verdict, u64::MAX - 1, u64::MAX, u64::MAX);
        if let state::Verdict::Active(identity) = verdict {
            assert_plan_is_safe(&decision::authenticated(identity));
        }
    }
    let Some(settings) = settings else { return };
    let outcomes = verdicts.iter().flatten().map(Ok).chain([
        Err(decision::Failure::Missing),
        Err(decision::Failure::Invalid),
        Err(decision::Failure::GlobalToken),
    ]);
    for outcome in outcomes {
        match decision::decide(&settings, outcome) {
            decision::Decision::Forward(plan) => assert_plan_is_safe(&plan),
            decision::Decision::Reply(reply) => {
                for (name, value) in &reply.headers {
                    assert!(
                        headers::is_safe_value(value),
                        "reply header {name}: {value:?} carries a control character"
                    );
                }
            }
        }
    }
}

fn assert_plan_is_safe(plan: &decision::HeaderPlan) {
    for (name, value) in plan {
        if let Some(value) = value {
            assert!(
                headers::is_safe_value(value),
                "identity header {name}: {value:?} carries a control character"
            );
        }
    }
}

pub fn filter_config(data: &[u8]) {
    let _ = config::FilterConfig::parse(data);
}

/// Header maps straight from the host (any client bytes in them), then everything the
/// filter derives from a request's headers.
pub fn filter_header_map(data: &[u8]) {
    let pairs = headers::decode_pairs(data);
    assert!(
        pairs.len() <= data.len() / 10,
        "each header takes at least 10 bytes of the map"
    );
    let decoded = headers::decode_request_headers(data);
    assert!(
        decoded
            .iter()
            .eq(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
        "one buffer reads back the same headers as one string each"
    );
    let view = request::RequestView::from_headers(&decoded, "authorization");
    let _ = view.body_format();
    let _ = view.relayed_headers("x-token");
    if let Some(auth) = &view.auth {
        let _ = token::from_header(auth);
    }
    let _ = headers::is_safe_value(&text(data));
}

pub fn filter_routes(data: &[u8]) {
    let path = text(data);
    if let Some(call) = routes::endpoint(&path) {
        assert!(
            path.starts_with(&call.prefix),
            "the route prefix is the start of the path"
        );
    }
}

/// Form bodies and query strings as the OAuth endpoints (flat keys) and the admin API
/// (dotted keys nest) read them.
pub fn service_form_params(data: &[u8]) {
    on_service_stack(|| {
        let flat = params::parse_form(data, Nesting::Flat).unwrap_or_default();
        let dotted = params::parse_form(data, Nesting::Dotted).unwrap_or_default();
        assert_shallow(&flat);
        assert_shallow(&dotted);
        let _ = params::merge(flat, dotted);
    });
}

/// A declarative file (`POST /config`, `token-service config`), read as YAML and as JSON,
/// every `{vault://env/NAME}` resolving to a fixed value: an answer, never a panic or a stack
/// overflow on a handler's stack.
pub fn service_declarative_file(data: &[u8]) {
    use token_service::declarative::{parse, Format};
    on_service_stack(|| {
        let env = |_: &str| Some("fuzzed-secret".to_string());
        let _ = parse(data, Format::Yaml, &env);
        let _ = parse(data, Format::Json, &env);
    });
}

pub fn service_json_params(data: &[u8]) {
    on_service_stack(|| {
        if let Ok(parsed) = params::parse_json(data) {
            assert_shallow(&parsed);
        }
    });
}

/// Every body the token-service accepts is shallow (handlers drop, clone and print parameters
/// recursively): the parsers refuse anything nested deeper than `MAX_JSON_DEPTH`.
fn assert_shallow(parsed: &params::Params) {
    let mut deepest = 1;
    let mut pending: Vec<(&serde_json::Value, usize)> = parsed.values().map(|v| (v, 2)).collect();
    while let Some((value, level)) = pending.pop() {
        match value {
            serde_json::Value::Object(inner) => {
                pending.extend(inner.values().map(|v| (v, level + 1)));
            }
            serde_json::Value::Array(items) => pending.extend(items.iter().map(|v| (v, level + 1))),
            _ => continue,
        }
        deepest = deepest.max(level);
    }
    assert!(
        deepest <= params::MAX_JSON_DEPTH,
        "accepted parameters nest {deepest} deep (limit {})",
        params::MAX_JSON_DEPTH
    );
}

/// Multipart bodies with a fixed boundary (`XX`), both nestings.
pub fn service_multipart_params(data: &[u8]) {
    on_service_stack(|| {
        for nesting in [Nesting::Flat, Nesting::Dotted] {
            let parsed = block_on(params::parse_body(
                Some("multipart/form-data; boundary=XX"),
                data.to_vec().into(),
                nesting,
            ));
            if let Ok(parsed) = parsed {
                assert_shallow(&parsed);
            }
        }
    });
}

/// An admin request body the way the admin API reads it, content type included: the first
/// line is the `Content-Type` header (any bytes a client may send), the rest is the body.
pub fn service_admin_body(data: &[u8]) {
    let (content_type, body) = split_line(data);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert("content-type", value);
    }
    let body = Body::from(body.to_vec());
    on_service_stack(|| {
        if let Ok(parsed) = block_on(token_service::admin::read_body(&headers, body)) {
            assert_shallow(&parsed.params);
        }
    });
}

/// The grant rules over parameters from a form or JSON body: scope, PKCE, client
/// authentication (the first line is the `Authorization` header) and redirect URIs.
pub fn service_grant_rules(data: &[u8]) {
    let (auth_header, body) = split_line(data);
    on_service_stack(|| grant_rules(&text(auth_header), body));
}

fn grant_rules(auth_header: &str, body: &[u8]) {
    let mut map = params::parse_form(body, Nesting::Flat).unwrap_or_default();
    if let Ok(json) = params::parse_json(body) {
        map.extend(json);
    }
    let config = OAuth2Config {
        scopes: Some(vec!["email".into(), "profile".into()]),
        mandatory_scope: body.first().is_some_and(|b| b % 2 == 0),
        ..OAuth2Config::default()
    };
    if let Ok(Some(granted)) = scope::validate(&config, map.get("scope")) {
        assert!(
            scope::still_offered(&config, Some(&granted)),
            "a granted scope is offered"
        );
    }
    let _ = scope::still_offered(&config, map.get("scope").and_then(|v| v.as_str()));
    let _ = pkce::challenge_from(&map);
    let _ = pkce::verify(
        map.get("code_verifier"),
        map.get("code_challenge").and_then(|v| v.as_str()),
    );
    let _ = client_auth::presented(&map, Some(auth_header));
    let uri = map
        .get("redirect_uri")
        .and_then(|v| v.as_str())
        .unwrap_or(auth_header)
        .to_string();
    let registered = vec!["http://a.test/cb?x=1".to_string(), uri.clone()];
    let _ = redirect::resolve(&registered, map.get("redirect_uri"));
    let pairs: Vec<(String, serde_json::Value)> = map.into_iter().collect();
    for placement in [redirect::Placement::Query, redirect::Placement::Fragment] {
        let built = redirect::build(&uri, &pairs, placement);
        assert!(
            !built.contains(['\r', '\n']) || uri.contains(['\r', '\n']),
            "parameters never add a line break to a redirect: {built:?}"
        );
    }
    let _ = redirect::registration_error(&uri);
}

/// Runs a future that never waits on I/O (the body is already in memory) to completion.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => panic!("cannot build a runtime for the target: {e}"),
    }
}
