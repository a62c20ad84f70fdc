//! What [`super::Repo`] needs of a database: run a statement with parameters, read rows back.
//!
//! Both backends speak it: SQLite (one file, the embedded default) and PostgreSQL (several
//! replicas on one server). Statements are written once, with PostgreSQL's `$1` placeholders
//! (SQLite reads them as `?1`); the few that differ by dialect ask [`Sql::dialect`]. Values
//! are only what the schema stores: integers (booleans as 0/1), text and NULL, so one row type
//! serves both and a value of the wrong kind is reported as corrupt data, never defaulted.

use super::{StoreError, StoreResult};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// A column read back: NULL or a value.
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Value {
        v.map_or(Value::Null, Value::Int)
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Value {
        v.map_or(Value::Null, Value::Text)
    }
}

/// What a statement parameter can be made from (taken by reference, so `params!` never moves
/// a caller's field).
pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

/// `params![a, b]`: statement parameters, each taken by reference.
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::store::sql::ToValue::to_value(&$value)),*]
    };
}
pub(crate) use params;

/// One result row: its values with the statement's column names (shared by every row).
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    pub fn new(columns: Arc<[String]>, values: Vec<Value>) -> Row {
        Row { columns, values }
    }

    /// The value of the (first) column of this name.
    pub fn get<T: FromValue>(&self, column: &str) -> StoreResult<T> {
        let index = self
            .columns
            .iter()
            .position(|c| c == column)
            .ok_or_else(|| StoreError::Corrupt(format!("no column '{column}' in the row")))?;
        self.at(index)
            .map_err(|e| StoreError::Corrupt(format!("column '{column}': {e}")))
    }

    /// The value of the column at `index` (0-based).
    pub fn at<T: FromValue>(&self, index: usize) -> StoreResult<T> {
        let value = self
            .values
            .get(index)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {index} in the row")))?;
        T::from_value(value).map_err(StoreError::Corrupt)
    }
}

/// A Rust type a column value reads into; the error says what was found instead.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(v) => Ok(*v),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(0) => Ok(false),
            Value::Int(1) => Ok(true),
            other => Err(format!("expected 0 or 1, found {other:?}")),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(v) => Ok(v.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A connection inside a transaction (or savepoint) a store opened.
pub trait Sql {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; answers how many rows it changed.
    fn execute(&self, sql: &str, params: &[Value]) -> StoreResult<u64>;
    /// Runs a query; answers every row.
    fn query(&self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>>;
    /// Reads in this transaction lock the rows they will write (PostgreSQL's writes: other
    /// replicas write the same rows concurrently).
    fn locks_rows(&self) -> bool {
        false
    }
    /// A token row was inserted (PostgreSQL's writer indexes it once committed; SQLite's
    /// update hook already tells its writer).
    fn inserted_token(&self, _id: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_the_wrong_kind_are_errors_naming_the_column() {
        let row = Row::new(
            Arc::from(vec!["n".to_string(), "t".to_string(), "z".to_string()]),
            vec![Value::Int(2), Value::Text("x".into()), Value::Null],
        );
        assert_eq!(row.get::<i64>("n").ok(), Some(2));
        assert_eq!(row.get::<String>("t").ok().as_deref(), Some("x"));
        assert_eq!(row.get::<Option<String>>("z").ok(), Some(None));
        let wrong = row.get::<bool>("n");
        assert!(
            matches!(&wrong, Err(StoreError::Corrupt(m)) if m.contains("'n'")),
            "{wrong:?}"
        );
        assert!(row.get::<i64>("t").is_err());
        assert!(row.get::<String>("z").is_err(), "NULL is not text");
        assert!(row.get::<i64>("missing").is_err());
        assert!(row.at::<i64>(7).is_err());
    }
}
