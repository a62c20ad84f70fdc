//! The OAuth endpoints under attack, through Envoy: who may introspect and revoke, PKCE
//! downgrade, racing redemptions, and metadata a client cannot steer.

use e2e::kong::{eventually, oauth_error, Kong, PROVISION_KEY};
use e2e::stack::Stack;
use e2e::Text;
use serde_json::{json, Value};
use std::time::Duration;

/// The token-service's default `--replay-grace-s`, plus a margin: a code or refresh token
/// presented again after this long is a replay (it revokes), not a lost race.
pub fn after_the_replay_window() {
    std::thread::sleep(Duration::from_millis(6100));
}

#[test]
fn introspection_and_revocation_refuse_public_clients_and_plain_http() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({"token_expiration": 600}));
    let token = kong.provision_token(gw).text("access_token");
    for endpoint in ["/oauth2/introspect", "/oauth2/revoke"] {
        // Anyone knows a public client's id: it authenticates nothing.
        let a = kong.post(
            &kong.gw(gw).https(endpoint),
            json!({"token": token, "client_id": "clientid11211"}),
        );
        assert_eq!(
            (a.status, a.json()),
            (
                401,
                oauth_error("invalid_client", "Invalid client authentication")
            ),
            "{endpoint}"
        );
        assert_eq!(
            a.header("www-authenticate").as_deref(),
            Some("Basic realm=\"OAuth2.0\"")
        );
        // Plain HTTP is refused like at the token endpoint, even for a good client.
        let a = kong.post(
            &kong.gw(gw).http(endpoint),
            json!({"token": token, "client_id": "clientid789", "client_secret": "secret789"}),
        );
        assert_eq!(
            (a.status, a.json()),
            (400, oauth_error("access_denied", "You must use HTTPS")),
            "{endpoint}"
        );
    }
    assert_eq!(kong.get_with_token(gw, "/request", &token).status, 200);
    let a = kong.post(
        &kong.gw(gw).https("/oauth2/introspect"),
        json!({"token": token, "client_id": "clientid789", "client_secret": "secret789"}),
    );
    assert_eq!((a.status, a.json()["active"].clone()), (200, json!(true)));
}

#[test]
fn a_code_verifier_for_a_code_issued_without_challenge_is_refused() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({}));
    let code = kong.provision_code(gw, "clientid123", json!({}));
    let a = kong.post(
        &kong.gw(gw).https("/oauth2/token"),
        json!({"code": code, "client_id": "clientid123", "client_secret": "secret123",
               "grant_type": "authorization_code",
               "code_verifier": "abcdelfhigklmnopqrstuvwxyz0123456789abcdefg"}),
    );
    assert_eq!(
        (a.status, a.json()),
        (400, oauth_error("invalid_grant", "Invalid code"))
    );
}

/// Threads fire the same redemption at once; exactly one wins and keeps its tokens.
fn race(kong: &Kong, url: &str, body: Value) -> Value {
    let barrier = std::sync::Barrier::new(8);
    let answers: Vec<_> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    kong.post(url, body.clone())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    let winners: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one redemption wins");
    for loser in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(loser.status, 400, "{}", loser.text);
    }
    winners[0].json()
}

#[test]
fn racing_redemptions_leave_the_winner_its_tokens_and_late_replays_revoke() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({"token_expiration": 600}));
    let url = kong.gw(gw).https("/oauth2/token");
    let code = kong.provision_code(gw, "clientid123", json!({}));
    let exchange = json!({"code": code, "client_id": "clientid123", "client_secret": "secret123",
                          "grant_type": "authorization_code"});
    let pair = race(&kong, &url, exchange.clone());
    let refresh = |token: &str| {
        json!({"refresh_token": token, "client_id": "clientid123", "client_secret": "secret123",
               "grant_type": "refresh_token"})
    };
    let next = race(&kong, &url, refresh(&pair.text("refresh_token")));
    let access = next.text("access_token");
    // The losers revoked nothing: the winner's newest tokens work.
    assert_eq!(kong.get_with_token(gw, "/request", &access).status, 200);

    // Long after, the spent refresh token comes back: a thief has it, the family dies.
    after_the_replay_window();
    let a = kong.post(&url, refresh(&pair.text("refresh_token")));
    assert_eq!(
        a.json(),
        oauth_error("invalid_request", "Invalid refresh_token")
    );
    assert!(eventually(|| kong
        .get_with_token(gw, "/request", &access)
        .status
        == 401));
    let a = kong.post(&url, refresh(&next.text("refresh_token")));
    assert_eq!(a.status, 400, "{}", a.text);
}

#[test]
fn metadata_names_the_configured_issuer_whatever_the_host() {
    let mut stack = Stack::start_services_with(&["--issuer", "https://gw.example.com"]);
    stack.create_service("api");
    let plugin = stack.client.post_json(
        &stack.admin("/services/api/plugins"),
        &json!({"name": "oauth2", "config": {"enable_authorization_code": true, "provision_key": PROVISION_KEY}}),
    );
    assert_eq!(plugin.status, 201, "{}", plugin.text);
    stack.add_gateway("api", "/api");
    let gw = stack.gateway();
    let url = gw.https("/.well-known/oauth-authorization-server");
    for headers in [
        vec![],
        vec![("host", "evil.example")],
        vec![
            ("host", "evil.example:8443"),
            ("x-forwarded-host", "evil.example"),
            ("x-gateway-host", "evil.example"),
            ("x-gateway-prefix", "/elsewhere"),
        ],
    ] {
        let m = stack.client.get_with(&url, &headers);
        assert_eq!(m.status, 200, "{}", m.text);
        let m = m.json();
        assert_eq!(m["issuer"], "https://gw.example.com/api", "{headers:?}");
        assert_eq!(
            m["token_endpoint"],
            "https://gw.example.com/api/oauth2/token"
        );
        assert_eq!(
            m["revocation_endpoint"],
            "https://gw.example.com/api/oauth2/revoke"
        );
    }
}

/// Issue 18: the OAuth endpoints answer under the route's declared prefix only
/// (`oauth2.prefix` in the template's route metadata), not under any path a client makes up
/// below it, nor with `..` or `//` (Envoy normalizes the path first).
#[test]
fn endpoints_answer_only_under_the_routes_own_prefix() {
    let mut kong = Kong::start();
    let gw = kong.protect("oauth2", json!({"enable_client_credentials": true}));
    let body = json!({"client_id": "clientid123", "client_secret": "secret123",
                      "grant_type": "client_credentials", "scope": "email"});
    let token = kong.post(&kong.gw(gw).https("/oauth2/token"), body.clone());
    assert_eq!(token.status, 200, "{}", token.text);
    for path in ["/x/oauth2/token", "/x/y/oauth2/token"] {
        let a = kong.post(&kong.gw(gw).https(path), body.clone());
        assert_eq!(a.status, 401, "{path}: {}", a.text);
        assert!(!a.text.contains("access_token"), "{path}: {}", a.text);
    }
    let metadata = |path: &str| kong.stack.client.get(&kong.gw(gw).https(path));
    assert_eq!(
        metadata("/.well-known/oauth-authorization-server").status,
        200
    );
    assert_eq!(
        metadata("/x/.well-known/oauth-authorization-server").status,
        401
    );
    // Normalized by Envoy before the filter sees it: the route's own endpoint.
    let a = kong.post(&kong.gw(gw).https("/x/../oauth2/token"), body.clone());
    assert_eq!(a.status, 200, "{}", a.text);
    let a = kong.post(&kong.gw(gw).https("//oauth2//token"), body);
    assert_eq!(a.status, 200, "{}", a.text);
}
