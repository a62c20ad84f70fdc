//! The flow under the mock host: each callback order Envoy can produce, then a property test
//! over random request shapes, callback sequences and check outcomes.

use super::mock::MockHost;
use super::*;
use crate::config::FilterConfig;
use crate::state::{ConsumerInfo, ServiceInfo};

const VALID: &str = "valid-token-0123456789";
const UNKNOWN: &str = "unknown-token-0123456789";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const FORGED: [(&str, &str); 4] = [
    ("x-consumer-id", "forged"),
    ("x-consumer-username", "admin"),
    ("x-authenticated-userid", "admin"),
    ("x-anonymous-consumer", "true"),
];

fn settings() -> Settings {
    Settings {
        id: "plugin".into(),
        updated_at: 1,
        auth_header_name: "authorization".into(),
        hide_credentials: false,
        realm: Some("service".into()),
        global_credentials: false,
        anonymous: None,
        anonymous_error: None,
        access_token_format: Default::default(),
        identity_jwt_header: None,
        identity_headers: true,
    }
}

fn poll(settings: Option<Settings>) -> StatePoll {
    StatePoll {
        seq: 1,
        reset: true,
        revoked: vec![],
        service: Some(ServiceInfo {
            id: "svc".into(),
            name: Some("s".into()),
        }),
        plugin: settings,
        issuer: None,
        keys: vec![],
        distrusted: vec![],
        distrust_all: false,
    }
}

fn unpolled_worker() -> Rc<RefCell<Worker>> {
    configured_worker(br#"{"service":"s","token_service":{"cluster":"ts"},"max_body_bytes":1024}"#)
}

fn configured_worker(json: &[u8]) -> Rc<RefCell<Worker>> {
    let Ok(config) = FilterConfig::parse(json) else {
        unreachable!("a valid configuration")
    };
    Rc::new(RefCell::new(Worker::new(config)))
}

/// A worker that has polled: the service is protected with `settings`.
fn worker_with(settings: Settings, shared: &MockHost) -> Rc<RefCell<Worker>> {
    polled(unpolled_worker(), settings, shared)
}

fn polled(
    worker: Rc<RefCell<Worker>>,
    settings: Settings,
    shared: &MockHost,
) -> Rc<RefCell<Worker>> {
    worker
        .borrow_mut()
        .apply_poll(shared, "s", poll(Some(settings)));
    worker
}

fn json_answer(status: &str, body: &str) -> CallAnswer {
    CallAnswer {
        headers: vec![
            (":status".into(), status.into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: body.as_bytes().to_vec(),
    }
}

fn active() -> CallAnswer {
    json_answer(
        "200",
        r#"{"active":true,"consumer":{"id":"c-real","username":"bob","custom_id":null},
            "credential":{"id":"k","client_id":"app"},"authenticated_userid":"clark","scope":"email","exp":null}"#,
    )
}

fn inactive() -> CallAnswer {
    json_answer("200", r#"{"active":false,"reason":"invalid"}"#)
}

/// Envoy's own answer to a call that timed out or could not connect.
fn envoy_timeout() -> CallAnswer {
    CallAnswer {
        headers: vec![(":status".into(), "504".into())],
        body: b"upstream request timeout".to_vec(),
    }
}

fn request(method: &str, path: &str, extra: &[(&'static str, &'static str)]) -> MockHost {
    let mut headers = vec![(":method", method), (":path", path), (":authority", "api")];
    headers.extend_from_slice(&FORGED);
    headers.extend_from_slice(extra);
    MockHost::new(&headers)
}

fn bearer(token: &'static str) -> (&'static str, &'static str) {
    let value: &'static str = Box::leak(format!("Bearer {token}").into_boxed_str());
    ("authorization", value)
}

fn body(host: &MockHost, flow: &mut Flow, chunk: &[u8], end: bool) -> Action {
    host.body.borrow_mut().extend_from_slice(chunk);
    let size = host.body.borrow().len();
    flow.on_request_body(host, size, end)
}

/// A header of the last call dispatched (`None`: no call, or no such header).
fn last_call_header(host: &MockHost, name: &str) -> Option<String> {
    let (_, call) = host.last_call()?;
    call.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn answer_last_call(host: &MockHost, flow: &mut Flow, answer: &CallAnswer) {
    let Some((id, _)) = host.last_call() else {
        unreachable!("a call was dispatched")
    };
    flow.on_call_answer(host, id, answer);
}

fn assert_real_identity(host: &MockHost) {
    assert_eq!(host.header_values("x-consumer-id"), vec!["c-real"]);
    assert_eq!(host.header_values("x-consumer-username"), vec!["bob"]);
    assert_eq!(host.header_values("x-authenticated-userid"), vec!["clark"]);
    assert!(host.header_values("x-anonymous-consumer").is_empty());
}

#[test]
fn a_body_does_not_resume_a_request_whose_check_is_pending() {
    let host = request("POST", "/r/echo", &[bearer(VALID)]);
    let mut flow = Flow::new(worker_with(settings(), &host));
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(body(&host, &mut flow, b"a=1", false), Action::Pause);
    assert_eq!(body(&host, &mut flow, b"&b=2", true), Action::Pause);
    assert_eq!(host.resumes.get(), 0);
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
    assert_real_identity(&host);
}

#[test]
fn an_invalid_token_with_a_body_is_refused_and_stays_paused() {
    let host = request("PUT", "/r/echo", &[bearer(UNKNOWN)]);
    let mut flow = Flow::new(worker_with(settings(), &host));
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(body(&host, &mut flow, b"x", false), Action::Pause);
    answer_last_call(&host, &mut flow, &inactive());
    assert_eq!(host.last_reply().map(|r| r.status), Some(401));
    assert_eq!(body(&host, &mut flow, b"y", true), Action::Pause);
    assert_eq!(flow.on_request_trailers(&host), Action::Pause);
    assert_eq!(host.resumes.get(), 0);
}

#[test]
fn trailers_do_not_resume_a_request_whose_check_is_pending() {
    let host = request("POST", "/r/echo", &[bearer(VALID)]);
    let mut flow = Flow::new(worker_with(settings(), &host));
    flow.on_request_headers(&host, false);
    assert_eq!(flow.on_request_trailers(&host), Action::Pause);
    assert_eq!(host.resumes.get(), 0);
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
}

#[test]
fn headers_then_trailers_without_a_token_is_missing() {
    // HTTP/2: HEADERS (form content type, no end of stream), then trailers, no DATA.
    let host = request("POST", "/r/echo", &[FORM]);
    let mut flow = Flow::new(worker_with(settings(), &host));
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(flow.on_request_trailers(&host), Action::Pause);
    let reply = host.last_reply();
    assert_eq!(reply.as_ref().map(|r| r.status), Some(401));
    assert!(reply.is_some_and(|r| String::from_utf8_lossy(&r.body).contains("missing")));
    assert_eq!(host.resumes.get(), 0);
}

#[test]
fn a_form_body_ended_by_trailers_is_read_for_its_token() {
    let host = request("POST", "/r/echo", &[FORM]);
    let mut flow = Flow::new(worker_with(settings(), &host));
    flow.on_request_headers(&host, false);
    let form = format!("a=1&access_token={VALID}");
    assert_eq!(
        body(&host, &mut flow, form.as_bytes(), false),
        Action::Pause
    );
    assert_eq!(flow.on_request_trailers(&host), Action::Pause);
    assert_eq!(
        last_call_header(&host, "x-access-token").as_deref(),
        Some(VALID)
    );
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
    assert_real_identity(&host);
}

/// A check tells the token-service which feed position the worker holds (seq 1 here), so a
/// replica behind it catches up before it answers.
#[test]
fn checks_carry_the_feed_position_the_worker_holds() {
    let host = request("GET", &format!("/r/echo?access_token={VALID}"), &[]);
    let mut flow = Flow::new(worker_with(settings(), &host));
    flow.on_request_headers(&host, true);
    assert_eq!(
        last_call_header(&host, "x-oauth2-feed-position").as_deref(),
        Some("1")
    );
}

#[test]
fn outages_fail_closed() {
    let cases = [
        ("5xx", Some(json_answer("500", "{}"))),
        ("garbage", Some(json_answer("200", "<html>"))),
        ("envoy timeout", Some(envoy_timeout())),
        (
            "active without consumer",
            Some(json_answer("200", r#"{"active":true}"#)),
        ),
        ("dispatch refused", None),
    ];
    for (name, answer) in cases {
        let host = request("POST", "/r/echo", &[bearer(VALID)]);
        let mut flow = Flow::new(worker_with(settings(), &host));
        host.refuse_dispatch.set(answer.is_none());
        flow.on_request_headers(&host, false);
        if let Some(answer) = &answer {
            answer_last_call(&host, &mut flow, answer);
        }
        assert_eq!(host.last_reply().map(|r| r.status), Some(503), "{name}");
        assert_eq!(body(&host, &mut flow, b"x", true), Action::Pause, "{name}");
        assert_eq!(host.resumes.get(), 0, "{name}");
    }
}

#[test]
fn late_and_foreign_answers_change_nothing() {
    let host = request("GET", "/r/echo", &[bearer(UNKNOWN)]);
    let mut flow = Flow::new(worker_with(settings(), &host));
    flow.on_request_headers(&host, true);
    let Some((id, _)) = host.last_call() else {
        unreachable!("a check")
    };
    flow.on_call_answer(&host, id + 7, &active());
    assert_eq!((host.resumes.get(), host.replies.borrow().len()), (0, 0));
    flow.on_call_answer(&host, id, &inactive());
    flow.on_call_answer(&host, id, &active());
    assert_eq!(host.resumes.get(), 0);
    assert_eq!(host.replies.borrow().len(), 1);
    assert!(!flow.is_allowed());
}

#[test]
fn an_over_long_form_body_is_413_and_a_header_token_body_is_not_read() {
    let host = request("POST", "/r/echo", &[FORM]);
    let mut flow = Flow::new(worker_with(settings(), &host));
    flow.on_request_headers(&host, false);
    assert_eq!(body(&host, &mut flow, &[b'a'; 1025], false), Action::Pause);
    assert_eq!(host.last_reply().map(|r| r.status), Some(413));

    let host = request("POST", "/r/echo", &[bearer(VALID), FORM]);
    let mut flow = Flow::new(worker_with(settings(), &host));
    flow.on_request_headers(&host, false);
    assert_eq!(body(&host, &mut flow, &[b'a'; 4096], true), Action::Pause);
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
}

#[test]
fn cache_hits_and_negative_entries_decide_without_a_call() {
    let shared = request("GET", "/r", &[]);
    let worker = worker_with(settings(), &shared);
    for (token, answer) in [(VALID, active()), (UNKNOWN, inactive())] {
        let host = request("GET", "/r", &[]);
        *host.shared.borrow_mut() = shared.shared.borrow().clone();
        host.set_request_header("authorization", Some(&format!("Bearer {token}")));
        let mut flow = Flow::new(worker.clone());
        flow.on_request_headers(&host, true);
        answer_last_call(&host, &mut flow, &answer);
        *shared.shared.borrow_mut() = host.shared.borrow().clone();
    }
    let host = request("POST", "/r", &[bearer(VALID)]);
    let mut flow = Flow::new(worker.clone());
    assert_eq!(flow.on_request_headers(&host, false), Action::Continue);
    assert!(host.calls.borrow().is_empty());
    assert_real_identity(&host);
    assert_eq!(body(&host, &mut flow, b"x", true), Action::Continue);

    let host = request("POST", "/r", &[bearer(UNKNOWN)]);
    let mut flow = Flow::new(worker);
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert!(host.calls.borrow().is_empty());
    assert_eq!(host.last_reply().map(|r| r.status), Some(401));
}

#[test]
fn hide_credentials_strips_every_copy_of_the_token() {
    let mut hiding = settings();
    hiding.hide_credentials = true;
    // A header token without a scheme (used verbatim, Kong's rule) goes too.
    let host = request(
        "GET",
        "/r?x=1&access_token=also",
        &[("authorization", VALID)],
    );
    let mut flow = Flow::new(worker_with(hiding.clone(), &host));
    flow.on_request_headers(&host, true);
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.header("authorization"), None);
    assert_eq!(host.header(":path").as_deref(), Some("/r?x=1"));

    // A query token, and another copy in the form body.
    let path: &'static str = Box::leak(format!("/r?access_token={VALID}").into_boxed_str());
    let host = request("POST", path, &[FORM, ("content-length", "33")]);
    let mut flow = Flow::new(worker_with(hiding, &host));
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(host.header("content-length"), None);
    body(
        &host,
        &mut flow,
        format!("q=1&access_token={VALID}").as_bytes(),
        true,
    );
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
    assert_eq!(host.header(":path").as_deref(), Some("/r"));
    assert_eq!(host.body.borrow().as_slice(), b"q=1");
}

#[test]
fn smuggled_identity_spellings_are_removed_on_allow() {
    let host = request(
        "GET",
        "/r",
        &[
            bearer(VALID),
            ("x_consumer_username", "admin"),
            ("x_consumer_id", "forged"),
        ],
    );
    let mut flow = Flow::new(worker_with(settings(), &host));
    flow.on_request_headers(&host, true);
    answer_last_call(&host, &mut flow, &active());
    assert!(host.header("x_consumer_username").is_none());
    assert!(host.header("x_consumer_id").is_none());
    assert_real_identity(&host);
}

#[test]
fn a_fresh_worker_fetches_its_state_and_buffers_meanwhile() {
    let host = request("POST", "/r/echo", &[bearer(VALID)]);
    let mut flow = Flow::new(unpolled_worker());
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(body(&host, &mut flow, b"x", true), Action::Pause);
    let state = r#"{"seq":2,"reset":true,"revoked":[],"service":{"id":"svc","name":"s"},
        "plugin":{"id":"p","auth_header_name":"authorization","hide_credentials":false,
        "realm":"service","global_credentials":false,"anonymous":null,"anonymous_error":null}}"#;
    answer_last_call(&host, &mut flow, &json_answer("200", state));
    assert_eq!(host.resumes.get(), 0, "the token is still to be checked");
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);

    let host = request("GET", "/r", &[bearer(VALID)]);
    let mut flow = Flow::new(unpolled_worker());
    flow.on_request_headers(&host, true);
    answer_last_call(&host, &mut flow, &envoy_timeout());
    assert_eq!(host.last_reply().map(|r| r.status), Some(503));
}

#[test]
fn an_unprotected_service_passes_untouched_and_an_unknown_one_fails_closed() {
    let host = request("POST", "/r", &[]);
    let worker = unpolled_worker();
    worker.borrow_mut().apply_poll(&host, "s", poll(None));
    let mut flow = Flow::new(worker.clone());
    assert_eq!(flow.on_request_headers(&host, false), Action::Continue);
    assert_eq!(host.header("x-consumer-id").as_deref(), Some("forged"));

    let mut unknown = poll(None);
    unknown.service = None;
    worker.borrow_mut().apply_poll(&host, "s", unknown);
    let host = request("POST", "/r", &[bearer(VALID)]);
    let mut flow = Flow::new(worker);
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(host.last_reply().map(|r| r.status), Some(503));
}

#[test]
fn oauth_endpoints_are_relayed_whole_and_never_continue() {
    let host = request(
        "POST",
        "/r/oauth2/token",
        &[FORM, ("authorization", "Basic YTpi")],
    );
    host.tls.set(true);
    let mut flow = Flow::new(worker_with(settings(), &host));
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(
        body(&host, &mut flow, b"grant_type=client_", false),
        Action::Pause
    );
    assert_eq!(body(&host, &mut flow, b"credentials", false), Action::Pause);
    assert_eq!(flow.on_request_trailers(&host), Action::Pause);
    let Some((_, call)) = host.last_call() else {
        unreachable!("relayed")
    };
    assert_eq!(
        call.body.as_deref(),
        Some(&b"grant_type=client_credentials"[..])
    );
    assert!(call
        .headers
        .contains(&("x-gateway-tls".into(), "on".into())));
    assert!(call
        .headers
        .contains(&("x-gateway-prefix".into(), "/r".into())));
    answer_last_call(
        &host,
        &mut flow,
        &json_answer("200", r#"{"access_token":"t"}"#),
    );
    assert_eq!(host.last_reply().map(|r| r.status), Some(200));
    assert_eq!(host.resumes.get(), 0);
    assert!(!flow.is_allowed() && flow.is_replied());
}

#[test]
fn anonymous_fallback_forwards_as_the_anonymous_consumer() {
    let mut anonymous = settings();
    anonymous.anonymous = Some(ConsumerInfo {
        id: "anon".into(),
        username: Some("nobody".into()),
        custom_id: None,
    });
    let host = request("DELETE", "/r", &[]);
    let mut flow = Flow::new(worker_with(anonymous, &host));
    assert_eq!(flow.on_request_headers(&host, false), Action::Continue);
    assert_eq!(host.header_values("x-consumer-id"), vec!["anon"]);
    assert_eq!(host.header_values("x-anonymous-consumer"), vec!["true"]);
    assert!(host.header_values("x-authenticated-userid").is_empty());
}

/// One listener, many services: each route's metadata names its service.
#[test]
fn routes_name_their_service_and_each_service_has_its_own_settings_and_cache() {
    let shared = request("GET", "/", &[]);
    let worker = worker_with(settings(), &shared);
    let mut other = settings();
    other.realm = Some("other".into());
    worker
        .borrow_mut()
        .apply_poll(&shared, "other", poll(Some(other)));

    // The same valid token, allowed for `s` and cached there...
    let host = request("GET", "/a", &[bearer(VALID)]);
    let mut flow = Flow::new(worker.clone());
    flow.on_request_headers(&host, true);
    assert_eq!(
        last_call_header(&host, ":path").as_deref(),
        Some("/gateway/v1/services/s/token")
    );
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);

    // ...is checked anew for `other` (the cache is per service), which refuses it.
    let host = request("GET", "/b", &[bearer(VALID)]);
    *host.shared.borrow_mut() = shared.shared.borrow().clone();
    *host.route_service.borrow_mut() = Some("other".into());
    let mut flow = Flow::new(worker.clone());
    assert_eq!(flow.on_request_headers(&host, true), Action::Pause);
    assert_eq!(
        last_call_header(&host, ":path").as_deref(),
        Some("/gateway/v1/services/other/token")
    );
    answer_last_call(&host, &mut flow, &inactive());
    let reply = host.last_reply();
    assert_eq!(reply.as_ref().map(|r| r.status), Some(401));
    assert!(reply
        .and_then(|r| r.header("www-authenticate").map(str::to_owned))
        .is_some_and(|h| h.starts_with("Bearer realm=\"other\"")));

    // A route that opts out passes untouched; an invalid name fails closed.
    let host = request("POST", "/c", &[]);
    *host.route_service.borrow_mut() = Some(String::new());
    let mut flow = Flow::new(worker.clone());
    assert_eq!(flow.on_request_headers(&host, false), Action::Continue);
    let host = request("POST", "/d", &[bearer(VALID)]);
    *host.route_service.borrow_mut() = Some("a/../b".into());
    let mut flow = Flow::new(worker);
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(host.last_reply().map(|r| r.status), Some(503));
}

/// `route_metadata: false`: the filter's `service` protects every route, whatever a route's
/// metadata says (an opt-out there protects nothing less).
#[test]
fn without_route_metadata_the_default_service_protects_every_route() {
    let worker = configured_worker(
        br#"{"service":"s","token_service":{"cluster":"ts"},"route_metadata":false}"#,
    );
    let worker = polled(worker, settings(), &request("GET", "/", &[]));

    for metadata in ["", "other", "a/../b"] {
        let host = request("GET", "/x", &[]);
        *host.route_service.borrow_mut() = Some(metadata.into());
        let mut flow = Flow::new(worker.clone());
        assert_eq!(flow.on_request_headers(&host, true), Action::Pause);
        let reply = host.last_reply();
        assert_eq!(reply.as_ref().map(|r| r.status), Some(401), "{metadata:?}");
        assert_eq!(host.resumes.get(), 0);

        let host = request("GET", "/x", &[bearer(VALID)]);
        *host.route_service.borrow_mut() = Some(metadata.into());
        let mut flow = Flow::new(worker.clone());
        assert_eq!(flow.on_request_headers(&host, true), Action::Pause);
        assert_eq!(
            last_call_header(&host, ":path").as_deref(),
            Some("/gateway/v1/services/s/token")
        );
    }
}

#[test]
fn a_route_naming_a_new_service_fetches_its_state_and_the_root_polls_it_after() {
    let host = request("GET", "/n", &[bearer(VALID)]);
    let worker = worker_with(settings(), &host);
    *host.route_service.borrow_mut() = Some("new".into());
    let mut flow = Flow::new(worker.clone());
    assert_eq!(flow.on_request_headers(&host, true), Action::Pause);
    assert_eq!(
        last_call_header(&host, ":path").as_deref(),
        Some("/gateway/v1/services/new/state?since=0")
    );
    let state =
        r#"{"seq":9,"reset":true,"revoked":[],"service":{"id":"n","name":"new"},"plugin":null}"#;
    answer_last_call(&host, &mut flow, &json_answer("200", state));
    assert_eq!(host.resumes.get(), 1, "no plugin on `new`: passes");
    let due = worker.borrow().polls_due();
    assert_eq!(due, vec![("new".to_string(), 9), ("s".to_string(), 1)]);
}

#[test]
fn a_revocation_evicts_the_token_for_the_service_that_polled() {
    let shared = request("GET", "/", &[]);
    let worker = worker_with(settings(), &shared);
    let host = request("GET", "/a", &[bearer(VALID)]);
    let mut flow = Flow::new(worker.clone());
    flow.on_request_headers(&host, true);
    answer_last_call(&host, &mut flow, &active());
    let mut revoked = poll(Some(settings()));
    revoked.reset = false;
    revoked.seq = 2;
    let hex: String = cache::digest(VALID)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    revoked.revoked = vec![hex];
    worker.borrow_mut().apply_poll(&host, "s", revoked);
    let again = request("GET", "/a", &[bearer(VALID)]);
    *again.shared.borrow_mut() = host.shared.borrow().clone();
    let mut flow = Flow::new(worker);
    assert_eq!(flow.on_request_headers(&again, true), Action::Pause);
    assert_eq!(
        again.calls.borrow().len(),
        1,
        "asked again after the revocation"
    );
}

#[test]
fn decisions_and_cache_outcomes_are_counted() {
    let shared = request("GET", "/", &[]);
    let worker = worker_with(settings(), &shared);
    let run = |headers: &[(&'static str, &'static str)], answer: Option<CallAnswer>| {
        let host = request("GET", "/r", headers);
        *host.shared.borrow_mut() = shared.shared.borrow().clone();
        let mut flow = Flow::new(worker.clone());
        flow.on_request_headers(&host, true);
        if let Some(answer) = answer {
            answer_last_call(&host, &mut flow, &answer);
        }
        *shared.shared.borrow_mut() = host.shared.borrow().clone();
    };
    run(&[bearer(VALID)], Some(active()));
    run(&[bearer(VALID)], None);
    run(&[bearer(UNKNOWN)], Some(inactive()));
    run(&[bearer(UNKNOWN)], None);
    run(&[], None);
    run(&[bearer(VALID)], None);
    let w = worker.borrow();
    let c = &w.counters;
    assert_eq!(c.get(Metric::Allowed), 3);
    assert_eq!(c.get(Metric::DeniedInvalid), 2);
    assert_eq!(c.get(Metric::DeniedMissing), 1);
    assert_eq!(c.get(Metric::ChecksSent), 2);
    assert_eq!(c.get(Metric::CacheMiss), 2);
    assert_eq!(c.get(Metric::CacheHitWorker), 3);
    assert_eq!(c.get(Metric::CacheHitNegative), 1);
}

// ---- Tokens in JSON and multipart bodies (Kong's `retrieve_parameters`) ----

/// A request header, as the tests write them.
type HeaderPair = (&'static str, &'static str);

const JSON: (&str, &str) = ("content-type", "application/json");
const MULTIPART: (&str, &str) = ("content-type", "multipart/form-data; boundary=XyZ");

fn hiding() -> Settings {
    let mut hiding = settings();
    hiding.hide_credentials = true;
    hiding
}

/// A multipart body of `(name, filename, content)` parts, boundary `XyZ`.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(name.as_bytes());
        body.push(b'"');
        if let Some(filename) = filename {
            body.extend_from_slice(format!("; filename=\"{filename}\"\r\n").as_bytes());
            body.extend_from_slice(b"Content-Type: application/octet-stream");
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    body
}

/// Sends `request_body` in two chunks and returns the flow, paused or decided.
fn send_body(host: &MockHost, settings: Settings, request_body: &[u8]) -> Flow {
    let mut flow = Flow::new(worker_with(settings, host));
    flow.on_request_headers(host, request_body.is_empty());
    let (first, rest) = request_body.split_at(request_body.len() / 2);
    if !request_body.is_empty() {
        body(host, &mut flow, first, false);
        body(host, &mut flow, rest, true);
    }
    flow
}

fn assert_missing(host: &MockHost, what: &str) {
    let reply = host.last_reply();
    assert_eq!(reply.as_ref().map(|r| r.status), Some(401), "{what}");
    let body = reply.map(|r| String::from_utf8_lossy(&r.body).to_string());
    assert!(
        body.as_deref()
            .is_some_and(|b| b.contains("invalid_request")),
        "{what}: {body:?}"
    );
    assert!(host.calls.borrow().is_empty(), "{what}: no check");
    assert_eq!(host.resumes.get(), 0, "{what}");
}

#[test]
fn a_json_body_token_is_checked_and_the_body_forwarded_untouched() {
    let sent = format!(r#"{{"a":1,"access_token":"{VALID}","b":[true]}}"#);
    for method in ["POST", "PUT", "PATCH"] {
        let host = request(
            method,
            "/r",
            &[("content-type", "application/json; charset=utf-8")],
        );
        let mut flow = send_body(&host, settings(), sent.as_bytes());
        assert_eq!(
            last_call_header(&host, "x-access-token").as_deref(),
            Some(VALID),
            "{method}"
        );
        answer_last_call(&host, &mut flow, &active());
        assert_eq!(host.resumes.get(), 1, "{method}");
        assert_real_identity(&host);
        assert_eq!(host.body.borrow().as_slice(), sent.as_bytes());
    }
}

#[test]
fn hide_credentials_removes_the_json_member_and_keeps_every_other_byte() {
    let sent = format!(
        "{{ \"a\": 1.50e3,\n  \"access_token\": \"{VALID}\",\n  \"z\": {{\"access_token\": 7}} }}"
    );
    let host = request("POST", "/r", &[JSON, ("content-length", "99")]);
    let mut flow = send_body(&host, hiding(), sent.as_bytes());
    assert_eq!(host.header("content-length"), None, "the body is reframed");
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
    assert_eq!(
        String::from_utf8_lossy(&host.body.borrow()),
        "{ \"a\": 1.50e3,\n  \"z\": {\"access_token\": 7} }"
    );
}

#[test]
fn a_multipart_token_part_is_read_beside_file_parts_and_removed_when_hidden() {
    let png: &[u8] = b"\x89PNG\r\n\x1a\n\0\xff--XyZ-not-a-boundary";
    let sent = multipart(&[
        ("photo", Some("a.png"), png),
        ("access_token", None, VALID.as_bytes()),
        ("note", None, b"hello"),
    ]);
    let host = request("POST", "/r", &[MULTIPART]);
    let mut flow = send_body(&host, settings(), &sent);
    assert_eq!(
        last_call_header(&host, "x-access-token").as_deref(),
        Some(VALID)
    );
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
    assert_eq!(host.body.borrow().as_slice(), sent.as_slice());

    let host = request("PUT", "/r", &[MULTIPART]);
    let mut flow = send_body(&host, hiding(), &sent);
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
    let expected = multipart(&[("photo", Some("a.png"), png), ("note", None, b"hello")]);
    assert_eq!(
        String::from_utf8_lossy(&host.body.borrow()),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn malformed_and_non_token_bodies_are_a_missing_token_never_a_panic() {
    let unterminated = multipart(&[("access_token", None, VALID.as_bytes())]);
    let cut = unterminated
        .get(..unterminated.len() - 9)
        .unwrap_or_default();
    let cases: [(&str, HeaderPair, Vec<u8>); 9] = [
        (
            "truncated JSON",
            JSON,
            format!(r#"{{"access_token":"{VALID}""#).into_bytes(),
        ),
        (
            "JSON with trailing garbage",
            JSON,
            format!(r#"{{"access_token":"{VALID}"}}x"#).into_bytes(),
        ),
        (
            "a number",
            JSON,
            br#"{"access_token":12345678901234567890}"#.to_vec(),
        ),
        (
            "an array",
            JSON,
            format!(r#"{{"access_token":["{VALID}"]}}"#).into_bytes(),
        ),
        ("null", JSON, br#"{"access_token":null}"#.to_vec()),
        (
            "nested",
            JSON,
            format!(r#"{{"data":{{"access_token":"{VALID}"}}}}"#).into_bytes(),
        ),
        (
            "a top-level array",
            JSON,
            format!(r#"[{{"access_token":"{VALID}"}}]"#).into_bytes(),
        ),
        ("multipart without its close", MULTIPART, cut.to_vec()),
        (
            "multipart without a boundary parameter",
            ("content-type", "multipart/form-data"),
            unterminated.clone(),
        ),
    ];
    for (what, content_type, sent) in cases {
        let host = request("POST", "/r", &[content_type]);
        send_body(&host, settings(), &sent);
        assert_missing(&host, what);
    }
}

#[test]
fn bodies_are_read_only_for_post_put_and_patch() {
    let sent = format!(r#"{{"access_token":"{VALID}"}}"#);
    for method in ["GET", "DELETE", "OPTIONS"] {
        let host = request(method, "/r", &[JSON]);
        let flow = send_body(&host, settings(), sent.as_bytes());
        assert!(flow.is_replied(), "{method}");
        assert_missing(&host, method);
    }
}

/// Kong merges the body's parameters over the query's: a body `access_token` wins, even one
/// that is no string (then the token is missing); a body without one leaves the query's.
#[test]
fn a_body_token_takes_precedence_over_the_query_token() {
    let path: &'static str = Box::leak(format!("/r?access_token={UNKNOWN}").into_boxed_str());
    let bodies: [(HeaderPair, Vec<u8>); 3] = [
        (FORM, format!("access_token={VALID}").into_bytes()),
        (
            JSON,
            format!(r#"{{"access_token":"{VALID}"}}"#).into_bytes(),
        ),
        (
            MULTIPART,
            multipart(&[("access_token", None, VALID.as_bytes())]),
        ),
    ];
    for (content_type, sent) in bodies {
        let host = request("POST", path, &[content_type]);
        send_body(&host, settings(), &sent);
        assert_eq!(
            last_call_header(&host, "x-access-token").as_deref(),
            Some(VALID),
            "{content_type:?}"
        );
    }
    let host = request("POST", path, &[JSON]);
    send_body(&host, settings(), br#"{"access_token":false}"#);
    assert_missing(&host, "a body access_token that is no string");

    let host = request("POST", path, &[JSON]);
    send_body(&host, settings(), br#"{"other":1}"#);
    assert_eq!(
        last_call_header(&host, "x-access-token").as_deref(),
        Some(UNKNOWN)
    );
}

/// A fresh worker fetches the service's state first; a body that ended meanwhile is still the
/// body to read (and, with hide_credentials, to scrub).
#[test]
fn a_body_that_ends_while_the_state_is_fetched_is_still_read() {
    let state = r#"{"seq":2,"reset":true,"revoked":[],"service":{"id":"svc","name":"s"},
        "plugin":{"id":"p","auth_header_name":"authorization","hide_credentials":true,
        "realm":"service","global_credentials":false,"anonymous":null,"anonymous_error":null}}"#;
    let bodies: [(HeaderPair, Vec<u8>, &[u8]); 2] = [
        (
            FORM,
            format!("a=1&access_token={VALID}").into_bytes(),
            b"a=1",
        ),
        (
            JSON,
            format!(r#"{{"access_token":"{VALID}","a":1}}"#).into_bytes(),
            br#"{"a":1}"#,
        ),
    ];
    for (content_type, sent, kept) in bodies {
        let host = request("POST", "/r", &[content_type]);
        let mut flow = Flow::new(unpolled_worker());
        assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
        assert_eq!(body(&host, &mut flow, &sent, true), Action::Pause);
        answer_last_call(&host, &mut flow, &json_answer("200", state));
        assert_eq!(
            last_call_header(&host, "x-access-token").as_deref(),
            Some(VALID),
            "{content_type:?}"
        );
        answer_last_call(&host, &mut flow, &active());
        assert_eq!(host.resumes.get(), 1);
        assert_eq!(host.body.borrow().as_slice(), kept);
    }
}

/// A body over `max_body_bytes` is not read: with a query token (and nothing to scrub) the
/// query token decides, as before; without one, or when it must be scrubbed, 413.
#[test]
fn an_oversized_body_leaves_the_query_token_or_is_413() {
    let big = format!(r#"{{"pad":"{}"}}"#, "p".repeat(2048));
    let path: &'static str = Box::leak(format!("/r?access_token={VALID}").into_boxed_str());
    let host = request("POST", path, &[JSON]);
    let mut flow = send_body(&host, settings(), big.as_bytes());
    assert!(host.replies.borrow().is_empty());
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
    assert_eq!(host.body.borrow().as_slice(), big.as_bytes());

    for (path, settings) in [("/r", settings()), (path, hiding())] {
        let host = request("POST", path, &[JSON]);
        send_body(&host, settings, big.as_bytes());
        assert_eq!(host.last_reply().map(|r| r.status), Some(413), "{path}");
        assert_eq!(host.resumes.get(), 0);
    }
}

/// With `hide_credentials` a header token does not leave a body copy behind (the form case
/// already held this), and a JSON body without a token is forwarded as sent.
#[test]
fn hide_credentials_scrubs_body_copies_whatever_the_source() {
    let sent = format!(r#"{{"access_token":"{VALID}","keep":"me"}}"#);
    let host = request("PATCH", "/r", &[bearer(VALID), JSON]);
    let mut flow = send_body(&host, hiding(), sent.as_bytes());
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.resumes.get(), 1);
    assert_eq!(host.body.borrow().as_slice(), br#"{"keep":"me"}"#);
    assert_eq!(host.header("authorization"), None);

    let host = request("POST", "/r", &[bearer(VALID), JSON]);
    let mut flow = send_body(&host, hiding(), br#"{"keep":"me"}"#);
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.body.borrow().as_slice(), br#"{"keep":"me"}"#);
}

#[cfg(not(target_arch = "wasm32"))]
mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Source {
        None,
        Header,
        RawHeader,
        Query,
        Form,
        Json,
        Multipart,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Token {
        Valid,
        Unknown,
        Implausible,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Outcome {
        Truthful,
        ServerError,
        EnvoyTimeout,
        Garbage,
        NeverAnswered,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum CacheState {
        Empty,
        Warm,
    }

    #[derive(Debug, Clone)]
    struct Scenario {
        method: &'static str,
        /// The request declares the body's content type (form, or the source's format).
        typed: bool,
        source: Source,
        token: Token,
        chunks: Vec<Vec<u8>>,
        trailers: bool,
        outcome: Outcome,
        answer_after: usize,
        late_answer: bool,
        cache: CacheState,
        hide_credentials: bool,
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        let methods = prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
        ]);
        let sources = prop::sample::select(vec![
            Source::None,
            Source::Header,
            Source::RawHeader,
            Source::Query,
            Source::Form,
            Source::Json,
            Source::Multipart,
        ]);
        let tokens = prop::sample::select(vec![Token::Valid, Token::Unknown, Token::Implausible]);
        let outcomes = prop::sample::select(vec![
            Outcome::Truthful,
            Outcome::ServerError,
            Outcome::EnvoyTimeout,
            Outcome::Garbage,
            Outcome::NeverAnswered,
        ]);
        (
            (methods, any::<bool>(), sources, tokens),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4),
            (any::<bool>(), outcomes, 0usize..6, any::<bool>()),
            (
                prop::sample::select(vec![CacheState::Empty, CacheState::Warm]),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (method, typed, source, token),
                    chunks,
                    (trailers, outcome, answer_after, late_answer),
                    (cache, hide_credentials),
                )| Scenario {
                    method,
                    typed,
                    source,
                    token,
                    chunks,
                    trailers,
                    outcome,
                    answer_after,
                    late_answer,
                    cache,
                    hide_credentials,
                },
            )
    }

    fn token_text(token: Token) -> &'static str {
        match token {
            Token::Valid => VALID,
            Token::Unknown => UNKNOWN,
            Token::Implausible => "bad token\u{7f}",
        }
    }

    /// What the (simulated) token-service answers for a token.
    fn truthful(token: Token) -> CallAnswer {
        if token == Token::Valid {
            active()
        } else {
            inactive()
        }
    }

    fn outcome_answer(s: &Scenario) -> Option<CallAnswer> {
        match s.outcome {
            Outcome::Truthful => Some(truthful(s.token)),
            Outcome::ServerError => Some(json_answer("500", r#"{"message":"boom"}"#)),
            Outcome::EnvoyTimeout => Some(envoy_timeout()),
            Outcome::Garbage => Some(json_answer("200", "{\"active\":tru")),
            Outcome::NeverAnswered => None,
        }
    }

    /// Whether Kong's rules let the token be read from where the client put it.
    fn readable(s: &Scenario) -> bool {
        match s.source {
            Source::None => false,
            Source::Header | Source::RawHeader | Source::Query => true,
            Source::Form | Source::Json | Source::Multipart => {
                matches!(s.method, "POST" | "PUT" | "PATCH") && s.typed && !s.chunks.is_empty()
            }
        }
    }

    fn build_request(s: &Scenario) -> (MockHost, Vec<Vec<u8>>) {
        let token = token_text(s.token);
        let path = match s.source {
            Source::Query => format!("/r/x?access_token={}", crate::token::form_encode(token)),
            _ => "/r/x".to_string(),
        };
        let host = request(s.method, &path, &[]);
        match s.source {
            Source::Header => host.add_request_header("authorization", &format!("Bearer {token}")),
            Source::RawHeader => host.add_request_header("authorization", token),
            _ => {}
        }
        if s.typed {
            let content_type = match s.source {
                Source::Json => JSON.1,
                Source::Multipart => MULTIPART.1,
                _ => FORM.1,
            };
            host.add_request_header("content-type", content_type);
        }
        host.add_request_header("x_authenticated_userid", "admin");
        let mut chunks = s.chunks.clone();
        match s.source {
            Source::Form => {
                if let Some(first) = chunks.first_mut() {
                    let field = format!("access_token={}&", crate::token::form_encode(token));
                    first.splice(0..0, field.into_bytes());
                }
            }
            Source::Json | Source::Multipart if !chunks.is_empty() => {
                // The scenario's bytes as padding beside the token, in as many chunks.
                let pad: String = chunks.concat().iter().map(|b| format!("{b:02x}")).collect();
                let whole = if s.source == Source::Json {
                    let token = serde_json::to_string(token).unwrap_or_default();
                    format!(r#"{{"pad":"{pad}","access_token":{token}}}"#).into_bytes()
                } else {
                    multipart(&[
                        ("pad", Some("pad.bin"), pad.as_bytes()),
                        ("access_token", None, token.as_bytes()),
                    ])
                };
                let size = whole.len().div_ceil(chunks.len());
                chunks = whole.chunks(size).map(<[u8]>::to_vec).collect();
            }
            _ => {}
        }
        (host, chunks)
    }

    /// Warms the worker's cache with the scenario's token, as an earlier request would.
    fn warm(worker: &Rc<RefCell<Worker>>, shared: &MockHost, token: Token) {
        if token == Token::Implausible {
            return;
        }
        let host = request("GET", "/r", &[]);
        host.add_request_header("authorization", &format!("Bearer {}", token_text(token)));
        let mut flow = Flow::new(worker.clone());
        flow.on_request_headers(&host, true);
        if let Some((id, _)) = host.last_call() {
            flow.on_call_answer(&host, id, &truthful(token));
        }
        *shared.shared.borrow_mut() = host.shared.borrow().clone();
    }

    struct Run {
        released: bool,
        released_early: bool,
        replies: usize,
        answered_every_call: bool,
    }

    fn run(s: &Scenario) -> (MockHost, Run) {
        let mut hiding = settings();
        hiding.hide_credentials = s.hide_credentials;
        let (host, chunks) = build_request(s);
        let worker = worker_with(hiding, &host);
        if s.cache == CacheState::Warm {
            warm(&worker, &host, s.token);
        }
        let mut flow = Flow::new(worker);
        let answer = outcome_answer(s);
        let mut answered: Vec<u32> = Vec::new();
        let mut run = Run {
            released: false,
            released_early: false,
            replies: 0,
            answered_every_call: true,
        };
        let note = |action: Action, run: &mut Run, host: &MockHost, answered: &[u32]| {
            if action == Action::Continue && !run.released {
                run.released = true;
                let pending = host
                    .calls
                    .borrow()
                    .iter()
                    .any(|(id, _)| !answered.contains(id));
                run.released_early |= pending;
            }
        };
        let deliver = |flow: &mut Flow, answered: &mut Vec<u32>, run: &mut Run| {
            let Some(answer) = &answer else {
                return;
            };
            let calls: Vec<u32> = host
                .calls
                .borrow()
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| !answered.contains(id))
                .collect();
            for id in calls {
                answered.push(id);
                let before = host.resumes.get();
                flow.on_call_answer(&host, id, answer);
                if host.resumes.get() > before {
                    run.released = true;
                }
            }
        };
        let headers_end = chunks.is_empty() && !s.trailers;
        let action = flow.on_request_headers(&host, headers_end);
        note(action, &mut run, &host, &answered);
        let mut step = 0;
        if step >= s.answer_after {
            deliver(&mut flow, &mut answered, &mut run);
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let end = i + 1 == chunks.len() && !s.trailers;
            let action = body(&host, &mut flow, chunk, end);
            note(action, &mut run, &host, &answered);
            step += 1;
            if step >= s.answer_after {
                deliver(&mut flow, &mut answered, &mut run);
            }
        }
        if s.trailers {
            let action = flow.on_request_trailers(&host);
            note(action, &mut run, &host, &answered);
        }
        deliver(&mut flow, &mut answered, &mut run);
        // Two more rounds: a state fetch may lead to a check, a check to nothing more.
        deliver(&mut flow, &mut answered, &mut run);
        if s.late_answer {
            for id in answered.clone() {
                flow.on_call_answer(&host, id, &active());
            }
        }
        run.answered_every_call = host
            .calls
            .borrow()
            .iter()
            .all(|(id, _)| answered.contains(id));
        run.replies = host.replies.borrow().len();
        (host, run)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn a_request_continues_only_after_an_allow_decision(s in scenario()) {
            let (host, run) = run(&s);
            let valid = s.token == Token::Valid;
            let decided_by_cache = s.cache == CacheState::Warm && s.token != Token::Implausible;
            let service_answers = s.outcome == Outcome::Truthful;
            let expect_allow = readable(&s) && valid && (decided_by_cache || service_answers);

            prop_assert!(!run.released_early, "continued while a call was pending: {:?}", s);
            prop_assert_eq!(run.released, expect_allow, "{:?}", s);
            prop_assert!(!(run.released && run.replies > 0), "both answered and continued");
            prop_assert!(run.replies <= 1, "answered twice");
            if !run.released {
                prop_assert!(run.replies == 1 || !run.answered_every_call,
                    "neither continued nor answered: {:?}", s);
            }
            if run.released {
                // What reaches the upstream: no forged identity header, in any spelling.
                for (name, value) in FORGED {
                    prop_assert!(!host.header_values(name).contains(&value.to_string()), "{} kept", name);
                }
                prop_assert!(host.header("x_authenticated_userid").is_none());
                prop_assert_eq!(host.header_values("x-consumer-id"), vec!["c-real".to_string()]);
                if s.hide_credentials {
                    let token = token_text(s.token);
                    prop_assert!(host.header("authorization").is_none());
                    prop_assert!(!host.header(":path").unwrap_or_default().contains("access_token"));
                    let body = String::from_utf8_lossy(&host.body.borrow()).to_string();
                    prop_assert!(!body.contains(token) || !s.typed || !matches!(s.method, "POST" | "PUT" | "PATCH"));
                }
            }
        }
    }
}

/// Issue 18: two configurations sharing Envoy's shared data (one `vm_id`, or one process for
/// the native build), A trusting an authorization server that accepts a token and B one that
/// rejects everything: A's verdict must never answer on B, in either mode.
#[test]
fn two_configurations_never_answer_from_each_others_cache() {
    let introspection = |cluster: &str| {
        format!(
            r#"{{"introspection":{{"cluster":"{cluster}","path":"/i","client_id":"gw","client_secret":"s"}}}}"#
        )
    };
    let token_service =
        |cluster: &str| format!(r#"{{"service":"s","token_service":{{"cluster":"{cluster}"}}}}"#);
    let introspected_active = json_answer(
        "200",
        r#"{"active":true,"username":"admin","sub":"admin","scope":"all"}"#,
    );
    for (a, b, answer) in [
        (
            introspection("idp-a"),
            introspection("idp-b"),
            introspected_active,
        ),
        (
            token_service("staging"),
            token_service("production"),
            active(),
        ),
    ] {
        let shared = request("GET", "/r", &[]);
        let worker_a = configured_worker(a.as_bytes());
        let worker_b = configured_worker(b.as_bytes());
        for worker in [&worker_a, &worker_b] {
            if worker.borrow().polls() {
                worker
                    .borrow_mut()
                    .apply_poll(&shared, "s", poll(Some(settings())));
            }
        }
        let host = request("GET", "/r", &[bearer(VALID)]);
        *host.shared.borrow_mut() = shared.shared.borrow().clone();
        let mut flow = Flow::new(worker_a);
        flow.on_request_headers(&host, true);
        answer_last_call(&host, &mut flow, &answer);
        assert_eq!(flow.action(), Action::Continue, "{a}: allowed");

        // B, on the same shared data: its own server is asked, and its answer decides.
        let on_b = request("GET", "/r", &[bearer(VALID)]);
        *on_b.shared.borrow_mut() = host.shared.borrow().clone();
        let mut flow = Flow::new(worker_b);
        assert_eq!(flow.on_request_headers(&on_b, true), Action::Pause);
        let asked = on_b.last_call().map(|(_, call)| call.cluster);
        assert!(
            asked
                .as_deref()
                .is_some_and(|c| b.contains(&format!("\"{c}\""))),
            "{b} asks its own server, not A's cache: {asked:?}"
        );
        answer_last_call(&on_b, &mut flow, &inactive());
        assert_eq!(on_b.last_reply().map(|r| r.status), Some(401), "{b}");
        assert_eq!(on_b.resumes.get(), 0);
    }
}

/// A client over its limit of failed authentications learns when to come back.
#[test]
fn a_relayed_429_keeps_its_retry_after() {
    let host = request("POST", "/r/oauth2/token", &[FORM]);
    host.tls.set(true);
    let mut flow = Flow::new(worker_with(settings(), &host));
    assert_eq!(flow.on_request_headers(&host, false), Action::Pause);
    assert_eq!(body(&host, &mut flow, b"grant_type=x", true), Action::Pause);
    let mut answer = json_answer("429", r#"{"error":"invalid_client"}"#);
    answer.headers.push(("retry-after".into(), "7".into()));
    answer
        .headers
        .push(("set-cookie".into(), "not=relayed".into()));
    answer_last_call(&host, &mut flow, &answer);
    let reply = host.last_reply();
    assert_eq!(reply.as_ref().map(|r| r.status), Some(429));
    assert_eq!(
        reply.as_ref().and_then(|r| r.header("retry-after")),
        Some("7")
    );
    assert_eq!(reply.as_ref().and_then(|r| r.header("set-cookie")), None);
}

/// Issue 18: the OAuth endpoints answer only under the prefix the route declares
/// (`oauth2.prefix`), not under any path a client makes up below it.
#[test]
fn endpoints_answer_only_under_the_routes_declared_prefix() {
    for (path, relayed) in [
        ("/stepon/oauth2/token", true),
        ("/stepon/x/oauth2/token", false),
        ("/stepon/x/.well-known/oauth-authorization-server", false),
    ] {
        let host = request("POST", path, &[FORM]);
        host.tls.set(true);
        *host.route_prefix.borrow_mut() = Some("/stepon".into());
        let mut flow = Flow::new(worker_with(settings(), &host));
        flow.on_request_headers(&host, false);
        body(&host, &mut flow, b"grant_type=client_credentials", true);
        let call = host.last_call().map(|(_, call)| call);
        if relayed {
            assert!(call.is_some_and(|c| c
                .headers
                .contains(&("x-gateway-prefix".into(), "/stepon".into()))));
        } else {
            assert!(call.is_none(), "{path} relayed");
            assert_eq!(host.last_reply().map(|r| r.status), Some(401), "{path}");
            assert_eq!(host.resumes.get(), 0);
        }
    }
}

fn hex(digest: &crate::cache::TokenDigest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Under load (e2e `cluster::a_replica_behind_the_change_feed...`): a check left, a state poll
/// then revoked the token, and the answer (from a replica whose index lagged the feed) came
/// back "active" afterwards and was cached for `max_ttl_s`: the revocation undone. The answer
/// is stale: the request is refused, and nothing is cached.
#[test]
fn a_check_answered_after_its_tokens_revocation_neither_passes_nor_caches() {
    let shared = request("GET", "/r", &[]);
    let worker = worker_with(settings(), &shared);
    let host = request("GET", "/r", &[bearer(VALID)]);
    *host.shared.borrow_mut() = shared.shared.borrow().clone();
    let mut flow = Flow::new(worker.clone());
    assert_eq!(flow.on_request_headers(&host, true), Action::Pause);
    // Meanwhile the worker's poll learns the revocation (and an unrelated one).
    let mut revocation = poll(Some(settings()));
    revocation.reset = false;
    revocation.seq = 2;
    revocation.revoked = vec![
        hex(&crate::cache::digest("some-other-token")),
        hex(&crate::cache::digest(VALID)),
    ];
    worker.borrow_mut().apply_poll(&host, "s", revocation);
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(host.last_reply().map(|r| r.status), Some(401));
    assert_eq!(host.resumes.get(), 0);
    // Not cached as active: the next request asks again.
    let again = request("GET", "/r", &[bearer(VALID)]);
    *again.shared.borrow_mut() = host.shared.borrow().clone();
    let mut flow = Flow::new(worker.clone());
    flow.on_request_headers(&again, true);
    assert_ne!(flow.action(), Action::Continue);

    // A revocation of another token while a check is in flight changes nothing for it.
    let host = request("GET", "/r", &[bearer(UNKNOWN)]);
    *host.shared.borrow_mut() = again.shared.borrow().clone();
    let mut flow = Flow::new(worker.clone());
    flow.on_request_headers(&host, true);
    let mut other = poll(Some(settings()));
    other.reset = false;
    other.seq = 3;
    other.revoked = vec![hex(&crate::cache::digest("yet-another-token"))];
    worker.borrow_mut().apply_poll(&host, "s", other);
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(flow.action(), Action::Continue);
    let cached = request("GET", "/r", &[bearer(UNKNOWN)]);
    *cached.shared.borrow_mut() = host.shared.borrow().clone();
    let mut flow = Flow::new(worker);
    assert_eq!(flow.on_request_headers(&cached, true), Action::Continue);
    assert!(cached.calls.borrow().is_empty(), "cached: no call");
}

/// The same race across workers (the wasm build's workers poll on their own): worker A's
/// check was in flight when worker B applied the revocation, and A cached the stale answer in
/// shared data afterwards. B never takes it (nor copies it into its own cache).
#[test]
fn a_stale_answer_another_worker_cached_after_the_revocation_is_never_taken() {
    let shared = request("GET", "/r", &[]);
    let worker_a = worker_with(settings(), &shared);
    let worker_b = worker_with(settings(), &shared);
    // Both in the cache's current epoch (B's first poll moved it), as workers are.
    let mut current = poll(Some(settings()));
    current.reset = false;
    worker_a.borrow_mut().apply_poll(&shared, "s", current);
    assert_eq!(worker_a.borrow().epoch, worker_b.borrow().epoch);
    let mut revocation = poll(Some(settings()));
    revocation.reset = false;
    revocation.seq = 2;
    revocation.revoked = vec![hex(&crate::cache::digest(VALID))];
    worker_b.borrow_mut().apply_poll(&shared, "s", revocation);
    // A has not applied it yet: its check answers "active" and A caches it in shared data.
    let host = request("GET", "/r", &[bearer(VALID)]);
    *host.shared.borrow_mut() = shared.shared.borrow().clone();
    let mut flow = Flow::new(worker_a);
    flow.on_request_headers(&host, true);
    answer_last_call(&host, &mut flow, &active());
    assert_eq!(flow.action(), Action::Continue, "A did not know yet");
    // B: a miss, so it asks (and would get the truth).
    let on_b = request("GET", "/r", &[bearer(VALID)]);
    *on_b.shared.borrow_mut() = host.shared.borrow().clone();
    let mut flow = Flow::new(worker_b);
    assert_eq!(flow.on_request_headers(&on_b, true), Action::Pause);
    assert!(
        on_b.last_call().is_some(),
        "B asks instead of trusting A's stale entry"
    );
}
