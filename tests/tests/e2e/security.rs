//! Security guarantees (RFC 9700): nothing secret at rest or in logs, replays revoke, the admin
//! API can require a key.

use e2e::kong::{eventually, oauth_error, Kong};
use e2e::stack::Stack;
use e2e::{Database, Text};
use serde_json::json;

/// Everything the store holds: every byte SQLite has on disk for the database (main file and
/// write-ahead log), or the whole PostgreSQL database as `pg_dump --data-only` writes it
/// (every value of every row; the server's files are shared with other tests' databases).
fn database_bytes(stack: &Stack) -> Vec<u8> {
    match stack.database() {
        Database::Sqlite(path) => {
            let mut bytes = std::fs::read(path).unwrap_or_default();
            bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
            bytes
        }
        Database::Postgres(db) => db.dump().into_bytes(),
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn tokens_codes_and_hashed_secrets_never_rest_or_log_in_plaintext() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({"token_expiration": 600}));
    let code = kong.provision_code(gw, "clientid123", json!({}));
    let pair = kong.post(
        &kong.gw(gw).https("/oauth2/token"),
        json!({"code": code, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "authorization_code"}),
    )
    .json();
    let access = pair.text("access_token");
    let refresh = pair.text("refresh_token");
    // The token is usable through query strings too (which Envoy's access log drops).
    let r = kong
        .stack
        .client
        .get(&kong.gw(gw).http(&format!("/request?access_token={access}")));
    assert_eq!(r.status, 200);

    let db = database_bytes(&kong.stack);
    assert!(!db.is_empty());
    for secret in [&access, &refresh, &code, &"secret123".to_string()] {
        assert!(!contains(&db, secret), "{secret} is stored in plaintext");
    }
    // A plaintext secret (hash_secret off) is stored as given, as in Kong.
    assert!(contains(&db, "secret789"));

    let mut logs = kong.stack.token_service_log();
    logs.push_str(&std::fs::read_to_string(&kong.gw(gw).log).unwrap_or_default());
    let out = kong.stack.dir.path().join("envoy-0.out");
    logs.push_str(&std::fs::read_to_string(out).unwrap_or_default());
    assert!(!logs.is_empty());
    for secret in [&access, &refresh, &code] {
        assert!(!logs.contains(secret.as_str()), "{secret} appears in a log");
    }
}

#[test]
fn a_replayed_refresh_token_revokes_its_family() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({"token_expiration": 600}));
    let url = kong.gw(gw).https("/oauth2/token");
    let first = kong.provision_token(gw);
    let refresh = |token: &serde_json::Value| {
        kong.post(&url, json!({"refresh_token": token, "client_id": "clientid123", "client_secret": "secret123", "grant_type": "refresh_token"}))
    };
    let second = refresh(&first["refresh_token"]).json();
    let access = second.text("access_token");
    assert_eq!(kong.get_with_token(gw, "/request", &access).status, 200);
    // The rotated-out refresh token comes back: an attacker has it. The whole family dies.
    crate::oauth_hardening::after_the_replay_window();
    let replay = refresh(&first["refresh_token"]);
    assert_eq!(
        replay.json(),
        oauth_error("invalid_request", "Invalid refresh_token")
    );
    assert!(eventually(|| kong
        .get_with_token(gw, "/request", &access)
        .status
        == 401));
    assert_eq!(
        refresh(&second["refresh_token"]).json(),
        oauth_error("invalid_request", "Invalid refresh_token")
    );
}

#[test]
fn the_admin_api_can_require_a_key() {
    let stack = Stack::start_services_with(&["--admin-key", "s3cret-admin-key"]);
    let anonymous = stack.admin_get("/consumers");
    assert_eq!(
        (anonymous.status, anonymous.json()),
        (401, json!({"message": "Invalid admin key"}))
    );
    let wrong = stack
        .client
        .get_with(&stack.admin("/consumers"), &[("x-admin-key", "guess")]);
    assert_eq!(wrong.status, 401);
    let right = stack.client.get_with(
        &stack.admin("/consumers"),
        &[("x-admin-key", "s3cret-admin-key")],
    );
    assert_eq!(right.status, 200, "{}", right.text);
    assert!(!stack.token_service_log().contains("s3cret-admin-key"));
}

#[test]
fn redirect_uris_match_exactly_and_state_is_echoed_untouched() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({}));
    let url = kong.gw(gw).https("/oauth2/authorize");
    let state = "a b&c=d/é?#";
    for (redirect, ok) in [
        ("http://google.test/kong", true),
        ("http://google.test/kong/", false),
        ("http://google.test/kong?x=1", false),
        ("http://google.test.evil.test/kong", false),
        ("HTTP://GOOGLE.TEST/kong", false),
    ] {
        let a = kong.post(&url, json!({"provision_key": "provision123", "authenticated_userid": "u", "client_id": "clientid123",
            "scope": "email", "response_type": "code", "redirect_uri": redirect, "state": state}));
        let uri = a.json().text("redirect_uri");
        assert!(
            uri.starts_with("http://google.test/kong?"),
            "never redirected elsewhere: {uri}"
        );
        assert_eq!(a.status == 200, ok, "{redirect}: {uri}");
        let echoed = uri.split("state=").nth(1).unwrap_or_default();
        let decoded: String = form_urlencoded_decode(echoed);
        assert_eq!(decoded, state);
    }
}

fn form_urlencoded_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A client-credentials token authenticates a consumer and no user: behind the plugin the demo
/// API ignores a client's `mock-logged-in-as` (it answered that user's step counts before).
#[test]
fn a_client_credentials_token_cannot_pick_a_user_with_mock_logged_in_as() {
    let mut kong = Kong::start();
    let gw = kong.protect(
        "oauth2",
        json!({"enable_client_credentials": true, "token_expiration": 600}),
    );
    let answer = kong.post(
        &kong.gw(gw).https("/oauth2/token"),
        json!({"client_id": "clientid123", "client_secret": "secret123",
               "grant_type": "client_credentials", "scope": "email"}),
    );
    assert_eq!(answer.status, 200, "{}", answer.text);
    let bearer = format!("Bearer {}", answer.json().text("access_token"));
    let headers = [
        ("authorization", bearer.as_str()),
        ("mock-logged-in-as", "clark"),
    ];
    let read = kong
        .stack
        .client
        .get_with(&kong.gw(gw).http("/stepcounts"), &headers);
    assert_eq!(read.status, 401, "{}", read.text);
    assert!(
        read.header("www-authenticate").is_none(),
        "the filter refused, not the API: {}",
        read.text
    );
    let json = read.json();
    assert!(json["stepcounts"].is_null(), "{json}");
    assert_eq!(
        json["headers"]["x-consumer-id"],
        json!(kong.bob_id),
        "{json}"
    );
}
