//! Finding the bearer token (Kong's `parse_access_token`), and removing it for
//! `hide_credentials`. Pure functions over strings so every quirk is unit-tested.

/// Where the token was found: `hide_credentials` removes it from exactly there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `<scheme> <token>` with scheme `bearer` or `token`.
    Header,
    /// Any other header value, used verbatim (Kong's rule); never stripped.
    RawHeader,
    Query,
    FormBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: String,
    pub source: Source,
}

/// Reads the token from the configured header value. `Some(None)`: the header is present but
/// carries no token (empty), which means "missing" without looking elsewhere.
pub fn from_header(value: &str) -> Option<Found> {
    let mut parts = value.split_whitespace();
    let (first, second, rest) = (parts.next(), parts.next(), parts.next());
    match (first, second, rest) {
        (None, _, _) => None,
        (Some(scheme), Some(token), None)
            if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") =>
        {
            Some(Found {
                token: token.to_string(),
                source: Source::Header,
            })
        }
        _ => Some(Found {
            token: value.to_string(),
            source: Source::RawHeader,
        }),
    }
}

/// The `access_token` query parameter of a request path, percent-decoded.
pub fn from_query(path: &str) -> Option<Found> {
    let (_, query) = path.split_once('?')?;
    form_value(query.as_bytes(), "access_token").map(|token| Found {
        token,
        source: Source::Query,
    })
}

/// The `access_token` field of an `application/x-www-form-urlencoded` body.
pub fn from_form_body(body: &[u8]) -> Option<Found> {
    form_value(body, "access_token").map(|token| Found {
        token,
        source: Source::FormBody,
    })
}

fn form_value(encoded: &[u8], wanted: &str) -> Option<String> {
    encoded
        .split(|b| *b == b'&')
        .filter_map(|pair| {
            let (key, value) = split_pair(pair);
            (decode(key).as_deref() == Some(wanted))
                .then(|| decode(value))
                .flatten()
        })
        .find(|value| !value.is_empty())
}

fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|b| *b == b'=') {
        Some(i) => (
            pair.get(..i).unwrap_or_default(),
            pair.get(i + 1..).unwrap_or_default(),
        ),
        None => (pair, &[]),
    }
}

/// `application/x-www-form-urlencoded` decoding; `None` for invalid UTF-8 after decoding.
fn decode(encoded: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while let Some(&b) = encoded.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match (
                encoded.get(i + 1).and_then(hex),
                encoded.get(i + 2).and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether form-encoded data has an `access_token` pair (empty or not).
pub fn has_access_token(encoded: &[u8]) -> bool {
    encoded
        .split(|b| *b == b'&')
        .any(|pair| decode(split_pair(pair).0).as_deref() == Some("access_token"))
}

/// Removes every `access_token` pair from form-encoded data, leaving the rest as it was.
pub fn without_access_token(encoded: &[u8]) -> Vec<u8> {
    let kept: Vec<&[u8]> = encoded
        .split(|b| *b == b'&')
        .filter(|pair| {
            !pair.is_empty() && decode(split_pair(pair).0).as_deref() != Some("access_token")
        })
        .collect();
    kept.join(&b'&')
}

/// The request path with `access_token` removed from its query (and a bare `?` dropped).
pub fn path_without_access_token(path: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let rest = without_access_token(query.as_bytes());
    if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", String::from_utf8_lossy(&rest))
    }
}

/// Percent-encodes a value for an `application/x-www-form-urlencoded` body.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Tokens the token-service can have issued: 1..=512 visible ASCII characters. Anything else
/// is invalid without asking (and could not travel in a header anyway).
pub fn plausible(token: &str) -> bool {
    !token.is_empty() && token.len() <= 512 && token.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_token_schemes_any_case() {
        for h in ["Bearer abc", "bearer abc", "TOKEN abc", "  Bearer   abc  "] {
            assert_eq!(
                from_header(h),
                Some(Found {
                    token: "abc".into(),
                    source: Source::Header
                })
            );
        }
    }

    #[test]
    fn other_values_are_used_verbatim() {
        assert_eq!(
            from_header("Basic xyz"),
            Some(Found {
                token: "Basic xyz".into(),
                source: Source::RawHeader
            })
        );
        assert_eq!(
            from_header("rawtoken"),
            Some(Found {
                token: "rawtoken".into(),
                source: Source::RawHeader
            })
        );
        assert_eq!(
            from_header("Bearer a b"),
            Some(Found {
                token: "Bearer a b".into(),
                source: Source::RawHeader
            })
        );
    }

    #[test]
    fn an_empty_header_is_missing() {
        assert_eq!(from_header(""), None);
        assert_eq!(from_header("   "), None);
    }

    #[test]
    fn query_tokens_are_decoded() {
        assert_eq!(
            from_query("/p?a=1&access_token=x%2By&b=2").map(|f| f.token),
            Some("x+y".into())
        );
        assert_eq!(from_query("/p?access_token="), None);
        assert_eq!(from_query("/p"), None);
        assert_eq!(from_query("/p?access_token=%ff"), None);
    }

    #[test]
    fn form_bodies() {
        assert_eq!(
            from_form_body(b"foo=bar&access_token=tok").map(|f| f.token),
            Some("tok".into())
        );
        assert_eq!(from_form_body(b"foo=bar"), None);
    }

    #[test]
    fn hiding_keeps_everything_else() {
        assert_eq!(
            path_without_access_token("/p?a=1&access_token=x&b=2"),
            "/p?a=1&b=2"
        );
        assert_eq!(path_without_access_token("/p?access_token=x"), "/p");
        assert_eq!(path_without_access_token("/p"), "/p");
        assert_eq!(
            without_access_token(b"access_token=x&foo=bar"),
            b"foo=bar".to_vec()
        );
    }

    #[test]
    fn form_encoding_round_trips() {
        let raw = "a+b/c=d&e%f g";
        let body = format!("access_token={}", form_encode(raw));
        assert_eq!(
            from_form_body(body.as_bytes()).map(|f| f.token),
            Some(raw.to_string())
        );
    }

    #[test]
    fn plausibility() {
        assert!(plausible("abcXYZ019-._~"));
        assert!(!plausible(""));
        assert!(!plausible("a b"));
        assert!(!plausible("a\r\nb"));
        assert!(!plausible(&"a".repeat(513)));
        assert!(!plausible("é"));
    }
}
