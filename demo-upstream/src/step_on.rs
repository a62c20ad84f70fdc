//! Step On's authorization page: the login and consent page the seed tutorial says every
//! Step On must build, as Kong's hello-world app does.
//!
//! `GET /authorize?response_type=code&client_id=...` shows a login form (a username only: this
//! demo has no passwords), then "<application> wants: <scopes>" with Authorize and Deny. On
//! Authorize, Step On's server calls the gateway's `/oauth2/authorize` over HTTPS with the
//! plugin's provision key and `authenticated_userid`, and sends the browser to the
//! `redirect_uri` of the answer (it carries the code). On Deny it sends the browser back with
//! `error=access_denied`. Applications and their redirect URIs are checked against the admin
//! API before any page is shown, so the page never redirects anywhere unregistered.
//!
//! Every form carries a token another site cannot know, so no other site can post one for
//! Clark: the login form a double-submit token (the same random value in a `SameSite=Strict`
//! cookie and in the form, as there is no session yet), the consent and logout forms their
//! session's token. Logout is POST only. Sessions are bounded so that a flood of logins
//! (anyone may log in: the demo has no passwords) cannot push a logged-in session out; see
//! `sessions.rs`.

use crate::gateway::{Application, Gateway};
use crate::html::{error_page, escape, page};
use crate::random;
use crate::sessions::{Client, Limits, Refused, Session, Sessions};
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;

const APP: &str = "Step On";
const SESSION_COOKIE: &str = "stepon_session";
/// The login form's double-submit token (there is no session to bind it to yet).
const LOGIN_CSRF_COOKIE: &str = "stepon_login_csrf";
const MAX_USERNAME_CHARS: usize = 64;
/// The authorization request's parameters that travel through the pages to the gateway.
const OAUTH_PARAMS: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

#[derive(Clone)]
struct StepOn {
    gateway: Gateway,
    sessions: Arc<Sessions>,
}

type Pairs = Vec<(String, String)>;

/// The pages; they need the client's address (`ConnectInfo<SocketAddr>`) to bound sessions.
pub fn router(gateway: Gateway) -> Router {
    router_with(gateway, Limits::default())
}

fn router_with(gateway: Gateway, limits: Limits) -> Router {
    let state = StepOn {
        gateway,
        sessions: Arc::new(Sessions::new(limits)),
    };
    Router::new()
        .route("/authorize", get(show).post(decide))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .with_state(state)
}

/// The OAuth parameters of a query or form, first occurrence of each, in a fixed order.
fn oauth_params(pairs: &Pairs) -> Pairs {
    OAUTH_PARAMS
        .iter()
        .filter_map(|name| {
            let value = pairs.iter().find(|(k, _)| k == name)?;
            Some((name.to_string(), value.1.clone()))
        })
        .collect()
}

fn param<'a>(pairs: &'a Pairs, name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn hidden_fields(params: &Pairs) -> String {
    params
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect()
}

fn authorize_url(params: &Pairs) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("/authorize?{query}")
}

impl StepOn {
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let session = self.sessions.get(&id, Instant::now())?;
        Some((id, session))
    }

    /// The application and the redirect URI to use, or the page that says why there is none.
    async fn check(&self, params: &Pairs) -> Result<(Application, String), Response> {
        let bad = |message: &str| error_page(StatusCode::BAD_REQUEST, APP, message);
        let client_id = param(params, "client_id")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("The request names no application (client_id)."))?;
        let app = match self.gateway.application(client_id).await {
            Ok(Some(app)) => app,
            Ok(None) => return Err(bad("No application is registered with this client_id.")),
            Err(e) => return Err(error_page(StatusCode::BAD_GATEWAY, APP, &e.0)),
        };
        let redirect_uri = match param(params, "redirect_uri").filter(|u| !u.is_empty()) {
            Some(uri) if app.redirect_uris.iter().any(|r| r == uri) => uri.to_string(),
            Some(_) => {
                return Err(bad(
                    "The redirect_uri is not registered for this application.",
                ))
            }
            None => app
                .redirect_uris
                .first()
                .cloned()
                .ok_or_else(|| bad("The application has no redirect URI."))?,
        };
        Ok((app, redirect_uri))
    }
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Which cross-site requests carry a cookie.
#[derive(Clone, Copy)]
pub enum SameSite {
    /// Also top-level navigations from other sites: the session must survive Clark's arrival
    /// from the application, and Shoe Fly Shoe's `state` his return from Step On.
    Lax,
    /// Only requests from the site itself: a form token needs no more.
    Strict,
}

/// `Set-Cookie` for a browser-session cookie that scripts cannot read.
pub fn set_cookie(
    response: &mut Response,
    name: &str,
    value: &str,
    same_site: SameSite,
    max_age: Option<u32>,
) {
    let age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    let same_site = match same_site {
        SameSite::Lax => "Lax",
        SameSite::Strict => "Strict",
    };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}{age}");
    if let Ok(v) = HeaderValue::from_str(&text) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `GET /authorize`: the login form, or the consent form once Clark is logged in.
async fn show(
    State(step_on): State<StepOn>,
    headers: HeaderMap,
    Query(query): Query<Pairs>,
) -> Response {
    let params = oauth_params(&query);
    let (app, _) = match step_on.check(&params).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    match step_on.session(&headers) {
        None => login_page(StatusCode::OK, &headers, &params, &app, None),
        Some((_, session)) => consent_page(&params, &app, &session),
    }
}

/// Whether `text` has the shape of the tokens `random::token` makes.
fn is_token(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a posted form token is `expected`, in constant time.
fn token_matches(posted: Option<&str>, expected: &str) -> bool {
    let posted = posted.unwrap_or("");
    !expected.is_empty() && bool::from(posted.as_bytes().ct_eq(expected.as_bytes()))
}

/// The login form's token: the browser's own (other tabs' forms keep working), or a new one.
fn login_token(headers: &HeaderMap) -> Result<String, getrandom::Error> {
    match cookie(headers, LOGIN_CSRF_COOKIE).filter(|t| is_token(t)) {
        Some(token) => Ok(token),
        None => random::token(),
    }
}

/// The login form, with its double-submit token in the form and in a cookie.
fn login_page(
    status: StatusCode,
    headers: &HeaderMap,
    params: &Pairs,
    app: &Application,
    note: Option<&str>,
) -> Response {
    let token = match login_token(headers) {
        Ok(token) => token,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, APP, &e.to_string()),
    };
    let note = note.map_or(String::new(), |n| {
        format!("<p id=\"error\">{}</p>", escape(n))
    });
    let body = format!(
        "<p>Log in to Step On to continue to <strong>{app}</strong>.</p>{note}\
         <form method=\"post\" action=\"/login\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <p><label>Username <input id=\"username\" name=\"username\" autocomplete=\"username\" autofocus required></label></p>\
         <p class=\"note\">This demo has no passwords: any username logs in (try <code>clark</code>).</p>\
         <p><button id=\"login\" type=\"submit\">Log in</button></p></form>",
        app = escape(&app.name),
        hidden = hidden_fields(params),
    );
    let mut response = page(status, APP, "Log in", &body);
    set_cookie(
        &mut response,
        LOGIN_CSRF_COOKIE,
        &token,
        SameSite::Strict,
        None,
    );
    response
}

fn consent_page(params: &Pairs, app: &Application, session: &Session) -> Response {
    let scopes: Vec<&str> = param(params, "scope")
        .unwrap_or("")
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .collect();
    let wants = if scopes.is_empty() {
        "access to your account".to_string()
    } else {
        scopes.join(", ")
    };
    let body = format!(
        "<p>Logged in as <strong id=\"user\">{user}</strong>.</p>\
         <p id=\"wants\">{app} wants: {wants}</p>\
         <form method=\"post\" action=\"/authorize\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button id=\"authorize\" type=\"submit\" name=\"decision\" value=\"allow\">Authorize</button> \
         <button id=\"deny\" type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>\
         <form method=\"post\" action=\"/logout\">{hidden}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p class=\"note\">Not {user}? <button id=\"logout\" type=\"submit\">Log out</button></p></form>",
        user = escape(&session.user),
        app = escape(&app.name),
        wants = escape(&wants),
        hidden = hidden_fields(params),
        csrf = escape(&session.csrf),
    );
    page(StatusCode::OK, APP, "Authorize access", &body)
}

/// A username for the demo's password-less login, or why not.
fn valid_username(raw: Option<&str>) -> Result<String, &'static str> {
    let name = raw.map(str::trim).unwrap_or("");
    if name.is_empty() {
        return Err("Enter a username.");
    }
    if name.chars().count() > MAX_USERNAME_CHARS || name.chars().any(char::is_control) {
        return Err("That is not a username.");
    }
    Ok(name.to_string())
}

/// Why a login or logout form is refused before anything happens.
fn forged_form() -> Response {
    let message = "This form was not sent from Step On's page: start again from the application.";
    error_page(StatusCode::FORBIDDEN, APP, message)
}

/// The page for a login the session limits refuse.
fn refused_page(refused: Refused) -> Response {
    match refused {
        Refused::TooManyFromClient => error_page(
            StatusCode::TOO_MANY_REQUESTS,
            APP,
            "Too many Step On sessions are open from your address: log out of one, or wait for one to expire.",
        ),
        Refused::Full => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            APP,
            "Step On has too many sessions open: try again in a few minutes.",
        ),
        Refused::Random(why) => error_page(StatusCode::INTERNAL_SERVER_ERROR, APP, &why),
    }
}

/// `POST /login`: starts a session (replacing the browser's old one) and goes back to the
/// authorization page, which checks the application again: a login costs no admin API call
/// unless its form needs showing again. Only the page's own form logs in (login CSRF would
/// log Clark in as someone else, whose account would then get his consent).
async fn login(
    State(step_on): State<StepOn>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<Pairs>,
) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !is_token(&expected) || !token_matches(param(&form, "csrf"), &expected) {
        return forged_form();
    }
    let params = oauth_params(&form);
    let user = match valid_username(param(&form, "username")) {
        Ok(user) => user,
        Err(why) => {
            return match step_on.check(&params).await {
                Ok((app, _)) => {
                    login_page(StatusCode::BAD_REQUEST, &headers, &params, &app, Some(why))
                }
                Err(page) => page,
            }
        }
    };
    if let Some((old, _)) = step_on.session(&headers) {
        step_on.sessions.end(&old);
    }
    let id = match step_on
        .sessions
        .start(user, Client::from(peer.ip()), Instant::now())
    {
        Ok(id) => id,
        Err(refused) => return refused_page(refused),
    };
    let mut response = Redirect::to(&authorize_url(&params)).into_response();
    set_cookie(&mut response, SESSION_COOKIE, &id, SameSite::Lax, None);
    response
}

/// `POST /logout`: ends the session, with its form token, and shows the login form again.
async fn logout(
    State(step_on): State<StepOn>,
    headers: HeaderMap,
    Form(form): Form<Pairs>,
) -> Response {
    if let Some((id, session)) = step_on.session(&headers) {
        if !token_matches(param(&form, "csrf"), &session.csrf) {
            return forged_form();
        }
        step_on.sessions.end(&id);
    }
    let mut response = Redirect::to(&authorize_url(&oauth_params(&form))).into_response();
    set_cookie(&mut response, SESSION_COOKIE, "", SameSite::Lax, Some(0));
    response
}

/// `POST /authorize`: Clark's decision. Authorize asks the gateway for a code; Deny answers
/// the application `access_denied` (RFC 6749 4.1.2.1).
async fn decide(
    State(step_on): State<StepOn>,
    headers: HeaderMap,
    Form(form): Form<Pairs>,
) -> Response {
    let Some((_, session)) = step_on.session(&headers) else {
        let message = "You are not logged in (or your session ended): start again.";
        return error_page(StatusCode::FORBIDDEN, APP, message);
    };
    if !token_matches(param(&form, "csrf"), &session.csrf) {
        let message = "This form was not sent from Step On's page.";
        return error_page(StatusCode::FORBIDDEN, APP, message);
    }
    let params = oauth_params(&form);
    let redirect_uri = match step_on.check(&params).await {
        Ok((_, uri)) => uri,
        Err(page) => return page,
    };
    match param(&form, "decision") {
        Some("allow") => grant(&step_on.gateway, &params, &session.user).await,
        Some("deny") => Redirect::to(&denied(&params, &redirect_uri)).into_response(),
        _ => error_page(StatusCode::BAD_REQUEST, APP, "Authorize or Deny?"),
    }
}

/// The redirect URI with `error=access_denied` (and the request's `state`); in the fragment
/// for the implicit grant, as its answers are.
fn denied(params: &Pairs, redirect_uri: &str) -> String {
    let mut answer = form_urlencoded::Serializer::new(String::new());
    answer.append_pair("error", "access_denied");
    answer.append_pair("error_description", "The user denied access");
    if let Some(state) = param(params, "state") {
        answer.append_pair("state", state);
    }
    let answer = answer.finish();
    if param(params, "response_type") == Some("token") {
        return format!("{redirect_uri}#{answer}");
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{separator}{answer}")
}

/// Server to server: the gateway's authorization endpoint with the provision key, then the
/// browser goes where its answer says (the code, or an error, inside the redirect URI).
async fn grant(gateway: &Gateway, params: &Pairs, user: &str) -> Response {
    let provision_key = match gateway.provision_key().await {
        Ok(key) => key,
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, APP, &e.0),
    };
    let mut form: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    form.push(("provision_key", &provision_key));
    form.push(("authenticated_userid", user));
    let answer = match gateway.oauth("authorize", &form).await {
        Ok(answer) => answer,
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, APP, &e.0),
    };
    match answer.json["redirect_uri"].as_str() {
        Some(uri) => Redirect::to(uri).into_response(),
        None => {
            let why = answer.json["error_description"]
                .as_str()
                .or(answer.json["error"].as_str())
                .unwrap_or("no answer");
            let message = format!("The gateway refused ({}): {why}", answer.status);
            error_page(StatusCode::BAD_GATEWAY, APP, &message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Pairs {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_oauth_parameters_travel_first_occurrence_wins() {
        let query = pairs(&[
            ("client_id", "a"),
            ("provision_key", "stolen"),
            ("authenticated_userid", "lex"),
            ("client_id", "b"),
            ("scope", "step_counts"),
        ]);
        assert_eq!(
            oauth_params(&query),
            pairs(&[("client_id", "a"), ("scope", "step_counts")])
        );
    }

    #[test]
    fn denial_goes_in_the_query_for_codes_and_the_fragment_for_tokens() {
        let code = pairs(&[("response_type", "code"), ("state", "x y")]);
        assert_eq!(
            denied(&code, "http://localhost:5000/callback"),
            "http://localhost:5000/callback?error=access_denied&error_description=The+user+denied+access&state=x+y"
        );
        assert_eq!(
            denied(&code, "http://c/cb?a=1"),
            "http://c/cb?a=1&error=access_denied&error_description=The+user+denied+access&state=x+y"
        );
        let token = pairs(&[("response_type", "token")]);
        assert_eq!(
            denied(&token, "http://c/cb"),
            "http://c/cb#error=access_denied&error_description=The+user+denied+access"
        );
    }

    #[test]
    fn usernames_are_trimmed_and_bounded() {
        assert_eq!(valid_username(Some("  clark ")), Ok("clark".to_string()));
        assert!(valid_username(Some("   ")).is_err());
        assert!(valid_username(None).is_err());
        assert!(valid_username(Some("a\nb")).is_err());
        assert!(valid_username(Some(&"x".repeat(65))).is_err());
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("x_stepon_session=no; stepon_session=yes"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("yes"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}

/// The pages as a browser meets them: a fake admin API answers for one application.
#[cfg(test)]
mod page_tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::Request;
    use std::collections::HashMap;
    use tower::ServiceExt;

    const QUERY: &str = "response_type=code&client_id=app&scope=step_counts&state=s1";

    /// An admin API that knows the application `app` (redirect URI http://app.example/cb).
    async fn fake_admin() -> url::Url {
        let admin = Router::new().route(
            "/oauth2/{id}",
            get(
                |axum::extract::Path(id): axum::extract::Path<String>| async move {
                    if id != "app" {
                        return StatusCode::NOT_FOUND.into_response();
                    }
                    axum::Json(
                        serde_json::json!({"client_id": "app", "name": "Shoe Fly Shoe",
                    "redirect_uris": ["http://app.example/cb"]}),
                    )
                    .into_response()
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, admin).await });
        format!("http://{addr}").parse().unwrap()
    }

    async fn step_on(limits: Limits) -> Router {
        let config = crate::gateway::Config {
            gateway_url: "https://127.0.0.1:9/stepon".parse().unwrap(),
            gateway_ca: None,
            admin_url: fake_admin().await,
            admin_key: None,
            service: "step-on".into(),
            provision_key: Some("unused".into()),
        };
        router_with(Gateway::new(config).unwrap(), limits)
    }

    /// A browser: its address and its cookies.
    struct Browser {
        app: Router,
        address: SocketAddr,
        cookies: HashMap<String, String>,
    }

    struct Page {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    }

    impl Page {
        /// The value of the hidden field `name` (the first form that has one).
        fn field(&self, name: &str) -> Option<String> {
            let marker = format!("name=\"{name}\" value=\"");
            let start = self.body.find(&marker)? + marker.len();
            let end = self.body[start..].find('"')? + start;
            Some(self.body[start..end].to_string())
        }

        fn set_cookie(&self, name: &str) -> Option<String> {
            self.headers
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| v.starts_with(&format!("{name}=")))
                .map(str::to_string)
        }
    }

    impl Browser {
        fn new(app: &Router, address: &str) -> Browser {
            Browser {
                app: app.clone(),
                address: address.parse().unwrap(),
                cookies: HashMap::new(),
            }
        }

        async fn send(&mut self, method: &str, path: &str, form: Option<String>) -> Page {
            let cookie: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .extension(ConnectInfo(self.address))
                .header(header::COOKIE, cookie.join("; "));
            if form.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            }
            let body = form.map_or_else(Body::empty, Body::from);
            let response = self
                .app
                .clone()
                .oneshot(request.body(body).unwrap())
                .await
                .unwrap();
            for value in response.headers().get_all(header::SET_COOKIE) {
                let text = value.to_str().unwrap();
                let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
                let (name, value) = pair.split_once('=').unwrap();
                if attributes.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let body = String::from_utf8(bytes.to_vec()).unwrap();
            Page {
                status,
                headers,
                body,
            }
        }

        async fn get(&mut self, path: &str) -> Page {
            self.send("GET", path, None).await
        }

        async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            let body = if body.is_empty() {
                QUERY.to_string()
            } else {
                format!("{QUERY}&{body}")
            };
            self.send("POST", path, Some(body)).await
        }

        /// The authorization page: the login form, or the consent form once logged in.
        async fn authorize_page(&mut self) -> Page {
            self.get(&format!("/authorize?{QUERY}")).await
        }

        async fn is_logged_in_as(&mut self, user: &str) -> bool {
            let page = self.authorize_page().await;
            page.body
                .contains(&format!("<strong id=\"user\">{user}</strong>"))
        }

        /// Logs in the way the page does: its form, with the token it carries.
        async fn log_in(&mut self, user: &str) -> Page {
            let form = self.authorize_page().await;
            let token = form.field("csrf").unwrap_or_default();
            self.post("/login", &[("username", user), ("csrf", &token)])
                .await
        }
    }

    #[tokio::test]
    async fn the_login_form_carries_a_token_matching_a_strict_cookie() {
        let app = step_on(Limits::default()).await;
        let mut clark = Browser::new(&app, "10.0.0.1:1000");
        let page = clark.authorize_page().await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let token = page.field("csrf").expect("a csrf field in the login form");
        let cookie = page
            .set_cookie(LOGIN_CSRF_COOKIE)
            .expect("the login token's cookie");
        assert!(
            cookie.starts_with(&format!("{LOGIN_CSRF_COOKIE}={token};")),
            "{cookie}"
        );
        assert!(
            cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"),
            "{cookie}"
        );
        // Another page load (another tab) keeps the same token, so both forms work.
        assert_eq!(clark.authorize_page().await.field("csrf"), Some(token));
    }

    /// Login CSRF: another site posting the login form would log Clark in as its own user.
    #[tokio::test]
    async fn login_without_the_pages_token_is_refused() {
        let app = step_on(Limits::default()).await;
        let mut clark = Browser::new(&app, "10.0.0.1:1000");
        let token = clark
            .authorize_page()
            .await
            .field("csrf")
            .unwrap_or_default();
        for form in [
            vec![("username", "lex")],
            vec![("username", "lex"), ("csrf", "")],
            vec![
                ("username", "lex"),
                ("csrf", "0123456789abcdef0123456789abcdef"),
            ],
        ] {
            let page = clark.post("/login", &form).await;
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{form:?}: {}",
                page.body
            );
            assert!(page.set_cookie(SESSION_COOKIE).is_none(), "{form:?}");
        }
        // The right token without its cookie (another site cannot send it) is refused too.
        let mut other_site = Browser::new(&app, "10.0.0.1:1001");
        let page = other_site
            .post("/login", &[("username", "lex"), ("csrf", &token)])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(!clark.is_logged_in_as("lex").await);
        // The page's own form logs in.
        let page = clark.log_in("clark").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let session = page.set_cookie(SESSION_COOKIE).expect("a session cookie");
        assert!(
            session.contains("SameSite=Lax") && session.contains("HttpOnly"),
            "{session}"
        );
        assert!(clark.is_logged_in_as("clark").await);
    }

    /// Logout CSRF: another site must not end Clark's session; and logout is POST only.
    #[tokio::test]
    async fn logout_needs_post_and_the_sessions_token() {
        let app = step_on(Limits::default()).await;
        let mut clark = Browser::new(&app, "10.0.0.1:1000");
        clark.log_in("clark").await;
        let consent = clark.authorize_page().await;
        let token = consent.field("csrf").expect("the session's token");
        let page = clark.get("/logout").await;
        assert_eq!(page.status, StatusCode::METHOD_NOT_ALLOWED);
        for form in [vec![], vec![("csrf", "0123456789abcdef0123456789abcdef")]] {
            let page = clark.post("/logout", &form).await;
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{form:?}: {}",
                page.body
            );
            assert!(
                clark.is_logged_in_as("clark").await,
                "{form:?} ended the session"
            );
        }
        let page = clark.post("/logout", &[("csrf", &token)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert!(!clark.is_logged_in_as("clark").await);
    }

    /// Anyone may log in (no passwords in the demo), as often as they like: that must not push
    /// anyone's session out. The flood is refused instead, once it holds its share.
    #[tokio::test]
    async fn a_login_flood_does_not_evict_logged_in_sessions() {
        let app = step_on(Limits::default()).await;
        let mut users = Vec::new();
        for i in 1..=20 {
            let mut user = Browser::new(&app, &format!("10.0.1.{i}:1000"));
            user.log_in(&format!("user{i}")).await;
            users.push(user);
        }
        let mut flood = Browser::new(&app, "10.0.0.2:1000");
        let token = flood
            .authorize_page()
            .await
            .field("csrf")
            .unwrap_or_default();
        let mut refused = 0;
        for _ in 0..Limits::default().capacity + 10 {
            flood.cookies.remove(SESSION_COOKIE);
            let page = flood
                .post("/login", &[("username", "lex"), ("csrf", &token)])
                .await;
            if page.status == StatusCode::TOO_MANY_REQUESTS {
                refused += 1;
            }
        }
        for (i, user) in users.iter_mut().enumerate() {
            let name = format!("user{}", i + 1);
            assert!(
                user.is_logged_in_as(&name).await,
                "the flood evicted {name}"
            );
        }
        assert!(refused > 0, "the flood was never refused");
    }

    /// Flooding from many addresses fills the table at most: newcomers wait, nobody is out.
    #[tokio::test]
    async fn a_full_table_refuses_logins_with_503_and_keeps_its_sessions() {
        let limits = Limits {
            capacity: 3,
            per_client: 1,
            idle: std::time::Duration::from_secs(600),
        };
        let app = step_on(limits).await;
        let mut clark = Browser::new(&app, "10.0.0.1:1000");
        clark.log_in("clark").await;
        let mut statuses = Vec::new();
        for i in 2..10 {
            let mut lex = Browser::new(&app, &format!("10.0.0.{i}:1000"));
            statuses.push(lex.log_in("lex").await.status);
        }
        assert_eq!(statuses[..2], [StatusCode::SEE_OTHER; 2]);
        assert!(
            statuses[2..]
                .iter()
                .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
            "{statuses:?}"
        );
        assert!(clark.is_logged_in_as("clark").await);
        // Logging in again (a login form in another tab) replaces the browser's session
        // rather than taking another slot.
        let token = clark.cookies[LOGIN_CSRF_COOKIE].clone();
        let form = [("username", "clark kent"), ("csrf", token.as_str())];
        assert_eq!(
            clark.post("/login", &form).await.status,
            StatusCode::SEE_OTHER
        );
        assert!(clark.is_logged_in_as("clark kent").await);
    }
}
