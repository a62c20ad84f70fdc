//! The admin API driven through its router (no sockets): hostile bodies, cross-site requests,
//! concurrent updates and corrupt stored rows.

use crate::app::AppState;
use crate::store::Store;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Admin {
    dir: tempfile::TempDir,
    store: Store,
    router: Router,
}

struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn field(&self, pointer: &str) -> &Value {
        self.body.pointer(pointer).unwrap_or(&Value::Null)
    }
}

impl Admin {
    fn start() -> Admin {
        Admin::start_with(AppState::new)
    }

    fn start_with(state: impl FnOnce(Store, Option<String>) -> AppState) -> Admin {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("admin.db")).expect("store");
        let router = super::router(state(store.clone(), None));
        Admin { dir, store, router }
    }

    fn database(&self) -> std::path::PathBuf {
        self.dir.path().join("admin.db")
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Answer { status, body }
    }

    async fn raw(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(Body::from(body))
            .expect("request");
        self.send(request).await
    }

    async fn form(&self, method: &str, path: &str, body: &str) -> Answer {
        self.raw(
            method,
            path,
            "application/x-www-form-urlencoded",
            body.as_bytes().to_vec(),
        )
        .await
    }

    async fn json(&self, method: &str, path: &str, body: Value) -> Answer {
        self.raw(
            method,
            path,
            "application/json",
            serde_json::to_vec(&body).expect("json"),
        )
        .await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Request::get(path).body(Body::empty()).expect("request"))
            .await
    }

    /// A service `svc` with an `oauth2` plugin; returns the plugin's id.
    async fn plugin(&self, service: &str) -> String {
        let created = self
            .form("POST", "/services", &format!("name={service}"))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let plugin = self
            .form(
                "POST",
                &format!("/services/{service}/plugins"),
                "name=oauth2&config.enable_client_credentials=true",
            )
            .await;
        assert_eq!(plugin.status, StatusCode::CREATED, "{}", plugin.body);
        plugin.field("/id").as_str().expect("id").to_string()
    }
}

// ----- hostile bodies -----

#[tokio::test]
async fn deeply_dotted_form_keys_are_a_clear_400() {
    let admin = Admin::start();
    admin.plugin("svc").await;
    let key = format!("config{}", ".a".repeat(32_000));
    let answer = admin
        .form("POST", "/services/svc/plugins", &format!("{key}=1"))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(
        answer.field("/message").as_str().is_some(),
        "{}",
        answer.body
    );
    // Still serving.
    assert_eq!(admin.get("/services/svc").await.status, StatusCode::OK);
}

#[tokio::test]
async fn deeply_dotted_multipart_names_are_a_clear_400() {
    let admin = Admin::start();
    let name = format!("config{}", ".a".repeat(20_000));
    let body =
        format!("--XX\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n1\r\n--XX--\r\n");
    let answer = admin
        .raw(
            "POST",
            "/consumers",
            "multipart/form-data; boundary=XX",
            body.into_bytes(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
}

#[tokio::test]
async fn deeply_nested_json_is_a_clear_400() {
    let admin = Admin::start();
    let depth = 20_000;
    let body = format!(
        "{{\"username\":{}1{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let answer = admin
        .raw("POST", "/consumers", "application/json", body.into_bytes())
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let depth = 10_000;
    let body = format!("{{{}}}", "\"a\":{".repeat(depth) + &"}".repeat(depth));
    let answer = admin
        .raw("POST", "/consumers", "application/json", body.into_bytes())
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
}

#[tokio::test]
async fn too_many_or_too_long_form_keys_are_a_clear_400() {
    let admin = Admin::start();
    let many = (0..5_000)
        .map(|i| format!("k{i}=1"))
        .collect::<Vec<_>>()
        .join("&");
    let answer = admin.form("POST", "/consumers", &many).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let long = format!("{}=1&username=x", "k".repeat(2_000));
    let answer = admin.form("POST", "/consumers", &long).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
}

// ----- lifetimes -----

#[tokio::test]
async fn token_lifetimes_are_bounded() {
    let admin = Admin::start();
    let id = admin.plugin("svc").await;
    for field in ["token_expiration", "refresh_token_ttl"] {
        let answer = admin
            .form(
                "PATCH",
                &format!("/plugins/{id}"),
                &format!("config.{field}=9223372036854775807"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert!(
            answer.field(&format!("/fields/config/{field}")).is_string(),
            "{}",
            answer.body
        );
    }
    let answer = admin
        .form(
            "PATCH",
            &format!("/plugins/{id}"),
            "config.token_expiration=100000000",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

// ----- header-bound config strings -----

#[tokio::test]
async fn realm_and_auth_header_name_must_fit_in_a_header() {
    let admin = Admin::start();
    let id = admin.plugin("svc").await;
    let path = format!("/plugins/{id}");
    for realm in [
        "svc\r\nSet-Cookie: pwn=1",
        "a\"b",
        "a\\b",
        "tab\there",
        &"r".repeat(1_000),
    ] {
        let answer = admin
            .json("PATCH", &path, json!({"config": {"realm": realm}}))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{realm:?}");
        assert!(
            answer.field("/fields/config/realm").is_string(),
            "{}",
            answer.body
        );
    }
    for name in ["x y", "a:b", "x\r\ny", "(x)", &"h".repeat(1_000)] {
        let answer = admin
            .json(
                "PATCH",
                &path,
                json!({"config": {"auth_header_name": name}}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name:?}");
    }
    let answer = admin
        .json(
            "PATCH",
            &path,
            json!({"config": {"realm": "My API v2", "auth_header_name": "x-api-token"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.field("/config/realm"), "My API v2");
}

// ----- paths -----

#[tokio::test]
async fn every_admin_path_accepts_one_trailing_slash() {
    let admin = Admin::start();
    let created = admin.form("POST", "/consumers/", "username=x").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(admin.get("/consumers/x/").await.status, StatusCode::OK);
    let credential = admin
        .form("POST", "/consumers/x/oauth2/", "name=app&client_id=cid")
        .await;
    assert_eq!(
        credential.status,
        StatusCode::CREATED,
        "{}",
        credential.body
    );
    assert_eq!(admin.get("/oauth2/cid/").await.status, StatusCode::OK);
    assert_eq!(admin.get("/status/").await.status, StatusCode::OK);
    assert_eq!(admin.get("/").await.status, StatusCode::OK);
    assert_eq!(
        admin.get("/consumers//").await.status,
        StatusCode::NOT_FOUND
    );
}

// ----- credentials and consumers -----

#[tokio::test]
async fn redirect_uris_must_be_absolute_without_fragments_or_control_characters() {
    let admin = Admin::start();
    admin.form("POST", "/consumers", "username=u").await;
    for uri in [
        "/relative",
        "no-scheme.test/cb",
        "javascript:alert(1)",
        "https://app.test/cb#frag",
        "https://app.test/c\r\nb",
        "https://app.test/c\tb",
        "https://app.test/c b",
        "https:///nohost",
    ] {
        let answer = admin
            .json(
                "POST",
                "/consumers/u/oauth2",
                json!({"name": "app", "redirect_uris": [uri]}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri:?}");
        assert!(answer.field("/fields/redirect_uris").is_array(), "{uri:?}");
    }
    let answer = admin
        .json(
            "POST",
            "/consumers/u/oauth2",
            json!({"name": "app", "redirect_uris": ["https://app.test/cb?x=1", "myapp://callback/x"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}

#[tokio::test]
async fn a_username_that_is_another_consumers_id_is_refused() {
    let admin = Admin::start();
    let first = admin.form("POST", "/consumers", "username=first").await;
    let id = first.field("/id").as_str().expect("id").to_string();
    let clash = admin
        .form("POST", "/consumers", &format!("username={id}"))
        .await;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{}", clash.body);
    assert_eq!(clash.field("/fields/username"), "already exists");
    let second = admin.form("POST", "/consumers", "username=second").await;
    assert_eq!(second.status, StatusCode::CREATED);
    let rename = admin
        .form("PATCH", "/consumers/second", &format!("username={id}"))
        .await;
    assert_eq!(rename.status, StatusCode::CONFLICT, "{}", rename.body);
    let put = admin
        .form(
            "PUT",
            &format!("/consumers/{id}"),
            &format!("username={id}"),
        )
        .await;
    assert_eq!(
        put.status,
        StatusCode::OK,
        "its own id is fine: {}",
        put.body
    );
    assert_eq!(
        admin.get(&format!("/consumers/{id}")).await.status,
        StatusCode::OK
    );
}

// ----- cross-site requests -----

#[tokio::test]
async fn cross_site_browser_requests_are_refused() {
    let admin = Admin::start();
    let post = |origin: Option<&'static str>, fetch_site: Option<&'static str>| {
        let mut request =
            Request::post("/consumers").header("content-type", "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(site) = fetch_site {
            request = request.header("sec-fetch-site", site);
        }
        request
            .body(Body::from(format!("username=u{}", crate::model::new_id())))
            .expect("request")
    };
    for (origin, site) in [
        (Some("http://evil.test"), None),
        (Some("null"), None),
        (Some("http://evil.test"), Some("cross-site")),
        (None, Some("cross-site")),
        (None, Some("same-site")),
    ] {
        let answer = admin.send(post(origin, site)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{origin:?} {site:?}");
        assert!(answer.field("/message").is_string());
    }
    let answer = admin.send(post(None, None)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "curl and scripts");
    let answer = admin.send(post(None, Some("none"))).await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "typed in the address bar"
    );
    let listed = admin
        .get("/consumers")
        .await
        .field("/data")
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(listed, 2, "nothing cross-site was stored");
}

// ----- corrupt stored data -----

#[tokio::test]
async fn a_corrupt_plugin_config_is_an_error_not_the_default() {
    let admin = Admin::start();
    let id = admin.plugin("svc").await;
    let conn = rusqlite::Connection::open(admin.database()).expect("open");
    conn.execute(
        "UPDATE plugins SET config = '{\"provision_key\": 12' WHERE id = ?1",
        [&id],
    )
    .expect("corrupt it");
    drop(conn);
    let answer = admin.get(&format!("/plugins/{id}")).await;
    assert_ne!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        answer
            .field("/message")
            .as_str()
            .is_some_and(|m| m.contains("corrupt")),
        "{}",
        answer.body
    );
    assert!(answer.field("/config").is_null(), "no default config shown");
    assert!(
        admin.store.protected_service("svc").await.is_err(),
        "the gateway side fails closed"
    );
    // An operator can still remove it.
    let removed = admin
        .send(
            Request::delete(format!("/plugins/{id}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
}

// ----- concurrent updates -----

/// Sends two form PATCHes at once; both must answer 200.
async fn race(admin: &Admin, path: &str, a: &str, b: &str) {
    let send = |body: String| {
        let router = admin.router.clone();
        let path = path.to_string();
        tokio::spawn(async move {
            let request = Request::patch(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .expect("request");
            router.oneshot(request).await.expect("infallible").status()
        })
    };
    let (first, second) = (send(a.to_string()), send(b.to_string()));
    assert_eq!(first.await.expect("task"), StatusCode::OK);
    assert_eq!(second.await.expect("task"), StatusCode::OK);
}

/// Each round changes two different fields of one row at once; both changes must survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_lose_no_update() {
    let admin = Admin::start();
    admin.plugin("svc").await;
    admin.form("POST", "/consumers", "username=owner").await;
    let credential = admin
        .form("POST", "/consumers/owner/oauth2", "name=app&client_id=cid")
        .await;
    let credential_id = credential.field("/id").as_str().expect("id").to_string();
    let mut lost = Vec::new();
    for round in 0..20 {
        let plugin = admin
            .form("POST", "/services", &format!("name=s{round}"))
            .await;
        assert_eq!(plugin.status, StatusCode::CREATED);
        let plugin = admin
            .form(
                "POST",
                &format!("/services/s{round}/plugins"),
                "name=oauth2&config.enable_client_credentials=true",
            )
            .await;
        let plugin_path = format!("/plugins/{}", plugin.field("/id").as_str().expect("id"));
        race(
            &admin,
            &plugin_path,
            "config.hide_credentials=true",
            "config.realm=r",
        )
        .await;
        let got = admin.get(&plugin_path).await;
        if got.field("/config/hide_credentials") != true || got.field("/config/realm") != "r" {
            lost.push(format!("plugin {round}: {}", got.body["config"]));
        }

        admin
            .form("POST", "/consumers", &format!("username=c{round}"))
            .await;
        let path = format!("/consumers/c{round}");
        let custom_id = format!("x{round}");
        race(&admin, &path, &format!("custom_id={custom_id}"), "tags=t").await;
        let got = admin.get(&path).await;
        if got.field("/custom_id") != custom_id.as_str() || got.field("/tags/0") != "t" {
            lost.push(format!("consumer {round}: {}", got.body));
        }

        let path = format!("/services/s{round}");
        race(&admin, &path, "url=http://u.test", "tags=t").await;
        let got = admin.get(&path).await;
        if got.field("/url") != "http://u.test" || got.field("/tags/0") != "t" {
            lost.push(format!("service {round}: {}", got.body));
        }

        let path = format!("/oauth2/{credential_id}");
        let name = format!("app{round}");
        race(
            &admin,
            &path,
            &format!("name={name}"),
            &format!("tags=t{round}"),
        )
        .await;
        let got = admin.get(&path).await;
        if got.field("/name") != name.as_str()
            || got.field("/tags/0") != format!("t{round}").as_str()
        {
            lost.push(format!("credential {round}: {}", got.body));
        }

        let token = admin
            .form(
                "POST",
                "/oauth2_tokens",
                &format!("credential.id={credential_id}&expires_in=60"),
            )
            .await;
        assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
        let path = format!(
            "/oauth2_tokens/{}",
            token.field("/id").as_str().expect("id")
        );
        race(&admin, &path, "scope=s", "authenticated_userid=me").await;
        let got = admin.get(&path).await;
        if got.field("/scope") != "s" || got.field("/authenticated_userid") != "me" {
            lost.push(format!("token {round}: {}", got.body));
        }
    }
    assert!(lost.is_empty(), "lost updates:\n{}", lost.join("\n"));
}

#[tokio::test]
async fn a_tokens_expires_in_is_bounded() {
    let admin = Admin::start();
    admin.form("POST", "/consumers", "username=u").await;
    let credential = admin.form("POST", "/consumers/u/oauth2", "name=app").await;
    let id = credential.field("/id").as_str().expect("id").to_string();
    for expires_in in ["9223372036854775807", "-1"] {
        let answer = admin
            .form(
                "POST",
                "/oauth2_tokens",
                &format!("credential.id={id}&expires_in={expires_in}"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert!(answer.field("/fields/expires_in").is_string());
    }
}

#[tokio::test]
async fn allowed_origins_may_call_with_cors_answers() {
    let admin = Admin::start_with(|store, key| {
        AppState::new(store, key).with_admin_origins(super::AllowedOrigins::new(
            vec!["https://ui.test".parse().expect("origin")],
            Some("127.0.0.1:8001".parse().expect("addr")),
        ))
    });
    for origin in ["https://ui.test", "http://localhost:8001"] {
        let response = admin
            .router
            .clone()
            .oneshot(
                Request::post("/consumers")
                    .header("origin", origin)
                    .header("sec-fetch-site", "cross-site")
                    .header("content-type", "application/json")
                    .body(Body::from(format!(
                        r#"{{"username": "{}"}}"#,
                        crate::model::new_id()
                    )))
                    .expect("request"),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::CREATED, "{origin}");
        assert_eq!(
            response.headers().get("access-control-allow-origin"),
            Some(&axum::http::HeaderValue::from_static(origin))
        );
    }
    let preflight = admin
        .router
        .clone()
        .oneshot(
            Request::options("/consumers/")
                .header("origin", "https://ui.test")
                .header("access-control-request-method", "PATCH")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert!(preflight
        .headers()
        .get("access-control-allow-methods")
        .is_some_and(|m| m.to_str().unwrap_or("").contains("PATCH")));
    let refused = admin.form("POST", "/consumers", "username=x").await;
    assert_eq!(
        refused.status,
        StatusCode::CREATED,
        "no Origin: not a browser page"
    );
}

#[tokio::test]
async fn strings_that_reach_upstream_headers_carry_no_control_characters() {
    let admin = Admin::start();
    for (field, value) in [
        ("username", "bob\r\nX-Consumer-ID: admin"),
        ("custom_id", "a\u{0}b"),
    ] {
        let answer = admin
            .json("POST", "/consumers", json!({ field: value }))
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{field}");
        assert!(answer.field(&format!("/fields/{field}")).is_string());
    }
    let id = admin.plugin("svc").await;
    for scopes in [json!(["email", "a b"]), json!(["x\r\ny"]), json!(["q\""])] {
        let answer = admin
            .json(
                "PATCH",
                &format!("/plugins/{id}"),
                json!({"config": {"scopes": scopes}}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{scopes}");
        assert!(answer.field("/fields/config/scopes").is_string());
    }
    let answer = admin
        .form(
            "PATCH",
            &format!("/plugins/{id}"),
            "config.scopes=email,user:read",
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

// ----- found by schemathesis against docs/openapi.json -----

/// axum's `Query` answered a repeated `size` with a plain-text 400; every admin answer is a
/// JSON error in Kong's shape.
#[tokio::test]
async fn a_repeated_list_parameter_is_a_json_400() {
    let admin = Admin::start();
    admin.plugin("svc").await;
    for path in [
        "/consumers?size=1&size=2",
        "/services?offset=0&offset=1",
        "/plugins?size=null&size=null",
        "/services/svc/plugins?size=1&size=1",
        "/oauth2_tokens?offset=&offset=",
    ] {
        let answer = admin.get(path).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            answer.field("/message").is_string(),
            "{path}: {}",
            answer.body
        );
        assert_eq!(
            answer.field("/fields").as_object().map(|f| f.len()),
            Some(1),
            "{path}: {}",
            answer.body
        );
    }
    // Other parameters are still ignored, and one of each still works.
    let answer = admin.get("/services?size=1&offset=0&tags=x&tags=y").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

/// axum's `Path` answered a percent-encoded path segment that is not UTF-8 with a plain-text
/// 400; the description (and Kong) promise a JSON error.
#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_a_json_400() {
    let admin = Admin::start();
    for (method, path) in [
        ("GET", "/consumers/%FF"),
        ("DELETE", "/consumers/%FF"),
        ("GET", "/consumers/%FF/oauth2"),
        ("PATCH", "/oauth2_tokens/%C0"),
        ("GET", "/plugins/%FF"),
        ("POST", "/services/%FF/plugins"),
    ] {
        let answer = admin.json(method, path, json!({})).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{method} {path}");
        let message = answer.field("/message").as_str().unwrap_or_default();
        assert!(
            message.contains("UTF-8"),
            "{method} {path}: {}",
            answer.body
        );
    }
}
