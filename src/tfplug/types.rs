//! cty types: what Terraform calls the type of a value, with their JSON encoding
//! (`"string"`, `["list","number"]`, `["object",{"a":"bool"}]`, ...).

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};

use super::CodecError;

/// A cty type. `Dynamic` is the pseudo-type "any type", whose values carry their own type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Bool,
    Number,
    String,
    Dynamic,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
    Tuple(Vec<Type>),
}

impl Type {
    pub fn list(element: Type) -> Type {
        Type::List(Box::new(element))
    }

    pub fn set(element: Type) -> Type {
        Type::Set(Box::new(element))
    }

    pub fn map(element: Type) -> Type {
        Type::Map(Box::new(element))
    }

    /// A spread of types, from primitives to collections of nested objects like the
    /// provider's own schemas: what the decoders are exercised against in tests and fuzzing.
    pub fn examples() -> Vec<Type> {
        let nested = Type::Object(BTreeMap::from([
            ("a".to_string(), Type::String),
            (
                "b".to_string(),
                Type::list(Type::Object(BTreeMap::from([("c".to_string(), Type::Number)]))),
            ),
            ("d".to_string(), Type::map(Type::Dynamic)),
        ]));
        vec![
            Type::String,
            Type::Number,
            Type::Bool,
            Type::Dynamic,
            Type::list(Type::String),
            Type::map(Type::Number),
            Type::set(Type::Bool),
            Type::set(Type::Dynamic),
            Type::Tuple(vec![Type::String, Type::Dynamic]),
            nested.clone(),
            Type::list(nested),
        ]
    }

    /// The JSON form Terraform expects in schema attributes and dynamic values.
    pub fn to_json(&self) -> Json {
        match self {
            Type::Bool => json!("bool"),
            Type::Number => json!("number"),
            Type::String => json!("string"),
            Type::Dynamic => json!("dynamic"),
            Type::List(e) => json!(["list", e.to_json()]),
            Type::Set(e) => json!(["set", e.to_json()]),
            Type::Map(e) => json!(["map", e.to_json()]),
            Type::Object(attrs) => {
                let attrs: serde_json::Map<String, Json> =
                    attrs.iter().map(|(k, t)| (k.clone(), t.to_json())).collect();
                json!(["object", attrs])
            }
            Type::Tuple(elems) => {
                json!(["tuple", elems.iter().map(Type::to_json).collect::<Vec<_>>()])
            }
        }
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }

    /// Parses the JSON form; optional-attribute markers of object types are accepted and ignored.
    pub fn from_json(json: &Json) -> Result<Type, CodecError> {
        let bad = || CodecError::new(format!("invalid cty type JSON: {json}"));
        match json {
            Json::String(s) => match s.as_str() {
                "bool" => Ok(Type::Bool),
                "number" => Ok(Type::Number),
                "string" => Ok(Type::String),
                "dynamic" => Ok(Type::Dynamic),
                _ => Err(bad()),
            },
            Json::Array(parts) if parts.len() >= 2 => {
                let kind = parts[0].as_str().ok_or_else(bad)?;
                match kind {
                    "list" => Ok(Type::list(Type::from_json(&parts[1])?)),
                    "set" => Ok(Type::set(Type::from_json(&parts[1])?)),
                    "map" => Ok(Type::map(Type::from_json(&parts[1])?)),
                    "object" => {
                        let attrs = parts[1].as_object().ok_or_else(bad)?;
                        let attrs = attrs
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), Type::from_json(v)?)))
                            .collect::<Result<_, CodecError>>()?;
                        Ok(Type::Object(attrs))
                    }
                    "tuple" => {
                        let elems = parts[1].as_array().ok_or_else(bad)?;
                        Ok(Type::Tuple(
                            elems.iter().map(Type::from_json).collect::<Result<_, _>>()?,
                        ))
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }

    pub fn from_json_bytes(bytes: &[u8]) -> Result<Type, CodecError> {
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| CodecError::new(format!("invalid cty type JSON: {e}")))?;
        Type::from_json(&json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nested_types_through_json() {
        let ty = Type::Object(BTreeMap::from([
            ("names".to_string(), Type::list(Type::String)),
            ("tags".to_string(), Type::map(Type::Bool)),
            ("pair".to_string(), Type::Tuple(vec![Type::Number, Type::Dynamic])),
            ("ids".to_string(), Type::set(Type::Number)),
        ]));
        let text = ty.to_json().to_string();
        assert_eq!(Type::from_json_bytes(text.as_bytes()).unwrap(), ty);
    }

    #[test]
    fn accepts_object_types_with_optional_attribute_markers() {
        let json = json!(["object", {"a": "string"}, ["a"]]);
        assert_eq!(
            Type::from_json(&json).unwrap(),
            Type::Object(BTreeMap::from([("a".to_string(), Type::String)]))
        );
    }

    #[test]
    fn rejects_unknown_type_names() {
        assert!(Type::from_json(&json!("float")).is_err());
        assert!(Type::from_json(&json!(["list"])).is_err());
    }
}
