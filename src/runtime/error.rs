//! What can go wrong behind the boundary, and with a runtime's settings.

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
    /// Where something is kept or runs did not answer in time; it may be fine once it does.
    #[error("{what} did not answer: {detail}")]
    Unreachable { what: String, detail: String },
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// The endpoint of `service` (which clients know, so it does not move) is taken by
    /// something else; `free_it` says how to find and stop that.
    pub fn endpoint_taken(service: &str, at: &super::node::Endpoint, free_it: &str) -> Self {
        RuntimeError::EndpointTaken {
            node: service.to_string(),
            detail: format!(
                "another process listens on its endpoint {at}, taken while the node was down. {service} keeps its \
                 address, so its clients need no change: {free_it}, then apply again."
            ),
        }
    }
}

/// A problem with a provider setting: the attribute (and map key) it is at, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub attribute: &'static str,
    pub key: Option<String>,
    pub summary: String,
    pub detail: String,
}
