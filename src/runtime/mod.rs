//! Where nodes run: the boundary between the resources and the machines. Resources speak of
//! nodes, regions and endpoints; a runtime owns everything host-specific behind it (processes
//! or containers, ports, files, binaries, logs) and keeps the service records in its
//! [`RecordStore`]. A runtime is one folder: `local/` runs nodes as processes on this host. The
//! mapping of each call onto other runtimes is in docs/design/runtimes.md.

pub mod clouds;
pub mod local;
pub mod record;
pub mod store;

pub use record::{FailoverSettings, Lease, NodeRecord, SentinelRecord, ServiceRecord, Upstream, UserConfigValues};
pub use store::RecordStore;

/// A data node, or a Sentinel watching the service's replication group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Data,
    Sentinel,
}

/// One node of a service: data node `index`, or Sentinel `index`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    pub service: String,
    pub index: usize,
    pub kind: NodeKind,
}

impl NodeId {
    pub fn data(service: &str, index: usize) -> Self {
        NodeId {
            service: service.to_string(),
            index,
            kind: NodeKind::Data,
        }
    }

    pub fn sentinel(service: &str, index: usize) -> Self {
        NodeId {
            service: service.to_string(),
            index,
            kind: NodeKind::Sentinel,
        }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            NodeKind::Data => write!(f, "{}-{}", self.service, self.index),
            NodeKind::Sentinel => write!(f, "{}-sentinel-{}", self.service, self.index),
        }
    }
}

/// The address clients and the other nodes reach a node at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    /// A `host:port` text as an endpoint.
    pub fn parse(text: &str) -> Option<Endpoint> {
        let (host, port) = text.rsplit_once(':')?;
        Some(Endpoint::new(host, port.parse().ok()?))
    }

    /// As a `(host, port)` pair.
    pub fn pair(&self) -> (String, u16) {
        (self.host.clone(), self.port)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What a node runs with, whatever the runtime: its config directives (the runtime adds those
/// that depend on where it runs: address, port, announced address, paths) and the `default`
/// user's password, with which the runtime checks it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub settings: String,
    pub password: String,
}

/// What a runtime sees of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Its process or container runs (it may still not answer).
    Running,
    /// Placed and perhaps configured, not running.
    Stopped,
}

/// The regions a cloud offers, in the order users see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionNames {
    pub cloud: String,
    pub names: Vec<String>,
}

impl RegionNames {
    /// Ok when the cloud offers `region`; else a message listing the choices.
    pub fn check(&self, region: &str) -> Result<(), String> {
        if self.names.iter().any(|n| n == region) {
            return Ok(());
        }
        let choices: Vec<String> = self.names.iter().map(|n| format!("{n:?}")).collect();
        Err(format!(
            "unknown region {region:?} in cloud {:?}; choose one of {}",
            self.cloud,
            choices.join(", ")
        ))
    }
}

/// What can go wrong running nodes or keeping records. Each message says what to do; only a
/// runtime that works on this host (`local`) names host paths in them.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file or directory operation failed; `hint` says what to do about it.
    #[error("{action} {path}: {source}{hint}")]
    Io {
        action: &'static str,
        path: String,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("could not start node {node}: {detail}")]
    Start { node: String, detail: String },
    #[error("node {node} exited during start-up; {detail}")]
    ExitedDuringStart { node: String, detail: String },
    #[error("node {node} did not answer in time: {detail}")]
    NotReady { node: String, detail: String },
    #[error("node {node} did not stop: {detail}")]
    WouldNotStop { node: String, detail: String },
    /// A node that must keep its endpoint (clients know it) could not have it back.
    #[error("{node} could not start: {detail}")]
    EndpointTaken { node: String, detail: String },
    /// No node can be placed in the region.
    #[error("{detail}")]
    CannotPlace { region: String, detail: String },
    #[error(
        "the service record {location} is unreadable ({reason}); restore it from a backup, or, to start that \
         service over, {start_over}"
    )]
    BadRecord {
        location: String,
        reason: String,
        start_over: String,
    },
    #[error("{0}")]
    Other(String),
}

/// Places, runs and observes nodes, and keeps the service records. Every call may be
/// cancelled by dropping its future (Terraform's stop request does): what it left half-done is
/// finished or undone by the next call on the same node.
#[tonic::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The regions nodes can be placed in.
    fn regions(&self) -> RegionNames;

    /// Where the records are kept, for messages (`data_dir /path` for local).
    fn location(&self) -> String;

    /// Where a user reads a node's log, for messages.
    fn log_location(&self, node: &NodeId) -> String;

    /// The records of the services this runtime runs.
    fn store(&self) -> &dyn RecordStore;

    /// The owner name for create leases taken by this provider process.
    fn lease_owner(&self) -> String;

    /// Whether the holder of a create lease is known to be gone before its lease expires (a
    /// local provider process that no longer runs). False when the runtime cannot tell.
    fn lease_holder_gone(&self, _owner: &str) -> bool {
        false
    }

    /// Chooses where a new node of `node.service` in `region` runs and returns its endpoint.
    /// Nothing runs yet.
    async fn place(&self, node: &NodeId, region: &str) -> Result<Endpoint, RuntimeError>;

    /// Records what the node at `at` runs with at its next start; a Sentinel keeps the config
    /// it already has (it writes what it learns into it).
    async fn configure(&self, node: &NodeId, at: &Endpoint, spec: &NodeSpec) -> Result<(), RuntimeError>;

    /// Configures and starts the node; returns once it answers, with the endpoint it answers
    /// at. When `at` was taken meanwhile, a node that is not `pinned` moves to a new endpoint
    /// in the same region (the caller records it); a pinned one fails with `EndpointTaken`.
    async fn start(
        &self,
        node: &NodeId,
        at: &Endpoint,
        spec: &NodeSpec,
        pinned: bool,
    ) -> Result<Endpoint, RuntimeError>;

    /// Stops the node keeping its data (saved first, when persistence is on). Stopping a
    /// stopped node is not an error.
    async fn stop(&self, node: &NodeId) -> Result<(), RuntimeError>;

    /// Stops the node without saving and deletes it with its data.
    async fn remove(&self, node: &NodeId) -> Result<(), RuntimeError>;

    /// Whether the node runs.
    async fn state(&self, node: &NodeId) -> NodeState;
}
