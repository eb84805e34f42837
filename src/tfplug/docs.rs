//! Registry-style Markdown for a schema: arguments, read-only attributes and nested blocks,
//! each with the description from the model's doc comments. docs/ is generated from this, so
//! no attribute is described twice by hand.

use std::fmt::Write;

use super::schema::{Attribute, AttributeType, Block, NestedObject, Nesting};
use super::types::Type;

fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "Boolean".into(),
        Type::Number => "Number".into(),
        Type::String => "String".into(),
        Type::Dynamic => "Dynamic".into(),
        Type::List(e) => format!("List of {}", type_name(e)),
        Type::Set(e) => format!("Set of {}", type_name(e)),
        Type::Map(e) => format!("Map of {}", type_name(e)),
        Type::Object(_) => "Object".into(),
        Type::Tuple(_) => "Tuple".into(),
    }
}

fn attribute_line(out: &mut String, attr: &Attribute, anchor_prefix: &str) {
    let kind = match &attr.kind {
        AttributeType::Plain(t) => type_name(t),
        AttributeType::Nested(n) => {
            let wrapper = if n.nesting == Nesting::List {
                "List of Object"
            } else {
                "Object"
            };
            format!(
                "{wrapper}, see [below for nested schema](#{anchor_prefix}{})",
                attr.name
            )
        }
    };
    let mut notes = Vec::new();
    if attr.write_only {
        notes.push("Write-only".to_string());
    }
    if attr.sensitive {
        notes.push("Sensitive".to_string());
    }
    if attr.force_new {
        notes.push("Forces replacement".to_string());
    }
    if let Some(default) = &attr.default {
        notes.push(format!("Default: `{}`", default.to_serde_json()));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(", {}", notes.join(", "))
    };
    let description = attr.description.replace('\n', " ");
    let _ = writeln!(out, "- `{}` ({kind}{notes}) {description}", attr.name);
}

fn section(out: &mut String, heading: &str, title: &str, attrs: &[&Attribute], anchor_prefix: &str) {
    if attrs.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{heading} {title}\n");
    for a in attrs {
        attribute_line(out, a, anchor_prefix);
    }
}

/// A block's attributes by kind, then its nested blocks' and nested attributes' own schemas;
/// `heading` is the Markdown heading for this level ("###", then "####" inside blocks).
fn block_body(out: &mut String, block: &Block, path: &str, heading: &str) {
    let required: Vec<&Attribute> = block.attributes.iter().filter(|a| a.required).collect();
    let optional: Vec<&Attribute> = block.attributes.iter().filter(|a| a.optional).collect();
    let read_only: Vec<&Attribute> = block.attributes.iter().filter(|a| a.computed && !a.optional).collect();
    let prefix = format!("nested--{path}");
    section(out, heading, "Required", &required, &prefix);
    section(out, heading, "Optional", &optional, &prefix);
    if !block.blocks.is_empty() {
        let _ = writeln!(out, "\n{heading} Blocks\n");
        for b in &block.blocks {
            let kind = match b.nesting {
                Nesting::List => "Block List",
                _ => "Block, at most one",
            };
            let _ = writeln!(
                out,
                "- `{}` ({kind}, see [below for nested schema](#{prefix}{})) {}",
                b.type_name,
                b.type_name,
                b.block.description.replace('\n', " ")
            );
        }
    }
    section(out, heading, "Read-Only", &read_only, &prefix);
    for b in &block.blocks {
        let anchor = format!("{prefix}{}", b.type_name);
        let _ = writeln!(
            out,
            "\n<a id=\"{anchor}\"></a>\n### Nested Schema for `{}`",
            b.type_name
        );
        block_body(out, &b.block, &format!("{path}{}-", b.type_name), "####");
    }
    for a in &block.attributes {
        if let AttributeType::Nested(NestedObject { attributes, .. }) = &a.kind {
            let anchor = format!("{prefix}{}", a.name);
            let _ = writeln!(out, "\n<a id=\"{anchor}\"></a>\n### Nested Schema for `{}`\n", a.name);
            for inner in attributes {
                attribute_line(out, inner, &format!("{anchor}-"));
            }
        }
    }
}

/// The "## Schema" section of a resource or provider page.
pub fn schema_markdown(block: &Block) -> String {
    let mut out = String::from("## Schema\n");
    block_body(&mut out, block, "", "###");
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out.trim_end().to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tfplug::schema::NestedBlock;
    use crate::tfplug::value::Value;

    fn attr(name: &str, required: bool, optional: bool, computed: bool) -> Attribute {
        Attribute {
            write_only: false,
            name: name.into(),
            kind: AttributeType::Plain(Type::String),
            description: format!("About {name}."),
            required,
            optional,
            computed,
            sensitive: name == "password",
            force_new: name == "name",
            default: (name == "cloud").then(|| Value::String("local".into())),
        }
    }

    #[test]
    fn sorts_attributes_into_required_optional_and_read_only() {
        let block = Block {
            description: String::new(),
            attributes: vec![
                attr("name", true, false, false),
                attr("cloud", false, true, true),
                attr("password", false, false, true),
            ],
            blocks: vec![NestedBlock {
                type_name: "timeouts".into(),
                block: Block {
                    description: "Limits.".into(),
                    attributes: vec![attr("create", false, true, false)],
                    blocks: vec![],
                },
                nesting: Nesting::Single,
                max_items: 0,
            }],
        };
        let md = schema_markdown(&block);
        let required = md.find("### Required").unwrap();
        let optional = md.find("### Optional").unwrap();
        let read_only = md.find("### Read-Only").unwrap();
        assert!(required < optional && optional < read_only, "{md}");
        assert!(md.contains("- `name` (String, Forces replacement) About name."));
        assert!(md.contains("- `cloud` (String, Default: `\"local\"`) About cloud."));
        assert!(md.contains("- `password` (String, Sensitive) About password."));
        assert!(
            md.contains("### Nested Schema for `timeouts`\n\n#### Optional\n"),
            "{md}"
        );
        assert!(md.contains("- `create` (String) About create."));
    }
}
