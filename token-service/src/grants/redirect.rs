//! Redirect URIs: exact matching against the registered ones, and building the answer URI the
//! way Kong does (existing parameters merged, keys sorted, every byte outside `[A-Za-z0-9_]`
//! percent-encoded with lower-case hex), so clients written for Kong parse ours unchanged.

use serde_json::Value;
use std::collections::BTreeMap;

/// Where parameters go: the query (codes and every error) or the fragment (implicit tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Query,
    Fragment,
}

/// The requested URI if it is registered (exact match; the first registered when none was
/// asked for); `Err(first registered)` otherwise, which is where Kong sends the error.
pub fn resolve<'a>(
    registered: &'a [String],
    requested: Option<&Value>,
) -> Result<&'a str, &'a str> {
    let first = registered.first().map(String::as_str).unwrap_or("");
    match requested {
        None | Some(Value::Null) => Ok(first),
        Some(Value::String(uri)) => registered
            .iter()
            .find(|r| *r == uri)
            .map(String::as_str)
            .ok_or(first),
        Some(_) => Err(first),
    }
}

pub fn build(base: &str, params: &[(String, Value)], placement: Placement) -> String {
    let (without_fragment, fragment) = split_once_or(base, '#');
    let (path, query) = split_once_or(without_fragment, '?');
    match placement {
        Placement::Query => {
            let merged = merge(query, params);
            format!("{path}?{merged}")
        }
        Placement::Fragment => {
            let merged = merge(fragment, params);
            format!("{without_fragment}#{merged}")
        }
    }
}

fn split_once_or(s: &str, sep: char) -> (&str, &str) {
    s.split_once(sep).unwrap_or((s, ""))
}

fn merge(existing: &str, params: &[(String, Value)]) -> String {
    let mut all: BTreeMap<String, String> = BTreeMap::new();
    for pair in existing.split('&').filter(|p| !p.is_empty()) {
        let has_value = pair.contains('=');
        if let Some((k, v)) = form_urlencoded::parse(pair.as_bytes()).next() {
            all.insert(
                k.into_owned(),
                if has_value {
                    v.into_owned()
                } else {
                    "true".into()
                },
            );
        }
    }
    for (k, v) in params {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        all.insert(k.clone(), text);
    }
    all.iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// LuaSocket's `url.escape`: everything but ASCII letters, digits and `_` is `%xx`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Kong's credential check: must parse with a scheme and a host, and carry no fragment.
pub fn registration_error(uri: &str) -> Option<String> {
    match url::Url::parse(uri) {
        Ok(parsed) if parsed.host_str().is_some_and(|h| !h.is_empty()) => parsed
            .fragment()
            .map(|_| format!("fragment not allowed in '{uri}'")),
        _ => Some(format!("cannot parse '{uri}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect()
    }

    #[test]
    fn code_merges_into_the_registered_query_sorted() {
        let uri = build(
            "http://google.test/kong?foo=bar&code=123",
            &p(&[("code", "NEW")]),
            Placement::Query,
        );
        assert_eq!(uri, "http://google.test/kong?code=NEW&foo=bar");
    }

    #[test]
    fn errors_escape_like_luasocket() {
        let uri = build(
            "http://google.test/kong",
            &p(&[
                ("error", "invalid_scope"),
                ("error_description", "\"wot\" is an invalid scope"),
                ("state", "x"),
            ]),
            Placement::Query,
        );
        assert_eq!(uri, "http://google.test/kong?error=invalid_scope&error_description=%22wot%22%20is%20an%20invalid%20scope&state=x");
        assert_eq!(escape("a,b-c.d~"), "a%2cb%2dc%2ed%7e");
    }

    #[test]
    fn implicit_tokens_go_in_the_fragment() {
        let uri = build(
            "http://google.test/kong",
            &p(&[("token_type", "bearer"), ("access_token", "T")]),
            Placement::Fragment,
        );
        assert_eq!(
            uri,
            "http://google.test/kong#access_token=T&token_type=bearer"
        );
    }

    #[test]
    fn valueless_registered_keys_become_true() {
        assert_eq!(
            build(
                "http://a.test/?flag",
                &p(&[("code", "c")]),
                Placement::Query
            ),
            "http://a.test/?code=c&flag=true"
        );
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let registered = vec![
            "http://one.test/one/".to_string(),
            "http://two.test/two".to_string(),
        ];
        assert_eq!(resolve(&registered, None), Ok("http://one.test/one/"));
        assert_eq!(
            resolve(&registered, Some(&json!("http://two.test/two"))),
            Ok("http://two.test/two")
        );
        assert_eq!(
            resolve(&registered, Some(&json!("http://two.test/two/"))),
            Err("http://one.test/one/")
        );
        assert_eq!(
            resolve(&registered, Some(&json!("http://two.test/two?x=1"))),
            Err("http://one.test/one/")
        );
    }

    #[test]
    fn registration_rules() {
        assert_eq!(
            registration_error("not-valid"),
            Some("cannot parse 'not-valid'".into())
        );
        assert_eq!(
            registration_error("http://test.test/#with-fragment"),
            Some("fragment not allowed in 'http://test.test/#with-fragment'".into())
        );
        assert_eq!(registration_error("https://app.test/cb?x=1"), None);
    }
}
