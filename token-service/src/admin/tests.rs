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

// ----- the shape of admin input: unknown fields and types (issue 19) -----

/// The `(name, text)` pairs a form or multipart body carries for a JSON body: nested objects
/// by dotted names, arrays as repeated names, every value as text.
fn form_pairs(prefix: &str, body: &Value, pairs: &mut Vec<(String, String)>) {
    match body {
        Value::Object(fields) => {
            for (name, value) in fields {
                let dotted = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                form_pairs(&dotted, value, pairs);
            }
        }
        Value::Array(items) => {
            for item in items {
                form_pairs(prefix, item, pairs);
            }
        }
        Value::String(text) => pairs.push((prefix.to_string(), text.clone())),
        other => pairs.push((prefix.to_string(), other.to_string())),
    }
}

fn form_of(body: &Value) -> String {
    let mut pairs = Vec::new();
    form_pairs("", body, &mut pairs);
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `(encoding, content type, body)` of one JSON body in the three encodings.
fn encodings(body: &Value) -> [(&'static str, &'static str, Vec<u8>); 3] {
    [
        ("json", "application/json", body.to_string().into_bytes()),
        (
            "form",
            "application/x-www-form-urlencoded",
            form_of(body).into_bytes(),
        ),
        (
            "multipart",
            "multipart/form-data; boundary=XX",
            multipart_of(body),
        ),
    ]
}

fn multipart_of(body: &Value) -> Vec<u8> {
    let mut pairs = Vec::new();
    form_pairs("", body, &mut pairs);
    let mut out = String::new();
    for (name, value) in pairs {
        out.push_str(&format!(
            "--XX\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    out.push_str("--XX--\r\n");
    out.into_bytes()
}

impl Admin {
    /// The same body as JSON, as a form and as multipart; the three answers.
    async fn every_encoding(&self, method: &str, path: &str, body: &Value) -> [Answer; 3] {
        let [json, form, multipart] = encodings(body);
        [
            self.raw(method, path, json.1, json.2).await,
            self.raw(method, path, form.1, form.2).await,
            self.raw(method, path, multipart.1, multipart.2).await,
        ]
    }

    async fn service(&self, name: &str) {
        let created = self
            .json("POST", "/services", json!({ "name": name }))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }

    /// One entity of each kind to change: consumer `u0`, its credential `c0`, service `s0`
    /// with a plugin, and a token `t0`. Returns (consumer id, credential id, plugin id).
    async fn one_of_each(&self) -> (String, String, String) {
        let plugin = self.plugin("s0").await;
        let consumer = self
            .json("POST", "/consumers", json!({"username": "u0"}))
            .await;
        assert_eq!(consumer.status, StatusCode::CREATED, "{}", consumer.body);
        let credential = self
            .json(
                "POST",
                "/consumers/u0/oauth2",
                json!({"name": "app", "client_id": "c0", "redirect_uris": ["https://app.test/cb"]}),
            )
            .await;
        assert_eq!(
            credential.status,
            StatusCode::CREATED,
            "{}",
            credential.body
        );
        let credential_id = credential
            .field("/id")
            .as_str()
            .unwrap_or_default()
            .to_string();
        let token = self
            .json(
                "POST",
                "/oauth2_tokens",
                json!({"credential": {"id": credential_id}, "expires_in": 60, "access_token": "t0"}),
            )
            .await;
        assert_eq!(token.status, StatusCode::CREATED, "{}", token.body);
        let consumer_id = consumer
            .field("/id")
            .as_str()
            .unwrap_or_default()
            .to_string();
        (consumer_id, credential_id, plugin)
    }
}

/// Kong's answer to input its schema refuses.
fn schema_violation(fields: Value, message: &str) -> Value {
    json!({"code": 2, "name": "schema violation", "message": message, "fields": fields})
}

/// An operator's typo used to answer 2xx and do nothing; Kong answers 400 naming the field,
/// on every entity, in the plugin's `config`, in every encoding, and on POST, PUT and PATCH.
#[tokio::test]
async fn unknown_fields_are_a_schema_violation_naming_each() {
    let admin = Admin::start();
    let (consumer, credential, plugin) = admin.one_of_each().await;
    let unknown = json!({"no_such": "unknown field"});
    let cases: Vec<(&str, String, Value, Value)> = vec![
        (
            "POST",
            "/consumers".into(),
            json!({"username": "n1", "no_such": 1}),
            unknown.clone(),
        ),
        (
            "PUT",
            "/consumers/n1".into(),
            json!({"no_such": 1}),
            unknown.clone(),
        ),
        (
            "PATCH",
            "/consumers/u0".into(),
            json!({"custom_id": "x", "no_such": 1}),
            unknown.clone(),
        ),
        (
            "POST",
            "/consumers/u0/oauth2".into(),
            json!({"name": "n", "redirect_uri": "https://app.test/cb", "no_such": 1}),
            unknown.clone(),
        ),
        (
            "POST",
            "/oauth2".into(),
            json!({"name": "n", "consumer": {"id": consumer, "no_such": 1}}),
            json!({"consumer": {"no_such": "unknown field"}}),
        ),
        (
            "PATCH",
            "/oauth2/c0".into(),
            json!({"name": "m", "no_such": 1}),
            unknown.clone(),
        ),
        (
            "PUT",
            "/consumers/u0/oauth2/c9".into(),
            json!({"name": "n", "no_such": 1}),
            unknown.clone(),
        ),
        (
            "POST",
            "/services".into(),
            json!({"name": "s1", "no_such": 1}),
            unknown.clone(),
        ),
        (
            "PATCH",
            "/services/s0".into(),
            json!({"url": "http://x.test", "no_such": 1}),
            unknown.clone(),
        ),
        (
            "PUT",
            "/services/s9".into(),
            json!({"no_such": 1}),
            unknown.clone(),
        ),
        (
            "POST",
            "/services/s0/plugins".into(),
            json!({"name": "oauth2", "config": {"enable_client_credential": true}}),
            json!({"config": {"enable_client_credential": "unknown field"}}),
        ),
        (
            "POST",
            "/services/s0/plugins".into(),
            json!({"name": "oauth2", "no_such_field": 1, "config": {"enable_client_credentials": true}}),
            json!({"no_such_field": "unknown field"}),
        ),
        (
            "POST",
            "/apis/s0/plugins".into(),
            json!({"name": "oauth2", "value": {"scope": "a"}}),
            json!({"config": {"scope": "unknown field"}}),
        ),
        (
            "PATCH",
            format!("/plugins/{plugin}"),
            json!({"config": {"hide_credential": true}}),
            json!({"config": {"hide_credential": "unknown field"}}),
        ),
        (
            "POST",
            "/oauth2_tokens".into(),
            json!({"credential": {"id": credential}, "expires_in": 60, "no_such": 1}),
            unknown.clone(),
        ),
        (
            "PATCH",
            "/oauth2_tokens/t0".into(),
            json!({"scope": "a", "no_such": 1}),
            unknown.clone(),
        ),
        (
            "PUT",
            "/oauth2_tokens/t9".into(),
            json!({"credential": {"id": credential}, "expires_in": 60, "no_such": 1}),
            unknown.clone(),
        ),
    ];
    for (method, path, body, fields) in cases {
        let name = fields
            .as_object()
            .and_then(|f| f.keys().next().cloned())
            .unwrap_or_default();
        let detail = match &fields[&name] {
            Value::Object(inner) => inner
                .iter()
                .map(|(k, v)| format!("{name}.{k}: {}", v.as_str().unwrap_or_default()))
                .collect::<String>(),
            other => format!("{name}: {}", other.as_str().unwrap_or_default()),
        };
        let expected = schema_violation(fields, &format!("schema violation ({detail})"));
        for (encoding, answer) in ["json", "form", "multipart"]
            .iter()
            .zip(admin.every_encoding(method, &path, &body).await)
        {
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{method} {path} {encoding}: {}",
                answer.body
            );
            assert_eq!(answer.body, expected, "{method} {path} {encoding}");
        }
    }
    // Refused means not done: nothing was created or changed.
    for path in [
        "/consumers/n1",
        "/services/s1",
        "/services/s9",
        "/oauth2/c9",
        "/oauth2_tokens/t9",
    ] {
        assert_eq!(
            admin.get(path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert_eq!(
        admin.get("/consumers/u0").await.field("/custom_id"),
        &Value::Null
    );
    assert_eq!(admin.get("/oauth2/c0").await.field("/name"), "app");
    assert_eq!(
        admin
            .get("/services/s0/plugins")
            .await
            .field("/data/0/config/hide_credentials"),
        false
    );
    assert_eq!(
        admin.get("/services/s0/plugins").await.field("/next"),
        &Value::Null
    );
    assert_eq!(
        admin
            .get("/services/s0/plugins")
            .await
            .field("/data")
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// Every field error names the field; several at once are all named.
#[tokio::test]
async fn every_unknown_field_is_named() {
    let admin = Admin::start();
    let answer = admin
        .json(
            "POST",
            "/consumers",
            json!({"username": "u", "a": 1, "b": {"c": 2}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(
        answer.field("/fields"),
        &json!({"a": "unknown field", "b": "unknown field"})
    );
    let message = answer.field("/message").as_str().unwrap_or_default();
    assert!(
        message.contains("a: unknown field") && message.contains("b: unknown field"),
        "{message}"
    );
}

/// A JSON body carries types: a value of the wrong one used to be converted (`12345` became
/// the username `"12345"`) or ignored. Kong refuses it, naming the field and the type.
#[tokio::test]
async fn json_values_of_the_wrong_type_are_refused() {
    let admin = Admin::start();
    let (consumer, credential, plugin) = admin.one_of_each().await;
    let plugin_path = format!("/plugins/{plugin}");
    let cases: Vec<(&str, &str, Value, Value)> = vec![
        (
            "POST",
            "/consumers",
            json!({"username": 12345}),
            json!({"username": "expected a string"}),
        ),
        (
            "POST",
            "/consumers",
            json!({"username": "x", "custom_id": true}),
            json!({"custom_id": "expected a string"}),
        ),
        (
            "PATCH",
            "/consumers/u0",
            json!({"tags": "a"}),
            json!({"tags": "expected a set"}),
        ),
        (
            "PUT",
            "/consumers/x1",
            json!({"tags": ["a", 1]}),
            json!({"tags": [null, "expected a string"]}),
        ),
        (
            "POST",
            "/consumers/u0/oauth2",
            json!({"name": 5}),
            json!({"name": "expected a string"}),
        ),
        (
            "POST",
            "/consumers/u0/oauth2",
            json!({"name": "n", "hash_secret": "true"}),
            json!({"hash_secret": "expected a boolean"}),
        ),
        (
            "POST",
            "/consumers/u0/oauth2",
            json!({"name": "n", "redirect_uris": "https://app.test/cb"}),
            json!({"redirect_uris": "expected an array"}),
        ),
        (
            "POST",
            "/oauth2",
            json!({"name": "n", "consumer": consumer}),
            json!({"consumer": "expected a record"}),
        ),
        (
            "PATCH",
            "/oauth2/c0",
            json!({"client_type": ["public"]}),
            json!({"client_type": "expected a string"}),
        ),
        (
            "POST",
            "/services",
            json!({"name": "s2", "url": 7}),
            json!({"url": "expected a string"}),
        ),
        (
            "PATCH",
            "/services/s0",
            json!({"name": ["s0"]}),
            json!({"name": "expected a string"}),
        ),
        (
            "POST",
            "/services/s0/plugins",
            json!({"name": 1}),
            json!({"name": "expected a string"}),
        ),
        (
            "POST",
            "/services/s0/plugins",
            json!({"name": "oauth2", "enabled": "true", "config": {"enable_password_grant": true}}),
            json!({"enabled": "expected a boolean"}),
        ),
        (
            "POST",
            "/services/s0/plugins",
            json!({"name": "oauth2", "config": "x"}),
            json!({"config": "expected a record"}),
        ),
        (
            "PATCH",
            &plugin_path,
            json!({"config": {"enable_client_credentials": "true"}}),
            json!({"config": {"enable_client_credentials": "expected a boolean"}}),
        ),
        (
            "PATCH",
            &plugin_path,
            json!({"config": {"token_expiration": "60"}}),
            json!({"config": {"token_expiration": "expected an integer"}}),
        ),
        (
            "PATCH",
            &plugin_path,
            json!({"config": {"token_expiration": 60.5}}),
            json!({"config": {"token_expiration": "expected an integer"}}),
        ),
        (
            "PATCH",
            &plugin_path,
            json!({"config": {"scopes": "a,b"}}),
            json!({"config": {"scopes": "expected an array"}}),
        ),
        (
            "PATCH",
            &plugin_path,
            json!({"config": {"realm": 1}}),
            json!({"config": {"realm": "expected a string"}}),
        ),
        (
            "POST",
            "/oauth2_tokens",
            json!({"credential": {"id": credential}, "expires_in": "60"}),
            json!({"expires_in": "expected an integer"}),
        ),
        (
            "PATCH",
            "/oauth2_tokens/t0",
            json!({"scope": ["a"]}),
            json!({"scope": "expected a string"}),
        ),
        (
            "PATCH",
            "/oauth2_tokens/t0",
            json!({"credential": {"id": 1}}),
            json!({"credential": {"id": "expected a string"}}),
        ),
    ];
    for (method, path, body, fields) in cases {
        let answer = admin.json(method, path, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {}",
            answer.body
        );
        assert_eq!(answer.field("/fields"), &fields, "{method} {path} {body}");
        assert_eq!(
            answer.field("/name"),
            "schema violation",
            "{method} {path} {body}"
        );
    }
    assert_eq!(
        admin.get("/consumers/12345").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin.get("/consumers/x1").await.status,
        StatusCode::NOT_FOUND
    );
}

/// Form and multipart bodies carry text: as in Kong, it is read as the field's type, and
/// text that is not of that type is refused the same way.
#[tokio::test]
async fn form_text_is_read_as_the_fields_type() {
    let admin = Admin::start();
    admin.one_of_each().await;
    let body = json!({
        "name": "oauth2",
        "enabled": "false",
        "config": {
            "enable_client_credentials": "true",
            "token_expiration": "60",
            "scopes": "a,b",
            "mandatory_scope": "true",
        },
    });
    for (encoding, content_type, bytes) in encodings(&body) {
        admin.service(encoding).await;
        let path = format!("/services/{encoding}/plugins");
        let answer = admin.raw("POST", &path, content_type, bytes).await;
        if encoding == "json" {
            // JSON keeps its types: these strings are not booleans.
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
            continue;
        }
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{encoding}: {}",
            answer.body
        );
        assert_eq!(answer.field("/enabled"), false, "{encoding}");
        assert_eq!(
            answer.field("/config/enable_client_credentials"),
            true,
            "{encoding}"
        );
        assert_eq!(answer.field("/config/token_expiration"), 60, "{encoding}");
        assert_eq!(
            answer.field("/config/scopes"),
            &json!(["a", "b"]),
            "{encoding}"
        );
    }
    let refused = [
        (
            json!({"config": {"enable_client_credentials": "yes"}}),
            json!({"config": {"enable_client_credentials": "expected a boolean"}}),
        ),
        (
            json!({"config": {"token_expiration": "soon"}}),
            json!({"config": {"token_expiration": "expected an integer"}}),
        ),
        (
            json!({"enabled": "1"}),
            json!({"enabled": "expected a boolean"}),
        ),
    ];
    let plugin = admin.plugin("s1").await;
    for (body, fields) in refused {
        let answers = admin
            .every_encoding("PATCH", &format!("/plugins/{plugin}"), &body)
            .await;
        for (encoding, answer) in ["json", "form", "multipart"].iter().zip(answers) {
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{encoding} {body}: {}",
                answer.body
            );
            assert_eq!(answer.field("/fields"), &fields, "{encoding} {body}");
        }
    }
    let answer = admin
        .form(
            "POST",
            "/consumers/u0/oauth2",
            "name=n&hash_secret=true&client_secret=s3cret",
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.field("/hash_secret"), true);
    let answer = admin
        .form(
            "POST",
            "/oauth2_tokens",
            &format!(
                "credential.id={}&expires_in=30",
                answer.field("/id").as_str().unwrap_or_default()
            ),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.field("/expires_in"), 30);
}

/// The seed's spellings stay accepted: `value.x` on `/apis/{api}/plugins`, a credential's
/// single `redirect_uri`, and `persistent_refresh_token`.
#[tokio::test]
async fn the_seeds_aliases_are_not_unknown_fields() {
    let admin = Admin::start();
    admin.one_of_each().await;
    admin.service("api1").await;
    admin.service("api2").await;
    let answer = admin
        .form("POST", "/apis/api1/plugins", "name=oauth2&value.scopes=email,phone&value.mandatory_scope=true&value.persistent_refresh_token=true")
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.field("/config/scopes"), &json!(["email", "phone"]));
    assert_eq!(answer.field("/config/reuse_refresh_token"), true);
    assert_eq!(answer.field("/config/enable_authorization_code"), true);
    let answer = admin
        .json(
            "POST",
            "/apis/api2/plugins",
            json!({"name": "oauth2", "value": {"enable_password_grant": true}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.field("/config/enable_password_grant"), true);
    for (encoding, answer) in ["json", "form", "multipart"].iter().zip(
        admin
            .every_encoding(
                "POST",
                "/consumers/u0/oauth2",
                &json!({"name": "n", "redirect_uri": "https://app.test/one"}),
            )
            .await,
    ) {
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{encoding}: {}",
            answer.body
        );
        assert_eq!(
            answer.field("/redirect_uris"),
            &json!(["https://app.test/one"]),
            "{encoding}"
        );
    }
    // Both spellings at once: merged when they name different fields, refused when the same.
    admin.service("api3").await;
    let answer = admin
        .form(
            "POST",
            "/apis/api3/plugins",
            "name=oauth2&value.scopes=a&config.scopes=b&config.enable_password_grant=true",
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(
        answer.field("/fields"),
        &json!({"value": {"scopes": "given as both config.scopes and value.scopes"}})
    );
    let answer = admin
        .form(
            "POST",
            "/apis/api3/plugins",
            "name=oauth2&value.scopes=a&config.enable_password_grant=true",
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.field("/config/scopes"), &json!(["a"]));
    assert_eq!(answer.field("/config/enable_password_grant"), true);
    // A PATCH may repeat the plugin's name, not change it.
    let id = answer.field("/id").as_str().unwrap_or_default().to_string();
    let path = format!("/plugins/{id}");
    let same = admin.json("PATCH", &path, json!({"name": "oauth2"})).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.body);
    let other = admin.json("PATCH", &path, json!({"name": "jwt"})).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST, "{}", other.body);
    assert!(other.field("/fields/name").is_string(), "{}", other.body);
}

/// A token the admin API creates with a chosen value is in the index's digest set at once;
/// changing its value swaps the digests; deleting it drops it (issue 18: an unknown token is
/// refused without a read, so the set must never lack a live one).
#[tokio::test]
async fn admin_tokens_enter_and_leave_the_digest_set_with_their_writes() {
    use crate::store::Presence;
    let admin = Admin::start();
    admin.form("POST", "/consumers", "username=u").await;
    let credential = admin.form("POST", "/consumers/u/oauth2", "name=app").await;
    let credential_id = credential.field("/id").as_str().expect("id").to_string();
    let presence = |token: &str| {
        admin
            .store
            .index()
            .presence(&crate::secrets::token_digest(token), crate::model::now())
    };
    let created = admin
        .form(
            "POST",
            "/oauth2_tokens",
            &format!("credential.id={credential_id}&access_token=chosen-one&expires_in=60"),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(presence("chosen-one"), Presence::Present);
    let path = format!(
        "/oauth2_tokens/{}",
        created.field("/id").as_str().expect("id")
    );
    let patched = admin.form("PATCH", &path, "access_token=chosen-two").await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(presence("chosen-one"), Presence::Absent);
    assert_eq!(presence("chosen-two"), Presence::Present);
    let deleted = admin
        .send(Request::delete(&path).body(Body::empty()).expect("request"))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    assert_eq!(presence("chosen-two"), Presence::Absent);
}

/// The JWT settings (docs/jwt-access-tokens.md §1) through the admin API: shown with their
/// defaults, set by JSON or form, and refused in Kong's shape naming the field, on POST and on
/// a PATCH that would break a combination rule.
#[tokio::test]
async fn jwt_settings_are_set_and_bad_ones_refused_naming_the_field() {
    let admin = Admin::start();
    let id = admin.plugin("svc").await;
    let shown = admin.get(&format!("/plugins/{id}")).await;
    assert_eq!(shown.field("/config/access_token_format"), &json!("opaque"));
    assert_eq!(shown.field("/config/identity_jwt_header"), &Value::Null);
    assert_eq!(shown.field("/config/identity_headers"), &json!(true));

    let path = format!("/plugins/{id}");
    let set = admin
        .form(
            "PATCH",
            &path,
            "config.access_token_format=jwt&config.identity_jwt_header=X-Identity&config.identity_headers=false",
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.field("/config/access_token_format"), &json!("jwt"));
    assert_eq!(
        set.field("/config/identity_jwt_header"),
        &json!("x-identity")
    );
    assert_eq!(set.field("/config/identity_headers"), &json!(false));

    let refused = [
        (
            json!({"config": {"access_token_format": "paseto"}}),
            json!({"config": {"access_token_format": "expected one of: opaque, jwt"}}),
        ),
        (
            json!({"config": {"token_expiration": 0}}),
            json!({"config": {"access_token_format": "jwt requires a token_expiration greater than 0 (RFC 9068: a JWT access token expires)"}}),
        ),
        (
            json!({"config": {"identity_jwt_header": null}}),
            json!({"config": {"identity_headers": "false requires identity_jwt_header (the upstream must learn who is asking)"}}),
        ),
        (
            json!({"config": {"identity_jwt_header": "Host"}}),
            json!({"config": {"identity_jwt_header": "this header cannot carry the identity JWT"}}),
        ),
    ];
    for (body, fields) in refused {
        let answer = admin.json("PATCH", &path, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
        assert_eq!(answer.field("/code"), &json!(2), "{}", answer.body);
        assert_eq!(answer.field("/fields"), &fields, "{body}");
    }
    // Refused means unchanged.
    let kept = admin.get(&path).await;
    assert_eq!(kept.field("/config/access_token_format"), &json!("jwt"));
    assert_eq!(
        kept.field("/config/identity_jwt_header"),
        &json!("x-identity")
    );
}
