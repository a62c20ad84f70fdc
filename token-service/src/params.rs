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

/// Parsed values are dropped, cloned and printed recursively, so a hostile body could grow a
/// value deep enough to overflow the stack (a form key of 32,000 dotted segments did). These
/// bounds keep every parsed body shallow and small, far above anything a real request needs.
/// Most segments in a dotted form key (`config.scopes` is 2).
pub const MAX_KEY_DEPTH: usize = 8;
/// Longest parameter name.
pub const MAX_KEY_BYTES: usize = 256;
/// Most parameters (form pairs, multipart fields) in one body or query.
pub const MAX_PARAMS: usize = 1_000;
/// Deepest JSON body (serde_json alone stops at 128).
pub const MAX_JSON_DEPTH: usize = 32;

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
    #[error("parameter names may have at most {MAX_KEY_DEPTH} dotted segments")]
    KeyTooDeep,
    #[error("parameter names may be at most {MAX_KEY_BYTES} bytes long")]
    KeyTooLong,
    #[error("a request may carry at most {MAX_PARAMS} parameters")]
    TooManyParams,
    #[error("request body is nested deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
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
    if is_json(content_type) {
        parse_json(&body)
    } else if mime.starts_with("application/x-www-form-urlencoded") {
        parse_form(&body, nesting)
    } else if mime.starts_with("multipart/form-data") {
        parse_multipart(content_type.unwrap_or(""), body, nesting).await
    } else {
        Ok(Params::new())
    }
}

/// Whether a body of this content type is read as JSON (whose values keep their types; form
/// and multipart values are text).
pub fn is_json(content_type: Option<&str>) -> bool {
    let mime = content_type.unwrap_or("").to_ascii_lowercase();
    mime.starts_with("application/json") || mime.contains("+json")
}

pub mod bytes_like {
    pub use axum::body::Bytes;
}

pub fn parse_json(body: &[u8]) -> Result<Params, ParamsError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) if depth(&map) > MAX_JSON_DEPTH => Err(ParamsError::TooDeep),
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParamsError::NotAnObject),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
            Err(ParamsError::TooDeep)
        }
        Err(e) => Err(ParamsError::InvalidJson(e.to_string())),
    }
}

/// How deeply `map` nests (an object of scalars is 1); iterative, so it cannot overflow.
fn depth(map: &Params) -> usize {
    let mut deepest = 1;
    let mut pending: Vec<(&Value, usize)> = map.values().map(|v| (v, 2)).collect();
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(inner) => Box::new(inner.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        deepest = deepest.max(level);
        pending.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// Parses `a=1&b=2` (also a query string). Invalid UTF-8 is replaced, never fatal; too many
/// parameters or names too long or too deep are refused.
pub fn parse_form(body: &[u8], nesting: Nesting) -> Result<Params, ParamsError> {
    let mut params = Params::new();
    let pairs = body.split(|b| *b == b'&').filter(|p| !p.is_empty());
    for (count, pair) in pairs.enumerate() {
        if count >= MAX_PARAMS {
            return Err(ParamsError::TooManyParams);
        }
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
        insert_param(&mut params, &key, value, nesting)?;
    }
    Ok(params)
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
    for count in 0.. {
        if count >= MAX_PARAMS {
            return Err(ParamsError::TooManyParams);
        }
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
        insert_param(&mut params, &name, Value::String(text), nesting)?;
    }
    Ok(params)
}

fn insert_param(
    params: &mut Params,
    key: &str,
    value: Value,
    nesting: Nesting,
) -> Result<(), ParamsError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(ParamsError::KeyTooLong);
    }
    let (key, force_array) = match key.strip_suffix("[]") {
        Some(stripped) => (stripped, true),
        None => (key, false),
    };
    let mut target = params;
    let mut name = key;
    if nesting == Nesting::Dotted {
        if key.split('.').count() > MAX_KEY_DEPTH {
            return Err(ParamsError::KeyTooDeep);
        }
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or(key);
        for part in parts {
            let entry = target
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(inner) = entry else {
                return Ok(());
            };
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
    Ok(())
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
        let p = parse_form(b"a=1&b=x%20y&b=z&c[]=only&flag", Nesting::Flat).expect("form");
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
        )
        .expect("form");
        assert_eq!(
            Value::Object(p),
            json!({"name": "oauth2", "config": {"scopes": ["a", "b"], "mandatory_scope": "true"}})
        );
    }

    #[test]
    fn flat_keys_keep_dots() {
        let p = parse_form(b"scope=user.email&x.y=1", Nesting::Flat).expect("form");
        assert_eq!(Value::Object(p), json!({"scope": "user.email", "x.y": "1"}));
    }

    #[test]
    fn invalid_utf8_in_forms_is_replaced_not_fatal() {
        let p = parse_form(b"a=%ff%fe", Nesting::Flat).expect("form");
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
        let q = parse_form(b"a=query&b=1", Nesting::Flat).expect("form");
        let b = parse_form(b"a=body", Nesting::Flat).expect("form");
        assert_eq!(Value::Object(merge(q, b)), json!({"a": "body", "b": "1"}));
    }

    #[test]
    fn keys_are_bounded_in_depth_length_and_number() {
        let deep = format!("a{}=1", ".b".repeat(MAX_KEY_DEPTH));
        assert_eq!(
            parse_form(deep.as_bytes(), Nesting::Dotted),
            Err(ParamsError::KeyTooDeep)
        );
        let deepest = format!("a{}=1", ".b".repeat(MAX_KEY_DEPTH - 1));
        assert!(parse_form(deepest.as_bytes(), Nesting::Dotted).is_ok());
        assert!(
            parse_form(deep.as_bytes(), Nesting::Flat).is_ok(),
            "flat keys keep dots"
        );
        let long = format!("{}=1", "k".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(
            parse_form(long.as_bytes(), Nesting::Flat),
            Err(ParamsError::KeyTooLong)
        );
        let many = "a=1&".repeat(MAX_PARAMS + 1);
        assert_eq!(
            parse_form(many.as_bytes(), Nesting::Flat),
            Err(ParamsError::TooManyParams)
        );
        assert!(parse_form("a=1&".repeat(MAX_PARAMS).as_bytes(), Nesting::Flat).is_ok());
    }

    #[test]
    fn json_is_bounded_in_depth() {
        let nested =
            |depth: usize| format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(
            parse_json(nested(20_000).as_bytes()),
            Err(ParamsError::TooDeep)
        );
        assert_eq!(
            parse_json(nested(MAX_JSON_DEPTH).as_bytes()),
            Err(ParamsError::TooDeep)
        );
        assert!(parse_json(nested(MAX_JSON_DEPTH - 1).as_bytes()).is_ok());
    }

    #[tokio::test]
    async fn multipart_names_are_bounded_too() {
        let body = format!(
            "--XX\r\nContent-Disposition: form-data; name=\"a{}\"\r\n\r\nv\r\n--XX--\r\n",
            ".b".repeat(10_000)
        );
        let p = parse_body(
            Some("multipart/form-data; boundary=XX"),
            body.into(),
            Nesting::Dotted,
        )
        .await;
        assert!(
            matches!(p, Err(ParamsError::KeyTooLong | ParamsError::KeyTooDeep)),
            "{p:?}"
        );
    }
}
