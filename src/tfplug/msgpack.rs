//! cty's msgpack encoding, the form Terraform uses for every DynamicValue it sends.
//!
//! Unknown values are msgpack extension values: any extension code reads as unknown (newer
//! Terraform sends refined unknowns with code 12), and unknowns are written with code 0.
//! Values of the `dynamic` pseudo-type travel as a two-element array: type JSON, then value.

use std::collections::BTreeMap;

use rmpv::Value as Mp;

use super::CodecError;
use super::types::Type;
use super::value::{Number, Value, infer_type};

/// Decodes msgpack bytes as a value of type `ty`.
pub fn decode(bytes: &[u8], ty: &Type) -> Result<Value, CodecError> {
    let mut reader = bytes;
    let mp = rmpv::decode::read_value(&mut reader).map_err(|e| CodecError::new(format!("invalid msgpack: {e}")))?;
    if !reader.is_empty() {
        return Err(CodecError::new("trailing bytes after msgpack value"));
    }
    from_msgpack(&mp, ty)
}

/// Encodes a value of type `ty` as msgpack bytes.
pub fn encode(value: &Value, ty: &Type) -> Result<Vec<u8>, CodecError> {
    let mp = to_msgpack(value, ty)?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &mp).map_err(|e| CodecError::new(format!("msgpack encoding failed: {e}")))?;
    Ok(out)
}

fn from_msgpack(mp: &Mp, ty: &Type) -> Result<Value, CodecError> {
    let mismatch = || CodecError::new(format!("expected {}, found msgpack {mp}", ty.to_json()));
    Ok(match (ty, mp) {
        (_, Mp::Ext(_, _)) => Value::Unknown,
        (_, Mp::Nil) => Value::Null,
        (Type::Dynamic, Mp::Array(parts)) if parts.len() == 2 => {
            let type_json = match &parts[0] {
                Mp::Binary(b) => b.as_slice(),
                Mp::String(s) => s.as_bytes(),
                _ => return Err(mismatch()),
            };
            from_msgpack(&parts[1], &Type::from_json_bytes(type_json)?)?
        }
        (Type::Dynamic, _) => return Err(mismatch()),
        (Type::Bool, Mp::Boolean(b)) => Value::Bool(*b),
        // Above i64, the same number may come as an integer or as text: one parse for both, so
        // a value keeps its form however it arrives.
        (Type::Number, Mp::Integer(i)) => Value::Number(match i.as_i64() {
            Some(v) => Number::Int(v),
            None => Number::parse(&i.to_string())?,
        }),
        (Type::Number, Mp::F64(f)) => Value::Number(Number::Float(*f)),
        (Type::Number, Mp::F32(f)) => Value::Number(Number::Float(f64::from(*f))),
        (Type::Number, Mp::String(s)) => Value::Number(Number::parse(s.as_str().ok_or_else(mismatch)?)?),
        (Type::String, Mp::String(s)) => Value::String(
            s.as_str()
                .ok_or_else(|| CodecError::new("string is not valid UTF-8"))?
                .to_string(),
        ),
        (Type::List(e), Mp::Array(items)) => Value::List(decode_all(items, e)?),
        (Type::Set(e), Mp::Array(items)) => Value::Set(decode_all(items, e)?),
        (Type::Tuple(types), Mp::Array(items)) if types.len() == items.len() => Value::Tuple(
            items
                .iter()
                .zip(types)
                .map(|(i, t)| from_msgpack(i, t))
                .collect::<Result<_, _>>()?,
        ),
        (Type::Map(e), Mp::Map(entries)) => {
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                out.insert(key_of(k)?, from_msgpack(v, e)?);
            }
            Value::Map(out)
        }
        (Type::Object(attrs), Mp::Map(entries)) => {
            let mut given = BTreeMap::new();
            for (k, v) in entries {
                given.insert(key_of(k)?, v);
            }
            let mut out = BTreeMap::new();
            for (name, t) in attrs {
                let v = match given.get(name) {
                    Some(v) => from_msgpack(v, t)?,
                    None => Value::Null,
                };
                out.insert(name.clone(), v);
            }
            Value::Object(out)
        }
        _ => return Err(mismatch()),
    })
}

fn decode_all(items: &[Mp], element: &Type) -> Result<Vec<Value>, CodecError> {
    items.iter().map(|i| from_msgpack(i, element)).collect()
}

fn key_of(k: &Mp) -> Result<String, CodecError> {
    match k {
        Mp::String(s) => s
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CodecError::new("map key is not valid UTF-8")),
        other => Err(CodecError::new(format!("map key must be a string, found {other}"))),
    }
}

fn to_msgpack(value: &Value, ty: &Type) -> Result<Mp, CodecError> {
    let mismatch = || CodecError::new(format!("cannot encode {value:?} as {}", ty.to_json()));
    Ok(match (ty, value) {
        (_, Value::Unknown) => Mp::Ext(0, vec![0]),
        (_, Value::Null) => Mp::Nil,
        (Type::Dynamic, v) => {
            let concrete = infer_type(v);
            Mp::Array(vec![Mp::Binary(concrete.to_json_bytes()), to_msgpack(v, &concrete)?])
        }
        (Type::Bool, Value::Bool(b)) => Mp::Boolean(*b),
        (Type::Number, Value::Number(n)) => number_to_msgpack(n),
        (Type::String, Value::String(s)) => Mp::String(s.as_str().into()),
        (Type::List(e), Value::List(items)) | (Type::Set(e), Value::Set(items)) => {
            Mp::Array(items.iter().map(|i| to_msgpack(i, e)).collect::<Result<_, _>>()?)
        }
        (Type::Tuple(types), Value::Tuple(items)) if types.len() == items.len() => Mp::Array(
            items
                .iter()
                .zip(types)
                .map(|(i, t)| to_msgpack(i, t))
                .collect::<Result<_, _>>()?,
        ),
        (Type::Map(e), Value::Map(entries)) => Mp::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((Mp::String(k.as_str().into()), to_msgpack(v, e)?)))
                .collect::<Result<_, CodecError>>()?,
        ),
        (Type::Object(attrs), Value::Object(entries)) => Mp::Map(
            attrs
                .iter()
                .map(|(name, t)| {
                    let v = entries.get(name).unwrap_or(&Value::Null);
                    Ok((Mp::String(name.as_str().into()), to_msgpack(v, t)?))
                })
                .collect::<Result<_, CodecError>>()?,
        ),
        _ => return Err(mismatch()),
    })
}

/// cty writes whole numbers as integers, other exact floats as float64, the rest as text.
fn number_to_msgpack(n: &Number) -> Mp {
    match n {
        Number::Int(i) => Mp::from(*i),
        Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Mp::from(*f as i64),
        Number::Float(f) => Mp::F64(*f),
        Number::Text(t) => Mp::String(t.as_str().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(attrs: &[(&str, Type)]) -> Type {
        Type::Object(attrs.iter().map(|(k, t)| (k.to_string(), t.clone())).collect())
    }

    // Golden bytes are what cty itself produces for these values.
    #[test]
    fn decodes_golden_object_with_null_and_unknown() {
        // {"a": "hi", "b": nil, "c": unknown (ext 0)}
        let bytes = [
            0x83, 0xa1, b'a', 0xa2, b'h', b'i', 0xa1, b'b', 0xc0, 0xa1, b'c', 0xd4, 0x00, 0x00,
        ];
        let ty = object(&[("a", Type::String), ("b", Type::Number), ("c", Type::Bool)]);
        let v = decode(&bytes, &ty).unwrap();
        assert_eq!(v.attr("a"), &Value::String("hi".into()));
        assert!(v.attr("b").is_null());
        assert!(v.attr("c").is_unknown());
        assert_eq!(encode(&v, &ty).unwrap(), bytes);
    }

    #[test]
    fn refined_unknowns_with_other_ext_codes_read_as_unknown() {
        // fixext with code 12 and a refinement payload, as Terraform 1.6+ sends.
        let bytes = [0xd5, 0x0c, 0x81, 0x01];
        assert!(decode(&bytes, &Type::String).unwrap().is_unknown());
    }

    #[test]
    fn an_unsigned_integer_above_i64_survives_round_trips_unchanged() {
        // Found by the cty_msgpack fuzz target: 14697497809125376000 as uint64 was kept as
        // text, written as a string, and read back as a float, so re-encoding changed it.
        for big in [14_697_497_809_125_376_000u64, u64::MAX] {
            let mut bytes = vec![0xcf];
            bytes.extend(big.to_be_bytes());
            let once = encode(&decode(&bytes, &Type::Number).unwrap(), &Type::Number).unwrap();
            let twice = encode(&decode(&once, &Type::Number).unwrap(), &Type::Number).unwrap();
            assert_eq!(once, twice, "{big}");
        }
    }

    #[test]
    fn numbers_decode_from_int_float_and_string() {
        assert_eq!(decode(&[0x2a], &Type::Number).unwrap(), Value::Number(Number::Int(42)));
        let float = [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]; // 1.5 as float64
        assert_eq!(
            decode(&float, &Type::Number).unwrap(),
            Value::Number(Number::Float(1.5))
        );
        let text = [0xa4, b'1', b'e', b'9', b'9'];
        let v = decode(&text, &Type::Number).unwrap();
        assert!(matches!(v, Value::Number(Number::Text(ref t)) if t == "1e99"));
        // Whole floats are written back as integers, as cty does.
        assert_eq!(
            encode(&Value::Number(Number::Float(3.0)), &Type::Number).unwrap(),
            [0x03]
        );
        assert_eq!(
            encode(&Value::Number(Number::Float(1.5)), &Type::Number).unwrap(),
            float
        );
    }

    #[test]
    fn dynamic_values_carry_their_type() {
        // ["\"string\"" as bin, "x"]
        let mut bytes = vec![0x92, 0xc4, 8];
        bytes.extend_from_slice(b"\"string\"");
        bytes.extend_from_slice(&[0xa1, b'x']);
        let v = decode(&bytes, &Type::Dynamic).unwrap();
        assert_eq!(v, Value::String("x".into()));
        assert_eq!(encode(&v, &Type::Dynamic).unwrap(), bytes);
        assert!(decode(&[0xc0], &Type::Dynamic).unwrap().is_null());
    }

    #[test]
    fn collections_nest_null_and_unknown_at_any_depth() {
        let ty = Type::list(object(&[
            ("tags", Type::map(Type::String)),
            ("ids", Type::set(Type::Number)),
        ]));
        let v = Value::List(vec![Value::Object(BTreeMap::from([
            (
                "tags".into(),
                Value::Map(BTreeMap::from([
                    ("k".into(), Value::Unknown),
                    ("n".into(), Value::Null),
                ])),
            ),
            (
                "ids".into(),
                Value::Set(vec![Value::Number(Number::Int(1)), Value::Unknown]),
            ),
        ]))]);
        let bytes = encode(&v, &ty).unwrap();
        assert_eq!(decode(&bytes, &ty).unwrap(), v);
    }

    #[test]
    fn type_mismatches_and_garbage_are_errors_not_panics() {
        assert!(decode(&[0xa1, b'x'], &Type::Number).is_err());
        assert!(decode(&[0x92, 0x01], &Type::list(Type::Number)).is_err());
        assert!(decode(&[], &Type::String).is_err());
        assert!(decode(&[0x01, 0x02], &Type::Number).is_err());
        assert!(encode(&Value::Bool(true), &Type::String).is_err());
    }
}
