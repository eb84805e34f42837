//! What the nodes of a record really are: each node's role, link, offset and settings, read
//! concurrently, and how they sum up in state.

use std::collections::HashMap;
use std::time::Duration;

use tokio::task::JoinSet;

use super::common_model::{EndpointModel, NodeModel, VersionTagsModel};
use super::user_config::DRIFT_SETTINGS;
use super::{Context, certificates};
use crate::runtime::{Endpoint, NodeId, NodeState, ServiceRecord};
use crate::tfplug::{Diagnostic, Diagnostics};
use crate::valkey::{NodeClient, TlsIdentity, WRITE_BOUND_SETTINGS};

/// What one node really is right now.
#[derive(Debug, Default, Clone)]
pub struct NodeStatus {
    pub running: bool,
    /// Whether the node could not be found out about (its host or engine did not answer): it
    /// may run or not.
    pub unreachable: bool,
    pub role: Option<&'static str>,
    pub settings: HashMap<String, String>,
    /// For a replicating node: whether its link to its primary is up.
    pub link_up: bool,
    /// master_repl_offset on a primary, slave_repl_offset on a replica.
    pub offset: Option<i64>,
    /// For a replica: the primary it follows.
    pub primary_addr: Option<(String, u16)>,
    /// The Valkey version it runs.
    pub version: Option<String>,
}

async fn observe_node(at: Endpoint, password: String, tls: Option<TlsIdentity>, state: NodeState) -> NodeStatus {
    match state {
        NodeState::Running => {}
        NodeState::Stopped => return NodeStatus::default(),
        NodeState::Unreachable => {
            return NodeStatus {
                unreachable: true,
                ..Default::default()
            };
        }
    }
    let mut status = NodeStatus {
        running: true,
        ..Default::default()
    };
    if let Ok(mut client) =
        NodeClient::connect(&at.host, at.port, &password, tls.as_ref(), Duration::from_secs(2)).await
        && let Ok((info, settings)) = client.replication_and_settings(&observed_settings()).await
    {
        status.role = info.role();
        status.link_up = info.primary_link_up();
        status.offset = match status.role {
            Some("replica") => info.get_i64("slave_repl_offset"),
            _ => info.get_i64("master_repl_offset"),
        };
        status.primary_addr = match (
            info.get("master_host"),
            info.get("master_port").and_then(|p| p.parse().ok()),
        ) {
            (Some(h), Some(p)) => Some((h.to_string(), p)),
            _ => None,
        };
        status.settings = settings;
        status.version = info.get("valkey_version").map(str::to_string);
    }
    status
}

/// The settings read from each node: the user config's, and the group's write bound.
fn observed_settings() -> Vec<&'static str> {
    DRIFT_SETTINGS.iter().chain(&WRITE_BOUND_SETTINGS).copied().collect()
}

/// Reads every node concurrently, one round trip each.
pub async fn observe(ctx: &Context, record: &ServiceRecord) -> Vec<NodeStatus> {
    let mut set = JoinSet::new();
    for (position, node) in record.nodes.iter().enumerate() {
        let (runtime, id) = (ctx.runtime.clone(), NodeId::data(&record.name, node.index));
        let (at, password, tls) = (
            node.endpoint(),
            record.password.clone(),
            certificates::client_identity(record),
        );
        set.spawn(async move {
            let state = runtime.state(&id).await;
            (position, observe_node(at, password, tls, state).await)
        });
    }
    let mut statuses = vec![NodeStatus::default(); record.nodes.len()];
    while let Some(Ok((position, status))) = set.join_next().await {
        statuses[position] = status;
    }
    statuses
}

/// The settings of every node that answered, for drift detection.
pub fn reported_settings(statuses: &[NodeStatus]) -> Vec<&HashMap<String, String>> {
    statuses.iter().filter(|s| s.running).map(|s| &s.settings).collect()
}

/// `RUNNING` when every node answers, `POWEROFF` when none runs, `DEGRADED` in between
/// (and while some node cannot be reached).
pub fn overall_state(statuses: &[NodeStatus]) -> &'static str {
    let unreachable = statuses.iter().any(|s| s.unreachable);
    match statuses.iter().filter(|s| s.running).count() {
        0 if !unreachable => "POWEROFF",
        n if n == statuses.len() && statuses.iter().all(|s| s.role.is_some()) => "RUNNING",
        _ => "DEGRADED",
    }
}

/// The version the first node that answers runs (else the prior one), and the record's tags
/// (none when the record has none and the configuration sets none).
pub fn about(record: &ServiceRecord, statuses: &[NodeStatus], prior: &VersionTagsModel) -> VersionTagsModel {
    let tags = match (&prior.tags, record.tags.is_empty()) {
        (None, true) => None,
        _ => Some(record.tags.clone()),
    };
    VersionTagsModel {
        valkey_version: statuses
            .iter()
            .find_map(|s| s.version.clone())
            .or_else(|| prior.valkey_version.clone()),
        tags,
    }
}

/// Whether the nodes run, for `powered`: a node that cannot be reached is not known to be
/// stopped, so it does not turn `powered` false (a plan would then start what it cannot reach);
/// when no node can be reached, `powered` stays as it was.
pub fn powered(statuses: &[NodeStatus], was: Option<bool>) -> bool {
    let known: Vec<&NodeStatus> = statuses.iter().filter(|s| !s.unreachable).collect();
    if known.is_empty() && !statuses.is_empty() {
        return was.unwrap_or(true);
    }
    !known.is_empty() && known.iter().all(|s| s.running)
}

/// A warning naming the nodes that could not be reached, if any.
pub fn unreachable_warning(record: &ServiceRecord, statuses: &[NodeStatus]) -> Diagnostics {
    let lost: Vec<String> = record
        .nodes
        .iter()
        .zip(statuses)
        .filter(|(_, s)| s.unreachable)
        .map(|(n, _)| format!("{}-{} at {}", record.name, n.index, n.endpoint()))
        .collect();
    if lost.is_empty() {
        return Diagnostics::new();
    }
    Diagnostic::warning(
        format!("Some nodes of {} could not be reached", record.name),
        format!(
            "{} could not be reached: the host or its engine did not answer (the provider log says which). \
             Their state shows \"unreachable\"; a failover may meanwhile have moved the primary. When the host \
             is back, refresh again, and apply to start any node that stopped as a replica.",
            lost.join(", ")
        ),
    )
    .into()
}

pub fn node_models(record: &ServiceRecord, statuses: &[NodeStatus]) -> Vec<NodeModel> {
    record
        .nodes
        .iter()
        .zip(statuses)
        .map(|(n, s)| NodeModel {
            name: format!("{}-{}", record.name, n.index),
            host: n.host.clone(),
            port: i64::from(n.port),
            role: s.role.unwrap_or("unknown").to_string(),
            state: match (s.running, s.unreachable) {
                (true, _) => "running",
                (false, true) => "unreachable",
                (false, false) => "stopped",
            }
            .to_string(),
            replicates_from: replicates_from(s),
        })
        .collect()
}

/// `host:port` a node replicates from, as it reports it; empty for a primary or a silent node.
pub fn replicates_from(status: &NodeStatus) -> String {
    match (&status.primary_addr, status.role) {
        (Some((host, port)), Some("replica")) => format!("{host}:{port}"),
        _ => String::new(),
    }
}

/// How clients reach the record's first node.
pub fn endpoint(record: &ServiceRecord) -> EndpointModel {
    let at = record.endpoint().unwrap_or_else(|| Endpoint::new("", 0));
    EndpointModel {
        host: Some(at.host.clone()),
        port: Some(i64::from(at.port)),
        // A default password given write-only shows nowhere in state.
        password: Some(if record.password_write_only {
            String::new()
        } else {
            record.password.clone()
        }),
        service_uri: Some(match record.password_write_only {
            true => format!("{}://{at}", uri_scheme(record)),
            false => format!("{}://default:{}@{at}", uri_scheme(record), record.password),
        }),
        ca_certificate: Some(record.tls.as_ref().map(|t| t.ca.cert.clone()).unwrap_or_default()),
        certificate_expires_at: Some(
            certificates::earliest_end(record)
                .map(certificates::rfc3339)
                .unwrap_or_default(),
        ),
    }
}

/// `valkeys` for a group that speaks TLS, `valkey` otherwise.
fn uri_scheme(record: &ServiceRecord) -> &'static str {
    if record.tls.is_some() { "valkeys" } else { "valkey" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_summarises_node_liveness() {
        let up = NodeStatus {
            running: true,
            role: Some("primary"),
            ..Default::default()
        };
        let down = NodeStatus::default();
        assert_eq!(overall_state(&[up.clone(), up.clone()]), "RUNNING");
        assert_eq!(overall_state(&[up.clone(), down.clone()]), "DEGRADED");
        assert_eq!(overall_state(std::slice::from_ref(&down)), "POWEROFF");
        assert!(!powered(&[up, down], Some(true)));
    }

    #[test]
    fn an_unreachable_node_is_not_a_stopped_one() {
        let up = NodeStatus {
            running: true,
            role: Some("primary"),
            ..Default::default()
        };
        let lost = NodeStatus {
            unreachable: true,
            ..Default::default()
        };
        assert_eq!(overall_state(&[up.clone(), lost.clone()]), "DEGRADED");
        assert_eq!(overall_state(std::slice::from_ref(&lost)), "DEGRADED");
        assert!(powered(&[up, lost.clone()], Some(false)));
        assert!(!powered(std::slice::from_ref(&lost), Some(false)));
        assert!(powered(&[lost], None));
    }
}
