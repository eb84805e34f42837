//! cty values as the provider sees them: known or unknown, null or not, at any depth.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::CodecError;
use super::types::Type;

/// A cty number. Terraform's numbers are arbitrary precision; integers and floats cover what a
/// provider computes with, and `Text` keeps any other number exactly as it was sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Number {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(*i),
            Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Number::Float(_) => None,
            Number::Text(t) => t.parse().ok(),
        }
    }

    /// Parses a decimal number the way cty prints big ones (`"1e400"`, `"12345678901234567890"`).
    pub fn parse(text: &str) -> Result<Number, CodecError> {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Number::Int(i));
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() && f.to_string() == text => Ok(Number::Float(f)),
            Ok(_) => Ok(Number::Text(text.to_string())),
            Err(_) => Err(CodecError::new(format!("invalid number {text:?}"))),
        }
    }
}

/// A cty value. Collections keep their elements as values; the type that goes with a value
/// lives in the schema and is passed to the codecs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Not known until apply.
    Unknown,
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    Set(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    Tuple(Vec<Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// True when no unknown value hides anywhere inside.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => v.iter().all(Value::is_wholly_known),
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            _ => true,
        }
    }

    /// The attribute `name` of an object; null for anything else or a missing attribute.
    pub fn attr(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            Value::Object(attrs) => attrs.get(name).unwrap_or(&NULL),
            _ => &NULL,
        }
    }

    pub fn set_attr(&mut self, name: &str, value: Value) {
        if let Value::Object(attrs) = self {
            attrs.insert(name.to_string(), value);
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// Plain JSON for serde: unknown and null both become `null`, so a model struct reads an
    /// unknown attribute as absent. Callers that must tell them apart check `is_unknown` first.
    pub fn to_serde_json(&self) -> Json {
        match self {
            Value::Unknown | Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(Number::Int(i)) => Json::from(*i),
            Value::Number(Number::Float(f)) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::Number(Number::Text(t)) => t
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Json::Null, Json::Number),
            Value::String(s) => Json::String(s.clone()),
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                Json::Array(v.iter().map(Value::to_serde_json).collect())
            }
            Value::Map(m) | Value::Object(m) => {
                Json::Object(m.iter().map(|(k, v)| (k.clone(), v.to_serde_json())).collect())
            }
        }
    }

    /// Reads a model struct's JSON against its schema type. Missing object attributes are
    /// null, and attributes the type does not know are dropped (state written by an older
    /// version may hold them).
    pub fn from_serde_json(json: &Json, ty: &Type) -> Result<Value, CodecError> {
        let mismatch = || CodecError::new(format!("expected {}, found {json}", ty.to_json()));
        Ok(match (ty, json) {
            (_, Json::Null) => Value::Null,
            (Type::Bool, Json::Bool(b)) => Value::Bool(*b),
            (Type::Number, Json::Number(n)) => Value::Number(Number::parse(&n.to_string())?),
            (Type::Number, Json::String(s)) => Value::Number(Number::parse(s)?),
            (Type::String, Json::String(s)) => Value::String(s.clone()),
            (Type::String, Json::Number(n)) => Value::String(n.to_string()),
            (Type::String, Json::Bool(b)) => Value::String(b.to_string()),
            (Type::List(e), Json::Array(items)) => Value::List(
                items
                    .iter()
                    .map(|i| Value::from_serde_json(i, e))
                    .collect::<Result<_, _>>()?,
            ),
            (Type::Set(e), Json::Array(items)) => Value::Set(
                items
                    .iter()
                    .map(|i| Value::from_serde_json(i, e))
                    .collect::<Result<_, _>>()?,
            ),
            (Type::Tuple(types), Json::Array(items)) if types.len() == items.len() => Value::Tuple(
                items
                    .iter()
                    .zip(types)
                    .map(|(i, t)| Value::from_serde_json(i, t))
                    .collect::<Result<_, _>>()?,
            ),
            (Type::Map(e), Json::Object(entries)) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), Value::from_serde_json(v, e)?)))
                    .collect::<Result<_, CodecError>>()?,
            ),
            (Type::Object(attrs), Json::Object(entries)) => Value::Object(
                attrs
                    .iter()
                    .map(|(name, t)| {
                        let v = entries.get(name).unwrap_or(&Json::Null);
                        Ok((name.clone(), Value::from_serde_json(v, t)?))
                    })
                    .collect::<Result<_, CodecError>>()?,
            ),
            (Type::Dynamic, other) => infer_dynamic(other),
            _ => return Err(mismatch()),
        })
    }
}

/// A JSON value of no declared type becomes the cty value JSON would suggest.
fn infer_dynamic(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Number::parse(&n.to_string()).map_or(Value::Null, Value::Number),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Tuple(items.iter().map(infer_dynamic).collect()),
        Json::Object(entries) => Value::Object(entries.iter().map(|(k, v)| (k.clone(), infer_dynamic(v))).collect()),
    }
}

/// The concrete type of a value, for encoding a value whose schema type is `dynamic`.
pub fn infer_type(value: &Value) -> Type {
    match value {
        Value::Unknown | Value::Null => Type::Dynamic,
        Value::Bool(_) => Type::Bool,
        Value::Number(_) => Type::Number,
        Value::String(_) => Type::String,
        Value::List(v) => Type::list(v.first().map_or(Type::Dynamic, infer_type)),
        Value::Set(v) => Type::set(v.first().map_or(Type::Dynamic, infer_type)),
        Value::Map(m) => Type::map(m.values().next().map_or(Type::Dynamic, infer_type)),
        Value::Object(m) => Type::Object(m.iter().map(|(k, v)| (k.clone(), infer_type(v))).collect()),
        Value::Tuple(v) => Type::Tuple(v.iter().map(infer_type).collect()),
    }
}

/// Reads a model struct from a value (unknown attributes read as absent).
pub fn to_model<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, CodecError> {
    serde_json::from_value(value.to_serde_json()).map_err(|e| CodecError::new(e.to_string()))
}

/// Writes a model struct as a value of the schema's type.
pub fn from_model<T: serde::Serialize>(model: &T, ty: &Type) -> Result<Value, CodecError> {
    let json = serde_json::to_value(model).map_err(|e| CodecError::new(e.to_string()))?;
    Value::from_serde_json(&json, ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_keep_integers_floats_and_big_values() {
        assert_eq!(Number::parse("42").unwrap(), Number::Int(42));
        assert_eq!(Number::parse("1.5").unwrap(), Number::Float(1.5));
        assert_eq!(
            Number::parse("123456789012345678901234567890").unwrap(),
            Number::Text("123456789012345678901234567890".into())
        );
        assert!(Number::parse("twelve").is_err());
        assert_eq!(Number::Float(8.0).as_i64(), Some(8));
    }

    #[test]
    fn serde_json_round_trip_fills_missing_attributes_with_null() {
        let ty = Type::Object(BTreeMap::from([
            ("name".into(), Type::String),
            ("port".into(), Type::Number),
            ("tags".into(), Type::list(Type::String)),
        ]));
        let v = Value::from_serde_json(&json!({"name": "a", "extra": 1}), &ty).unwrap();
        assert_eq!(v.attr("name"), &Value::String("a".into()));
        assert!(v.attr("port").is_null());
        assert_eq!(v.to_serde_json(), json!({"name": "a", "port": null, "tags": null}));
    }

    #[test]
    fn unknown_anywhere_makes_a_value_not_wholly_known() {
        let v = Value::Object(BTreeMap::from([(
            "a".into(),
            Value::List(vec![Value::Bool(true), Value::Unknown]),
        )]));
        assert!(!v.is_wholly_known());
        assert!(Value::List(vec![Value::Null]).is_wholly_known());
    }
}
