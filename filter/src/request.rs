//! What the filter needs from a request's headers, read in one host call.

use crate::decision::IDENTITY_HEADERS;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub path: String,
    pub method: String,
    pub content_type: String,
    /// The first value of the configured token header, when present.
    pub auth: Option<String>,
    /// Bit `i` set: the client sent `IDENTITY_HEADERS[i]` (it must be removed).
    pub identity_present: u8,
}

impl RequestView {
    pub fn from_headers(headers: Vec<(String, String)>, auth_header_name: &str) -> RequestView {
        let mut view = RequestView::default();
        for (name, value) in headers {
            match name.as_str() {
                ":path" => view.path = value,
                ":method" => view.method = value,
                "content-type" => view.content_type = value,
                n if n == auth_header_name => {
                    view.auth.get_or_insert(value);
                }
                n => {
                    if let Some(i) = IDENTITY_HEADERS.iter().position(|h| *h == n) {
                        view.identity_present |= 1 << i;
                    }
                }
            }
        }
        view
    }

    pub fn is_form_post(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH")
            && self
                .content_type
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_what_the_filter_needs_in_one_pass() {
        let v = RequestView::from_headers(
            headers(&[
                (":method", "POST"),
                (":path", "/a?b=c"),
                ("authorization", "Bearer one"),
                ("authorization", "Bearer two"),
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("x-consumer-id", "forged"),
                ("x-anonymous-consumer", "true"),
            ]),
            "authorization",
        );
        assert_eq!(v.path, "/a?b=c");
        assert_eq!(v.auth.as_deref(), Some("Bearer one"));
        assert!(v.is_form_post());
        assert_eq!(v.identity_present, 0b100_0001);
    }

    #[test]
    fn a_custom_token_header_ignores_authorization() {
        let v = RequestView::from_headers(
            headers(&[("authorization", "Bearer x")]),
            "custom_header_name",
        );
        assert_eq!(v.auth, None);
    }
}
