//! The request bodies Kong reads parameters from (`kong.request.get_body`): form-urlencoded,
//! JSON and multipart/form-data. The JSON and multipart readers return byte spans rather than
//! values, so that `hide_credentials` can cut one parameter out and leave every other byte as
//! the client sent it (re-serialising JSON would reorder keys and round numbers; re-encoding
//! multipart would rewrite headers). Bounded by `max_body_bytes`; no input panics.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::ops::Range;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
const MULTIPART: &str = "multipart/form-data";
/// RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;

/// How a body that may carry `access_token` is encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFormat {
    Form,
    Json,
    Multipart { boundary: String },
}

impl BodyFormat {
    /// The format a `Content-Type` names (a prefix, in any case, as Kong matches it). A
    /// multipart type without a usable boundary cannot be read, so it is no format.
    pub fn of(content_type: &str) -> Option<BodyFormat> {
        if starts_with_ignore_case(content_type, FORM) {
            Some(BodyFormat::Form)
        } else if starts_with_ignore_case(content_type, JSON) {
            Some(BodyFormat::Json)
        } else if starts_with_ignore_case(content_type, MULTIPART) {
            boundary(content_type).map(|boundary| BodyFormat::Multipart { boundary })
        } else {
            None
        }
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// The `boundary` parameter of a multipart content type: 1..=70 visible ASCII characters or
/// spaces (not last), else none.
fn boundary(content_type: &str) -> Option<String> {
    let (_, value) = parameters(content_type)
        .into_iter()
        .find(|(name, _)| name == "boundary")?;
    let usable = (1..=MAX_BOUNDARY).contains(&value.len())
        && !value.ends_with(' ')
        && value.bytes().all(|b| (0x20..0x7f).contains(&b));
    usable.then_some(value)
}

/// The parameters of a header value after its first `;` (`type; a=b; c="d;e"`): names in
/// lower case, quoted values unescaped. Reading stops at the first malformed parameter.
fn parameters(value: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Some((_, mut rest)) = value.split_once(';') else {
        return found;
    };
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        let name_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let (name, after) = rest.split_at_checked(name_end).unwrap_or((rest, ""));
        let Some(after) = after.strip_prefix('=') else {
            // A parameter without a value (or the end): skip it.
            match after.is_empty() {
                true => return found,
                false => {
                    rest = after;
                    continue;
                }
            }
        };
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => match unquote(quoted) {
                Some(read) => read,
                None => return found,
            },
            None => {
                let (value, next) = after.split_once(';').unwrap_or((after, ""));
                (value.trim().to_string(), next)
            }
        };
        found.push((name.trim().to_ascii_lowercase(), value));
        rest = next;
    }
}

/// A quoted-string's content after its opening quote, and what follows its closing quote;
/// `None` when it never closes.
fn unquote(quoted: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '"' => return Some((value, quoted.get(i + 1..).unwrap_or_default())),
            c => value.push(c),
        }
    }
    None
}

/// One member of a JSON object body.
#[derive(Debug)]
pub struct JsonMember<'a> {
    pub key: String,
    pub value: &'a RawValue,
    /// From the key's opening quote to the end of the value.
    pub span: Range<usize>,
}

/// The top-level members of a JSON object body, in order (a repeated key appears each
/// time). `None`: the body is not one valid JSON object.
pub fn json_members(body: &[u8]) -> Option<Vec<JsonMember<'_>>> {
    let TopLevel(members) = serde_json::from_slice(body).ok()?;
    let base = body.as_ptr() as usize;
    let mut spans = Vec::with_capacity(members.len());
    // The first key follows the opening brace, each later one the comma after a value.
    let mut cursor = body.iter().position(|b| *b == b'{')? + 1;
    for (key, value) in members {
        let start = (value.get().as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(value.get().len())?;
        let key_start = cursor + skip(body.get(cursor..start)?, b" \t\r\n,");
        spans.push(JsonMember {
            key,
            value,
            span: key_start..end,
        });
        cursor = end;
    }
    Some(spans)
}

/// How many leading bytes of `bytes` are in `set`.
fn skip(bytes: &[u8], set: &[u8]) -> usize {
    bytes.iter().take_while(|b| set.contains(b)).count()
}

/// A JSON object's members with their raw values (nested values are not looked into).
struct TopLevel<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = TopLevel<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(TopLevel(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// `body` without the members `drop` selects, every other byte kept (the separators of the
/// kept members included), so the result is valid JSON with the same other values.
pub fn json_without(body: &[u8], members: &[JsonMember], drop: impl Fn(&str) -> bool) -> Vec<u8> {
    let (Some(first), Some(last)) = (members.first(), members.last()) else {
        return body.to_vec();
    };
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(body.get(..first.span.start).unwrap_or_default());
    let mut previous_kept: Option<usize> = None;
    for (i, member) in members.iter().enumerate() {
        if drop(&member.key) {
            continue;
        }
        if let Some(p) = previous_kept {
            // The separator that followed the previous kept member (`,` and whitespace).
            let after_previous = members.get(p).map_or(0, |m| m.span.end);
            let next_start = members.get(p + 1).map_or(after_previous, |m| m.span.start);
            out.extend_from_slice(body.get(after_previous..next_start).unwrap_or_default());
        }
        out.extend_from_slice(body.get(member.span.clone()).unwrap_or_default());
        previous_kept = Some(i);
    }
    out.extend_from_slice(body.get(last.span.end..).unwrap_or_default());
    out
}

/// One part of a multipart/form-data body.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    /// The `name` of its `Content-Disposition: form-data` header, when it has one.
    pub name: Option<String>,
    pub content: Range<usize>,
    /// From its delimiter line to the next delimiter: cutting it out leaves a valid body.
    pub span: Range<usize>,
}

/// The parts of a multipart body (RFC 2046 §5.1.1, RFC 7578). `None`: the body is malformed
/// (no delimiter, a part whose headers do not end, no close delimiter).
pub fn multipart_parts(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let mut at = if body.starts_with(&delimiter) {
        0
    } else {
        find(body, &[b"\r\n", delimiter.as_slice()].concat(), 0)? + 2
    };
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        let rest = body.get(after..)?;
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        let padding = skip(rest, b" \t");
        if !rest.get(padding..)?.starts_with(b"\r\n") {
            return None;
        }
        let headers_start = after + padding + 2;
        let (headers, content_start) = if body.get(headers_start..)?.starts_with(b"\r\n") {
            (&[][..], headers_start + 2)
        } else {
            let end = find(body, b"\r\n\r\n", headers_start)?;
            (body.get(headers_start..end)?, end + 4)
        };
        let content_end = find(
            body,
            &[b"\r\n", delimiter.as_slice()].concat(),
            content_start,
        )?;
        let next = content_end + 2;
        parts.push(Part {
            name: part_name(headers),
            content: content_start..content_end,
            span: at..next,
        });
        at = next;
    }
}

/// The first index at or after `from` where `needle` starts.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while let Some(rest) = haystack.get(i..) {
        let offset = rest.iter().position(|b| *b == first)?;
        if rest.get(offset..)?.starts_with(needle) {
            return Some(i + offset);
        }
        i += offset + 1;
    }
    None
}

/// The `name` parameter of a part's `Content-Disposition: form-data` header.
fn part_name(headers: &[u8]) -> Option<String> {
    let headers = std::str::from_utf8(headers).ok()?;
    headers.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        let value = value.trim();
        let kind = value.split(';').next().unwrap_or_default().trim();
        if !kind.eq_ignore_ascii_case("form-data") {
            return None;
        }
        parameters(value)
            .into_iter()
            .find(|(param, _)| param == "name")
            .map(|(_, name)| name)
    })
}

/// `body` without the parts `drop` selects (by name). With every part dropped, the close
/// delimiter alone remains: a multipart body with no fields.
pub fn multipart_without(body: &[u8], parts: &[Part], drop: impl Fn(&str) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut copied_to = 0;
    for part in parts {
        if part.name.as_deref().is_some_and(&drop) {
            out.extend_from_slice(body.get(copied_to..part.span.start).unwrap_or_default());
            copied_to = part.span.end;
        }
    }
    out.extend_from_slice(body.get(copied_to..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_name_their_format() {
        assert_eq!(
            BodyFormat::of("Application/JSON; charset=utf-8"),
            Some(BodyFormat::Json)
        );
        assert_eq!(
            BodyFormat::of("application/x-www-form-urlencoded"),
            Some(BodyFormat::Form)
        );
        assert_eq!(
            BodyFormat::of("multipart/form-data; charset=x; boundary=\"a b;c\""),
            Some(BodyFormat::Multipart {
                boundary: "a b;c".into()
            })
        );
        assert_eq!(
            BodyFormat::of("multipart/form-data;boundary=abc"),
            Some(BodyFormat::Multipart {
                boundary: "abc".into()
            })
        );
        for unreadable in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=\"abc",
            "multipart/mixed; boundary=abc",
            "text/plain",
            "application/vnd.api+json",
            "",
        ] {
            assert_eq!(BodyFormat::of(unreadable), None, "{unreadable}");
        }
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert_eq!(BodyFormat::of(&long), None);
    }

    #[test]
    fn json_members_carry_their_exact_spans() {
        let body = br#" { "a" : 1 , "b":{"c":[2]},"d":"x" } "#;
        let members = json_members(body).unwrap_or_default();
        let spans: Vec<(&str, &[u8])> = members
            .iter()
            .map(|m| (m.key.as_str(), &body[m.span.clone()]))
            .collect();
        assert_eq!(
            spans,
            [
                ("a", &br#""a" : 1"#[..]),
                ("b", &br#""b":{"c":[2]}"#[..]),
                ("d", &br#""d":"x""#[..])
            ]
        );
        assert!(json_members(b"[1]").is_none());
        assert!(json_members(b"{\"a\":1} x").is_none());
        assert!(json_members(b"").is_none());
        assert_eq!(json_members(b"{}").map(|m| m.len()), Some(0));
    }

    #[test]
    fn json_without_keeps_valid_json_whichever_members_go() {
        let cases: [(&[u8], &[u8]); 6] = [
            (br#"{"t":1,"a":2}"#, br#"{"a":2}"#),
            (br#"{"a":2,"t":1}"#, br#"{"a":2}"#),
            (br#"{"a":2, "t":1, "b":3}"#, br#"{"a":2, "b":3}"#),
            (br#"{ "t":1 }"#, br#"{  }"#),
            (br#"{"t":1,"t":2,"a":[{"t":3}]}"#, br#"{"a":[{"t":3}]}"#),
            (br#"{"a":1}"#, br#"{"a":1}"#),
        ];
        for (body, expected) in cases {
            let members = json_members(body).unwrap_or_default();
            let out = json_without(body, &members, |k| k == "t");
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected)
            );
            assert!(json_members(&out).is_some(), "still JSON");
        }
    }

    fn part(name: &str, content: &str) -> String {
        format!("--B\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{content}\r\n")
    }

    #[test]
    fn multipart_parts_are_found_with_names_and_spans() {
        let body = format!(
            "preamble\r\n{}--B\r\n\r\nno headers\r\n{}--B--\r\nepilogue",
            part("a", "1"),
            part("t", "x\r\n-B")
        );
        let parts = multipart_parts(body.as_bytes(), "B").unwrap_or_default();
        let names: Vec<Option<&str>> = parts.iter().map(|p| p.name.as_deref()).collect();
        assert_eq!(names, [Some("a"), None, Some("t")]);
        let contents: Vec<&str> = parts.iter().map(|p| &body[p.content.clone()]).collect();
        assert_eq!(contents, ["1", "no headers", "x\r\n-B"]);
        assert_eq!(&body[parts[0].span.clone()], part("a", "1"));
    }

    #[test]
    fn malformed_multipart_is_none() {
        let good = format!("{}--B--\r\n", part("a", "1"));
        assert!(multipart_parts(good.as_bytes(), "B").is_some());
        for bad in [
            String::new(),
            "no delimiter at all".to_string(),
            part("a", "1"),                                 // no close delimiter
            "--B\r\nContent-Disposition: form-data".into(), // headers never end
            "--Bjunk\r\n\r\n1\r\n--B--".into(),             // not a delimiter line
            format!("{}--B--", part("a", "1\r\n--Bx")),     // the boundary inside content
            format!("{}--B", part("a", "1")),               // cut after the delimiter
        ] {
            assert!(multipart_parts(bad.as_bytes(), "B").is_none(), "{bad:?}");
        }
    }

    #[test]
    fn multipart_without_cuts_whole_parts() {
        let body = format!(
            "{}{}{}--B--\r\n",
            part("t", "x"),
            part("a", "1"),
            part("t", "y")
        );
        let parts = multipart_parts(body.as_bytes(), "B").unwrap_or_default();
        let out = multipart_without(body.as_bytes(), &parts, |n| n == "t");
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{}--B--\r\n", part("a", "1"))
        );
        let only = format!("{}--B--\r\n", part("t", "x"));
        let parts = multipart_parts(only.as_bytes(), "B").unwrap_or_default();
        let out = multipart_without(only.as_bytes(), &parts, |n| n == "t");
        assert_eq!(out, b"--B--\r\n");
        assert_eq!(multipart_parts(&out, "B"), Some(vec![]));
    }

    #[test]
    fn part_names_are_read_from_form_data_dispositions_only() {
        assert_eq!(
            part_name(b"content-type: text/plain\r\nCONTENT-DISPOSITION: form-data; filename=\"a;b\"; NAME=t"),
            Some("t".into())
        );
        assert_eq!(part_name(b"Content-Disposition: attachment; name=t"), None);
        assert_eq!(
            part_name(b"Content-Disposition: form-data; name=\"a\\\"b\""),
            Some("a\"b".into())
        );
        assert_eq!(
            part_name(b"Content-Disposition: form-data; name=\"open"),
            None
        );
        assert_eq!(part_name(b"\xff\xfe"), None);
    }
}
