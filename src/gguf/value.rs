//! GGUF metadata values and typed look-ups on the key/value map.

use std::collections::BTreeMap;

use super::error::GgufError;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Any unsigned integer type (u8, u16, u32, u64).
    UInt(u64),
    /// Any signed integer type (i8, i16, i32, i64).
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// An array of values of one type.
    Array(Vec<Value>),
}

/// The metadata key/value map of a GGUF file.
#[derive(Clone, Debug, Default)]
pub struct Metadata(pub BTreeMap<String, Value>);

impl Metadata {
    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// A string value, if present (an error if present with another type).
    pub fn str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(other) => Err(wrong(key, "a string", other)),
        }
    }

    /// A non-negative integer value, if present.
    pub fn uint(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::UInt(v)) => Ok(Some(*v)),
            Some(Value::Int(v)) if *v >= 0 => Ok(Some(*v as u64)),
            Some(other) => Err(wrong(key, "a non-negative integer", other)),
        }
    }

    /// A float value (integers accepted), if present.
    pub fn float(&self, key: &str) -> Result<Option<f64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Float(v)) => Ok(Some(*v)),
            Some(Value::UInt(v)) => Ok(Some(*v as f64)),
            Some(Value::Int(v)) => Ok(Some(*v as f64)),
            Some(other) => Err(wrong(key, "a number", other)),
        }
    }

    /// A bool value, if present.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong(key, "a bool", other)),
        }
    }

    /// An array value, if present.
    pub fn array(&self, key: &str) -> Result<Option<&[Value]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(v)) => Ok(Some(v)),
            Some(other) => Err(wrong(key, "an array", other)),
        }
    }

    /// A required value: `Err` naming the key when it is absent.
    pub fn required<T>(key: &str, v: Result<Option<T>, GgufError>) -> Result<T, GgufError> {
        v?.ok_or_else(|| GgufError::Model(format!("metadata key '{key}' is missing")))
    }
}

fn wrong(key: &str, expected: &str, found: &Value) -> GgufError {
    let kind = match found {
        Value::UInt(_) | Value::Int(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Bool(_) => "a bool",
        Value::Str(_) => "a string",
        Value::Array(_) => "an array",
    };
    GgufError::Model(format!("metadata key '{key}' must be {expected}, found {kind}"))
}
