//! What the filter needs from a request's headers, read in one host call.

use crate::decision::IDENTITY_HEADERS;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub path: String,
    pub method: String,
    pub authority: String,
    pub content_type: Option<String>,
    /// The first value of the configured token header, when present.
    pub auth: Option<String>,
    /// The first `authorization` value (client credentials at the OAuth endpoints), whatever
    /// the configured token header.
    pub authorization: Option<String>,
    pub forwarded_proto: Option<String>,
    /// Bit `i` set: the client sent `IDENTITY_HEADERS[i]` (it must be removed).
    pub identity_present: u8,
    /// Client headers spelled like an identity header with `_` for `-` (or in another case):
    /// CGI, WSGI and Rack upstreams read `X_Consumer_ID` as `X-Consumer-ID`, so they go too.
    pub smuggled: Vec<String>,
}

impl RequestView {
    pub fn from_headers(headers: Vec<(String, String)>, auth_header_name: &str) -> RequestView {
        let mut view = RequestView::default();
        for (name, value) in headers {
            if name == auth_header_name && view.auth.is_none() {
                view.auth = Some(value.clone());
            }
            match name.as_str() {
                ":path" => view.path = value,
                ":method" => view.method = value,
                ":authority" => view.authority = value,
                "content-type" => first(&mut view.content_type, value),
                "authorization" => first(&mut view.authorization, value),
                "x-forwarded-proto" => first(&mut view.forwarded_proto, value),
                n => {
                    if let Some(i) = IDENTITY_HEADERS.iter().position(|h| *h == n) {
                        view.identity_present |= 1 << i;
                    } else if spells_identity_header(n) {
                        view.smuggled.push(n.to_string());
                    }
                }
            }
        }
        view
    }

    pub fn is_form_post(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH")
            && self.content_type.as_ref().is_some_and(|c| {
                c.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            })
    }

    /// The request headers the token-service sees on a relayed OAuth request (beside the
    /// gateway's own), each once: client credentials may come in `authorization` or in the
    /// configured token header.
    pub fn relayed_headers(&self, auth_header_name: &str) -> Vec<(String, String)> {
        let mut relayed = Vec::with_capacity(4);
        let candidates = [
            ("content-type", &self.content_type),
            ("authorization", &self.authorization),
            (auth_header_name, &self.auth),
            ("x-forwarded-proto", &self.forwarded_proto),
        ];
        for (name, value) in candidates {
            if let Some(value) = value {
                if !relayed.iter().any(|(n, _): &(String, String)| n == name) {
                    relayed.push((name.to_string(), value.clone()));
                }
            }
        }
        relayed
    }
}

/// `x_consumer_id`, `X-Consumer-ID`...: a name an upstream may read as an identity header.
fn spells_identity_header(name: &str) -> bool {
    name.len() <= 24
        && (name.contains('_') || name.bytes().any(|b| b.is_ascii_uppercase()))
        && IDENTITY_HEADERS.iter().any(|h| {
            h.len() == name.len()
                && h.bytes()
                    .zip(name.bytes())
                    .all(|(h, n)| h == n.to_ascii_lowercase() || (h == b'-' && n == b'_'))
        })
}

fn first(slot: &mut Option<String>, value: String) {
    if slot.is_none() {
        *slot = Some(value);
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
    fn relays_each_client_credential_header_once() {
        let v = RequestView::from_headers(
            headers(&[
                (":authority", "api.example"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", "Basic abc"),
                ("x-forwarded-proto", "https"),
            ]),
            "authorization",
        );
        assert_eq!(v.authority, "api.example");
        assert_eq!(
            v.relayed_headers("authorization"),
            headers(&[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", "Basic abc"),
                ("x-forwarded-proto", "https"),
            ])
        );
        let custom = RequestView::from_headers(
            headers(&[("authorization", "Basic abc"), ("custom", "Basic def")]),
            "custom",
        );
        assert_eq!(
            custom.relayed_headers("custom"),
            headers(&[("authorization", "Basic abc"), ("custom", "Basic def")])
        );
    }

    #[test]
    fn identity_headers_spelled_with_underscores_are_smuggling() {
        let v = RequestView::from_headers(
            headers(&[
                ("x_consumer_username", "admin"),
                ("X_Authenticated_Userid", "admin"),
                ("x-consumer-id", "forged"),
                ("x_unrelated", "1"),
                ("x_consumer_usernames", "1"),
            ]),
            "authorization",
        );
        assert_eq!(
            v.smuggled,
            vec!["x_consumer_username", "X_Authenticated_Userid"]
        );
        assert_eq!(v.identity_present, 0b1);
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
