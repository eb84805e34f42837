//! docs/ is generated from the schemas and examples; this fails when it is stale.
//! `make docs` (UPDATE_DOCS=1) regenerates it.

use std::path::Path;

#[test]
fn generated_docs_match_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pages = terraform_provider_valkey::docs::pages(root).expect("render docs");
    let update = std::env::var_os("UPDATE_DOCS").is_some();
    let mut stale = Vec::new();
    for (path, contents) in pages {
        let full = root.join(&path);
        if update {
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, &contents).unwrap();
        } else if std::fs::read_to_string(&full).ok().as_deref() != Some(contents.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated docs: {stale:?}; run `make docs` and commit the result"
    );
}

#[test]
fn every_attribute_has_a_description() {
    let provider = terraform_provider_valkey::provider::ValkeyProvider::new().unwrap();
    let schemas = terraform_provider_valkey::tfplug::provider::Provider::schemas(&provider);
    fn check(block: &terraform_provider_valkey::tfplug::schema::Block, path: &str, missing: &mut Vec<String>) {
        for a in &block.attributes {
            if a.description.trim().is_empty() {
                missing.push(format!("{path}{}", a.name));
            }
        }
        for b in &block.blocks {
            if b.block.description.trim().is_empty() {
                missing.push(format!("{path}{}", b.type_name));
            }
            check(&b.block, &format!("{path}{}.", b.type_name), missing);
        }
    }
    let mut missing = Vec::new();
    check(&schemas.provider.block, "provider.", &mut missing);
    for (name, schema) in &schemas.resources {
        check(&schema.block, &format!("{name}."), &mut missing);
    }
    assert!(
        missing.is_empty(),
        "attributes without a description (editor hover shows nothing): {missing:?}"
    );
}
