//! The plan shape both resources share: destroy plans honour termination protection, creates
//! fill defaults, updates keep computed values unless a change makes them unknown.

use crate::tfplug::plan::{fill_defaults, requires_replace};
use crate::tfplug::provider::PlanResponse;
use crate::tfplug::schema::Block;
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Value};

/// Which attributes a resource's plan treats how.
pub struct PlanShape {
    /// What Terraform calls the resource in messages ("service", "read replica").
    pub kind: &'static str,
    /// Computed from the running nodes: unknown whenever one of `changes_nodes` changes.
    pub observed: &'static [&'static str],
    /// Fixed at creation: unknown only when the resource is replaced.
    pub created: &'static [&'static str],
    /// Arguments whose change alters what the nodes report.
    pub changes_nodes: &'static [&'static str],
}

pub fn plan_change(shape: &PlanShape, block: &Block, prior: &Value, proposed: &Value, config: &Value) -> PlanResponse {
    if proposed.is_null() {
        let mut diagnostics = Diagnostics::new();
        if prior.attr("termination_protection").as_bool() == Some(true) {
            let name = prior.attr("name").as_str().unwrap_or_default();
            diagnostics.push(
                Diagnostic::error(
                    format!("The {} is protected from deletion", shape.kind),
                    format!(
                        "termination_protection is true on {} {name:?}, so it cannot be destroyed. \
                         Set termination_protection = false and apply, then destroy.",
                        shape.kind
                    ),
                )
                .at(AttrPath::root("termination_protection")),
            );
        }
        return PlanResponse {
            planned_state: Value::Null,
            diagnostics,
            ..Default::default()
        };
    }
    let creating = prior.is_null();
    let mut planned = fill_defaults(block, config, proposed, creating);
    planned.set_attr("id", planned.attr("name").clone());
    if creating {
        return PlanResponse {
            planned_state: planned,
            ..Default::default()
        };
    }
    let replace = requires_replace(block, prior, &planned);
    let changed = |name: &&str| prior.attr(name) != planned.attr(name);
    let mut unknown: Vec<&str> = Vec::new();
    if !replace.is_empty() {
        unknown.extend(shape.observed.iter().chain(shape.created));
    } else if shape.changes_nodes.iter().any(changed) {
        unknown.extend(shape.observed);
    }
    for name in unknown {
        planned.set_attr(name, Value::Unknown);
    }
    PlanResponse {
        planned_state: planned,
        requires_replace: replace,
        diagnostics: Diagnostics::new(),
    }
}
