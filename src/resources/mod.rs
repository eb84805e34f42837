//! Terraform resources. Each resource has a model (its attributes), plan rules (pure) and a
//! lifecycle (create, read, update, delete, import) that drives the runtime.

pub mod common_model;
pub mod failover;
pub mod lifecycle;
pub mod nodes;
pub mod plan_rules;
pub mod planned;
pub mod read_replica;
pub mod read_replica_model;
pub mod read_replica_plan;
pub mod service;
pub mod service_model;
pub mod service_plan;
pub mod validate;

use std::path::PathBuf;
use std::sync::Arc;

use crate::catalog::Regions;
use crate::runtime::Runtime;

/// What a configured provider hands its resources.
#[derive(Clone)]
pub struct Context {
    pub runtime: Arc<dyn Runtime>,
    pub data_dir: PathBuf,
    pub regions: Regions,
    /// What this provider process has planned so far (one process serves one plan walk).
    pub planned: Arc<planned::PlannedTopology>,
    /// Serialises changes to failover groups (Sentinels) within this provider process.
    pub group_lock: Arc<tokio::sync::Mutex<()>>,
}
