//! Terraform schemas: attributes, nested attributes and blocks, and their wire form.
//!
//! Besides what Terraform sees, an attribute carries two things the plan rules use:
//! `force_new` (changing it replaces the resource) and `default` (filled in at plan time).

use std::collections::BTreeMap;

use super::proto::tfplugin6 as pb;
use super::types::Type;
use super::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub version: i64,
    pub block: Block,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Block {
    pub description: String,
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
}

/// What an attribute holds: a plain cty type, or nested attributes.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeType {
    Plain(Type),
    Nested(NestedObject),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub kind: AttributeType,
    pub description: String,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    /// Set in configuration only: Terraform keeps it out of plans and state, and the provider
    /// reads it from the configuration when it applies.
    pub write_only: bool,
    pub force_new: bool,
    pub default: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NestedObject {
    pub attributes: Vec<Attribute>,
    pub nesting: Nesting,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NestedBlock {
    pub type_name: String,
    pub block: Block,
    pub nesting: Nesting,
    pub max_items: i64,
}

fn object_type(attributes: &[Attribute]) -> BTreeMap<String, Type> {
    attributes.iter().map(|a| (a.name.clone(), a.value_type())).collect()
}

impl Attribute {
    pub fn value_type(&self) -> Type {
        match &self.kind {
            AttributeType::Plain(t) => t.clone(),
            AttributeType::Nested(n) => n.nesting.wrap(Type::Object(object_type(&n.attributes))),
        }
    }

    fn to_proto(&self) -> pb::schema::Attribute {
        let (ty, nested_type) = match &self.kind {
            AttributeType::Plain(t) => (t.to_json_bytes(), None),
            // Nested attributes carry only nested_type: Terraform rejects a schema with both.
            AttributeType::Nested(n) => (
                Vec::new(),
                Some(pb::schema::Object {
                    attributes: n.attributes.iter().map(Attribute::to_proto).collect(),
                    nesting: match n.nesting {
                        Nesting::Single => pb::schema::object::NestingMode::Single,
                        Nesting::List => pb::schema::object::NestingMode::List,
                    } as i32,
                }),
            ),
        };
        pb::schema::Attribute {
            name: self.name.clone(),
            r#type: ty,
            nested_type,
            description: self.description.clone(),
            required: self.required,
            optional: self.optional,
            computed: self.computed,
            sensitive: self.sensitive,
            description_kind: pb::StringKind::Markdown as i32,
            deprecated: false,
            write_only: self.write_only,
        }
    }
}

impl Nesting {
    fn wrap(self, object: Type) -> Type {
        match self {
            Nesting::Single => object,
            Nesting::List => Type::list(object),
        }
    }
}

impl Block {
    /// The object type of this block's values (attributes and nested blocks).
    pub fn value_type(&self) -> Type {
        let mut attrs = object_type(&self.attributes);
        for b in &self.blocks {
            attrs.insert(b.type_name.clone(), b.nesting.wrap(b.block.value_type()));
        }
        Type::Object(attrs)
    }

    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn nested_block(&self, name: &str) -> Option<&NestedBlock> {
        self.blocks.iter().find(|b| b.type_name == name)
    }

    /// This block as a data source reads it: `arguments` stay as they are, every other
    /// attribute is computed only (an argument with a default is optional and computed, since
    /// no plan fills the default in), and blocks and write-only attributes, which a
    /// data source cannot return, are left out. For data sources derived from a resource model.
    pub fn read_only_except(&self, arguments: &[&str]) -> Block {
        let attributes = self
            .attributes
            .iter()
            .filter(|a| !a.write_only)
            .map(|a| {
                let mut a = a.clone();
                let replaces = a.force_new;
                if !arguments.contains(&a.name.as_str()) {
                    (a.required, a.optional, a.computed, a.default, a.force_new) = (false, false, true, None, false);
                } else if a.default.take().is_some() {
                    // Terraform fills no default in a data source: the read reports the value.
                    a.computed = true;
                }
                if replaces {
                    // Nothing is replaced by a data source.
                    a.description = a
                        .description
                        .replace('\n', " ")
                        .split_inclusive(". ")
                        .filter(|sentence| !sentence.starts_with("Changing it replaces"))
                        .collect::<String>()
                        .trim_end()
                        .to_string();
                }
                a.force_new = false;
                a
            })
            .collect();
        Block {
            description: self.description.clone(),
            attributes,
            blocks: Vec::new(),
        }
    }

    /// `value` with every write-only attribute null (in this block and single nested blocks),
    /// as plans and states must have them.
    pub fn without_write_only(&self, value: &Value) -> Value {
        self.with_write_only_from(&Value::Null, value)
    }

    /// `value` with each write-only attribute taken from `config` (null where `config` has
    /// none): what an apply works with.
    pub fn with_write_only_from(&self, config: &Value, value: &Value) -> Value {
        if value.is_null() || value.is_unknown() {
            return value.clone();
        }
        let mut out = value.clone();
        for a in self.attributes.iter().filter(|a| a.write_only) {
            out.set_attr(&a.name, config.attr(&a.name).clone());
        }
        for b in self.blocks.iter().filter(|b| b.nesting == Nesting::Single) {
            let inner = b
                .block
                .with_write_only_from(config.attr(&b.type_name), value.attr(&b.type_name));
            if !value.attr(&b.type_name).is_null() {
                out.set_attr(&b.type_name, inner);
            }
        }
        out
    }

    fn to_proto(&self, version: i64) -> pb::schema::Block {
        pb::schema::Block {
            version,
            attributes: self.attributes.iter().map(Attribute::to_proto).collect(),
            block_types: self
                .blocks
                .iter()
                .map(|b| pb::schema::NestedBlock {
                    type_name: b.type_name.clone(),
                    block: Some(b.block.to_proto(version)),
                    nesting: match b.nesting {
                        Nesting::Single => pb::schema::nested_block::NestingMode::Single,
                        Nesting::List => pb::schema::nested_block::NestingMode::List,
                    } as i32,
                    min_items: 0,
                    max_items: b.max_items,
                })
                .collect(),
            description: self.description.clone(),
            description_kind: pb::StringKind::Markdown as i32,
            deprecated: false,
        }
    }
}

impl Schema {
    pub fn value_type(&self) -> Type {
        self.block.value_type()
    }

    pub fn to_proto(&self) -> pb::Schema {
        pb::Schema {
            version: self.version,
            block: Some(self.block.to_proto(self.version)),
        }
    }
}

#[cfg(test)]
mod write_only_tests {
    use super::*;

    fn attr(name: &str, write_only: bool) -> Attribute {
        Attribute {
            name: name.into(),
            kind: AttributeType::Plain(Type::String),
            description: String::new(),
            required: false,
            optional: true,
            computed: false,
            sensitive: write_only,
            write_only,
            force_new: false,
            default: None,
        }
    }

    #[test]
    fn a_data_source_block_keeps_its_arguments_and_computes_the_rest() {
        let mut name = attr("name", false);
        name.required = true;
        let block = Block {
            description: "d".into(),
            attributes: vec![name, attr("secret_wo", true), attr("plan", false)],
            blocks: vec![NestedBlock {
                type_name: "timeouts".into(),
                block: Block::default(),
                nesting: Nesting::Single,
                max_items: 1,
            }],
        };
        let read_only = block.read_only_except(&["name"]);
        let names: Vec<&str> = read_only.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["name", "plan"]);
        assert!(read_only.attributes[0].required && !read_only.attributes[0].computed);
        let plan = &read_only.attributes[1];
        assert!(plan.computed && !plan.optional && plan.default.is_none());
        assert!(read_only.blocks.is_empty());
    }

    #[test]
    fn write_only_attributes_come_from_configuration_and_leave_no_state() {
        let inner = Block {
            attributes: vec![attr("cert", false), attr("key_wo", true)],
            ..Default::default()
        };
        let block = Block {
            attributes: vec![attr("name", false)],
            blocks: vec![NestedBlock {
                type_name: "tls".into(),
                block: inner,
                nesting: Nesting::Single,
                max_items: 0,
            }],
            ..Default::default()
        };
        let text = |s: &str| Value::String(s.into());
        let object = |pairs: &[(&str, Value)]| {
            let mut v = Value::Object(Default::default());
            for (k, val) in pairs {
                v.set_attr(k, val.clone());
            }
            v
        };
        let config = object(&[
            ("name", text("a")),
            ("tls", object(&[("cert", text("C")), ("key_wo", text("K"))])),
        ]);
        let planned = object(&[
            ("name", text("a")),
            ("tls", object(&[("cert", text("C")), ("key_wo", Value::Null)])),
        ]);
        let applied = block.with_write_only_from(&config, &planned);
        assert_eq!(applied.attr("tls").attr("key_wo"), &text("K"));
        assert_eq!(block.without_write_only(&applied), planned);
        // No block in the value: none is made.
        let bare = object(&[("name", text("a")), ("tls", Value::Null)]);
        assert_eq!(block.with_write_only_from(&config, &bare), bare);
    }
}
