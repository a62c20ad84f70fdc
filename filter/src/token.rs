//! Finding the bearer token (Kong's `parse_access_token`), and removing it for
//! `hide_credentials`. Pure functions over strings so every quirk is unit-tested.

use crate::body::{self, BodyFormat};

const ACCESS_TOKEN: &str = "access_token";

/// Where the token was found: `hide_credentials` removes it from exactly there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `<scheme> <token>` with scheme `bearer` or `token`.
    Header,
    /// Any other header value, used verbatim (Kong's rule); never stripped.
    RawHeader,
    Query,
    FormBody,
    JsonBody,
    MultipartBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: String,
    pub source: Source,
}

/// Reads the token from the configured header value. `Some(None)`: the header is present but
/// carries no token (empty), which means "missing" without looking elsewhere.
pub fn from_header(value: &str) -> Option<Found> {
    let words = if value.is_ascii() {
        ascii_words(value)
    } else {
        unicode_words(value)
    };
    found_in(value, words)
}

/// The first two words of a header value, and whether more follow.
type Words<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// Kong's rule over the words: `<scheme> <token>` with scheme `bearer` or `token` is the
/// token; any other value is used verbatim.
fn found_in(value: &str, words: Words<'_>) -> Option<Found> {
    match words {
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

/// The words as `split_whitespace` reads them (the definition; non-ASCII values use it).
fn unicode_words(value: &str) -> Words<'_> {
    let mut parts = value.split_whitespace();
    (parts.next(), parts.next(), parts.next())
}

/// The whitespace of `char::is_whitespace` (what `split_whitespace` splits on) within ASCII:
/// HT, LF, VT, FF, CR and space.
fn is_ascii_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// [`is_ascii_space`] for the `str` trimming functions.
fn is_ascii_space_char(c: char) -> bool {
    u8::try_from(c).is_ok_and(is_ascii_space)
}

/// `split_whitespace`'s first two words of an ASCII value, and whether a third follows, in one
/// pass over a token of up to 8 KiB that the compiler vectorises: `split_whitespace` decodes
/// it a character at a time (0.8 µs for a JWT access token natively, more in wasm), on every
/// request, before the cache is even asked.
fn ascii_words(value: &str) -> Words<'_> {
    let trimmed = value.trim_matches(is_ascii_space_char);
    let Some(scheme_end) = trimmed.bytes().position(is_ascii_space) else {
        return ((!trimmed.is_empty()).then_some(trimmed), None, None);
    };
    let (scheme, rest) = trimmed.split_at(scheme_end);
    let second = rest.trim_start_matches(is_ascii_space_char);
    let spaces = count_matching(second.as_bytes(), is_ascii_space);
    let third = (spaces > 0).then_some(second);
    (Some(scheme), Some(second), third)
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

/// What a request body says about `access_token`. Kong merges the body's parameters over the
/// query's (`retrieve_parameters`), so a body that has one decides, whatever it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyToken {
    /// No `access_token` in the body, or a body that cannot be read as its format: the query's
    /// token (if any) stands.
    Absent,
    /// The body has an `access_token`: this token, or `None` when it is no usable string (a
    /// JSON number, array, object or `null`; an empty value), which makes the token missing.
    Present(Option<Found>),
}

/// The body's `access_token`, read like Kong: a form field (the first non-empty one), a
/// top-level JSON member that is a string (the last one, as Kong's JSON decoder keeps), or a
/// multipart part's content (the last part of that name, as Kong's multipart reader keeps).
/// A nested `access_token` is not a token.
pub fn from_body(format: &BodyFormat, body: &[u8]) -> BodyToken {
    match format {
        BodyFormat::Form => match has_access_token(body) {
            true => BodyToken::Present(from_form_body(body)),
            false => BodyToken::Absent,
        },
        BodyFormat::Json => from_json_body(body),
        BodyFormat::Multipart { boundary } => from_multipart_body(body, boundary),
    }
}

fn from_json_body(body: &[u8]) -> BodyToken {
    let Some(members) = body::json_members(body) else {
        return BodyToken::Absent;
    };
    let Some(member) = members.iter().rev().find(|m| m.key == ACCESS_TOKEN) else {
        return BodyToken::Absent;
    };
    let token = serde_json::from_str::<String>(member.value.get()).ok();
    BodyToken::Present(found(token, Source::JsonBody))
}

fn from_multipart_body(body: &[u8], boundary: &str) -> BodyToken {
    let Some(parts) = body::multipart_parts(body, boundary) else {
        return BodyToken::Absent;
    };
    let Some(part) = parts
        .iter()
        .rev()
        .find(|p| p.name.as_deref() == Some(ACCESS_TOKEN))
    else {
        return BodyToken::Absent;
    };
    let content = body.get(part.content.clone()).unwrap_or_default();
    let token = String::from_utf8(content.to_vec()).ok();
    BodyToken::Present(found(token, Source::MultipartBody))
}

fn found(token: Option<String>, source: Source) -> Option<Found> {
    token
        .filter(|t| !t.is_empty())
        .map(|token| Found { token, source })
}

/// The body without any `access_token` (`hide_credentials`), or `None` when there is nothing
/// to remove (no such parameter, or a body that cannot be read as its format). Everything
/// else is kept byte for byte.
pub fn body_without_access_token(format: &BodyFormat, body: &[u8]) -> Option<Vec<u8>> {
    let is_token = |name: &str| name == ACCESS_TOKEN;
    match format {
        BodyFormat::Form => has_access_token(body).then(|| without_access_token(body)),
        BodyFormat::Json => {
            let members = body::json_members(body)?;
            members
                .iter()
                .any(|m| is_token(&m.key))
                .then(|| body::json_without(body, &members, is_token))
        }
        BodyFormat::Multipart { boundary } => {
            let parts = body::multipart_parts(body, boundary)?;
            parts
                .iter()
                .any(|p| p.name.as_deref().is_some_and(is_token))
                .then(|| body::multipart_without(body, &parts, is_token))
        }
    }
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
    plausible_within(token, 512)
}

/// [`plausible`] for what may be a JWT access token: a JWS in compact form (three dot-separated
/// parts) within [`crate::jwt::MAX_JWT_BYTES`], the only tokens allowed past 512 characters.
/// Worth a cache lookup and, on a miss, reading its header (`crate::jwt::recognise`).
pub fn plausible_jwt_shape(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= crate::jwt::MAX_JWT_BYTES
        && count_matching(token.as_bytes(), |b| !(0x21..=0x7e).contains(&b)) == 0
        && count_matching(token.as_bytes(), |b| b == b'.') == 2
}

/// How many bytes match `matches`, counted in blocks of 255 into byte-wide counters: a loop
/// without an early exit over byte lanes, which the compiler vectorises (a JWT access token
/// is scanned on every request, cached or not, and a byte at a time costs ~0.5 µs natively).
fn count_matching(bytes: &[u8], matches: impl Fn(u8) -> bool) -> usize {
    bytes
        .chunks(255)
        .map(|block| {
            let count = block
                .iter()
                .fold(0u8, |count, &b| count.wrapping_add(u8::from(matches(b))));
            usize::from(count)
        })
        .sum()
}

fn plausible_within(token: &str, limit: usize) -> bool {
    !token.is_empty() && token.len() <= limit && token.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_counted_across_every_block_edge() {
        for len in [0, 1, 254, 255, 256, 509, 510, 511, 765, 8192] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 256) as u8).collect();
            let expected = bytes.iter().filter(|&&b| b == b'.').count();
            assert_eq!(
                count_matching(&bytes, |b| b == b'.'),
                expected,
                "{len} bytes"
            );
            assert_eq!(count_matching(&bytes, |_| true), len, "{len} bytes");
        }
        let dots = ".".repeat(8192);
        assert_eq!(count_matching(dots.as_bytes(), |b| b == b'.'), 8192);
    }

    #[test]
    fn vertical_tab_and_unicode_spaces_split_as_split_whitespace_splits() {
        for (value, token) in [
            ("Bearer\u{b}abc", Some("abc")),
            ("\u{c}bearer\tabc\r\n", Some("abc")),
            ("Bearer\u{a0}abc", Some("abc")),
            ("Bearer\u{1c}abc", None),
        ] {
            let found = from_header(value).expect("a token");
            match token {
                Some(token) => assert_eq!(
                    (found.token.as_str(), found.source),
                    (token, Source::Header)
                ),
                None => assert_eq!(
                    (found.token.as_str(), found.source),
                    (value, Source::RawHeader)
                ),
            }
        }
    }

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

    const JSON: BodyFormat = BodyFormat::Json;

    fn multipart() -> BodyFormat {
        BodyFormat::Multipart {
            boundary: "B".into(),
        }
    }

    fn present(token: &str, source: Source) -> BodyToken {
        BodyToken::Present(Some(Found {
            token: token.into(),
            source,
        }))
    }

    fn part(name: &str, filename: Option<&str>, content: &str) -> String {
        let filename = filename.map_or(String::new(), |f| format!("; filename=\"{f}\""));
        format!(
            "--B\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n{content}\r\n"
        )
    }

    #[test]
    fn json_bodies_carry_a_token_only_as_a_top_level_string() {
        assert_eq!(
            from_body(
                &JSON,
                br#"{"a":[1,{"access_token":"n"}],"access_token":"tok"}"#
            ),
            present("tok", Source::JsonBody)
        );
        assert_eq!(
            from_body(&JSON, br#"{"access_token":"a\u0062c"}"#),
            present("abc", Source::JsonBody)
        );
        // A repeated member: the last one, as Kong's decoder keeps.
        assert_eq!(
            from_body(&JSON, br#"{"access_token":"one","access_token":"two"}"#),
            present("two", Source::JsonBody)
        );
        for not_a_string in [
            r#"{"access_token":1}"#,
            r#"{"access_token":true}"#,
            r#"{"access_token":null}"#,
            r#"{"access_token":["t"]}"#,
            r#"{"access_token":{"t":1}}"#,
            r#"{"access_token":""}"#,
        ] {
            assert_eq!(
                from_body(&JSON, not_a_string.as_bytes()),
                BodyToken::Present(None),
                "{not_a_string}"
            );
        }
        for absent in [
            r#"{"data":{"access_token":"t"}}"#,
            r#"[{"access_token":"t"}]"#,
            r#""access_token""#,
            r#"{"access_token":"t""#,
            r#"{"access_token":"t"} {}"#,
            "",
            "\u{feff}{}",
        ] {
            assert_eq!(
                from_body(&JSON, absent.as_bytes()),
                BodyToken::Absent,
                "{absent}"
            );
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            from_body(&JSON, format!(r#"{{"a":{deep}}}"#).as_bytes()),
            BodyToken::Absent
        );
    }

    #[test]
    fn multipart_bodies_carry_a_token_in_a_part_of_that_name() {
        let body = format!(
            "{}{}{}--B--\r\n",
            part("file", Some("access_token"), "\u{0}binary"),
            part("access_token", None, "tok"),
            part("x", None, "1")
        );
        assert_eq!(
            from_body(&multipart(), body.as_bytes()),
            present("tok", Source::MultipartBody)
        );
        let none = format!("{}--B--\r\n", part("file", Some("access_token"), "tok"));
        assert_eq!(from_body(&multipart(), none.as_bytes()), BodyToken::Absent);
        let empty = format!("{}--B--\r\n", part("access_token", None, ""));
        assert_eq!(
            from_body(&multipart(), empty.as_bytes()),
            BodyToken::Present(None)
        );
        let other_boundary = BodyFormat::Multipart {
            boundary: "C".into(),
        };
        assert_eq!(
            from_body(&other_boundary, body.as_bytes()),
            BodyToken::Absent
        );
        assert_eq!(
            from_body(&multipart(), b"access_token=tok"),
            BodyToken::Absent
        );
    }

    #[test]
    fn form_bodies_through_from_body() {
        assert_eq!(
            from_body(&BodyFormat::Form, b"a=1&access_token=tok"),
            present("tok", Source::FormBody)
        );
        assert_eq!(
            from_body(&BodyFormat::Form, b"access_token="),
            BodyToken::Present(None)
        );
        assert_eq!(from_body(&BodyFormat::Form, b"a=1"), BodyToken::Absent);
    }

    #[test]
    fn hiding_in_json_and_multipart_bodies_removes_only_the_token() {
        let json = br#"{"big":123456789012345678901234567890,"access_token":"t","z":1e400}"#;
        assert_eq!(
            body_without_access_token(&JSON, json).as_deref(),
            Some(&br#"{"big":123456789012345678901234567890,"z":1e400}"#[..])
        );
        assert_eq!(
            body_without_access_token(&JSON, br#"{"a":{"access_token":1}}"#),
            None
        );
        assert_eq!(body_without_access_token(&JSON, b"{not json"), None);

        let body = format!(
            "{}{}--B--\r\n",
            part("access_token", None, "t"),
            part("f", Some("a.bin"), "x")
        );
        assert_eq!(
            body_without_access_token(&multipart(), body.as_bytes()),
            Some(format!("{}--B--\r\n", part("f", Some("a.bin"), "x")).into_bytes())
        );
        assert_eq!(body_without_access_token(&multipart(), b"--B\r\n"), None);
        assert_eq!(
            body_without_access_token(&BodyFormat::Form, b"access_token=t&a=1").as_deref(),
            Some(&b"a=1"[..])
        );
        assert_eq!(body_without_access_token(&BodyFormat::Form, b"a=1"), None);
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

/// The fast paths agree with the definitions they replace, on every input.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod fast_paths {
    use super::*;
    use proptest::prelude::*;

    /// `from_header` as defined: `split_whitespace`'s words, whatever the value.
    fn from_header_by_definition(value: &str) -> Option<Found> {
        found_in(value, unicode_words(value))
    }

    fn jwt_shape_by_definition(token: &str) -> bool {
        plausible_within(token, crate::jwt::MAX_JWT_BYTES)
            && token.bytes().filter(|&b| b == b'.').count() == 2
    }

    /// Every ASCII whitespace (VT, which `u8::is_ascii_whitespace` leaves out, included),
    /// controls, DEL, dots, the schemes' letters: values of these take the fast path.
    const ASCII: [char; 19] = [
        ' ', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1c}', '\u{0}', '\u{7f}', '.', 'B', 'e', 'a',
        'r', 'T', 'o', 'k', 'n', 'x',
    ];
    /// Unicode whitespace and other non-ASCII characters: values with one take the definition.
    const NON_ASCII: [char; 5] = ['\u{85}', '\u{a0}', '\u{2003}', '\u{3000}', 'é'];

    fn text(max: usize, alphabet: &[char]) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(alphabet.to_vec()), 0..max)
            .prop_map(|chars| chars.into_iter().collect())
    }

    /// Headers as clients send them, with every kind of ASCII space around and inside.
    fn header_value() -> impl Strategy<Value = String> {
        let scheme = prop::sample::select(vec!["Bearer", "bearer", "TOKEN", "Basic", ""]);
        let space = prop::sample::select(vec!["", " ", "  ", "\t", "\u{b}", "\u{c}", " \r\n"]);
        (
            space.clone(),
            scheme,
            space.clone(),
            text(600, &ASCII),
            space,
            text(4, &ASCII),
        )
            .prop_map(|(lead, scheme, gap, token, trail, tail)| {
                format!("{lead}{scheme}{gap}{token}{trail}{tail}")
            })
    }

    /// Any of the characters above, ASCII or not.
    fn mixed_text(max: usize) -> impl Strategy<Value = String> {
        text(max, &[ASCII.as_slice(), NON_ASCII.as_slice()].concat())
    }

    proptest! {
        #[test]
        fn from_header_reads_the_words_split_whitespace_reads(value in header_value()) {
            prop_assert!(value.is_ascii());
            prop_assert_eq!(from_header(&value), from_header_by_definition(&value));
        }

        #[test]
        fn from_header_agrees_on_arbitrary_ascii(value in text(40, &ASCII)) {
            prop_assert!(value.is_ascii());
            prop_assert_eq!(from_header(&value), from_header_by_definition(&value));
        }

        #[test]
        fn from_header_agrees_on_arbitrary_text(value in mixed_text(40)) {
            prop_assert_eq!(from_header(&value), from_header_by_definition(&value));
        }

        #[test]
        fn the_jwt_shape_is_the_definitions(token in mixed_text(900)) {
            prop_assert_eq!(plausible_jwt_shape(&token), jwt_shape_by_definition(&token));
        }

        #[test]
        fn one_odd_character_anywhere_in_a_jwt_shape_is_judged_as_the_definition_judges(
            parts in prop::collection::vec("[!-~&&[^.]]{0,300}", 3..4),
            odd in prop::sample::select(vec![' ', '\t', '\u{0}', '\u{7f}', '.', 'é', '\u{a0}']),
            at in any::<prop::sample::Index>(),
        ) {
            let mut token = parts.join(".");
            let at = at.index(token.len() + 1);
            token.insert(at, odd);
            prop_assert_eq!(plausible_jwt_shape(&token), jwt_shape_by_definition(&token));
            prop_assert!(!plausible_jwt_shape(&token), "{:?} let an odd character through", token);
        }

        #[test]
        fn printable_tokens_of_every_length_have_the_definitions_shape(
            parts in prop::collection::vec("[!-~&&[^.]]{0,300}", 1..5)
        ) {
            let token = parts.join(".");
            prop_assert_eq!(plausible_jwt_shape(&token), jwt_shape_by_definition(&token));
        }
    }
}
