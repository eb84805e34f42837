//! The registry-style documentation pages: the provider page from its template, and one page
//! per resource and data source, generated from the schemas (the model structs' doc comments) and the
//! examples. `make docs` writes them; a test fails when docs/ is stale.

use std::path::{Path, PathBuf};

use crate::provider::ValkeyProvider;
use crate::tfplug::docs::schema_markdown;
use crate::tfplug::schema::Schema;

fn read(root: &Path, relative: &str) -> Result<String, String> {
    std::fs::read_to_string(root.join(relative)).map_err(|e| format!("{relative}: {e}"))
}

fn first_sentence(text: &str) -> &str {
    text.split_inclusive(". ").next().unwrap_or(text).trim()
}

fn resource_page(root: &Path, type_name: &str, schema: &Schema) -> Result<String, String> {
    let example = read(root, &format!("examples/resources/{type_name}/resource.tf"))?;
    let import = read(root, &format!("examples/resources/{type_name}/import.sh"))?;
    let description = schema.block.description.replace('\n', " ");
    Ok(format!(
        "---\npage_title: \"{type_name} Resource - terraform-provider-valkey\"\ndescription: |-\n  {}\n---\n\n\
         # {type_name} (Resource)\n\n{description}\n\n## Example Usage\n\n```terraform\n{}\n```\n\n{}\n\
         ## Import\n\nImport is supported using the following syntax:\n\n```shell\n{}\n```\n",
        first_sentence(&description),
        example.trim_end(),
        schema_markdown(&schema.block),
        import.trim_end(),
    ))
}

fn data_source_page(root: &Path, type_name: &str, schema: &Schema) -> Result<String, String> {
    let example = read(root, &format!("examples/data-sources/{type_name}/data-source.tf"))?;
    let description = schema.block.description.replace('\n', " ");
    Ok(format!(
        "---\npage_title: \"{type_name} Data Source - terraform-provider-valkey\"\ndescription: |-\n  {}\n---\n\n\
         # {type_name} (Data Source)\n\n{description}\n\n## Example Usage\n\n```terraform\n{}\n```\n\n{}",
        first_sentence(&description),
        example.trim_end(),
        schema_markdown(&schema.block),
    ))
}

/// Every generated page, as (path relative to the repository, contents).
pub fn pages(root: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let provider = ValkeyProvider::new()?;
    let schemas = crate::tfplug::provider::Provider::schemas(&provider);
    let index = read(root, "templates/index.md.tmpl")?
        .replace("{{example}}", read(root, "examples/provider/provider.tf")?.trim_end())
        .replace("{{schema}}", &schema_markdown(&schemas.provider.block));
    let mut pages = vec![(PathBuf::from("docs/index.md"), index)];
    for (type_name, schema) in &schemas.resources {
        let file = type_name.trim_start_matches("valkey_");
        pages.push((
            PathBuf::from(format!("docs/resources/{file}.md")),
            resource_page(root, type_name, schema)?,
        ));
    }
    for (type_name, schema) in &schemas.data_sources {
        let file = type_name.trim_start_matches("valkey_");
        pages.push((
            PathBuf::from(format!("docs/data-sources/{file}.md")),
            data_source_page(root, type_name, schema)?,
        ));
    }
    Ok(pages)
}
