//! Shared by the fuzz targets: the cty types their inputs are decoded against.

use std::collections::BTreeMap;

use terraform_provider_valkey::tfplug::Type;

/// A type chosen by one input byte: primitives, collections, and nested objects like the
/// provider's own schemas.
pub fn type_for(selector: u8) -> Type {
    let nested = Type::Object(BTreeMap::from([
        ("a".to_string(), Type::String),
        (
            "b".to_string(),
            Type::list(Type::Object(BTreeMap::from([("c".to_string(), Type::Number)]))),
        ),
        ("d".to_string(), Type::map(Type::Dynamic)),
    ]));
    let types = [
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
    ];
    types[selector as usize % types.len()].clone()
}
