//! Cross-site protection of the admin API. It has no key by default, so a web page the
//! operator visits could otherwise make their browser POST forms to it (CSRF). Browsers mark
//! such requests (`Origin`, `Sec-Fetch-Site`); curl and scripts send neither and keep working.
//! Requests from an allowed origin are answered with CORS headers so an admin UI served there
//! can read the answers.

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
