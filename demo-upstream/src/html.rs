//! The demo apps' HTML: one page layout and escaping of everything that came from outside.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// Text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page; `body` is HTML already (escape what goes into it). Pages that carry a login
/// form or a one-time code are neither cached nor framed (no clickjacking of the consent
/// button), and run no scripts. (No CSP `form-action`: browsers apply it to the redirect that
/// follows a form, and the consent form's answer redirects to the application.)
pub fn page(status: StatusCode, app: &str, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} - {app}</title>\
         <style>body{{font-family:sans-serif;max-width:36em;margin:3em auto}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .8em}}\
         .note{{color:#666}}</style></head>\
         <body><header><strong>{app}</strong></header><h1>{title}</h1>\n{body}\n</body></html>\n",
        app = escape(app),
        title = escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    response
}

/// A page that only says what went wrong.
pub fn error_page(status: StatusCode, app: &str, message: &str) -> Response {
    let body = format!("<p id=\"error\">{}</p>", escape(message));
    page(status, app, "Something went wrong", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("clark"), "clark");
    }
}
