//! The layering README.md and docs/design/runtimes.md describe, checked on the source: each
//! layer uses only those below it, and no two modules import each other. Imports are read
//! from paths (`crate::`, `super::`, `self::`, and a `mod.rs` using its own children) in code
//! outside `#[cfg(test)]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`resources::nodes`) to its source, for every file under src/.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Some(rel) = path
                .strip_prefix(src)
                .unwrap()
                .to_str()
                .and_then(|r| r.strip_suffix(".rs"))
            else {
                continue;
            };
            let mut parts: Vec<&str> = rel.split('/').collect();
            if parts.last() == Some(&"mod") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code: String = code
                .lines()
                .map(|l| l.split("//").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            found.insert(parts.join("::"), code);
        }
    }
    found
}

/// The identifiers of a `::` path starting at `text`'s beginning.
fn path_at(text: &str) -> Vec<&str> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[..end].split("::").filter(|s| !s.is_empty()).collect()
}

/// The module a path used in module `from` (a `mod.rs` when `is_dir`) lands in.
fn resolve(from: &str, is_dir: bool, segments: &[&str], known: &BTreeMap<String, String>) -> Option<String> {
    let mut base: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
    let mut rest = segments;
    match *rest.first()? {
        "crate" => {
            base.clear();
            rest = &rest[1..];
        }
        "self" => {
            if !is_dir {
                base.pop();
            }
            rest = &rest[1..];
        }
        "super" => {
            base.pop();
            rest = &rest[1..];
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let full: Vec<&str> = base.into_iter().chain(rest.iter().copied()).collect();
    (1..=full.len())
        .rev()
        .map(|k| full[..k].join("::"))
        .find(|m| known.contains_key(m))
}

fn imports(known: &BTreeMap<String, String>, src: &Path) -> BTreeSet<(String, String)> {
    let mut edges = BTreeSet::new();
    for (module, code) in known {
        let is_dir = src.join(module.replace("::", "/")).join("mod.rs").exists() || module == "lib";
        for start in ["crate::", "super::", "self::"] {
            for (at, _) in code.match_indices(start) {
                let preceded = code[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_');
                if preceded {
                    continue;
                }
                let segments = path_at(&code[at..]);
                // `use super::{a, b::C}`: each name in the braces is a path of its own.
                let after = &code[at + segments.join("::").len()..];
                let braced = after
                    .strip_prefix("::{")
                    .map(|inner| &inner[..inner.find('}').unwrap_or(0)]);
                let mut targets = vec![segments.clone()];
                if let Some(inner) = braced {
                    targets = inner
                        .split(',')
                        .map(|item| {
                            let mut path = segments.clone();
                            path.extend(path_at(item.trim()));
                            path
                        })
                        .collect();
                }
                for target in targets {
                    if let Some(to) = resolve(module, is_dir, &target, known)
                        && to != *module
                    {
                        edges.insert((module.clone(), to));
                    }
                }
            }
        }
        if is_dir {
            for (at, _) in code.match_indices("use ") {
                let child = path_at(&code[at + 4..]).first().copied().unwrap_or_default();
                let child_module = if module == "lib" {
                    child.to_string()
                } else {
                    format!("{module}::{child}")
                };
                if !["crate", "super", "self"].contains(&child) && known.contains_key(&child_module) {
                    edges.insert((module.clone(), child_module));
                }
            }
        }
    }
    edges
}

/// Bottom first: a module may use its own layer and those before it.
const LAYERS: &[&[&str]] = &[
    &["tfplug", "valkey", "catalog"],
    &["runtime"],
    &["registry"],
    &["resources"],
    &["data_sources"],
    &["provider", "docs"],
    &["lib", "main"],
];

fn layer(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or_default();
    LAYERS.iter().position(|l| l.contains(&top)).unwrap_or(usize::MAX)
}

#[test]
fn layers_hold_and_no_two_modules_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    assert!(known.contains_key("resources::nodes") && known.contains_key("runtime::local"));
    let edges = imports(&known, &src);
    assert!(
        edges.contains(&("resources::nodes".into(), "resources::upstreams".into())),
        "the import reader finds nothing: {edges:?}"
    );
    let mutual: Vec<_> = edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .collect();
    assert!(mutual.is_empty(), "modules that import each other: {mutual:?}");
    let upward: Vec<_> = edges.iter().filter(|(a, b)| layer(a) < layer(b)).collect();
    assert!(upward.is_empty(), "imports of a higher layer: {upward:?}");
    let valkey_out: Vec<_> = edges
        .iter()
        .filter(|(a, b)| a.starts_with("valkey") && !b.starts_with("valkey"))
        .collect();
    assert!(
        valkey_out.is_empty(),
        "valkey/ must know nothing of the rest: {valkey_out:?}"
    );
    let tfplug_out: Vec<_> = edges
        .iter()
        .filter(|(a, b)| a.starts_with("tfplug") && !b.starts_with("tfplug"))
        .collect();
    assert!(
        tfplug_out.is_empty(),
        "tfplug/ must know nothing of the rest: {tfplug_out:?}"
    );
}

#[test]
fn resources_and_the_provider_hold_no_host_paths_pids_ports_or_processes() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let host_specific = [
        "std::process",
        "PathBuf",
        "TcpListener",
        "pid",
        "free_port",
        "valkey.log",
        "ss -ltnp",
        "runtime::local",
    ];
    let mut found = Vec::new();
    for (module, code) in known
        .iter()
        .filter(|(m, _)| m.starts_with("resources") || m.starts_with("data_sources") || *m == "provider")
    {
        for word in host_specific {
            if code.contains(word) {
                found.push(format!("{module}: {word}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "host-specific code above the runtime boundary: {found:?}"
    );
}
