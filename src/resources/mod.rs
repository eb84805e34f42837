//! Terraform resources. Each resource has a model (its attributes), plan rules (pure) and a
//! lifecycle (create, read, update, delete, import) that drives the runtime.

pub mod service;
pub mod service_model;
pub mod service_plan;
pub mod validate;

use std::path::PathBuf;
use std::sync::Arc;

use crate::runtime::Runtime;

/// What a configured provider hands its resources.
#[derive(Clone)]
pub struct Context {
    pub runtime: Arc<dyn Runtime>,
    pub data_dir: PathBuf,
}
