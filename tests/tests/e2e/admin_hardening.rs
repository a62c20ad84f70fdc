//! The admin API's defences, through the released token-service binary (no Envoy): hostile
//! bodies do not take the process down, cross-site browser requests are refused unless their
//! origin is allowed (`--admin-allowed-origins`), Kong's trailing slash works, and unknown
//! client ids from requests do not grow its memory.

use e2e::Stack;
use serde_json::json;

/// The token-service's resident memory, in KiB (replica 0's, the one the test calls).
fn token_service_rss_kib(stack: &Stack) -> u64 {
    let pid = stack.token_service_pid().expect("the token-service runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its /proc status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
    rss.expect("VmRSS")
}

#[test]
fn hostile_admin_bodies_are_400s_and_the_service_keeps_serving() {
    let stack = Stack::start_services();
    let raw = stack.client.raw();
    let dotted = format!("config{}=1", ".a".repeat(32_000));
    let deep_json = format!(
        "{{\"username\":{}1{}}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let cases = [
        ("application/x-www-form-urlencoded", dotted),
        ("application/json", deep_json),
    ];
    for (content_type, body) in cases {
        let answer = stack.client.send(
            raw.post(stack.admin("/consumers"))
                .header("content-type", content_type)
                .body(body),
        );
        assert_eq!(answer.status, 400, "{content_type}: {}", answer.text);
        assert!(answer.json()["message"].is_string());
    }
    assert_eq!(stack.admin_get("/status").status, 200, "still serving");
}

#[test]
fn cross_site_requests_are_refused_unless_their_origin_is_allowed() {
    let stack = Stack::start_services_with(&["--admin-allowed-origins", "https://ui.test"]);
    let raw = stack.client.raw();
    let post = |origin: &str, username: &str| {
        stack.client.send(
            raw.post(stack.admin("/consumers"))
                .header("origin", origin)
                .form(&[("username", username)]),
        )
    };
    let refused = post("http://evil.test", "evil");
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.json()["message"].is_string());
    let allowed = post("https://ui.test", "from-ui");
    assert_eq!(allowed.status, 201, "{}", allowed.text);
    assert_eq!(
        allowed.header("access-control-allow-origin").as_deref(),
        Some("https://ui.test")
    );
    let own = post(&format!("http://127.0.0.1:{}", stack.admin_port), "own");
    assert_eq!(own.status, 201, "the admin listener's own origin");
    let curl = stack.admin_post("/consumers", &[("username", "curl")]);
    assert_eq!(curl.status, 201, "no Origin: curl and scripts");
    assert_eq!(
        stack.admin_get("/consumers/evil").status,
        404,
        "nothing stored"
    );
}

#[test]
fn admin_paths_take_a_trailing_slash_like_kong() {
    let stack = Stack::start_services();
    let created = stack.admin_post("/consumers/", &[("username", "x")]);
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(stack.admin_get("/consumers/x/").status, 200);
    let patched = stack
        .client
        .patch_json(&stack.admin("/consumers/x/"), &json!({"custom_id": "c"}));
    assert_eq!(patched.status, 200, "{}", patched.text);
}

#[test]
fn unknown_client_ids_from_requests_do_not_grow_memory() {
    let stack = Stack::start_services();
    stack.create_service("svc");
    let plugin = stack.admin_post(
        "/services/svc/plugins",
        &[
            ("name", "oauth2"),
            ("config.enable_client_credentials", "true"),
        ],
    );
    assert_eq!(plugin.status, 201, "{}", plugin.text);
    let url = format!(
        "http://127.0.0.1:{}/gateway/v1/services/svc/oauth2/token",
        stack.gateway_port
    );
    let raw = stack.client.raw();
    let before = token_service_rss_kib(&stack);
    for i in 0..1_500 {
        let client_id = format!("{i:05}{}", "x".repeat(60 * 1024));
        let answer = stack
            .client
            .send(raw.post(&url).header("x-gateway-tls", "on").form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id.as_str()),
                ("client_secret", "s"),
            ]));
        assert!(
            answer.status == 400 || answer.status == 401,
            "{}: {}",
            answer.status,
            answer.text
        );
    }
    let grown_mib = token_service_rss_kib(&stack).saturating_sub(before) / 1024;
    // 1,500 remembered 60 KB ids would be 90 MB and more.
    assert!(grown_mib < 30, "RSS grew by {grown_mib} MiB");
}
