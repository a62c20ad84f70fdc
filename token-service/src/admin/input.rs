//! Reading typed fields out of an admin request body, collecting Kong-style field errors.

use super::error::AdminError;
use serde_json::{Map, Value};

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
            Value::Number(n) => Some(Some(n.to_string())),
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
        let value = body.get(field)?;
        let parsed = match value {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
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
