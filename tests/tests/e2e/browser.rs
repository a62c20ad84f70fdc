//! The tutorial's browser path in a real headless Chromium: Shoe Fly Shoe sends Clark to Step
//! On's authorization page (served by the demo upstream), he logs in and clicks Authorize, Step
//! On's server asks the gateway for a code with the provision key, and Shoe Fly Shoe's callback
//! exchanges it and shows his step counts, read through Envoy with the access token.
//!
//! Chromium is driven by chromedriver over the W3C WebDriver protocol (plain JSON over HTTP, so
//! no client crate). `make test` installs Debian's `chromium` and `chromium-driver`;
//! `CHROMIUM_BIN` and `CHROMEDRIVER_BIN` point elsewhere.

use e2e::free_port;
use e2e::stack::{wait_until, Stack};
use e2e::Text;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn binary(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: `make test` installs Debian's chromium and chromium-driver (or set {env})",
        path.display()
    );
    path
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(mut command: Command, log: &Path) -> Killed {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    Killed(command.spawn().expect("start a process"))
}

/// One headless Chromium session through chromedriver.
struct Browser {
    http: reqwest::blocking::Client,
    session: String,
    _driver: Killed,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(log_dir: &Path) -> Browser {
        let chromium = binary("CHROMIUM_BIN", "/usr/bin/chromium");
        let port = free_port();
        let mut command = Command::new(binary("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"));
        command.arg(format!("--port={port}"));
        let driver = spawn(command, &log_dir.join("chromedriver.log"));
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let up = wait_until(Duration::from_secs(10), || {
            http.get(format!("{base}/status"))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        assert!(up, "chromedriver did not start");
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new".to_string(),
            // The tests run as root in containers, where Chromium's sandbox cannot start.
            "--no-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-gpu".into(),
            "--no-proxy-server".into(),
            "--no-first-run".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let mut browser = Browser {
            http,
            session: String::new(),
            _driver: driver,
            _profile: profile,
        };
        let created = browser.call("POST", &format!("{base}/session"), Some(capabilities));
        browser.session = format!("{base}/session/{}", created.text("sessionId"));
        // Finding an element waits for it (the next page after a click), within bounds.
        browser.command(
            "POST",
            "/timeouts",
            json!({"implicit": 10_000, "pageLoad": 15_000}),
        );
        browser
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().expect("chromedriver answers");
        let status = response.status();
        let answer: Value = response.json().expect("chromedriver answers JSON");
        assert!(status.is_success(), "WebDriver {url}: {status} {answer}");
        answer["value"].clone()
    }

    fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (method == "POST").then_some(body);
        self.call(method, &format!("{}{path}", self.session), body)
    }

    fn goto(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url }));
    }

    fn url(&self) -> String {
        string(&self.command("GET", "/url", Value::Null))
    }

    fn source(&self) -> String {
        string(&self.command("GET", "/source", Value::Null))
    }

    fn title(&self) -> String {
        string(&self.command("GET", "/title", Value::Null))
    }

    /// The element `css` selects, waiting (implicit timeout) until the page has it.
    fn find(&self, css: &str) -> String {
        let body = json!({"using": "css selector", "value": css});
        let found = self.command("POST", "/element", body);
        found.text(ELEMENT_KEY)
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.command("POST", &format!("/element/{element}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        let body = json!({ "text": text });
        self.command("POST", &format!("/element/{element}/value"), body);
    }

    fn text_of(&self, css: &str) -> String {
        let element = self.find(css);
        string(&self.command("GET", &format!("/element/{element}/text"), Value::Null))
    }

    /// Waits until the current page's URL starts with `prefix`.
    fn wait_for_url(&self, prefix: &str) -> String {
        let mut last = String::new();
        let arrived = wait_until(Duration::from_secs(15), || {
            last = self.url();
            last.starts_with(prefix)
        });
        assert!(
            arrived,
            "never reached {prefix}: at {last}\n{}",
            self.source()
        );
        last
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.http.delete(&self.session).send();
        }
    }
}

/// A WebDriver answer that is a string itself (a URL, a title, a page).
fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// Step On's pages and Shoe Fly Shoe, as `make run` starts them, on free ports of this stack.
struct DemoApps {
    step_on: String,
    shoe_fly: String,
    _process: Killed,
}

/// Shoe Fly Shoe on `shoe_fly_port`: its redirect URI is registered before it starts.
fn start_demo_apps_on(stack: &Stack, shoe_fly_port: u16) -> DemoApps {
    let step_on_port = free_port();
    let step_on = format!("http://127.0.0.1:{step_on_port}");
    let shoe_fly = format!("http://127.0.0.1:{shoe_fly_port}");
    let gw = stack.gateway();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let mut command = Command::new(target.join("release/demo-upstream"));
    command
        .args(["--listen", &format!("127.0.0.1:{step_on_port}")])
        .args(["--client-listen", &format!("127.0.0.1:{shoe_fly_port}")])
        .args(["--gateway-url", &gw.https("")])
        .arg("--gateway-ca")
        .arg(gw.cert_dir.join("cert.pem"))
        .args(["--admin-url", &stack.admin("")])
        .args(["--step-on-url", &step_on, "--client-url", &shoe_fly]);
    let process = spawn(command, &stack.dir.path().join("demo-apps.log"));
    let client = stack.client.raw();
    let up = wait_until(Duration::from_secs(10), || {
        [&step_on, &shoe_fly]
            .iter()
            .all(|base| client.get(format!("{base}/")).send().is_ok())
    });
    assert!(up, "the demo apps did not start");
    DemoApps {
        step_on,
        shoe_fly,
        _process: process,
    }
}

/// Tutorial steps 3 and 4 through the admin API: the plugin on `step-on` (in the filter), and
/// Shoe Fly Shoe's application with `redirect_uri`.
fn tutorial_setup(stack: &Stack, redirect_uri: &str) {
    let plugin = stack.admin_post(
        "/services/step-on/plugins",
        &[
            ("name", "oauth2"),
            ("config.scopes", "user_profile,biometric,step_counts"),
            ("config.mandatory_scope", "true"),
            ("config.enable_authorization_code", "true"),
        ],
    );
    assert_eq!(plugin.status, 201, "{}", plugin.text);
    let gw = stack.gateway();
    let challenged = || {
        let answer = stack.client.get(&gw.http("/stepcounts"));
        answer.header("www-authenticate").is_some()
    };
    assert!(
        e2e::kong::eventually_everywhere(challenged),
        "the plugin never reached the filter"
    );
    let consumer = stack.admin_post("/consumers", &[("username", "shoe-fly-shoe")]);
    assert_eq!(consumer.status, 201, "{}", consumer.text);
    let app = stack.admin_post(
        "/consumers/shoe-fly-shoe/oauth2",
        &[("name", "Shoe Fly Shoe"), ("redirect_uri", redirect_uri)],
    );
    assert_eq!(app.status, 201, "{}", app.text);
}

/// Clark's week as the Step On API itself answers it (directly, not through the gateway).
fn clarks_step_counts(stack: &Stack) -> Vec<(String, u64)> {
    let url = format!("http://127.0.0.1:{}/stepcounts", stack.upstream_port);
    let answer = stack
        .client
        .get_with(&url, &[("mock-logged-in-as", "clark")]);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let json = answer.json();
    let days = json["stepcounts"].as_array().expect("stepcounts").clone();
    days.iter()
        .map(|d| (d.text("date"), d["steps"].as_u64().expect("steps")))
        .collect()
}

#[test]
fn clark_authorizes_shoe_fly_shoe_in_a_browser_and_it_shows_his_step_counts() {
    let stack = Stack::start();
    let shoe_fly_port = free_port();
    let callback = format!("http://127.0.0.1:{shoe_fly_port}/callback");
    tutorial_setup(&stack, &callback);
    let apps = start_demo_apps_on(&stack, shoe_fly_port);
    let browser = Browser::start(stack.dir.path());

    // Shoe Fly Shoe sends Clark to Step On's authorization page.
    browser.goto(&format!("{}/", apps.shoe_fly));
    browser.click("#connect");
    browser.wait_for_url(&format!("{}/authorize?", apps.step_on));

    // He logs in (a username, no password in the demo) and sees what is asked.
    browser.type_into("#username", "clark");
    browser.click("#login");
    assert_eq!(
        browser.text_of("#wants"),
        "Shoe Fly Shoe wants: step_counts"
    );
    assert_eq!(browser.text_of("#user"), "clark");

    // Authorize: Step On gets a code from the gateway and the browser lands on the callback,
    // which shows the step counts it read through Envoy with the access token.
    browser.click("#authorize");
    let landed = browser.wait_for_url(&format!("{callback}?code="));
    assert!(landed.contains("&state="), "{landed}");
    assert_eq!(browser.text_of("#user"), "clark");
    assert_eq!(browser.title(), "clark's step counts - Shoe Fly Shoe");
    let page = browser.source();
    let week = clarks_step_counts(&stack);
    assert_eq!(week.len(), 7);
    for (date, steps) in &week {
        let row = format!("<tr><td>{date}</td><td>{steps}</td></tr>");
        assert!(page.contains(&row), "missing {row} in\n{page}");
    }

    // Reloading the callback exchanges nothing: its state cookie is spent.
    browser.goto(&landed);
    assert!(browser.text_of("#error").contains("state mismatch"));

    // Clark, still logged in at Step On, says no the next time: Shoe Fly Shoe hears
    // access_denied and gets nothing.
    browser.goto(&format!("{}/", apps.shoe_fly));
    browser.click("#connect");
    browser.click("#deny");
    let denied = browser.wait_for_url(&format!("{callback}?error=access_denied"));
    assert!(denied.contains("&state="), "{denied}");
    let refused = browser.text_of("#refused");
    assert!(refused.contains("access_denied"), "{refused}");
    assert!(!browser.source().contains("<table"));

    // Logging out (a POST carrying the session's form token) shows the login form again, and
    // that form's token (in a SameSite=Strict cookie) logs him back in.
    browser.goto(&format!("{}/", apps.shoe_fly));
    browser.click("#connect");
    browser.click("#logout");
    browser.type_into("#username", "clark");
    browser.click("#login");
    assert_eq!(browser.text_of("#user"), "clark");
}

#[test]
fn step_ons_page_never_redirects_to_an_unregistered_uri_and_the_callback_checks_state() {
    let stack = Stack::start();
    let shoe_fly_port = free_port();
    let callback = format!("http://127.0.0.1:{shoe_fly_port}/callback");
    tutorial_setup(&stack, &callback);
    let apps = start_demo_apps_on(&stack, shoe_fly_port);
    let client = &stack.client;
    let credentials = stack.admin_get("/consumers/shoe-fly-shoe/oauth2").json();
    let client_id = credentials["data"][0].text("client_id");

    let forged = format!(
        "{}/authorize?response_type=code&scope=step_counts&client_id={client_id}\
         &redirect_uri=http%3A%2F%2Fevil.example%2Fcb",
        apps.step_on
    );
    let answer = client.get(&forged);
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(answer.header("location").is_none());
    assert!(answer.text.contains("not registered"), "{}", answer.text);

    let unknown = format!(
        "{}/authorize?response_type=code&client_id=nobody",
        apps.step_on
    );
    assert_eq!(client.get(&unknown).status, 400);
    // An identifier the admin API will not even look up is just as unknown.
    let huge = format!("{unknown}{}", "x".repeat(2000));
    let answer = client.get(&huge);
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(answer.text.contains("No application"), "{}", answer.text);

    // A decision without Step On's session and its form token is refused.
    let decide = client.post_form(
        &format!("{}/authorize", apps.step_on),
        &[("client_id", client_id.as_str()), ("decision", "allow")],
    );
    assert_eq!(decide.status, 403, "{}", decide.text);

    // A callback this browser did not start (no state cookie) exchanges nothing.
    let stray = client.get(&format!("{}/callback?code=abc&state=xyz", apps.shoe_fly));
    assert_eq!(stray.status, 400, "{}", stray.text);
}
