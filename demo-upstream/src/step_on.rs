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

use crate::gateway::{Application, Gateway};
use crate::html::{error_page, escape, page};
use crate::random;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const APP: &str = "Step On";
const SESSION_COOKIE: &str = "stepon_session";
/// Sessions live in memory; past this many, an arbitrary one is dropped (a demo bound).
const MAX_SESSIONS: usize = 10_000;
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
struct Session {
    user: String,
    /// Bound to the consent form, so another site cannot post a decision for Clark.
    csrf: String,
}

#[derive(Clone)]
struct StepOn {
    gateway: Gateway,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
}

type Pairs = Vec<(String, String)>;

pub fn router(gateway: Gateway) -> Router {
    let state = StepOn {
        gateway,
        sessions: Arc::default(),
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
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(&id).map(|s| (id, s.clone()))
    }

    fn start_session(&self, user: String) -> Result<String, getrandom::Error> {
        let (id, csrf) = (random::token()?, random::token()?);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            if let Some(old) = sessions.keys().next().cloned() {
                sessions.remove(&old);
            }
        }
        sessions.insert(id.clone(), Session { user, csrf });
        Ok(id)
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

/// `Set-Cookie` for a browser-session cookie that scripts cannot read.
pub fn set_cookie(response: &mut Response, name: &str, value: &str, max_age: Option<u32>) {
    let age = max_age.map_or(String::new(), |s| format!("; Max-Age={s}"));
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{age}");
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
        None => login_page(StatusCode::OK, &params, &app, None),
        Some((_, session)) => consent_page(&params, &app, &session),
    }
}

fn login_page(
    status: StatusCode,
    params: &Pairs,
    app: &Application,
    note: Option<&str>,
) -> Response {
    let note = note.map_or(String::new(), |n| {
        format!("<p id=\"error\">{}</p>", escape(n))
    });
    let body = format!(
        "<p>Log in to Step On to continue to <strong>{app}</strong>.</p>{note}\
         <form method=\"post\" action=\"/login\">{hidden}\
         <p><label>Username <input id=\"username\" name=\"username\" autocomplete=\"username\" autofocus required></label></p>\
         <p class=\"note\">This demo has no passwords: any username logs in (try <code>clark</code>).</p>\
         <p><button id=\"login\" type=\"submit\">Log in</button></p></form>",
        app = escape(&app.name),
        hidden = hidden_fields(params),
    );
    page(status, APP, "Log in", &body)
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

/// `POST /login`: starts a session and goes back to the authorization page.
async fn login(State(step_on): State<StepOn>, Form(form): Form<Pairs>) -> Response {
    let params = oauth_params(&form);
    let (app, _) = match step_on.check(&params).await {
        Ok(checked) => checked,
        Err(page) => return page,
    };
    let user = match valid_username(param(&form, "username")) {
        Ok(user) => user,
        Err(why) => return login_page(StatusCode::BAD_REQUEST, &params, &app, Some(why)),
    };
    let id = match step_on.start_session(user) {
        Ok(id) => id,
        Err(e) => return error_page(StatusCode::INTERNAL_SERVER_ERROR, APP, &e.to_string()),
    };
    let mut response = Redirect::to(&authorize_url(&params)).into_response();
    set_cookie(&mut response, SESSION_COOKIE, &id, None);
    response
}

/// `POST /logout`: ends the session and shows the login form again.
async fn logout(
    State(step_on): State<StepOn>,
    headers: HeaderMap,
    Form(form): Form<Pairs>,
) -> Response {
    if let Some((id, _)) = step_on.session(&headers) {
        let mut sessions = step_on.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(&id);
    }
    let mut response = Redirect::to(&authorize_url(&oauth_params(&form))).into_response();
    set_cookie(&mut response, SESSION_COOKIE, "", Some(0));
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
    if param(&form, "csrf") != Some(session.csrf.as_str()) {
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
