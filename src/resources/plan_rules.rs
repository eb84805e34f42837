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
    /// Computed from the running nodes, each with the arguments whose change alters it: an
    /// update that changes none of them keeps its prior value in the plan.
    pub observed: &'static [(&'static str, &'static [&'static str])],
    /// Computed from the running nodes and different on nearly every read (replication lag):
    /// unknown in every update.
    pub volatile: &'static [&'static str],
    /// Fixed at creation: unknown only when the resource is replaced.
    pub created: &'static [&'static str],
}

/// What both resources fix at creation: how clients reach them and what they trust.
pub const CREATED: &[&str] = &[
    "host",
    "port",
    "password",
    "service_uri",
    "sentinel_password",
    "ca_certificate",
    "certificate_expires_at",
];

impl PlanShape {
    /// Every attribute computed from the running nodes.
    pub fn observed_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.observed
            .iter()
            .map(|(name, _)| *name)
            .chain(self.volatile.iter().copied())
    }
}

/// Whether a running node (`role` as it reports it, replicating from `replicates_from`) is
/// out of place in a group whose primary is `current_primary`: the primary must be writable
/// and every other node must replicate from it. A node that does not answer (`unknown`) is
/// left alone: it may be hung, and a plan never kills it.
pub fn out_of_place(
    addr: &str,
    role: Option<&str>,
    replicates_from: Option<&str>,
    current_primary: Option<&str>,
) -> bool {
    let Some(current) = current_primary else {
        return false;
    };
    match role {
        Some("primary") => addr != current,
        Some("replica") => addr == current || replicates_from != Some(current),
        _ => false,
    }
}

/// Marks everything computed from the nodes unknown, so the plan shows the update that will
/// put them right.
pub fn plan_repair(shape: &PlanShape, planned: &mut Value) {
    for name in shape.observed_names() {
        planned.set_attr(name, Value::Unknown);
    }
}

/// The error for destroying a `kind` whose termination_protection is on.
pub fn protected(kind: &str, name: &str) -> Diagnostics {
    Diagnostic::error(
        format!("The {kind} is protected from deletion"),
        format!(
            "termination_protection is true on {kind} {name:?}, so it cannot be destroyed. \
             Set termination_protection = false and apply, then destroy."
        ),
    )
    .at(AttrPath::root("termination_protection"))
    .into()
}

pub fn plan_change(shape: &PlanShape, block: &Block, prior: &Value, proposed: &Value, config: &Value) -> PlanResponse {
    if proposed.is_null() {
        let mut diagnostics = Diagnostics::new();
        if prior.attr("termination_protection").as_bool() == Some(true) {
            diagnostics.extend(protected(shape.kind, prior.attr("name").as_str().unwrap_or_default()));
        }
        return PlanResponse {
            planned_state: Value::Null,
            diagnostics,
            ..Default::default()
        };
    }
    let creating = prior.is_null();
    let mut planned = fill_defaults(block, config, proposed, creating);
    super::user_config::plan_declared_backlog(&mut planned, config);
    planned.set_attr("id", planned.attr("name").clone());
    if creating {
        return PlanResponse {
            planned_state: planned,
            ..Default::default()
        };
    }
    let mut diagnostics = Diagnostics::new();
    super::validate::user_config_change(&mut diagnostics, prior, config);
    let replace = requires_replace(block, prior, &planned);
    let changed = |name: &&str| prior.attr(name) != planned.attr(name);
    let mut unknown: Vec<&str> = Vec::new();
    if !replace.is_empty() {
        unknown.extend(shape.observed_names().chain(shape.created.iter().copied()));
    } else if planned != *prior {
        unknown.extend(shape.volatile);
        for (name, changed_by) in shape.observed {
            if changed_by.iter().any(changed) {
                unknown.push(name);
            }
        }
    }
    for name in unknown {
        planned.set_attr(name, Value::Unknown);
    }
    PlanResponse {
        planned_state: planned,
        requires_replace: replace,
        diagnostics,
    }
}
