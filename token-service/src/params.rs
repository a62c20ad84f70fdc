//! Request parameters from JSON, `application/x-www-form-urlencoded` and multipart bodies.
//!
//! Everything becomes a JSON object so handlers validate one shape whatever the client sent.
//! Form values are strings; a key given twice (or as `key[]`) becomes an array; a bare key
//! without `=` is `true` (Kong's rule). The admin API additionally nests dotted keys
//! (`config.scopes=a` → `{"config": {"scopes": "a"}}`).

use serde_json::{Map, Value};

pub type Params = Map<String, Value>;

/// Bodies above this size are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamsError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("request body is not valid UTF-8")]
    InvalidUtf8,
    #[error("multipart body is malformed: {0}")]
    InvalidMultipart(String),
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// `a.b=c` is the key `a.b` (OAuth endpoints).
    Flat,
    /// `a.b=c` is `{"a": {"b": "c"}}` (admin API).
    Dotted,
}

/// Parses a body according to its content type; unknown or absent types yield no parameters.
pub async fn parse_body(
    content_type: Option<&str>,
    body: bytes_like::Bytes,
    nesting: Nesting,
) -> Result<Params, ParamsError> {
    if body.is_empty() {
        return Ok(Params::new());
    }
    let mime = content_type.unwrap_or("").to_ascii_lowercase();
    if mime.starts_with("application/json") || mime.contains("+json") {
        parse_json(&body)
    } else if mime.starts_with("application/x-www-form-urlencoded") {
        Ok(parse_form(&body, nesting))
    } else if mime.starts_with("multipart/form-data") {
        parse_multipart(content_type.unwrap_or(""), body, nesting).await
    } else {
        Ok(Params::new())
    }
}

pub mod bytes_like {
    pub use axum::body::Bytes;
}

pub fn parse_json(body: &[u8]) -> Result<Params, ParamsError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParamsError::NotAnObject),
        Err(e) => Err(ParamsError::InvalidJson(e.to_string())),
    }
}

/// Parses `a=1&b=2` (also a query string). Invalid UTF-8 is replaced, never fatal.
pub fn parse_form(body: &[u8], nesting: Nesting) -> Params {
    let mut params = Params::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let has_value = pair.contains(&b'=');
        let mut decoded = form_urlencoded::parse(pair);
        let Some((key, value)) = decoded.next() else {
            continue;
        };
        let value = if has_value {
            Value::String(value.into_owned())
        } else {
            Value::Bool(true)
        };
        insert_param(&mut params, &key, value, nesting);
    }
    params
}

async fn parse_multipart(
    content_type: &str,
    body: bytes_like::Bytes,
    nesting: Nesting,
) -> Result<Params, ParamsError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ParamsError::InvalidMultipart(e.to_string()))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut params = Params::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(ParamsError::InvalidMultipart(e.to_string())),
        };
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        let text = field
            .text()
            .await
            .map_err(|e| ParamsError::InvalidMultipart(e.to_string()))?;
        insert_param(&mut params, &name, Value::String(text), nesting);
    }
    Ok(params)
}

fn insert_param(params: &mut Params, key: &str, value: Value, nesting: Nesting) {
    let (key, force_array) = match key.strip_suffix("[]") {
        Some(stripped) => (stripped, true),
        None => (key, false),
    };
    let mut target = params;
    let mut name = key;
    if nesting == Nesting::Dotted {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or(key);
        for part in parts {
            let entry = target
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(inner) = entry else { return };
            target = inner;
        }
        name = last;
    }
    match target.get_mut(name) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None if force_array => {
            target.insert(name.to_string(), Value::Array(vec![value]));
        }
        None => {
            target.insert(name.to_string(), value);
        }
    }
}

/// Query parameters, then body parameters over them (Kong: the body wins on a clash).
pub fn merge(mut query: Params, body: Params) -> Params {
    query.extend(body);
    query
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_values_are_strings_and_repeats_become_arrays() {
        let p = parse_form(b"a=1&b=x%20y&b=z&c[]=only&flag", Nesting::Flat);
        assert_eq!(
            Value::Object(p),
            json!({"a": "1", "b": ["x y", "z"], "c": ["only"], "flag": true})
        );
    }

    #[test]
    fn dotted_keys_nest_for_the_admin_api() {
        let p = parse_form(
            b"name=oauth2&config.scopes=a&config.scopes=b&config.mandatory_scope=true",
            Nesting::Dotted,
        );
        assert_eq!(
            Value::Object(p),
            json!({"name": "oauth2", "config": {"scopes": ["a", "b"], "mandatory_scope": "true"}})
        );
    }

    #[test]
    fn flat_keys_keep_dots() {
        let p = parse_form(b"scope=user.email&x.y=1", Nesting::Flat);
        assert_eq!(Value::Object(p), json!({"scope": "user.email", "x.y": "1"}));
    }

    #[test]
    fn invalid_utf8_in_forms_is_replaced_not_fatal() {
        let p = parse_form(b"a=%ff%fe", Nesting::Flat);
        assert!(p.get("a").is_some());
    }

    #[test]
    fn json_must_be_an_object() {
        assert_eq!(parse_json(b"[1]"), Err(ParamsError::NotAnObject));
        assert!(matches!(parse_json(b"{"), Err(ParamsError::InvalidJson(_))));
        assert_eq!(
            Value::Object(parse_json(br#"{"a":1}"#).unwrap_or_default()),
            json!({"a": 1})
        );
    }

    #[tokio::test]
    async fn multipart_fields_are_read() {
        let body = "--XX\r\nContent-Disposition: form-data; name=\"foo\"\r\n\r\nbar\r\n--XX--\r\n";
        let p = parse_body(
            Some("multipart/form-data; boundary=XX"),
            body.into(),
            Nesting::Flat,
        )
        .await;
        assert_eq!(p.map(Value::Object), Ok(json!({"foo": "bar"})));
    }

    #[tokio::test]
    async fn unknown_content_types_carry_no_parameters() {
        let p = parse_body(Some("text/plain"), "a=1".into(), Nesting::Flat).await;
        assert_eq!(p, Ok(Params::new()));
    }

    #[test]
    fn body_wins_over_query() {
        let q = parse_form(b"a=query&b=1", Nesting::Flat);
        let b = parse_form(b"a=body", Nesting::Flat);
        assert_eq!(Value::Object(merge(q, b)), json!({"a": "body", "b": "1"}));
    }
}
