//! Declarative configuration against the real binary behind Envoy: a file sent as
//! `curl -F config=@file` creates a consumer and its application; a sync of the file without
//! the consumer revokes its token on the running Envoy within the bound, while what the file
//! does not manage (untagged) keeps working.

use e2e::kong::{eventually_everywhere, Kong};
use e2e::Text;
use serde_json::{json, Value};
use std::process::Command;

const SECRET: &str = "declared-secret";

/// The file: consumer `declared` and its application, managed by the tag `e2e-declared`.
fn file(with_consumer: bool) -> String {
    let mut text = String::from(
        "_format_version: \"3.0\"\n_info:\n  select_tags: [e2e-declared]\nconsumers: []\n",
    );
    if with_consumer {
        text = text.replace(
            "consumers: []\n",
            &format!(
                "consumers:\n  - username: declared\n    oauth2_credentials:\n      - name: Declared App\n        client_id: declared-client\n        client_secret: {SECRET}\n"
            ),
        );
    }
    text
}

/// What `curl -F config=@FILE URL` answers: (status, body).
fn curl_form(url: &str, content: &str) -> (u16, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kong.yml");
    std::fs::write(&path, content).expect("write the file");
    let output = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-F"])
        .arg(format!("config=@{}", path.display()))
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (status.trim().parse().unwrap_or(0), body)
}

#[test]
fn a_sync_removing_a_consumer_revokes_its_token_on_envoy_within_the_bound() {
    let mut kong = Kong::start();
    // Long-lived tokens: a 401 below is the sync's doing, not expiry.
    let gw = kong.protect(
        "oauth2",
        json!({"enable_client_credentials": true, "token_expiration": 3600}),
    );
    let stack = &kong.stack;
    let config = stack.admin("/config");

    let (status, body) = curl_form(&format!("{config}?dry_run=true"), &file(true));
    assert_eq!(
        (status, &body["summary"]["create"]),
        (200, &json!(2)),
        "{body}"
    );
    assert_eq!(
        stack.admin_get("/consumers/declared").status,
        404,
        "a dry run changes nothing"
    );
    let (status, body) = curl_form(&config, &file(true));
    assert_eq!(
        (status, &body["summary"]["create"]),
        (200, &json!(2)),
        "{body}"
    );

    let url = kong.gw(gw).https("/oauth2/token");
    let grant = json!({"grant_type": "client_credentials", "client_id": "declared-client",
                       "client_secret": SECRET, "scope": "email"});
    let answer = kong.post(&url, grant);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let declared = answer.json().text("access_token");
    let untagged = kong.provision_token(gw).text("access_token");
    assert_eq!(kong.get_with_token(gw, "/request", &declared).status, 200);

    let (status, body) = curl_form(&config, &file(false));
    assert_eq!(
        (status, &body["summary"]["delete"]),
        (200, &json!(2)),
        "{body}"
    );
    assert!(
        eventually_everywhere(|| kong.get_with_token(gw, "/request", &declared).status == 401),
        "the declared consumer's token still works"
    );
    // Bob (untagged, not the file's) is left alone, and so is his token.
    assert_eq!(kong.get_with_token(gw, "/request", &untagged).status, 200);
    // A second sync of the same file changes nothing.
    let (status, body) = curl_form(&config, &file(false));
    assert_eq!(
        (status, &body["summary"]),
        (200, &json!({"create": 0, "update": 0, "delete": 0}))
    );
}

#[test]
fn a_bad_file_is_refused_naming_the_field_and_changes_nothing() {
    let kong = Kong::start();
    let stack = &kong.stack;
    let bad = file(true).replace("client_secret:", "colour: red\n        client_secret:");
    let (status, body) = curl_form(&stack.admin("/config"), &bad);
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["fields"]["consumers[0].oauth2_credentials[0].colour"], "unknown field",
        "{body}"
    );
    assert_eq!(stack.admin_get("/consumers/declared").status, 404);
}
