//! Cross-site protection of the admin API. It has no key by default, so a web page the
//! operator visits could otherwise make their browser POST forms to it (CSRF). Browsers mark
//! such requests (`Origin`, `Sec-Fetch-Site`); curl and scripts send neither and keep working.
//! Requests from an allowed origin are answered with CORS headers so an admin UI served there
//! can read the answers.
//!
//! DNS rebinding gets past that: a page of `attacker.example` whose name is re-pointed at
//! 127.0.0.1 makes *same-origin* requests (no `Origin`) that reach the admin listener, and
//! reads client secrets and provision keys. What gives it away is `Host`, which names the
//! attacker's domain: the admin API answers only a `Host` that is an IP address, `localhost`,
//! or a name the operator allowed (`--admin-allowed-hosts`), and refuses the rest (421). An IP
//! address is always safe: a rebinding page cannot make its browser send one.

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::net::SocketAddr;

use crate::app::AppState;

/// One web origin, `scheme://host[:port]`, normalized as browsers send it (lower-case host,
/// default port left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl std::str::FromStr for Origin {
    type Err = String;

    fn from_str(text: &str) -> Result<Origin, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| format!("'{text}': {e}"))?;
        let origin = url.origin();
        let path_is_bare = matches!(url.path(), "" | "/");
        if !origin.is_tuple() || !path_is_bare || url.query().is_some() || url.fragment().is_some()
        {
            return Err(format!("'{text}' is not an origin (scheme://host[:port])"));
        }
        Ok(Origin(origin.ascii_serialization()))
    }
}

/// The origins whose pages may use the admin API: the operator's list
/// (`--admin-allowed-origins`) and the admin listener's own.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    origins: Vec<Origin>,
}

impl AllowedOrigins {
    pub fn new(configured: Vec<Origin>, admin_listen: Option<SocketAddr>) -> AllowedOrigins {
        let mut origins = configured;
        if let Some(addr) = admin_listen {
            let port = addr.port();
            let mut own = vec![format!("http://{addr}")];
            if addr.ip().is_loopback() {
                own.push(format!("http://localhost:{port}"));
            }
            origins.extend(own.iter().filter_map(|o| o.parse().ok()));
        }
        AllowedOrigins { origins }
    }

    fn allows(&self, origin: &str) -> bool {
        origin
            .parse::<Origin>()
            .is_ok_and(|o| self.origins.contains(&o))
    }
}

/// What a request's browser headers say about where it comes from.
enum Verdict {
    /// Not from a browser page (curl, scripts) or from the admin's own origin.
    NotCrossSite,
    /// From a page of an allowed origin: answer with CORS headers for it.
    Allowed(HeaderValue),
    Refused(String),
}

fn judge(headers: &HeaderMap, allowed: &AllowedOrigins) -> Verdict {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let text = origin.to_str().unwrap_or("");
        return if allowed.allows(text) {
            Verdict::Allowed(origin.clone())
        } else {
            Verdict::Refused(format!("origin '{text}' is not allowed"))
        };
    }
    // Without Origin (a GET a page embeds, an old browser): Fetch Metadata still tells.
    match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        None | Some(b"same-origin") | Some(b"none") => Verdict::NotCrossSite,
        Some(other) => Verdict::Refused(format!(
            "{} requests are not allowed",
            String::from_utf8_lossy(other)
        )),
    }
}

/// Refuses (403) admin requests from pages of origins that are not allowed.
pub async fn refuse_cross_site(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match judge(request.headers(), &state.admin_origins) {
        Verdict::NotCrossSite => next.run(request).await,
        Verdict::Refused(why) => (
            StatusCode::FORBIDDEN,
            Json(json!({
                "message": format!("Cross-site admin requests are refused: {why}")
            })),
        )
            .into_response(),
        Verdict::Allowed(origin) if is_preflight(&request) => preflight(origin),
        Verdict::Allowed(origin) => {
            let mut response = next.run(request).await;
            cors_headers(response.headers_mut(), origin);
            response
        }
    }
}

/// The names under which the admin API may be reached (see the module's documentation).
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    configured: Vec<AllowedHost>,
}

/// One `--admin-allowed-hosts` entry: a host name, with a port or for any port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    name: String,
    port: Option<u16>,
}

impl std::str::FromStr for AllowedHost {
    type Err = String;

    fn from_str(text: &str) -> Result<AllowedHost, String> {
        let (name, port) = split_host(text.trim())
            .ok_or_else(|| format!("'{text}' is not a host name or host:port"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            return Err(format!("'{text}' is not a host name or host:port"));
        }
        Ok(AllowedHost { name, port })
    }
}

/// `host[:port]` as a lower-case name and the port, if any; `None` when the port is not one.
/// A bracketed IPv6 literal keeps its brackets.
fn split_host(text: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = match text.rsplit_once(':') {
        Some((name, port))
            if !name.ends_with(':') && (!name.contains(':') || name.ends_with(']')) =>
        {
            (name, Some(port.parse::<u16>().ok()?))
        }
        _ => (text, None),
    };
    Some((name.to_ascii_lowercase(), port))
}

impl AllowedHosts {
    pub fn new(configured: Vec<AllowedHost>) -> AllowedHosts {
        AllowedHosts { configured }
    }

    fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let literal = name.strip_prefix('[').and_then(|n| n.strip_suffix(']'));
        if name == "localhost"
            || name.parse::<std::net::Ipv4Addr>().is_ok()
            || literal.is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok())
        {
            return true;
        }
        self.configured
            .iter()
            .any(|a| a.name == name && a.port.is_none_or(|p| Some(p) == port))
    }
}

/// Refuses (421) admin requests whose `Host` names a host the admin API is not known by: a
/// DNS-rebinding page. Requests without a `Host` (no browser sends one) pass.
pub async fn refuse_foreign_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let host = match request.headers().get(header::HOST) {
        Some(value) => Some(value.to_str().unwrap_or("").to_string()),
        None => request.uri().authority().map(|a| a.as_str().to_string()),
    };
    match host {
        Some(host) if !state.admin_hosts.allows(&host) => (
            StatusCode::MISDIRECTED_REQUEST,
            Json(json!({
                "message": format!(
                    "Host '{host}' is not a name of this admin API (allow it with --admin-allowed-hosts)"
                )
            })),
        )
            .into_response(),
        _ => next.run(request).await,
    }
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn preflight(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    cors_headers(headers, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, x-admin-key"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

fn cors_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_like_browsers_send_them() {
        let o = |s: &str| s.parse::<Origin>().map(|o| o.0);
        assert_eq!(
            o("https://Admin.Example.com/"),
            Ok("https://admin.example.com".into())
        );
        assert_eq!(o("https://a.test:443"), Ok("https://a.test".into()));
        assert_eq!(o("http://a.test:8002"), Ok("http://a.test:8002".into()));
        for bad in [
            "null",
            "a.test",
            "https://a.test/path",
            "https://a.test/?q",
            "file:///x",
        ] {
            assert!(o(bad).is_err(), "{bad}");
        }
    }

    fn hosts(configured: &[&str]) -> AllowedHosts {
        AllowedHosts::new(
            configured
                .iter()
                .map(|h| h.parse().expect("allowed host"))
                .collect(),
        )
    }

    #[test]
    fn ip_addresses_localhost_and_configured_names_are_admin_hosts() {
        let allowed = hosts(&["token-service", "Admin.Example.com:9001"]);
        for ok in [
            "127.0.0.1:8001",
            "127.0.0.1",
            "localhost:8003",
            "LOCALHOST",
            "[::1]:8001",
            "[::1]",
            "10.1.2.3:8001",
            "0.0.0.0:8001",
            "token-service:8001",
            "token-service",
            "admin.example.com:9001",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for refused in [
            "attacker.example:8001",
            "attacker.example",
            "admin.example.com:8001",
            "admin.example.com",
            "localhost.attacker.example",
            "127.0.0.1.attacker.example:8001",
            "token-service.attacker.example",
            "[::1",
            "::1",
            "localhost:notaport",
            "",
        ] {
            assert!(!allowed.allows(refused), "{refused}");
        }
    }

    #[test]
    fn allowed_hosts_are_names_with_an_optional_port() {
        let h = |s: &str| s.parse::<AllowedHost>();
        assert_eq!(
            h("Token-Service"),
            Ok(AllowedHost {
                name: "token-service".into(),
                port: None
            })
        );
        assert_eq!(
            h("a.test:8001"),
            Ok(AllowedHost {
                name: "a.test".into(),
                port: Some(8001)
            })
        );
        for bad in [
            "",
            "a.test:x",
            "http://a.test",
            "a test",
            "a.test/",
            ":8001",
        ] {
            assert!(h(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_rebinding_host_cannot_read_the_admin_api() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::store::Store::open(&dir.path().join("a.db")).expect("store");
        let state =
            AppState::new(store, None).with_admin_hosts(AllowedHosts::new(vec!["token-service"
                .parse()
                .expect("host")]));
        let router = crate::admin::router(state);
        let get = |host: &'static str| {
            axum::http::Request::get("/consumers")
                .header("host", host)
                .body(axum::body::Body::empty())
                .expect("request")
        };
        let answer = router
            .clone()
            .oneshot(get("attacker.example:8001"))
            .await
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::MISDIRECTED_REQUEST);
        let body = axum::body::to_bytes(answer.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            body,
            json!({"message": "Host 'attacker.example:8001' is not a name of this admin API (allow it with --admin-allowed-hosts)"})
        );
        for host in ["127.0.0.1:8001", "localhost:8001", "token-service:8001"] {
            let answer = router.clone().oneshot(get(host)).await.expect("answer");
            assert_eq!(answer.status(), StatusCode::OK, "{host}");
        }
    }

    #[test]
    fn the_admin_listeners_own_origin_is_allowed() {
        let allowed = AllowedOrigins::new(
            vec!["https://ui.test".parse().expect("origin")],
            Some("127.0.0.1:8001".parse().expect("addr")),
        );
        for ok in [
            "https://ui.test",
            "http://127.0.0.1:8001",
            "http://localhost:8001",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for refused in [
            "http://localhost:8000",
            "https://127.0.0.1:8001",
            "null",
            "",
        ] {
            assert!(!allowed.allows(refused), "{refused}");
        }
    }
}
