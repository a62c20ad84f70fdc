//! Reading an admin request body: first its shape (every field one the entity has, every
//! value of the field's type, as Kong's schemas check), then typed fields out of it,
//! collecting Kong-style field errors.

use super::error::AdminError;
use crate::params::Params;
use serde_json::{json, Map, Value};

/// How a body was sent: JSON values keep their types; form and multipart bodies carry text,
/// read as each field's type ("true", "60"), as Kong reads form input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Text,
}

/// An admin request body as parsed, not yet checked against an entity's fields.
pub struct AdminBody {
    pub params: Params,
    pub encoding: Encoding,
}

/// The type of an input field, named in errors as Kong names it.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    String,
    Boolean,
    Integer,
    /// Strings (text: one value, a repeated name, or comma-separated where the field says).
    Array,
    /// `tags`: Kong's `set` of strings.
    Set,
    /// The seed's `redirect_uri`: one URI, or a list.
    StringOrArray,
    /// A foreign key, `{"id": "<uuid>"}` (text: `consumer.id=`, or the key itself).
    Reference,
    /// A nested record with fields of its own (the plugin's `config`).
    Record(Shape),
}

/// The fields an entity's input may carry, with their types.
pub type Shape = &'static [(&'static str, Kind)];

const REFERENCE: Shape = &[("id", Kind::String)];

impl AdminBody {
    /// The body's fields, once every name is one `shape` has and every value is of its
    /// field's type; otherwise Kong's schema violation naming each field that is not.
    pub fn checked(self, shape: Shape) -> Result<Params, AdminError> {
        let errors = shape_errors(&self.params, shape, self.encoding);
        if errors.is_empty() {
            Ok(self.params)
        } else {
            Err(AdminError::Schema(errors))
        }
    }
}

/// `{field: error}` for every field of `body` that `shape` lacks or whose value is not of
/// its type; nested records are checked the same way, their errors nested.
fn shape_errors(body: &Map<String, Value>, shape: Shape, encoding: Encoding) -> Map<String, Value> {
    body.iter()
        .filter_map(|(name, value)| {
            let error = match shape.iter().find(|(known, _)| known == name) {
                None => Some(json!("unknown field")),
                Some((_, kind)) => type_error(value, *kind, encoding),
            };
            error.map(|e| (name.clone(), e))
        })
        .collect()
}

/// Why `value` is not of type `kind`, if it is not. `null` is of every type: it unsets a
/// field, or the field's own rule refuses it.
fn type_error(value: &Value, kind: Kind, encoding: Encoding) -> Option<Value> {
    let text = encoding == Encoding::Text;
    let expected = |what: &str| Some(json!(format!("expected {what}")));
    match (kind, value) {
        (_, Value::Null) => None,
        (Kind::String, Value::String(_)) => None,
        (Kind::String, _) => expected("a string"),
        (Kind::Boolean, Value::Bool(_)) => None,
        (Kind::Boolean, Value::String(s)) if text && (s == "true" || s == "false") => None,
        (Kind::Boolean, _) => expected("a boolean"),
        (Kind::Integer, Value::Number(_)) if integer_of(value).is_some() => None,
        (Kind::Integer, Value::String(_)) if text && integer_of(value).is_some() => None,
        (Kind::Integer, _) => expected("an integer"),
        (Kind::Array | Kind::Set | Kind::StringOrArray, Value::String(_))
            if text || matches!(kind, Kind::StringOrArray) =>
        {
            None
        }
        (Kind::Array | Kind::Set | Kind::StringOrArray, Value::Array(items)) => {
            element_errors(items)
        }
        (Kind::Set, _) => expected("a set"),
        (Kind::Array | Kind::StringOrArray, _) => expected("an array"),
        (Kind::Reference, Value::String(_)) if text => None,
        (Kind::Reference, Value::Object(inner)) => nested(shape_errors(inner, REFERENCE, encoding)),
        (Kind::Record(fields), Value::Object(inner)) => {
            nested(shape_errors(inner, fields, encoding))
        }
        (Kind::Reference | Kind::Record(_), _) => expected("a record"),
    }
}

/// Kong's errors of a list's elements: a list with `null` at the good ones.
fn element_errors(items: &[Value]) -> Option<Value> {
    let errors: Vec<Value> = items
        .iter()
        .map(|item| match item {
            Value::String(_) => Value::Null,
            _ => json!("expected a string"),
        })
        .collect();
    errors
        .iter()
        .any(|e| !e.is_null())
        .then_some(Value::Array(errors))
}

fn nested(errors: Map<String, Value>) -> Option<Value> {
    (!errors.is_empty()).then_some(Value::Object(errors))
}

/// An integer given as a JSON number (`60`, `60.0`) or as text (`"60"`).
fn integer_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// Field errors gathered while reading one entity.
#[derive(Default)]
pub struct Fields {
    errors: Map<String, Value>,
}

impl Fields {
    pub fn error(&mut self, field: &str, message: impl Into<Value>) {
        self.errors.insert(field.to_string(), message.into());
    }

    pub fn finish(self) -> Result<(), AdminError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AdminError::Schema(self.errors))
        }
    }

    /// `Some(Some(s))` set, `Some(None)` explicitly null, `None` absent.
    pub fn string(&mut self, body: &Map<String, Value>, field: &str) -> Option<Option<String>> {
        match body.get(field)? {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s.clone())),
            _ => {
                self.error(field, "expected a string");
                None
            }
        }
    }

    pub fn boolean(&mut self, body: &Map<String, Value>, field: &str) -> Option<bool> {
        match body.get(field)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => {
                self.error(field, "expected a boolean");
                None
            }
        }
    }

    pub fn integer(&mut self, body: &Map<String, Value>, field: &str) -> Option<i64> {
        let parsed = integer_of(body.get(field)?);
        if parsed.is_none() {
            self.error(field, "expected an integer");
        }
        parsed
    }

    /// An array of strings; a lone string is one element, or split on commas when
    /// `comma_separated` (form bodies: `config.scopes=a,b`).
    pub fn string_list(
        &mut self,
        body: &Map<String, Value>,
        field: &str,
        comma_separated: bool,
    ) -> Option<Option<Vec<String>>> {
        let split = |s: &str| -> Vec<String> {
            if comma_separated {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            } else {
                vec![s.to_string()]
            }
        };
        match body.get(field)? {
            Value::Null => Some(None),
            Value::String(s) if s.is_empty() => Some(None),
            Value::String(s) => Some(Some(split(s))),
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => out.extend(split(s)),
                        _ => {
                            self.error(field, "expected an array of strings");
                            return None;
                        }
                    }
                }
                Some(Some(out))
            }
            _ => {
                self.error(field, "expected an array of strings");
                None
            }
        }
    }

    /// A foreign key given as `{"id": "..."}` (or `field.id=` in forms, or a bare id).
    pub fn reference(&mut self, body: &Map<String, Value>, field: &str) -> Option<Option<String>> {
        match body.get(field)? {
            Value::Null => Some(None),
            Value::String(id) => Some(Some(id.clone())),
            Value::Object(inner) => match inner.get("id") {
                Some(Value::String(id)) if crate::model::is_uuid(id) => Some(Some(id.clone())),
                _ => {
                    self.error(field, serde_json::json!({"id": "expected a valid UUID"}));
                    None
                }
            },
            _ => {
                self.error(field, "expected a record");
                None
            }
        }
    }
}
