//! Builds a Terraform schema from a model struct's JSON Schema (as `schemars` derives it), so
//! the struct, its serde form and its doc comments are the one description of a resource.
//!
//! Conventions read from the JSON Schema:
//! - doc comments become descriptions; `Option<T>` fields are optional, others required;
//! - `"default"` makes an attribute optional and computed, filled in at plan time;
//! - extensions: `x-computed` (set by the provider only), `x-sensitive`, `x-write-only`
//!   (configuration only, never in plans or state; sensitive too), `x-optional` (a computed
//!   attribute the user may set too), `x-force-new` (changing it
//!   replaces the resource) and `x-block` (a nested struct is a block, not a nested attribute);
//! - nested structs and lists of structs become nested attributes (or blocks with `x-block`).

use std::any::type_name;

use schemars::JsonSchema;
use serde_json::{Map, Value as Json};

use super::schema::{Attribute, AttributeType, Block, NestedBlock, NestedObject, Nesting, Schema};
use super::types::Type;
use super::value::Value;

/// The schema for model struct `T`.
pub fn schema_for<T: JsonSchema>(version: i64) -> Result<Schema, String> {
    let root = serde_json::to_value(schemars::schema_for!(T)).map_err(|e| format!("{}: {e}", type_name::<T>()))?;
    let block = block_from(&root, &root).map_err(|e| format!("{}: {e}", type_name::<T>()))?;
    Ok(Schema { version, block })
}

fn flag(schema: &Json, key: &str) -> bool {
    schema.get(key).and_then(Json::as_bool).unwrap_or(false)
}

fn description(schema: &Json) -> String {
    schema
        .get("description")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Follows `$ref` and drops the `null` alternative that `Option<T>` adds.
fn core<'a>(schema: &'a Json, root: &'a Json) -> Result<&'a Json, String> {
    if let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
        let name = reference
            .strip_prefix("#/$defs/")
            .ok_or_else(|| format!("unsupported $ref {reference}"))?;
        let def = root
            .get("$defs")
            .and_then(|d| d.get(name))
            .ok_or_else(|| format!("missing definition {name}"))?;
        return core(def, root);
    }
    if let Some(alternatives) = schema.get("anyOf").and_then(Json::as_array) {
        let non_null: Vec<&Json> = alternatives
            .iter()
            .filter(|a| a.get("type").and_then(Json::as_str) != Some("null"))
            .collect();
        if let [only] = non_null.as_slice() {
            return core(only, root);
        }
    }
    Ok(schema)
}

/// The JSON Schema type name, ignoring a `"null"` alternative.
fn type_name_of(schema: &Json) -> Option<&str> {
    match schema.get("type")? {
        Json::String(s) => Some(s),
        Json::Array(types) => types.iter().filter_map(Json::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn is_object_with_properties(schema: &Json) -> bool {
    schema.get("properties").is_some()
}

fn plain_type(schema: &Json, root: &Json) -> Result<Type, String> {
    let schema = core(schema, root)?;
    if schema.get("enum").is_some() || schema.get("oneOf").is_some() || schema.get("const").is_some() {
        return Ok(Type::String);
    }
    match type_name_of(schema) {
        Some("string") => Ok(Type::String),
        Some("integer" | "number") => Ok(Type::Number),
        Some("boolean") => Ok(Type::Bool),
        Some("array") => {
            let items = schema.get("items").ok_or("array without items")?;
            let element = plain_type(items, root)?;
            Ok(if flag(schema, "uniqueItems") {
                Type::set(element)
            } else {
                Type::list(element)
            })
        }
        Some("object") if is_object_with_properties(schema) => Ok(Type::Object(
            properties(schema)?
                .iter()
                .map(|(k, v)| Ok((k.clone(), plain_type(v, root)?)))
                .collect::<Result<_, String>>()?,
        )),
        Some("object") => {
            let values = schema.get("additionalProperties").ok_or("object without properties")?;
            Ok(Type::map(plain_type(values, root)?))
        }
        other => Err(format!("unsupported JSON Schema type {other:?} in {schema}")),
    }
}

fn properties(schema: &Json) -> Result<&Map<String, Json>, String> {
    schema
        .get("properties")
        .and_then(Json::as_object)
        .ok_or_else(|| "expected an object schema with properties".to_string())
}

fn block_from(schema: &Json, root: &Json) -> Result<Block, String> {
    let schema = core(schema, root)?;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Json::as_array)
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    let mut block = Block {
        description: description(schema),
        ..Block::default()
    };
    for (name, prop) in properties(schema)? {
        let resolved = core(prop, root)?;
        let is_block = flag(prop, "x-block");
        let list_items = (type_name_of(resolved) == Some("array"))
            .then(|| resolved.get("items"))
            .flatten()
            .map(|items| core(items, root))
            .transpose()?;
        let (nesting, object) = match list_items {
            Some(items) if is_object_with_properties(items) => (Nesting::List, Some(items)),
            _ if is_object_with_properties(resolved) => (Nesting::Single, Some(resolved)),
            _ => (Nesting::Single, None),
        };
        let mut text = description(prop);
        if text.is_empty() {
            text = description(resolved);
        }
        if is_block {
            let object = object.ok_or_else(|| format!("{name}: x-block needs a struct"))?;
            let mut nested = block_from(object, root)?;
            nested.description = text;
            block.blocks.push(NestedBlock {
                type_name: name.clone(),
                block: nested,
                nesting,
                max_items: if nesting == Nesting::Single { 0 } else { i64::MAX },
            });
            continue;
        }
        let computed = flag(prop, "x-computed");
        let kind = match object {
            Some(object) => AttributeType::Nested(NestedObject {
                attributes: nested_attributes(block_from(object, root)?, computed),
                nesting,
            }),
            None => AttributeType::Plain(plain_type(prop, root)?),
        };
        let default = match prop.get("default") {
            Some(json) => Some(
                Value::from_serde_json(json, &plain_type(prop, root)?).map_err(|e| format!("{name}: default: {e}"))?,
            ),
            None => None,
        };
        let required = required.contains(&name.as_str()) && !computed && default.is_none();
        block.attributes.push(Attribute {
            name: name.clone(),
            kind,
            description: text,
            required,
            // Optional unless required, or computed with nothing for the user to set (`x-optional`
            // lets the user set a computed one).
            optional: !(required || (computed && default.is_none() && !flag(prop, "x-optional"))),
            computed: computed || default.is_some(),
            sensitive: flag(prop, "x-sensitive") || flag(prop, "x-write-only"),
            write_only: flag(prop, "x-write-only"),
            force_new: flag(prop, "x-force-new"),
            default,
        });
    }
    Ok(block)
}

/// The attributes of a nested attribute; inside a computed one every attribute is computed
/// too, since the user sets none of them.
fn nested_attributes(block: Block, computed: bool) -> Vec<Attribute> {
    let mut attributes = block.attributes;
    if computed {
        for a in &mut attributes {
            a.required = false;
            a.optional = false;
            a.computed = true;
        }
    }
    attributes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// A sample resource.
    #[allow(dead_code)]
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Sample {
        /// The name.
        #[schemars(extend("x-force-new" = true))]
        name: String,
        /// Where it runs.
        #[schemars(extend("default" = "local"))]
        cloud: Option<String>,
        /// Secret.
        #[schemars(extend("x-computed" = true, "x-sensitive" = true))]
        password: Option<String>,
        /// Settings.
        #[schemars(extend("x-block" = true))]
        settings: Option<Settings>,
        /// Members.
        #[schemars(extend("x-computed" = true))]
        members: Option<Vec<Member>>,
        labels: Option<std::collections::BTreeMap<String, String>>,
        ports: Option<Vec<i64>>,
    }

    #[allow(dead_code)]
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Settings {
        /// Seconds.
        timeout: Option<i64>,
    }

    #[allow(dead_code)]
    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Member {
        /// Host name.
        host: String,
    }

    #[test]
    fn derives_flags_descriptions_and_types_from_the_struct() {
        let schema = schema_for::<Sample>(0).unwrap();
        let b = &schema.block;
        assert_eq!(b.description, "A sample resource.");
        let name = b.attribute("name").unwrap();
        assert!(name.required && !name.optional && !name.computed && name.force_new);
        assert_eq!(name.description, "The name.");
        let cloud = b.attribute("cloud").unwrap();
        assert!(cloud.optional && cloud.computed && !cloud.required);
        assert_eq!(cloud.default, Some(Value::String("local".into())));
        let password = b.attribute("password").unwrap();
        assert!(password.computed && !password.optional && password.sensitive);
        assert_eq!(
            b.attribute("labels").unwrap().kind,
            AttributeType::Plain(Type::map(Type::String))
        );
        assert_eq!(
            b.attribute("ports").unwrap().kind,
            AttributeType::Plain(Type::list(Type::Number))
        );
    }

    #[test]
    fn nested_structs_become_blocks_or_nested_attributes() {
        let schema = schema_for::<Sample>(0).unwrap();
        let settings = schema.block.nested_block("settings").unwrap();
        assert_eq!(settings.nesting, Nesting::Single);
        assert_eq!(settings.block.description, "Settings.");
        assert!(settings.block.attribute("timeout").unwrap().optional);
        let members = schema.block.attribute("members").unwrap();
        match &members.kind {
            AttributeType::Nested(n) => {
                assert_eq!(n.nesting, Nesting::List);
                assert_eq!(n.attributes[0].name, "host");
            }
            other => panic!("members should be nested, got {other:?}"),
        }
    }

    #[test]
    fn nested_attributes_set_only_nested_type_on_the_wire() {
        let schema = schema_for::<Sample>(0).unwrap().to_proto();
        let block = schema.block.unwrap();
        let members = block.attributes.iter().find(|a| a.name == "members").unwrap();
        assert!(members.r#type.is_empty());
        assert!(members.nested_type.is_some());
        let name = block.attributes.iter().find(|a| a.name == "name").unwrap();
        assert_eq!(name.r#type, b"\"string\"");
        assert!(name.nested_type.is_none());
    }
}
