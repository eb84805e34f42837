//! Terraform resources. Each resource has a model (its attributes), plan rules (pure) and a
//! lifecycle (create, read, update, delete, import) that drives the runtime.

pub mod acl_user;
pub mod acl_user_members;
pub mod acl_user_model;
pub mod acl_user_plan;
pub mod backlog;
pub mod certificates;
pub mod common_model;
pub mod converge;
pub mod failover;
pub mod group_lock;
pub mod group_view;
pub mod lifecycle;
pub mod nodes;
pub mod observe;
pub mod plan_rules;
pub mod planned;
pub mod read_replica;
pub mod read_replica_model;
pub mod read_replica_plan;
pub mod records;
pub mod secrets;
pub mod service;
pub mod service_model;
pub mod service_plan;
pub mod switchover;
pub mod timeouts;
pub mod upstreams;
pub mod user_config;
pub mod validate;
pub mod write_bound;

use std::sync::Arc;

use crate::runtime::Runtime;
use crate::tfplug::{Diagnostic, Diagnostics};

/// A diagnostic without an attribute path: what failed, and the detail (an error message).
pub fn error(summary: &str, detail: impl std::fmt::Display) -> Diagnostics {
    Diagnostic::error(summary, detail.to_string()).into()
}

/// What a configured provider hands its resources: the runtime of the resource's cloud, and
/// what this provider process shares between resources.
#[derive(Clone)]
pub struct Context {
    pub runtime: Arc<dyn Runtime>,
    /// What this provider process has planned so far (one process serves one plan walk).
    pub planned: Arc<planned::PlannedTopology>,
    /// Serialises changes to failover groups (Sentinels) within this provider process.
    pub group_lock: Arc<group_lock::GroupLock>,
    /// Members this provider process is destroying right now: Terraform destroys the members
    /// of a group in parallel, and a hand-over must not pick one that is about to go too.
    pub leaving: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

/// Marks a member as leaving for as long as it lives.
pub struct Leaving {
    set: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    name: String,
}

impl Leaving {
    pub fn mark(ctx: &Context, name: &str) -> Leaving {
        if let Ok(mut set) = ctx.leaving.lock() {
            set.insert(name.to_string());
        }
        Leaving {
            set: ctx.leaving.clone(),
            name: name.to_string(),
        }
    }
}

impl Drop for Leaving {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.name);
        }
    }
}
