//! The admin API in Kong's shape (AP1–AP41, SC1–SC14): statuses, bodies, field errors,
//! look-ups by id or natural key, pagination, cascades. No Envoy needed.

use e2e::stack::Stack;
use e2e::Text;
use serde_json::{json, Value};

fn ok(answer: &e2e::Answer, status: u16) -> Value {
    assert_eq!(answer.status, status, "{}", answer.text);
    answer.json()
}

#[test]
fn consumers_and_their_credentials() {
    let stack = Stack::start_services();
    let c = &stack.client;
    let bob = ok(
        &c.post_json(&stack.admin("/consumers"), &json!({"username": "bob"})),
        201,
    );
    assert!(
        bob["id"].as_str().is_some_and(|id| id.len() == 36) && bob["created_at"].as_i64().is_some()
    );
    ok(
        &c.post_json(
            &stack.admin("/consumers"),
            &json!({"username": "alice", "custom_id": "a-1"}),
        ),
        201,
    );
    // Unique usernames: 409; a consumer needs a name.
    let dup = c.post_json(&stack.admin("/consumers"), &json!({"username": "bob"}));
    assert_eq!(dup.status, 409);
    assert_eq!(dup.json()["fields"], json!({"username": "already exists"}));
    let none = c.post_json(&stack.admin("/consumers"), &json!({}));
    assert_eq!(none.status, 400);
    assert_eq!(
        none.json()["fields"]["@entity"],
        json!(["at least one of these fields must be non-empty: 'custom_id', 'username'"])
    );
    // Look-ups by id and by username.
    let id = bob["id"].as_str().unwrap_or_default();
    assert_eq!(
        ok(&stack.admin_get(&format!("/consumers/{id}")), 200)["username"],
        "bob"
    );
    assert_eq!(ok(&stack.admin_get("/consumers/bob"), 200)["id"], bob["id"]);
    assert_eq!(stack.admin_get("/consumers/nobody").status, 404);
    assert_eq!(
        stack.admin_get("/consumers/nobody").json(),
        json!({"message": "Not found"})
    );

    // AP1/AP3: credentials with generated client_id and secret, one or two redirect URIs.
    let k = ok(&c.post_json(&stack.admin("/consumers/bob/oauth2"), &json!({"name": "Tags are not enough", "redirect_uris": ["http://google.test/", "http://google.example/"], "tags": ["tag1", "tag2"]})), 201);
    assert_eq!(k["consumer"], json!({"id": id}));
    assert_eq!(
        k["redirect_uris"],
        json!(["http://google.test/", "http://google.example/"])
    );
    assert_eq!(k["tags"], json!(["tag1", "tag2"]));
    assert_eq!(k["client_type"], "confidential");
    for field in ["client_id", "client_secret"] {
        assert!(
            k[field].as_str().is_some_and(|v| v.len() == 32),
            "{field}: {k}"
        );
    }
    // The seed's single redirect_uri, as a form.
    let f = ok(
        &stack.admin_post(
            "/consumers/bob/oauth2",
            &[("name", "Form"), ("redirect_uri", "http://a.test/cb")],
        ),
        201,
    );
    assert_eq!(f["redirect_uris"], json!(["http://a.test/cb"]));
    // AP5/AP6: hash_secret shows the secret once and stores a hash.
    let h = ok(
        &c.post_json(
            &stack.admin("/consumers/bob/oauth2"),
            &json!({"name": "hashed", "client_secret": "test", "hash_secret": true}),
        ),
        201,
    );
    assert_eq!(
        (h["client_secret"].clone(), h["hash_secret"].clone()),
        (json!("test"), json!(true))
    );
    let shown = ok(
        &stack.admin_get(&format!("/oauth2/{}", h["id"].as_str().unwrap_or_default())),
        200,
    );
    assert!(
        shown["client_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("$pbkdf2-sha512$i=10000,l=32$")),
        "{shown}"
    );
    // AP9/AP10: field errors.
    assert_eq!(
        ok(
            &c.post_json(&stack.admin("/consumers/bob/oauth2"), &json!({})),
            400
        )["fields"],
        json!({"name": "required field missing"})
    );
    let bad = ok(&c.post_json(&stack.admin("/consumers/bob/oauth2"), &json!({"name": "x", "redirect_uris": ["http://ok.test/", "not-valid", "http://test.test/#with-fragment"]})), 400);
    assert_eq!(
        bad["fields"]["redirect_uris"],
        json!([
            null,
            "cannot parse 'not-valid'",
            "fragment not allowed in 'http://test.test/#with-fragment'"
        ])
    );
    // AP11: PUT creates with the key as client_id.
    let put = ok(
        &c.put_json(
            &stack.admin("/consumers/bob/oauth2/client_one"),
            &json!({"name": "one"}),
        ),
        200,
    );
    assert_eq!(put["client_id"], "client_one");
    // AP14–AP17: by id or client_id, and only under its own consumer.
    let kid = k["id"].as_str().unwrap_or_default();
    let cid = k["client_id"].as_str().unwrap_or_default();
    assert_eq!(
        stack
            .admin_get(&format!("/consumers/bob/oauth2/{kid}"))
            .status,
        200
    );
    assert_eq!(
        stack
            .admin_get(&format!("/consumers/bob/oauth2/{cid}"))
            .status,
        200
    );
    assert_eq!(
        stack
            .admin_get(&format!("/consumers/alice/oauth2/{kid}"))
            .status,
        404
    );
    assert_eq!(
        stack
            .admin_get(&format!("/consumers/alice/oauth2/{cid}"))
            .status,
        404
    );
    // AP18/AP21/AP22: PATCH, and client_secret goes with hash_secret.
    let p = ok(
        &c.patch_json(
            &stack.admin(&format!("/consumers/bob/oauth2/{cid}")),
            &json!({"name": "renamed"}),
        ),
        200,
    );
    assert_eq!(p["name"], "renamed");
    for body in [json!({"client_secret": "x"}), json!({"hash_secret": true})] {
        let e = ok(
            &c.patch_json(&stack.admin(&format!("/consumers/bob/oauth2/{kid}")), &body),
            400,
        );
        assert_eq!(
            e["fields"]["@entity"],
            json!(["all or none of these fields must be set: 'hash_secret', 'client_secret'"])
        );
    }
    // AP26/AP27: /oauth2 needs the consumer.
    let e = ok(
        &c.post_json(&stack.admin("/oauth2"), &json!({"name": "x"})),
        400,
    );
    assert_eq!(
        e["message"],
        "schema violation (consumer: required field missing)"
    );
    ok(
        &c.post_json(
            &stack.admin("/oauth2"),
            &json!({"name": "x", "consumer": {"id": id}}),
        ),
        201,
    );
    // AP13 and pagination: size, next, offset.
    let all = ok(&stack.admin_get("/oauth2?size=2"), 200);
    assert_eq!(all["data"].as_array().map(Vec::len), Some(2));
    let next = all.text("next");
    let page2 = ok(&stack.admin_get(&next), 200);
    assert_eq!(page2["data"].as_array().map(Vec::len), Some(2));
    assert_ne!(page2["data"][0]["id"], all["data"][0]["id"]);
    assert_eq!(stack.admin_get("/oauth2?size=0").status, 400);
    // AP23–AP25: DELETE, and 404 for unknown credentials.
    assert_eq!(
        c.delete(&stack.admin(&format!("/consumers/bob/oauth2/{kid}")))
            .status,
        204
    );
    assert_eq!(
        c.delete(&stack.admin("/consumers/bob/oauth2/blah")).status,
        404
    );
    assert_eq!(
        c.delete(&stack.admin("/consumers/bob/oauth2/00000000-0000-0000-0000-000000000000"))
            .status,
        404
    );
    // Deleting the consumer removes its credentials.
    assert_eq!(c.delete(&stack.admin("/consumers/bob")).status, 204);
    assert_eq!(
        stack
            .admin_get(&format!("/oauth2/{}", h["id"].as_str().unwrap_or_default()))
            .status,
        404
    );
}

#[test]
fn services_plugins_and_tokens() {
    let stack = Stack::start_services();
    let c = &stack.client;
    let svc = stack.create_service("svc");
    assert_eq!(
        c.post_json(&stack.admin("/services"), &json!({"name": "svc"}))
            .status,
        409
    );
    let plugins = stack.admin("/services/svc/plugins");
    // SC10/SC11/SC8: config validation with Kong's messages.
    let e = ok(
        &c.post_json(&plugins, &json!({"name": "oauth2", "config": {}})),
        400,
    );
    assert_eq!(e["fields"]["config"], "at least one of these fields must be true: enable_authorization_code, enable_implicit_grant, enable_client_credentials, enable_password_grant");
    let e = ok(&c.post_json(&plugins, &json!({"name": "oauth2", "config": {"enable_authorization_code": true, "mandatory_scope": true}})), 400);
    assert_eq!(
        e["fields"]["config"],
        json!({"scopes": "required field missing"})
    );
    let e = ok(&c.post_json(&plugins, &json!({"name": "oauth2", "config": {"enable_authorization_code": true, "refresh_token_ttl": 252979200}})), 400);
    assert_eq!(
        e["fields"]["config"],
        json!({"refresh_token_ttl": "value should be between 0 and 100000000"})
    );
    // SC3/SC5/SC7/SC9: defaults, and a generated provision key.
    let p = ok(
        &stack.admin_post(
            "/services/svc/plugins",
            &[
                ("name", "oauth2"),
                ("config.enable_authorization_code", "true"),
                ("config.scopes", "a,b"),
            ],
        ),
        201,
    );
    let config = &p["config"];
    assert_eq!(config["provision_key"].as_str().map(str::len), Some(32));
    assert_eq!(
        (
            config["auth_header_name"].clone(),
            config["refresh_token_ttl"].clone()
        ),
        (json!("authorization"), json!(1209600))
    );
    assert_eq!(
        (
            config["reuse_refresh_token"].clone(),
            config["token_expiration"].clone(),
            config["pkce"].clone()
        ),
        (json!(false), json!(7200), json!("lax"))
    );
    assert_eq!(config["scopes"], json!(["a", "b"]));
    // One oauth2 plugin per service.
    assert_eq!(
        c.post_json(
            &plugins,
            &json!({"name": "oauth2", "config": {"enable_implicit_grant": true}})
        )
        .status,
        409
    );
    // PATCH, including the older persistent_refresh_token name.
    let pid = p["id"].as_str().unwrap_or_default();
    let patched = ok(
        &c.patch_json(
            &stack.admin(&format!("/plugins/{pid}")),
            &json!({"config": {"persistent_refresh_token": true}}),
        ),
        200,
    );
    assert_eq!(patched["config"]["reuse_refresh_token"], true);
    assert_eq!(
        ok(&stack.admin_get("/plugins"), 200)["data"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Tokens (AP30–AP41).
    ok(
        &c.post_json(&stack.admin("/consumers"), &json!({"username": "bob"})),
        201,
    );
    let k = ok(
        &c.post_json(
            &stack.admin("/consumers/bob/oauth2"),
            &json!({"name": "app", "redirect_uris": ["http://a.test/"]}),
        ),
        201,
    );
    let e = ok(
        &c.post_json(&stack.admin("/oauth2_tokens"), &json!({})),
        400,
    );
    assert_eq!(
        e["fields"],
        json!({"expires_in": "required field missing", "credential": "required field missing"})
    );
    let t = ok(
        &c.post_json(
            &stack.admin("/oauth2_tokens"),
            &json!({"credential": {"id": k["id"]}, "service": {"id": svc["id"]}, "expires_in": 10}),
        ),
        201,
    );
    assert_eq!(
        (
            t["token_type"].clone(),
            t["refresh_token"].clone(),
            t["expires_in"].clone()
        ),
        (json!("bearer"), Value::Null, json!(10))
    );
    let access = t.text("access_token");
    assert_eq!(access.len(), 32);
    // By id and by access_token; the token itself is never shown again.
    let by_token = ok(&stack.admin_get(&format!("/oauth2_tokens/{access}")), 200);
    assert_eq!(by_token["id"], t["id"]);
    assert!(by_token.get("access_token").is_none());
    let e = ok(
        &c.patch_json(
            &stack.admin(&format!("/oauth2_tokens/{access}")),
            &json!({"expires_in": "hello"}),
        ),
        400,
    );
    assert_eq!(e["fields"], json!({"expires_in": "expected an integer"}));
    let p = ok(
        &c.patch_json(
            &stack.admin(&format!(
                "/oauth2_tokens/{}",
                t["id"].as_str().unwrap_or_default()
            )),
            &json!({"expires_in": 20}),
        ),
        200,
    );
    assert_eq!(p["expires_in"], 20);
    // AP35: PUT with a non-UUID key creates that access token.
    let put = c.put_json(
        &stack.admin("/oauth2_tokens/foobar"),
        &json!({"credential": {"id": k["id"]}, "expires_in": 10}),
    );
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(stack.admin_get("/oauth2_tokens/foobar").status, 200);
    // AP40/AP41: DELETE is idempotent.
    assert_eq!(c.delete(&stack.admin("/oauth2_tokens/foobar")).status, 204);
    assert_eq!(c.delete(&stack.admin("/oauth2_tokens/blah")).status, 204);
    assert_eq!(stack.admin_get("/oauth2_tokens/foobar").status, 404);
    // SC14: deleting the service cascades to its plugin and tokens.
    assert_eq!(c.delete(&stack.admin("/services/svc")).status, 204);
    assert_eq!(
        stack.admin_get(&format!("/oauth2_tokens/{access}")).status,
        404
    );
    assert_eq!(ok(&stack.admin_get("/plugins"), 200)["data"], json!([]));
}

#[test]
fn data_survives_a_restart() {
    let mut stack = Stack::start_services();
    ok(
        &stack
            .client
            .post_json(&stack.admin("/consumers"), &json!({"username": "durable"})),
        201,
    );
    stack.restart_token_service();
    assert_eq!(stack.admin_get("/consumers/durable").status, 200);
}

/// Issue 19: an operator's typo, or a value of the wrong type, used to answer 201 and do
/// nothing. Through the released binary, as an operator's curl sends them: Kong's 400.
#[test]
fn typos_and_wrong_types_are_refused_not_ignored() {
    let stack = Stack::start_services();
    let c = &stack.client;
    stack.create_service("svc");
    let typo = stack.admin_post(
        "/services/svc/plugins",
        &[
            ("name", "oauth2"),
            ("config.enable_client_credential", "true"),
        ],
    );
    assert_eq!(
        ok(&typo, 400),
        json!({
            "code": 2,
            "name": "schema violation",
            "message": "schema violation (config.enable_client_credential: unknown field)",
            "fields": {"config": {"enable_client_credential": "unknown field"}},
        })
    );
    let stray = c.post_json(
        &stack.admin("/consumers"),
        &json!({"username": "u", "no_such": 1}),
    );
    assert_eq!(
        ok(&stray, 400)["fields"],
        json!({"no_such": "unknown field"})
    );
    let number = c.post_json(&stack.admin("/consumers"), &json!({"username": 12345}));
    assert_eq!(
        ok(&number, 400)["fields"],
        json!({"username": "expected a string"})
    );
    // Nothing was stored; the same fields spelt right are taken.
    assert_eq!(ok(&stack.admin_get("/consumers"), 200)["data"], json!([]));
    assert_eq!(ok(&stack.admin_get("/plugins"), 200)["data"], json!([]));
    let plugin = stack.admin_post(
        "/services/svc/plugins",
        &[
            ("name", "oauth2"),
            ("config.enable_client_credentials", "true"),
        ],
    );
    assert_eq!(
        ok(&plugin, 201)["config"]["enable_client_credentials"],
        true
    );
}
