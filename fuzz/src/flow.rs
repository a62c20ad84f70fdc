//! The filter's request flow under the in-memory host, driven by arbitrary callback sequences:
//! whatever the request and whatever Envoy and the token-service do, the flow never panics,
//! answers a request at most once, never both answers and continues it, and continues it only
//! after an allow decision (a check answered "active", a cached "active", a JWT access token
//! verified locally, an unprotected route, or the anonymous consumer), with no client-made
//! identity header left.
//!
//! Input layout: `[flags, method, source, header bytes length, header bytes..., ops...]`.

use oauth2_filter::config::FilterConfig;
use oauth2_filter::flow::mock::MockHost;
use oauth2_filter::flow::{Action, CallAnswer, Flow, Worker};
use oauth2_filter::metrics::Metric;
use oauth2_filter::state::{ConsumerInfo, ServiceInfo, Settings, StatePoll};
use std::cell::RefCell;
use std::rc::Rc;

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const VALID: &str = "valid-token-0123456789";
/// A JWT access token the worker's published key signed (EdDSA, `iat` 0 for the mock clock,
/// bound to service `s`), made with the filter tests' key: verified locally, no call.
const JWT: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImVkLTEiLCJ0eXAiOiJhdCtqd3QifQ.eyJhdWQiOiJodHRwczovL2d3LmV4YW1wbGUvciIsImF1dGhlbnRpY2F0ZWRfdXNlcmlkIjoiY2xhcmsiLCJjbGllbnRfaWQiOiJhcHAiLCJjb25zdW1lciI6eyJjdXN0b21faWQiOm51bGwsImlkIjoiYy1yZWFsIiwidXNlcm5hbWUiOiJib2IifSwiY3JlZGVudGlhbF9pZCI6ImsiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MCwiaXNzIjoiaHR0cHM6Ly9ndy5leGFtcGxlL3IiLCJqdGkiOiIwYjZkNmU0Yy0xIiwic2NvcGUiOiJlbWFpbCIsInNlcnZpY2VfaWQiOiJzIiwic3ViIjoiY2xhcmsifQ.UNN28HU3gwt7udO60PMUjPHJDMInHfMXj2Xc0Mq6OXvcGghcIQR0mqpMbr5BtUXCYd7J_nLF3Q9fRLiYfvSECQ";
/// The published key of [`JWT`] (the filter tests' Ed25519 key).
const JWT_KEY: &str = r#"{"alg": "EdDSA", "jwk": {"crv": "Ed25519", "kid": "ed-1", "kty": "OKP", "use": "sig", "x": "uF5IvYspRoMJVXymRh5VQ6qrfcB5u4VkN_MEYMUM8vY"}, "kid": "ed-1"}"#;

struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.at.min(self.bytes.len());
        let end = start.saturating_add(n).min(self.bytes.len());
        self.at = end;
        self.bytes.get(start..end).unwrap_or_default()
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
}

fn settings(flags: u8) -> Settings {
    Settings {
        id: "p".into(),
        updated_at: 1,
        auth_header_name: "authorization".into(),
        hide_credentials: flags & 1 != 0,
        realm: Some("service".into()),
        global_credentials: false,
        anonymous: (flags & 2 != 0).then(|| ConsumerInfo {
            id: "anon".into(),
            username: None,
            custom_id: None,
        }),
        anonymous_error: None,
        access_token_format: Default::default(),
        identity_jwt_header: None,
        identity_headers: true,
    }
}

fn worker(flags: u8, host: &MockHost) -> Option<Rc<RefCell<Worker>>> {
    let config = br#"{"service":"s","token_service":{"cluster":"ts"},"max_body_bytes":256}"#;
    let worker = Rc::new(RefCell::new(Worker::new(FilterConfig::parse(config).ok()?)));
    // Bit 5: the worker has polled already; otherwise the request fetches the state itself.
    if flags & 32 != 0 {
        let poll = StatePoll {
            seq: 1,
            reset: true,
            revoked: vec![],
            service: Some(ServiceInfo {
                id: "s".into(),
                name: Some("s".into()),
            }),
            plugin: Some(settings(flags)),
            issuer: Some("https://gw.example".into()),
            keys: serde_json::from_str(JWT_KEY)
                .map(|k| vec![k])
                .unwrap_or_default(),
            distrusted: vec![],
            distrust_all: false,
        };
        worker.borrow_mut().apply_poll(host, "s", poll);
    }
    Some(worker)
}

fn answer(kind: u8, flags: u8) -> CallAnswer {
    let json = |status: &str, body: String| CallAnswer {
        headers: vec![
            (":status".into(), status.into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: body.into_bytes(),
    };
    match kind % 7 {
        0 => json(
            "200",
            r#"{"active":true,"consumer":{"id":"c-real","username":"bob","custom_id":null},"credential":{"id":"k","client_id":"app"},"authenticated_userid":"clark","scope":"x","exp":null}"#.into(),
        ),
        1 => json("200", r#"{"active":false,"reason":"invalid"}"#.into()),
        2 => json("500", "{}".into()),
        3 => CallAnswer {
            headers: vec![(":status".into(), "504".into())],
            body: b"upstream request timeout".to_vec(),
        },
        4 => json("200", "{\"active\":tr".into()),
        5 => {
            let plugin = serde_json::to_string(&serde_json::json!({
                "id": "p", "auth_header_name": "authorization",
                "hide_credentials": flags & 1 != 0, "realm": "service",
                "global_credentials": false, "anonymous": null, "anonymous_error": null
            }))
            .unwrap_or_default();
            json(
                "200",
                format!(r#"{{"seq":2,"reset":true,"revoked":[],"service":{{"id":"s","name":"s"}},"plugin":{plugin}}}"#),
            )
        }
        _ => json("200", r#"{"access_token":"t","token_type":"bearer"}"#.into()),
    }
}

/// The request, its flags, and whether it carries the JWT.
fn request(input: &mut Input) -> (MockHost, u8, bool) {
    let flags = input.byte();
    let method = METHODS[usize::from(input.byte()) % METHODS.len()];
    let source = input.byte();
    let mut headers = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), "/r/x".to_string()),
        ("x-consumer-id".to_string(), "forged".to_string()),
        ("x_consumer_username".to_string(), "forged".to_string()),
    ];
    match source % 5 {
        1 => headers.push(("authorization".into(), format!("Bearer {VALID}"))),
        2 => headers.push(("authorization".into(), "Bearer unknown-token-1".into())),
        3 => headers[1].1 = format!("/r/x?access_token={VALID}"),
        4 => headers[1].1 = "/r/oauth2/token".into(),
        _ => {}
    }
    // Bit 128: the token is a JWT access token instead (verified by the filter itself).
    if source & 128 != 0 {
        headers.retain(|(name, _)| name != "authorization");
        headers.push(("authorization".into(), format!("Bearer {JWT}")));
    }
    // The body's content type (the filter reads the first): form, JSON, multipart.
    for (bit, content_type) in [
        (8, "application/x-www-form-urlencoded"),
        (16, "application/json"),
        (32, "multipart/form-data; boundary=XX"),
    ] {
        if source & bit != 0 {
            headers.push(("content-type".into(), content_type.into()));
        }
    }
    // Arbitrary extra headers: `name\0value\0` pairs.
    let length = usize::from(input.byte());
    let extra = input.take(length);
    let mut parts = extra.split(|b| *b == 0);
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        headers.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    let host = MockHost::default();
    *host.headers.borrow_mut() = headers;
    host.tls.set(flags & 4 != 0);
    if flags & 8 != 0 {
        *host.route_service.borrow_mut() = Some(if flags & 16 != 0 { "" } else { "other" }.into());
    }
    (host, flags, source & 128 != 0)
}

pub fn filter_flow(data: &[u8]) {
    let mut input = Input { bytes: data, at: 0 };
    let (host, flags, jwt) = request(&mut input);
    let Some(worker) = worker(flags, &host) else {
        return;
    };
    let unprotected = flags & 8 != 0 && flags & 16 != 0;
    let anonymous = flags & 2 != 0;
    let mut flow = Flow::new(worker.clone());
    let mut continued = flow.on_request_headers(&host, flags & 64 != 0) == Action::Continue;
    // Whether the token-service ever said "active" to a call of this request.
    let mut told_active = false;
    while !input.done() {
        match input.byte() % 6 {
            0 => {
                let length = usize::from(input.byte() % 64) + 1;
                let chunk = input.take(length).to_vec();
                host.body.borrow_mut().extend_from_slice(&chunk);
                let size = host.body.borrow().len();
                let end = input.byte() & 1 != 0;
                continued |= flow.on_request_body(&host, size, end) == Action::Continue;
            }
            1 => continued |= flow.on_request_trailers(&host) == Action::Continue,
            2 | 3 => {
                let kind = input.byte();
                let pending = host.calls.borrow().last().map(|(id, _)| *id);
                // Now and then an answer under an id nobody waits for.
                let id = match (input.byte() & 3, pending) {
                    (0, _) | (_, None) => u32::from(kind),
                    (_, Some(id)) => id,
                };
                told_active |= kind.is_multiple_of(7) && pending.is_some();
                flow.on_call_answer(&host, id, &answer(kind, flags));
            }
            4 => continued |= flow.on_request_headers(&host, true) == Action::Continue,
            _ => {
                // Late answers, all "active", to every call ever made.
                let ids: Vec<u32> = host.calls.borrow().iter().map(|(id, _)| *id).collect();
                let before = (host.resumes.get(), host.replies.borrow().len());
                for id in ids {
                    flow.on_call_answer(&host, id, &answer(0, flags));
                }
                let after = (host.resumes.get(), host.replies.borrow().len());
                assert!(
                    before.1 == 0 || before == after,
                    "an answered request changed on a late answer"
                );
                told_active |= !host.calls.borrow().is_empty();
            }
        }
    }
    let released = continued || host.resumes.get() > 0;
    let replies = host.replies.borrow().len();
    assert!(replies <= 1, "answered {replies} times");
    assert!(!(released && replies > 0), "answered and continued");
    assert!(host.resumes.get() <= 1, "resumed twice");
    // A JWT access token the filter verified itself needs no check.
    let verified_locally = jwt && worker.borrow().counters.get(Metric::JwtVerifiedLocally) > 0;
    if released {
        assert!(flow.is_allowed(), "continued without an allow decision");
        assert!(
            unprotected || anonymous || told_active || verified_locally,
            "continued although no check said the token is active"
        );
        if !unprotected {
            let forged = host
                .header_values("x-consumer-id")
                .contains(&"forged".to_string());
            assert!(
                !forged,
                "a client-made identity header reached the upstream"
            );
            assert!(
                host.header("x_consumer_username").is_none(),
                "a smuggled spelling survived"
            );
        }
    }
}
