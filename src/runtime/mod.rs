//! Where nodes run: the boundary between the resources and the machines. Resources speak of
//! nodes, regions and endpoints; a runtime owns everything host-specific behind it (processes
//! or containers, ports, files, binaries, logs) and keeps the service records in its
//! [`RecordStore`]. A runtime is one folder: `local/` runs nodes as processes on this host. The
//! mapping of each call onto other runtimes is in docs/design/runtimes.md.

pub mod clouds;
pub mod docker;
pub mod error;
pub mod local;
pub mod node;
pub mod procfs;
pub mod record;
pub mod store;

pub use error::{RuntimeError, SettingError};
pub use node::{Endpoint, NodeId, NodeKind, NodeSpec, NodeState, RegionNames};
pub use record::{
    AclUserRecord, CertRecord, FailoverSettings, GroupTls, Lease, NodeRecord, SentinelRecord, ServiceRecord, Upstream,
    UserConfigValues,
};
pub use store::RecordStore;

/// What a runtime answers when asked whether its valkey-server can do something, from a probe
/// it ran once: Ok when it can, `refusal` (what to do about it) when it cannot, the probe's
/// own failure when it could not run.
pub fn probe_verdict(probed: &Result<bool, String>, refusal: impl FnOnce() -> String) -> Result<(), String> {
    match probed {
        Ok(true) => Ok(()),
        Ok(false) => Err(refusal()),
        Err(e) => Err(e.clone()),
    }
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

    /// Ok when the nodes this runtime runs can speak TLS; else what to do about it. Ok too when
    /// the runtime cannot tell before a node starts (a start then fails with the node's log).
    async fn check_tls(&self) -> Result<(), String> {
        Ok(())
    }

    /// Ok when the nodes this runtime runs can defragment (a jemalloc build); else what to do
    /// about it. Ok too when the runtime cannot tell before a node starts.
    async fn check_active_defrag(&self) -> Result<(), String> {
        Ok(())
    }

    /// Chooses where a new node of `node.service` in `region` runs and returns its endpoint.
    /// Nothing runs yet.
    async fn place(&self, node: &NodeId, region: &str) -> Result<Endpoint, RuntimeError>;

    /// Places Sentinel `node` as the `nth` of its group's Sentinels in `region`. A runtime with
    /// several hosts per region spreads them from the host after the one its first data node
    /// is on, so that losing the primary's host leaves the most Sentinels standing.
    async fn place_sentinel(&self, node: &NodeId, region: &str, _nth: usize) -> Result<Endpoint, RuntimeError> {
        self.place(node, region).await
    }

    /// How many hosts `region` has: what the loss of one host takes from a group there.
    fn hosts_in(&self, _region: &str) -> usize {
        1
    }

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

    /// What the node's valkey-server logged since the node was created (across restarts), for
    /// what only its log tells, such as how many full syncs a replica took; None when it
    /// cannot be read now.
    async fn node_log(&self, node: &NodeId) -> Option<String>;

    /// Whether the node runs, or `Unreachable` when the runtime cannot find out within a few
    /// seconds (a host or engine that does not answer): refresh must not hang on a lost host.
    async fn state(&self, node: &NodeId) -> NodeState;
}
