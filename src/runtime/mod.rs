//! Where nodes run. The [`Runtime`] trait is what resources use; `local` (processes on this
//! host) is the only implementation today, and a remote one (Kubernetes) would implement the
//! same trait.

pub mod local;
mod process;
pub mod record;

use std::net::IpAddr;
use std::path::PathBuf;

pub use record::{FailoverSettings, NodeRecord, SentinelRecord, ServiceRecord, Upstream, UserConfigValues};

use crate::valkey::ValkeyError;

/// A data node, or a Sentinel watching the service's replication group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessKind {
    Data,
    Sentinel,
}

/// One process of a service: data node `index`, or sentinel `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId {
    pub service: String,
    pub index: usize,
    pub kind: ProcessKind,
}

impl NodeId {
    pub fn data(service: &str, index: usize) -> Self {
        NodeId {
            service: service.to_string(),
            index,
            kind: ProcessKind::Data,
        }
    }

    pub fn sentinel(service: &str, index: usize) -> Self {
        NodeId {
            service: service.to_string(),
            index,
            kind: ProcessKind::Sentinel,
        }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ProcessKind::Data => write!(f, "{}-{}", self.service, self.index),
            ProcessKind::Sentinel => write!(f, "{}-sentinel-{}", self.service, self.index),
        }
    }
}

/// What the runtime needs to run one valkey-server process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    pub bind: IpAddr,
    pub port: u16,
    pub dir: PathBuf,
    /// The config file's contents.
    pub config_text: String,
    /// Password clients (and the readiness check) authenticate with.
    pub password: String,
    /// Runs `valkey-server --sentinel`, which keeps its own state in its config file: an
    /// existing file is kept on restart.
    pub sentinel: bool,
}

/// What to do when a write failed because the disk is full.
fn disk_full_hint(error: &std::io::Error) -> &'static str {
    if error.raw_os_error() == Some(nix::libc::ENOSPC) {
        "; the disk that holds data_dir is full: free space on it, then apply again"
    } else {
        ""
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{action} {path}: {source}{}", disk_full_hint(source))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not start valkey-server ({binary}) for node {node}: {source}")]
    Spawn {
        node: String,
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("node {node} exited during start-up; the end of its log says:\n{log_tail}")]
    ExitedDuringStart {
        node: String,
        log_tail: String,
        port_in_use: bool,
    },
    #[error("node {node} did not answer in time: {source}")]
    NotReady { node: String, source: ValkeyError },
    #[error("node {node} (pid {pid}) did not stop within {seconds} s, even after SIGKILL")]
    WouldNotStop { node: String, pid: i32, seconds: u64 },
    #[error(
        "the service record {path} is unreadable ({reason}); restore it from a backup, or, to start \
         that service over, stop its nodes, remove its directory and `terraform state rm` its resource"
    )]
    BadRecord { path: PathBuf, reason: String },
    #[error(
        "a service named {name:?} already exists in data_dir; choose another name, or bring it \
         under Terraform with `terraform import`"
    )]
    AlreadyExists { name: String },
    #[error(
        "primary service {primary:?} already has {max} read replicas ({}); a primary can have at most {max}",
        replicas.join(", ")
    )]
    ReplicaLimit {
        primary: String,
        replicas: Vec<String>,
        max: usize,
    },
    #[error(
        "service {name:?} still has read replicas ({}); destroy them first, or in the same run \
         (Terraform orders that when each replica's primary_service refers to this service)",
        replicas.join(", ")
    )]
    HasReplicas { name: String, replicas: Vec<String> },
    #[error("primary service {0:?} does not exist in data_dir")]
    PrimaryMissing(String),
    #[error("a create of {:?} was interrupted before it finished", .0.name)]
    InterruptedCreate(Box<ServiceRecord>),
    #[error("no free TCP port on {0}: {1}")]
    NoFreePort(IpAddr, std::io::Error),
}

/// Runs nodes and keeps each service's record (its desired shape and secrets).
#[tonic::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Directory a node keeps its config, data, pid file and log in.
    fn node_dir(&self, node: &NodeId) -> PathBuf;

    /// A TCP port nothing listens on at `bind` right now.
    fn free_port(&self, bind: IpAddr) -> Result<u16, RuntimeError>;

    /// Writes the process's config and starts it; returns once it answers PING.
    async fn start(&self, node: &NodeId, spec: &ProcessSpec) -> Result<(), RuntimeError>;

    /// Rewrites a process's config file, so its next start uses the new settings (a
    /// sentinel's existing file is kept).
    async fn write_config(&self, node: &NodeId, spec: &ProcessSpec) -> Result<(), RuntimeError>;

    /// Stops the node and removes its files.
    async fn remove_node(&self, node: &NodeId) -> Result<(), RuntimeError>;

    /// Stops the node, keeping its data. Stopping a stopped node is not an error.
    async fn stop(&self, node: &NodeId) -> Result<(), RuntimeError>;

    /// Whether the node's process is alive (it may still not answer).
    fn is_running(&self, node: &NodeId) -> bool;

    /// Writes the record of a new service; fails if one with that name exists (with
    /// `InterruptedCreate` when its creator process is gone) or, for a read
    /// replica, if its primary is missing or already has `max_replicas` replicas. Atomic
    /// across concurrent Terraform runs sharing the data_dir.
    async fn create_record(&self, record: &ServiceRecord, max_replicas: usize) -> Result<(), RuntimeError>;

    /// Names of the read replicas of managed primary `primary`, sorted.
    async fn replicas_of(&self, primary: &str) -> Result<Vec<String>, RuntimeError>;

    async fn save_record(&self, record: &ServiceRecord) -> Result<(), RuntimeError>;

    /// The record of a service, or None if no such service exists.
    async fn load_record(&self, name: &str) -> Result<Option<ServiceRecord>, RuntimeError>;

    /// Whether a service or read replica of that name exists, its create finished. A create
    /// still under way, or the leftover of one that was interrupted, does not count here:
    /// `create_record` tells them apart, atomically (a provider killed a moment ago may not
    /// have exited yet).
    async fn name_in_use(&self, name: &str) -> Result<bool, RuntimeError> {
        Ok(self.load_record(name).await?.is_some_and(|r| r.creating_pid.is_none()))
    }

    /// Stops every node of the service and removes its files and record; refuses while read
    /// replicas still replicate from it.
    async fn remove_service(&self, record: &ServiceRecord) -> Result<(), RuntimeError>;
}
