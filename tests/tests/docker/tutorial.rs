//! README.md's tutorial against `docker compose up`, as a user follows it: the curl steps on
//! the published ports (Envoy :8000 and :8443, the admin API :8001 with the compose file's
//! admin key), then the browser path through Shoe Fly Shoe (:5000) and Step On's page (:3000),
//! whose servers reach Envoy and the admin API from their own containers.

use e2e::docker::ComposeStack;
use e2e::oauth::{assert_step_counts_for, bearer, query_param};
use e2e::stack::wait_until;
use e2e::{Answer, Text};
use serde_json::{json, Value};
use std::time::Duration;

const INVALID_CHALLENGE: &str =
    "Bearer realm=\"service\", error=\"invalid_token\", error_description=\"The access token is invalid or has expired\"";

/// The containers have started when the tests run; their first answers can take a while on a
/// loaded machine.
const READY: Duration = Duration::from_secs(120);
/// The README's bound for a change to reach the filter is about a second; generous slack.
const PROPAGATION: Duration = Duration::from_secs(10);

struct App {
    client_id: String,
    client_secret: String,
    consumer_id: String,
}

#[test]
#[ignore = "needs the compose stack: make test-docker"]
fn the_readme_tutorial_works_against_docker_compose_up() {
    let stack = ComposeStack::from_env();
    stack.wait_ready(READY);
    let client = &stack.client;

    // Step 1–2: the route is open without a plugin; the demo API trusts its mock header.
    let open = client.get_with(
        &stack.http("/stepcounts"),
        &[("mock-logged-in-as", "clark")],
    );
    assert_eq!(open.status, 200, "{}", open.text);
    assert_eq!(open.json()["user"], "clark");

    // Step 3: the oauth2 plugin, the tutorial's original form.
    let plugin = stack.admin_post(
        "/apis/step-on/plugins",
        &[
            ("name", "oauth2"),
            ("value.scopes", "user_profile,biometric,step_counts"),
            ("value.mandatory_scope", "true"),
        ],
    );
    assert_eq!(plugin.status, 201, "{}", plugin.text);
    let provision_key = plugin.json()["config"].text("provision_key");
    assert_eq!(provision_key.len(), 32, "{}", plugin.text);

    // Within a second the route wants a token.
    let missing = || client.get(&stack.http("/stepcounts"));
    assert!(
        wait_until(PROPAGATION, || missing()
            .header("www-authenticate")
            .is_some()),
        "the plugin never reached the filter in the Envoy container"
    );
    let answer = missing();
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"service\"")
    );
    assert_eq!(
        answer.json(),
        json!({"error": "invalid_request", "error_description": "The access token is missing"})
    );

    // Step 4: Shoe Fly Shoe, a consumer with an OAuth application.
    let app = register_shoe_fly_shoe(&stack);

    // The authorization endpoint refuses plain HTTP.
    let http = client.post_form(
        &stack.http("/oauth2/authorize"),
        &[("client_id", &app.client_id)],
    );
    assert_eq!(http.status, 400, "{}", http.text);
    assert_eq!(
        http.json(),
        json!({"error": "access_denied", "error_description": "You must use HTTPS"})
    );

    // Clark says yes (Step On's server's call), with state=xyz as in the README.
    let authorize = client.post_form(
        &stack.https("/oauth2/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", &app.client_id),
            ("scope", "step_counts"),
            ("provision_key", &provision_key),
            ("authenticated_userid", "clark"),
            ("state", "xyz"),
        ],
    );
    assert_eq!(authorize.status, 200, "{}", authorize.text);
    let redirect = authorize.json().text("redirect_uri");
    assert!(
        redirect.starts_with(&stack.shoe_fly("/callback?code=")),
        "{redirect}"
    );
    assert_eq!(query_param(&redirect, "state").as_deref(), Some("xyz"));
    let code = query_param(&redirect, "code").unwrap_or_default();
    assert_eq!(code.len(), 32, "{redirect}");

    // Shoe Fly Shoe exchanges the code.
    let pair = post_token(
        &stack,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", &app.client_id),
            ("client_secret", &app.client_secret),
            ("code", &code),
        ],
    );
    assert_eq!(pair["token_type"], "bearer");
    assert_eq!(pair["expires_in"], 7200);
    let access = pair.text("access_token");
    let refresh = pair.text("refresh_token");
    assert_eq!((access.len(), refresh.len()), (32, 32), "{pair}");

    // Shoe Fly Shoe reads the step counts; the upstream container sees who is asking, and
    // the client's copies of the identity headers are removed first.
    let steps = client.get_with(
        &stack.http("/stepcounts"),
        &[
            ("authorization", &bearer(&access)),
            ("x-consumer-id", "forged"),
            ("x-authenticated-userid", "mallory"),
        ],
    );
    assert_eq!(steps.status, 200, "{}", steps.text);
    assert_step_counts_for(&steps.json(), "clark", &app.consumer_id, &app.client_id);

    // Refresh: a new pair; the old access token stops working within the bound.
    let refreshed = post_token(
        &stack,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &app.client_id),
            ("client_secret", &app.client_secret),
            ("refresh_token", &refresh),
        ],
    );
    let new_access = refreshed.text("access_token");
    assert_eq!(new_access.len(), 32, "{refreshed}");
    assert_ne!(new_access, access);
    let with_token = |token: &str| {
        client.get_with(
            &stack.http("/stepcounts"),
            &[("authorization", &bearer(token))],
        )
    };
    assert!(
        wait_until(PROPAGATION, || with_token(&access).status == 401),
        "the refreshed-away token still works"
    );
    let old = with_token(&access);
    assert_eq!(
        old.header("www-authenticate").as_deref(),
        Some(INVALID_CHALLENGE)
    );
    let new = with_token(&new_access);
    assert_eq!(new.status, 200, "{}", new.text);
    assert_eq!(new.json()["user"], "clark");

    // A made-up token is refused with RFC 6750's invalid_token.
    let bad = with_token("not-a-real-token");
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["error"], "invalid_token");

    the_browser_path_works(&stack);
}

fn register_shoe_fly_shoe(stack: &ComposeStack) -> App {
    let consumer = stack.admin_post("/consumers", &[("username", "shoe-fly-shoe")]);
    assert_eq!(consumer.status, 201, "{}", consumer.text);
    let application = stack.admin_post(
        "/consumers/shoe-fly-shoe/oauth2",
        &[
            ("name", "Shoe Fly Shoe"),
            ("redirect_uri", &stack.shoe_fly("/callback")),
        ],
    );
    assert_eq!(application.status, 201, "{}", application.text);
    let application = application.json();
    App {
        client_id: application.text("client_id"),
        client_secret: application.text("client_secret"),
        consumer_id: consumer.json().text("id"),
    }
}

fn post_token(stack: &ComposeStack, form: &[(&str, &str)]) -> Value {
    let answer = stack.client.post_form(&stack.https("/oauth2/token"), form);
    assert_eq!(answer.status, 200, "token: {}", answer.text);
    answer.json()
}

/// README's "browser path", as the browser sends it (cookies by hand): Shoe Fly Shoe's link,
/// Step On's login and consent pages, Authorize, and the callback showing Clark's week. Step
/// On's server reads the admin API and asks Envoy (envoy:8443, pinned certificate) for the
/// code; Shoe Fly Shoe's exchanges it and reads the step counts through Envoy: every hop
/// between containers of the compose networks.
fn the_browser_path_works(stack: &ComposeStack) {
    let client = &stack.client;
    let home = client.get(&stack.shoe_fly("/"));
    assert_eq!(home.status, 200, "{}", home.text);
    let state_cookie = cookie(&home, "shoefly_state");
    let link = html_unescape(&between(&home.text, "id=\"connect\" href=\"", "\""));
    assert!(link.starts_with(&stack.step_on("/authorize?")), "{link}");
    let oauth: Vec<(String, String)> = reqwest::Url::parse(&link)
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_else(|e| panic!("{link}: {e}"));

    let login_page = client.get(&link);
    assert_eq!(login_page.status, 200, "{}", login_page.text);
    assert!(
        login_page.text.contains("Shoe Fly Shoe"),
        "{}",
        login_page.text
    );
    let login_csrf = cookie(&login_page, "stepon_login_csrf");
    let mut form = oauth.clone();
    form.push(("csrf".into(), login_csrf.clone()));
    form.push(("username".into(), "clark".into()));
    let logged_in = client.send(
        client
            .raw()
            .post(stack.step_on("/login"))
            .header("cookie", format!("stepon_login_csrf={login_csrf}"))
            .form(&form),
    );
    assert_eq!(logged_in.status, 303, "{}", logged_in.text);
    let session = cookie(&logged_in, "stepon_session");
    let consent_path = logged_in.header("location").unwrap_or_default();

    let consent = client.get_with(
        &stack.step_on(&consent_path),
        &[("cookie", &format!("stepon_session={session}"))],
    );
    assert_eq!(consent.status, 200, "{}", consent.text);
    assert!(
        consent.text.contains("Shoe Fly Shoe wants: step_counts"),
        "{}",
        consent.text
    );
    let mut form = oauth;
    form.push((
        "csrf".into(),
        between(&consent.text, "name=\"csrf\" value=\"", "\""),
    ));
    form.push(("decision".into(), "allow".into()));
    let granted = client.send(
        client
            .raw()
            .post(stack.step_on("/authorize"))
            .header("cookie", format!("stepon_session={session}"))
            .form(&form),
    );
    assert_eq!(
        granted.status, 303,
        "Step On's server could not get a code: {}",
        granted.text
    );
    let callback = granted.header("location").unwrap_or_default();
    assert!(
        callback.starts_with(&stack.shoe_fly("/callback?code=")),
        "{callback}"
    );

    let week = client.get_with(
        &callback,
        &[("cookie", &format!("shoefly_state={state_cookie}"))],
    );
    assert_eq!(week.status, 200, "Shoe Fly Shoe's callback: {}", week.text);
    assert!(week.text.contains("clark"), "{}", week.text);
}

/// The value a response's `set-cookie` gives cookie `name`.
fn cookie(answer: &Answer, name: &str) -> String {
    let prefix = format!("{name}=");
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&prefix))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no cookie {name} in {:?}", answer.headers))
}

/// The text between the first `start` and the next `end` in `text`.
fn between(text: &str, start: &str, end: &str) -> String {
    text.split_once(start)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(value, _)| value.to_string())
        .unwrap_or_else(|| panic!("no {start:?} in {text}"))
}

fn html_unescape(text: &str) -> String {
    text.replace("&amp;", "&").replace("&quot;", "\"")
}
