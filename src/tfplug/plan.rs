//! Plan rules every resource shares: defaults, unknown computed values on create, and which
//! changed attributes force a replacement.

use super::diagnostics::AttrPath;
use super::schema::{Block, Nesting};
use super::value::Value;

/// Completes Terraform's proposed new state: an unset attribute with a default takes it, and a
/// computed attribute the configuration leaves unset is unknown on create and keeps its prior
/// value on update (the resource marks it unknown itself when it will change).
pub fn fill_defaults(block: &Block, config: &Value, proposed: &Value, creating: bool) -> Value {
    let mut planned = proposed.clone();
    if !matches!(planned, Value::Object(_)) {
        return planned;
    }
    for attr in &block.attributes {
        let configured = config.attr(&attr.name);
        if !configured.is_null() {
            continue;
        }
        let value = match (&attr.default, attr.computed) {
            (Some(default), _) => default.clone(),
            (None, true) if creating => Value::Unknown,
            (None, true) => proposed.attr(&attr.name).clone(),
            (None, false) => Value::Null,
        };
        planned.set_attr(&attr.name, value);
    }
    for nested in &block.blocks {
        let config_value = config.attr(&nested.type_name);
        let value = match (nested.nesting, proposed.attr(&nested.type_name)) {
            (Nesting::Single, v @ Value::Object(_)) => fill_defaults(&nested.block, config_value, v, creating),
            (Nesting::List, Value::List(items)) => {
                let configs = match config_value {
                    Value::List(c) => c.as_slice(),
                    _ => &[],
                };
                Value::List(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let c = configs.get(i).unwrap_or(&Value::Null);
                            fill_defaults(&nested.block, c, v, creating)
                        })
                        .collect(),
                )
            }
            (_, other) => other.clone(),
        };
        planned.set_attr(&nested.type_name, value);
    }
    planned
}

/// The force-new attributes whose planned value differs from the prior state (an unknown
/// planned value counts as a change, since it may turn out different).
pub fn requires_replace(block: &Block, prior: &Value, planned: &Value) -> Vec<AttrPath> {
    if prior.is_null() || planned.is_null() {
        return Vec::new();
    }
    block
        .attributes
        .iter()
        .filter(|a| a.force_new && prior.attr(&a.name) != planned.attr(&a.name))
        .map(|a| AttrPath::root(&a.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tfplug::schema::{Attribute, AttributeType, NestedBlock};
    use crate::tfplug::types::Type;
    use std::collections::BTreeMap;

    fn attr(name: &str, computed: bool, default: Option<Value>, force_new: bool) -> Attribute {
        Attribute {
            write_only: false,
            name: name.into(),
            kind: AttributeType::Plain(Type::String),
            description: String::new(),
            required: !computed && default.is_none(),
            optional: default.is_some(),
            computed: computed || default.is_some(),
            sensitive: false,
            force_new,
            default,
        }
    }

    fn block() -> Block {
        Block {
            description: String::new(),
            attributes: vec![
                attr("name", false, None, true),
                attr("cloud", true, Some(Value::String("local".into())), true),
                attr("host", true, None, false),
            ],
            blocks: vec![NestedBlock {
                type_name: "cfg".into(),
                block: Block {
                    description: String::new(),
                    attributes: vec![attr("policy", true, Some(Value::String("noeviction".into())), false)],
                    blocks: vec![],
                },
                nesting: Nesting::Single,
                max_items: 0,
            }],
        }
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn create_fills_defaults_and_marks_computed_unknown() {
        let config = obj(&[
            ("name", s("a")),
            ("cloud", Value::Null),
            ("host", Value::Null),
            ("cfg", obj(&[("policy", Value::Null)])),
        ]);
        let planned = fill_defaults(&block(), &config, &config, true);
        assert_eq!(planned.attr("cloud"), &s("local"));
        assert!(planned.attr("host").is_unknown());
        assert_eq!(planned.attr("cfg").attr("policy"), &s("noeviction"));
    }

    #[test]
    fn update_keeps_prior_computed_values_and_resets_removed_defaults() {
        let config = obj(&[
            ("name", s("a")),
            ("cloud", Value::Null),
            ("host", Value::Null),
            ("cfg", Value::Null),
        ]);
        let proposed = obj(&[
            ("name", s("a")),
            ("cloud", s("other")),
            ("host", s("127.0.0.1")),
            ("cfg", Value::Null),
        ]);
        let planned = fill_defaults(&block(), &config, &proposed, false);
        assert_eq!(planned.attr("host"), &s("127.0.0.1"));
        assert_eq!(planned.attr("cloud"), &s("local"));
        assert!(planned.attr("cfg").is_null());
    }

    #[test]
    fn only_changed_force_new_attributes_require_replacement() {
        let prior = obj(&[("name", s("a")), ("cloud", s("local")), ("host", s("h1"))]);
        let planned = obj(&[("name", s("b")), ("cloud", s("local")), ("host", s("h2"))]);
        let paths = requires_replace(&block(), &prior, &planned);
        assert_eq!(paths, vec![AttrPath::root("name")]);
        let unknown = obj(&[("name", Value::Unknown), ("cloud", s("local")), ("host", s("h1"))]);
        assert_eq!(requires_replace(&block(), &prior, &unknown).len(), 1);
        assert!(requires_replace(&block(), &Value::Null, &planned).is_empty());
    }
}
