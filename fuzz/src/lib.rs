//! Shared by the fuzz targets: the cty type an input is decoded against.

use terraform_provider_valkey::tfplug::Type;

/// One of the provider's example types, chosen by an input byte.
pub fn type_for(selector: u8) -> Type {
    let types = Type::examples();
    types[selector as usize % types.len()].clone()
}

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use terraform_provider_valkey::tfplug::{Number, Value};

/// Strings the provider gives meaning to, so the fuzzer reaches past the first check.
const WORDS: &[&str] = &[
    "primary",
    "eu",
    "startup-4",
    "business-4",
    "premium-4",
    "hobbyist",
    "local",
    "local-1",
    "local-2",
    "noeviction",
    "allkeys-lru",
    "rdb",
    "off",
    "30s",
    "10m",
    "1h30m",
    "valkey://u:p@127.0.0.1:1",
    "",
    "../x",
    "ü",
];

/// A value of type `ty` built from fuzzer bytes: null, unknown or a value, at any depth.
pub fn arbitrary_value(ty: &Type, u: &mut Unstructured, depth: usize) -> Result<Value> {
    match u.int_in_range(0..=9u8)? {
        0 => return Ok(Value::Null),
        1 => return Ok(Value::Unknown),
        _ => {}
    }
    Ok(match ty {
        Type::String => Value::String(if u.arbitrary()? {
            u.choose(WORDS)?.to_string()
        } else {
            u.arbitrary()?
        }),
        Type::Number => Value::Number(match u.int_in_range(0..=2u8)? {
            0 => Number::Int(u.int_in_range(-2..=70_000)?),
            1 => Number::Int(u.arbitrary()?),
            _ => Number::Float(u.arbitrary()?),
        }),
        Type::Bool => Value::Bool(u.arbitrary()?),
        Type::Dynamic => Value::Null,
        Type::List(element) | Type::Set(element) => {
            let items = if depth > 3 { 0 } else { u.int_in_range(0..=3usize)? };
            let values = (0..items)
                .map(|_| arbitrary_value(element, u, depth + 1))
                .collect::<Result<Vec<_>>>()?;
            if matches!(ty, Type::Set(_)) {
                Value::Set(values)
            } else {
                Value::List(values)
            }
        }
        Type::Map(element) => {
            let items = if depth > 3 { 0 } else { u.int_in_range(0..=3usize)? };
            let mut map = BTreeMap::new();
            for _ in 0..items {
                let key: String = if u.arbitrary()? {
                    u.choose(WORDS)?.to_string()
                } else {
                    u.arbitrary()?
                };
                map.insert(key, arbitrary_value(element, u, depth + 1)?);
            }
            Value::Map(map)
        }
        Type::Object(attributes) => Value::Object(
            attributes
                .iter()
                .map(|(name, t)| Ok((name.clone(), arbitrary_value(t, u, depth + 1)?)))
                .collect::<Result<BTreeMap<_, _>>>()?,
        ),
        Type::Tuple(elements) => Value::Tuple(
            elements
                .iter()
                .map(|t| arbitrary_value(t, u, depth + 1))
                .collect::<Result<Vec<_>>>()?,
        ),
    })
}
