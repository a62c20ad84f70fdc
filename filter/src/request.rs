//! What the filter needs from a request's headers, read in one host call.

use crate::body::BodyFormat;
use crate::decision::IDENTITY_HEADERS;

/// A request's headers as the host lends them: every name and value copied side by side into
/// one buffer, so reading them costs two allocations however many headers there are (a
/// `String` per name and value cost two each, which was most of the native build's own time
/// on a cached request).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestHeaders {
    text: String,
    /// Per header, where its name ends and where its value ends in `text`; a name starts
    /// where the previous value ended.
    ends: Vec<(usize, usize)>,
}

impl RequestHeaders {
    /// Room for about `bytes` of names and values.
    pub fn with_capacity(bytes: usize) -> RequestHeaders {
        RequestHeaders {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(16),
        }
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len()));
    }

    /// A header as the host's bytes, which need not be UTF-8 (a client may send obs-text):
    /// what is not becomes U+FFFD. Valid UTF-8, the usual case, is copied as it is.
    pub fn push_bytes(&mut self, name: &[u8], value: &[u8]) {
        self.push(&lossy(name), &lossy(value));
    }

    /// Every (name, value), in the order the host gave them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(_, value_end)| value_end));
        starts
            .zip(&self.ends)
            .map(|(start, &(name_end, value_end))| {
                // Every bound was the buffer's length after a whole `&str` was pushed, so each
                // range is on character boundaries and in bounds; `get` keeps that unchecked
                // reasoning from ever becoming a panic.
                (
                    self.text.get(start..name_end).unwrap_or_default(),
                    self.text.get(name_end..value_end).unwrap_or_default(),
                )
            })
    }
}

/// `String::from_utf8_lossy`, after the faster check that finds nothing to replace.
fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.into(),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for RequestHeaders {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(pairs: I) -> RequestHeaders {
        let mut headers = RequestHeaders::default();
        for (name, value) in pairs {
            headers.push(name, value);
        }
        headers
    }
}

/// What the filter needs from a request's headers, borrowed from them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestView<'h> {
    pub path: &'h str,
    pub method: &'h str,
    pub authority: &'h str,
    pub content_type: Option<&'h str>,
    /// The first value of the configured token header, when present.
    pub auth: Option<&'h str>,
    /// The first `authorization` value (client credentials at the OAuth endpoints), whatever
    /// the configured token header.
    pub authorization: Option<&'h str>,
    pub forwarded_proto: Option<&'h str>,
    /// Bit `i` set: the client sent `IDENTITY_HEADERS[i]` (it must be removed).
    pub identity_present: u8,
    /// Client headers spelled like an identity header with `_` for `-` (or in another case):
    /// CGI, WSGI and Rack upstreams read `X_Consumer_ID` as `X-Consumer-ID`, so they go too.
    pub smuggled: Vec<&'h str>,
}

impl<'h> RequestView<'h> {
    pub fn from_headers(headers: &'h RequestHeaders, auth_header_name: &str) -> RequestView<'h> {
        let mut view = RequestView::default();
        for (name, value) in headers.iter() {
            if name == auth_header_name {
                first(&mut view.auth, value);
            }
            match name {
                ":path" => view.path = value,
                ":method" => view.method = value,
                ":authority" => view.authority = value,
                "content-type" => first(&mut view.content_type, value),
                "authorization" => first(&mut view.authorization, value),
                "x-forwarded-proto" => first(&mut view.forwarded_proto, value),
                // Most names are of another length than every identity header's: no search.
                n if !IDENTITY_NAME_LENGTHS.contains(&n.len()) => {}
                n => {
                    if let Some(i) = IDENTITY_HEADERS.iter().position(|h| *h == n) {
                        view.identity_present |= 1 << i;
                    } else if spells_identity_header(n) {
                        view.smuggled.push(n);
                    }
                }
            }
        }
        view
    }

    /// The format of a body Kong reads parameters from: only POST, PUT and PATCH, with a
    /// form, JSON or multipart content type (`retrieve_parameters`).
    pub fn body_format(&self) -> Option<BodyFormat> {
        if !matches!(self.method, "POST" | "PUT" | "PATCH") {
            return None;
        }
        BodyFormat::of(self.content_type?)
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
                    relayed.push((name.to_string(), value.to_string()));
                }
            }
        }
        relayed
    }
}

/// The lengths of the identity headers' names: a name of any other length is neither one of
/// them nor another spelling of one.
const IDENTITY_NAME_LENGTHS: std::ops::RangeInclusive<usize> = name_lengths().0..=name_lengths().1;

const fn name_lengths() -> (usize, usize) {
    let (mut shortest, mut longest) = (usize::MAX, 0);
    let mut rest: &[&str] = &IDENTITY_HEADERS;
    while let [name, tail @ ..] = rest {
        if name.len() < shortest {
            shortest = name.len();
        }
        if name.len() > longest {
            longest = name.len();
        }
        rest = tail;
    }
    (shortest, longest)
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

fn first<'h>(slot: &mut Option<&'h str>, value: &'h str) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers that outlive the test's views of them.
    fn headers(pairs: &[(&str, &str)]) -> &'static RequestHeaders {
        Box::leak(Box::new(pairs.iter().copied().collect()))
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn headers_read_back_as_pushed_in_one_buffer() {
        let pairs = [
            (":path", "/é?x=1"),
            ("", ""),
            ("x-empty", ""),
            ("authorization", "Bearer \u{fffd}"),
        ];
        let read: Vec<(&str, &str)> = headers(&pairs).iter().collect();
        assert_eq!(read, pairs);
        assert!(RequestHeaders::default().iter().next().is_none());
        let mut raw = RequestHeaders::default();
        raw.push_bytes(b"x-name", b"caf\xe9 \xff");
        raw.push_bytes(b"\xc3", "café".as_bytes());
        let read: Vec<(&str, &str)> = raw.iter().collect();
        assert_eq!(
            read,
            [("x-name", "caf\u{fffd} \u{fffd}"), ("\u{fffd}", "café")]
        );
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
        assert_eq!(v.auth, Some("Bearer one"));
        assert_eq!(v.body_format(), Some(BodyFormat::Form));
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
            owned(&[
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
            owned(&[("authorization", "Basic abc"), ("custom", "Basic def")])
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
    fn every_identity_header_and_each_other_spelling_of_it_is_seen() {
        for (i, name) in IDENTITY_HEADERS.iter().enumerate() {
            let underscored = name.replace('-', "_");
            let capitalized = name.to_ascii_uppercase();
            let v = RequestView::from_headers(
                headers(&[(name, "forged"), (&underscored, "1"), (&capitalized, "2")]),
                "authorization",
            );
            assert_eq!(v.identity_present, 1 << i, "{name}");
            assert_eq!(v.smuggled, [underscored.as_str(), capitalized.as_str()]);
        }
    }

    #[test]
    fn bodies_are_read_for_post_put_and_patch_only() {
        for (method, expected) in [
            ("POST", Some(BodyFormat::Json)),
            ("PUT", Some(BodyFormat::Json)),
            ("PATCH", Some(BodyFormat::Json)),
            ("GET", None),
            ("DELETE", None),
            ("post", None),
        ] {
            let v = RequestView::from_headers(
                headers(&[(":method", method), ("content-type", "application/json")]),
                "authorization",
            );
            assert_eq!(v.body_format(), expected, "{method}");
        }
        let untyped = RequestView::from_headers(headers(&[(":method", "POST")]), "authorization");
        assert_eq!(untyped.body_format(), None);
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
