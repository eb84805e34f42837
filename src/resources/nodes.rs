//! The node engine both resources share: turning a service record into node configs, starting
//! nodes, waiting for replication links, reading what nodes really are, and reconciling them.

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::common_model::{EndpointModel, NodeModel, TimeoutsModel, UserConfigModel};
use super::{Context, error};
use super::{failover, validate};
use crate::catalog;
use crate::runtime::{NodeId, RuntimeError, ServiceRecord, Upstream, UserConfigValues};
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics};
use crate::valkey::{NodeClient, NodeConfig, REPLICATION_USER, UpstreamAuth};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How often a start is retried when the chosen port was taken in the meantime.
const PORT_RETRIES: usize = 3;
/// Longest wait for a replication link and its initial sync.
const LINK_TIMEOUT: Duration = Duration::from_secs(300);
/// The settings read back from nodes for drift detection.
const SETTINGS: &[&str] = &["maxmemory-policy", "timeout", "save", "io-threads", "repl-timeout"];

pub fn generate_secret() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The secrets a replication group shares: every member has the same ones.
pub struct GroupSecrets {
    pub password: String,
    pub replication_password: String,
    pub sentinel_password: String,
    pub sentinel_auth_password: String,
}

impl GroupSecrets {
    /// Fresh secrets, for a new group.
    pub fn generate() -> Self {
        GroupSecrets {
            password: generate_secret(),
            replication_password: generate_secret(),
            sentinel_password: generate_secret(),
            sentinel_auth_password: generate_secret(),
        }
    }

    /// The secrets of the group `record` belongs to.
    pub fn of(record: ServiceRecord) -> Self {
        GroupSecrets {
            password: record.password,
            replication_password: record.replication_password,
            sentinel_password: record.sentinel_password,
            sentinel_auth_password: record.sentinel_auth_password,
        }
    }
}

/// The settings a user config asks for, defaults filled in.
pub fn effective_user_config(model: Option<&UserConfigModel>) -> UserConfigValues {
    let d = UserConfigValues::default();
    let Some(m) = model else { return d };
    UserConfigValues {
        maxmemory_policy: m.maxmemory_policy.clone().unwrap_or(d.maxmemory_policy),
        timeout: m.timeout.unwrap_or(d.timeout),
        persistence: m.persistence.clone().unwrap_or(d.persistence),
        io_threads: m.io_threads.unwrap_or(d.io_threads),
        repl_timeout: m.repl_timeout.unwrap_or(d.repl_timeout),
    }
}

/// A record's user config as the model's block.
pub fn user_config_model(values: &UserConfigValues) -> UserConfigModel {
    UserConfigModel {
        maxmemory_policy: Some(values.maxmemory_policy.clone()),
        timeout: Some(values.timeout),
        persistence: Some(values.persistence.clone()),
        io_threads: Some(values.io_threads),
        repl_timeout: Some(values.repl_timeout),
    }
}

/// The block an import puts in state: absent when every setting is at its default, so a
/// configuration without the block plans no change after an import.
pub fn imported_user_config(values: &UserConfigValues) -> Option<UserConfigModel> {
    (*values != UserConfigValues::default()).then(|| user_config_model(values))
}

pub fn node_id(record: &ServiceRecord, index: usize) -> NodeId {
    NodeId::data(&record.name, index)
}

/// Where the record's node 0 replicates from when no Sentinel says otherwise: nowhere on a
/// primary service, its primary on a read replica.
pub async fn static_upstream(ctx: &Context, record: &ServiceRecord) -> Result<Option<UpstreamAuth>, Diagnostics> {
    match &record.upstream {
        None => Ok(None),
        Some(Upstream::External {
            host,
            port,
            user,
            password,
        }) => Ok(Some(UpstreamAuth {
            host: host.clone(),
            port: *port,
            user: user.clone(),
            password: password.clone(),
        })),
        Some(Upstream::Service { name }) => {
            let primary = ctx
                .runtime
                .load_record(name)
                .await
                .map_err(|e| error("Could not read the primary's record", e))?
                .ok_or_else(|| {
                    error(
                        "Primary service not found",
                        format!("primary service {name:?} no longer exists in data_dir"),
                    )
                })?;
            let port = primary
                .nodes
                .first()
                .map(|n| n.port)
                .ok_or_else(|| error("Primary has no nodes", name))?;
            Ok(Some(UpstreamAuth {
                host: primary.bind.to_string(),
                port,
                user: REPLICATION_USER.to_string(),
                password: primary.replication_password.clone(),
            }))
        }
    }
}

/// Where each node of the record should replicate from, by position in `record.nodes`. While
/// Sentinels watch the group, every node follows the primary they report (and the node they
/// report replicates from nowhere); otherwise node 0 follows its static upstream and the
/// others follow node 0.
pub async fn desired_upstreams(
    ctx: &Context,
    record: &ServiceRecord,
) -> Result<Vec<Option<UpstreamAuth>>, Diagnostics> {
    let sentinel_primary = failover::sentinel_upstream(ctx, record).await?;
    let first = static_upstream(ctx, record).await?;
    let first_port = record.nodes.first().map(|n| n.port).unwrap_or(0);
    Ok(record
        .nodes
        .iter()
        .map(|n| match &sentinel_primary {
            Some(p) if p.host == record.bind.to_string() && p.port == n.port => None,
            Some(p) => Some(p.clone()),
            None if n.index == 0 => first.clone(),
            None => Some(UpstreamAuth {
                host: record.bind.to_string(),
                port: first_port,
                user: REPLICATION_USER.to_string(),
                password: record.replication_password.clone(),
            }),
        })
        .collect())
}

/// The config of node `index`, replicating from `upstream`.
pub fn node_config(
    ctx: &Context,
    record: &ServiceRecord,
    index: usize,
    upstream: Option<UpstreamAuth>,
) -> Result<NodeConfig, String> {
    let plan = catalog::plan(&record.plan)?;
    let port = record
        .nodes
        .iter()
        .find(|n| n.index == index)
        .map(|n| n.port)
        .ok_or("no such node")?;
    let uc = &record.user_config;
    Ok(NodeConfig {
        bind: record.bind,
        port,
        dir: ctx.runtime.node_dir(&node_id(record, index)),
        password: record.password.clone(),
        replication_password: record.replication_password.clone(),
        sentinel_auth_password: record.sentinel_auth_password.clone(),
        maxmemory_bytes: plan.memory_bytes,
        maxmemory_policy: uc.maxmemory_policy.clone(),
        timeout_seconds: uc.timeout,
        persistence: uc.persistence.clone(),
        io_threads: uc.io_threads,
        repl_timeout_seconds: uc.repl_timeout,
        upstream,
        replica_priority: record.failover_priority,
    })
}

/// Every node's config, in `record.nodes` order, each with its desired upstream.
async fn configs(ctx: &Context, record: &ServiceRecord) -> Result<Vec<NodeConfig>, Diagnostics> {
    let upstreams = desired_upstreams(ctx, record).await?;
    record
        .nodes
        .iter()
        .zip(upstreams)
        .map(|(n, up)| node_config(ctx, record, n.index, up).map_err(|e| error("Invalid service record", e)))
        .collect()
}

/// Starts the given nodes in parallel; a node whose port was taken meanwhile gets a new port,
/// except the endpoint's node of a service that exists (`keep_endpoint`): clients know that
/// address, so moving it would send them elsewhere; that is an error to resolve instead.
pub async fn start_nodes(
    ctx: &Context,
    record: &mut ServiceRecord,
    indices: &[usize],
    keep_endpoint: bool,
) -> Result<(), Diagnostics> {
    if indices.is_empty() {
        return Ok(());
    }
    let mut pending: Vec<usize> = indices.to_vec();
    for attempt in 0..=PORT_RETRIES {
        let all = configs(ctx, record).await?;
        let mut set = JoinSet::new();
        for (node, config) in record.nodes.iter().zip(all) {
            if !pending.contains(&node.index) {
                continue;
            }
            let (runtime, id, index) = (ctx.runtime.clone(), node_id(record, node.index), node.index);
            set.spawn(async move { (index, runtime.start(&id, &config.process_spec()).await) });
        }
        let mut retry = Vec::new();
        let mut diagnostics = Diagnostics::new();
        let endpoint_index = record.nodes.first().map(|n| n.index);
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((index, Err(RuntimeError::ExitedDuringStart { port_in_use: true, .. })))
                    if keep_endpoint && Some(index) == endpoint_index =>
                {
                    diagnostics.extend(endpoint_port_taken(record))
                }
                Ok((index, Err(RuntimeError::ExitedDuringStart { port_in_use: true, .. })))
                    if attempt < PORT_RETRIES =>
                {
                    retry.push(index)
                }
                Ok((_, Err(e))) => diagnostics.extend(error("Could not start a Valkey node", e)),
                Err(e) => diagnostics.extend(error("Could not start a Valkey node", e)),
            }
        }
        if diagnostics.has_errors() {
            return Err(diagnostics);
        }
        if retry.is_empty() {
            return if attempt == 0 {
                Ok(())
            } else {
                relink_started(ctx, record, indices).await
            };
        }
        for &index in &retry {
            let port = ctx
                .runtime
                .free_port(record.bind)
                .map_err(|e| error("No free port", e))?;
            if let Some(node) = record.nodes.iter_mut().find(|n| n.index == index) {
                node.port = port;
            }
        }
        ctx.runtime
            .save_record(record)
            .await
            .map_err(|e| error("Could not save the service record", e))?;
        pending = retry;
    }
    Ok(())
}

/// A connection to the node a config describes, as the default user.
async fn connect_node(config: &NodeConfig) -> Result<NodeClient, Diagnostics> {
    NodeClient::connect(
        &config.bind.to_string(),
        config.port,
        &config.password,
        Duration::from_secs(5),
    )
    .await
    .map_err(|e| error("Node unreachable", e))
}

/// After a node had to move to another port, the nodes started before it replicate from its
/// old port, where another process may listen now: point each at its upstream as it is now
/// (config file and running node alike).
async fn relink_started(ctx: &Context, record: &ServiceRecord, started: &[usize]) -> Result<(), Diagnostics> {
    for config in configs(ctx, record).await? {
        let index = record.nodes.iter().find(|n| n.port == config.port).map(|n| n.index);
        let (Some(index), Some(up)) = (index, &config.upstream) else {
            continue;
        };
        if !started.contains(&index) {
            continue;
        }
        ctx.runtime
            .write_config(&node_id(record, index), &config.process_spec())
            .await
            .map_err(|e| error("Could not write a node's config", e))?;
        let mut client = connect_node(&config).await?;
        client
            .replicate(Some((&up.host, up.port, &up.user, &up.password)))
            .await
            .map_err(|e| error("Could not re-link a replica", e))?;
    }
    Ok(())
}

fn endpoint_port_taken(record: &ServiceRecord) -> Diagnostics {
    let port = record.nodes.first().map_or(0, |n| n.port);
    error(
        "The endpoint's port is taken",
        format!(
            "{name} could not start: another process listens on its endpoint {bind}:{port}, taken while the node \
             was down. {name} keeps its address, so its clients need no change: stop that process (`ss -ltnp \
             'sport = :{port}'` shows it), then apply again.",
            name = record.name,
            bind = record.bind,
        ),
    )
}

/// A free port on a region's address, or an error that points at the region when this machine
/// cannot listen there at all.
pub fn port_in_region(ctx: &Context, bind: std::net::IpAddr, region: &str) -> Result<u16, Diagnostics> {
    ctx.runtime.free_port(bind).map_err(|e| {
        Diagnostic::error(
            "Cannot listen in this region",
            format!(
                "{e}. Region {region:?} maps to {bind}, which this machine cannot listen on; \
                 use an address of this machine (loopback, or a network namespace you manage) in the provider's regions."
            ),
        )
        .at(AttrPath::root("region"))
        .into()
    })
}

/// Records a new service or replica. The leftover of a create that was interrupted (its
/// provider process killed) is removed first, so the next apply converges.
pub async fn create_record(ctx: &Context, record: &ServiceRecord) -> Result<(), RuntimeError> {
    match ctx.runtime.create_record(record, catalog::MAX_READ_REPLICAS).await {
        Err(RuntimeError::InterruptedCreate(stale)) => {
            tracing::warn!(name = %stale.name, "removing the leftover of an interrupted create");
            ctx.runtime.remove_service(&stale).await?;
            ctx.runtime.create_record(record, catalog::MAX_READ_REPLICAS).await
        }
        other => other,
    }
}

/// Marks a create as finished, whether its nodes started or not: from here on Terraform
/// tracks the resource (as tainted when the create failed).
pub async fn finish_create(ctx: &Context, record: &mut ServiceRecord) -> Result<(), Diagnostics> {
    record.creating_pid = None;
    ctx.runtime
        .save_record(record)
        .await
        .map_err(|e| error("Could not save the record", e))
}

/// Starts every node of a newly recorded service (unless it is created powered off) and waits
/// for its replication links.
pub async fn start_new(ctx: &Context, record: &mut ServiceRecord, powered: bool) -> Result<(), Diagnostics> {
    if !powered {
        return Ok(());
    }
    let indices: Vec<usize> = record.nodes.iter().map(|n| n.index).collect();
    start_nodes(ctx, record, &indices, false).await?;
    wait_linked(ctx, record).await
}

/// The record of an existing resource; an error when it vanished.
pub async fn load_existing(ctx: &Context, name: &str, kind: &str) -> Result<ServiceRecord, Diagnostics> {
    ctx.runtime
        .load_record(name)
        .await
        .map_err(|e| error(&format!("Could not read the {kind}'s record"), e))?
        .ok_or_else(|| {
            error(
                &format!("The {kind} was not found"),
                format!("{kind} {name:?} no longer exists in data_dir; apply again to recreate it"),
            )
        })
}

/// Stops and removes a resource's nodes and record; a resource already gone is not an error.
pub async fn remove(ctx: &Context, name: &str, kind: &str) -> Result<(), Diagnostics> {
    match ctx.runtime.load_record(name).await {
        Ok(Some(record)) => ctx
            .runtime
            .remove_service(&record)
            .await
            .map_err(|e| error(&format!("Could not delete the {kind}"), e)),
        Ok(None) => Ok(()),
        Err(e) => Err(error(&format!("Could not read the {kind}'s record"), e)),
    }
}

/// Waits until every node that should replicate (see `desired_upstreams`: standbys, read
/// replicas, a former primary after a failover) has its link up and its initial sync done.
/// Nodes that follow a primary powered off on purpose (in another member) are not waited for:
/// their link comes up when that primary is powered on.
pub async fn wait_linked(ctx: &Context, record: &ServiceRecord) -> Result<(), Diagnostics> {
    let host = record.bind.to_string();
    let upstreams = desired_upstreams(ctx, record).await?;
    let powered_off_primary = failover::suspended_primary(ctx, record)
        .await
        .filter(|addr| !record.node_addresses().contains(addr));
    let replicating = record
        .nodes
        .iter()
        .zip(upstreams)
        .filter(|(_, up)| {
            up.as_ref()
                .is_some_and(|up| powered_off_primary.as_deref() != Some(format!("{}:{}", up.host, up.port).as_str()))
        })
        .map(|(n, _)| n);
    let mut waits = JoinSet::new();
    for node in replicating {
        let (host, port, password) = (host.clone(), node.port, record.password.clone());
        let name = format!("{}-{}", record.name, node.index);
        waits.spawn(async move {
            let mut client = NodeClient::connect(&host, port, &password, Duration::from_secs(5))
                .await
                .map_err(|e| error("Replicating node unreachable", e))?;
            let deadline = tokio::time::Instant::now() + LINK_TIMEOUT;
            loop {
                let info = client
                    .info(&["replication"])
                    .await
                    .map_err(|e| error("Replicating node unreachable", e))?;
                if info.primary_link_up() && info.get("master_sync_in_progress") == Some("0") {
                    return Ok(());
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(error(
                        "Replication did not start",
                        format!(
                            "node {name} had no working replication link after {LINK_TIMEOUT:?}; see its valkey.log"
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    }
    while let Some(joined) = waits.join_next().await {
        joined.map_err(|e| error("Replication wait failed", e))??;
    }
    Ok(())
}

/// What one node really is right now.
#[derive(Debug, Default, Clone)]
pub struct NodeStatus {
    pub running: bool,
    pub role: Option<&'static str>,
    pub settings: HashMap<String, String>,
    /// For a replicating node: whether its link to its primary is up.
    pub link_up: bool,
    /// master_repl_offset on a primary, slave_repl_offset on a replica.
    pub offset: Option<i64>,
    /// For a replica: the primary it follows.
    pub primary_addr: Option<(String, u16)>,
}

async fn observe_node(host: String, port: u16, password: String, running: bool) -> NodeStatus {
    if !running {
        return NodeStatus::default();
    }
    let mut status = NodeStatus {
        running: true,
        ..Default::default()
    };
    if let Ok(mut client) = NodeClient::connect(&host, port, &password, Duration::from_secs(2)).await
        && let Ok((info, settings)) = client.replication_and_settings(SETTINGS).await
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
    }
    status
}

/// Reads every node concurrently, one round trip each.
pub async fn observe(ctx: &Context, record: &ServiceRecord) -> Vec<NodeStatus> {
    let mut set = JoinSet::new();
    for (position, node) in record.nodes.iter().enumerate() {
        let running = ctx.runtime.is_running(&node_id(record, node.index));
        let fut = observe_node(record.bind.to_string(), node.port, record.password.clone(), running);
        set.spawn(async move { (position, fut.await) });
    }
    let mut statuses = vec![NodeStatus::default(); record.nodes.len()];
    while let Some(Ok((position, status))) = set.join_next().await {
        statuses[position] = status;
    }
    statuses
}

/// The user config a node reports, for drift detection.
pub fn live_user_config(settings: &HashMap<String, String>, fallback: &UserConfigModel) -> UserConfigModel {
    let get = |k: &str| settings.get(k).cloned();
    UserConfigModel {
        maxmemory_policy: get("maxmemory-policy").or_else(|| fallback.maxmemory_policy.clone()),
        timeout: get("timeout").and_then(|t| t.parse().ok()).or(fallback.timeout),
        persistence: get("save")
            .map(|s| {
                if s.trim().is_empty() {
                    "off".to_string()
                } else {
                    "rdb".to_string()
                }
            })
            .or_else(|| fallback.persistence.clone()),
        io_threads: get("io-threads").and_then(|t| t.parse().ok()).or(fallback.io_threads),
        repl_timeout: get("repl-timeout")
            .and_then(|t| t.parse().ok())
            .or(fallback.repl_timeout),
    }
}

/// The declared user config block, overlaid with what the nodes report: the first node that
/// answers with a setting other than the declared one shows it (a standby changed out of band
/// is drift as much as the first node).
pub fn observed_user_config(declared: Option<&UserConfigModel>, statuses: &[NodeStatus]) -> Option<UserConfigModel> {
    let declared = declared?;
    let drifted = statuses
        .iter()
        .filter(|s| s.running && !s.settings.is_empty())
        .map(|s| live_user_config(&s.settings, declared))
        .find(|live| live != declared);
    Some(drifted.unwrap_or_else(|| declared.clone()))
}

/// `RUNNING` when every node answers, `POWEROFF` when none runs, `DEGRADED` in between.
pub fn overall_state(statuses: &[NodeStatus]) -> &'static str {
    match statuses.iter().filter(|s| s.running).count() {
        0 => "POWEROFF",
        n if n == statuses.len() && statuses.iter().all(|s| s.role.is_some()) => "RUNNING",
        _ => "DEGRADED",
    }
}

pub fn all_running(statuses: &[NodeStatus]) -> bool {
    !statuses.is_empty() && statuses.iter().all(|s| s.running)
}

pub fn node_models(record: &ServiceRecord, statuses: &[NodeStatus]) -> Vec<NodeModel> {
    record
        .nodes
        .iter()
        .zip(statuses)
        .map(|(n, s)| NodeModel {
            name: format!("{}-{}", record.name, n.index),
            host: record.bind.to_string(),
            port: i64::from(n.port),
            role: s.role.unwrap_or("unknown").to_string(),
            state: if s.running { "running" } else { "stopped" }.to_string(),
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
    let port = record.nodes.first().map_or(0, |n| n.port);
    EndpointModel {
        host: Some(record.bind.to_string()),
        port: Some(i64::from(port)),
        password: Some(record.password.clone()),
        service_uri: Some(format!("valkey://default:{}@{}:{port}", record.password, record.bind)),
    }
}

/// Brings running nodes in line with the record: config files rewritten, settings applied
/// with CONFIG SET, nodes restarted where a setting needs it, stopped nodes started. With
/// `powered` false, stops every node instead.
pub async fn reconcile(ctx: &Context, record: &mut ServiceRecord, powered: bool) -> Result<(), Diagnostics> {
    if !powered {
        for node in &record.nodes {
            ctx.runtime
                .stop(&node_id(record, node.index))
                .await
                .map_err(|e| error("Could not stop a node", e))?;
        }
        return Ok(());
    }
    let configs = configs(ctx, record).await?;
    let statuses = observe(ctx, record).await;
    let group_watched = failover::group_primary_record(ctx, record)
        .await
        .is_some_and(|p| !p.sentinels.is_empty());
    let mut to_start = Vec::new();
    for ((node, status), config) in record.nodes.iter().zip(&statuses).zip(&configs) {
        let id = node_id(record, node.index);
        ctx.runtime
            .write_config(&id, &config.process_spec())
            .await
            .map_err(|e| error("Could not write a node's config", e))?;
        if !status.running {
            to_start.push(node.index);
            continue;
        }
        let live_threads = status.settings.get("io-threads").and_then(|t| t.parse::<i64>().ok());
        if live_threads.is_some_and(|t| t != config.io_threads) {
            // io-threads cannot change on a running node: restart it with the new file.
            ctx.runtime
                .stop(&id)
                .await
                .map_err(|e| error("Could not restart a node", e))?;
            to_start.push(node.index);
            continue;
        }
        let mut client = connect_node(config).await?;
        client
            .config_set(&config.runtime_settings())
            .await
            .map_err(|e| error("Could not change a node's settings", e))?;
        // Re-link a node whose replication was changed outside Terraform. A node that should
        // be a primary is only promoted back where no Sentinel decides who the primary is.
        let following = status.primary_addr.as_ref().map(|(h, p)| (h.as_str(), *p));
        match &config.upstream {
            Some(up) if status.role != Some("replica") || following != Some((up.host.as_str(), up.port)) => client
                .replicate(Some((&up.host, up.port, &up.user, &up.password)))
                .await
                .map_err(|e| error("Could not re-link a replica", e))?,
            None if status.role == Some("replica") && !group_watched => client
                .replicate(None)
                .await
                .map_err(|e| error("Could not detach a node", e))?,
            _ => {}
        }
    }
    start_nodes(ctx, record, &to_start, true).await?;
    wait_linked(ctx, record).await
}

pub fn timeout_of(timeouts: Option<&TimeoutsModel>, pick: fn(&TimeoutsModel) -> Option<&String>) -> Duration {
    timeouts
        .and_then(pick)
        .and_then(|t| validate::duration(t).ok())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Runs `work` under the operation's timeout and Terraform's stop request.
pub async fn bounded<T>(
    what: &str,
    limit: Duration,
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Diagnostics> {
    tokio::select! {
        r = tokio::time::timeout(limit, work) => r.map_err(|_| error(
            &format!("{what} timed out"),
            format!("the {what} did not finish within {limit:?}; raise it in the timeouts block, then apply again"),
        )),
        _ = cancel.cancelled() => Err(error(
            &format!("{what} interrupted"),
            "Terraform asked the provider to stop; run terraform apply again to finish",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_config_defaults_fill_what_is_unset() {
        let partial = UserConfigModel {
            timeout: Some(0),
            ..Default::default()
        };
        let eff = effective_user_config(Some(&partial));
        assert_eq!(eff.timeout, 0);
        assert_eq!(eff.maxmemory_policy, "noeviction");
        assert_eq!(effective_user_config(None), UserConfigValues::default());
        assert_eq!(effective_user_config(Some(&user_config_model(&eff))), eff);
    }

    #[test]
    fn live_settings_translate_back_to_user_config() {
        let settings = HashMap::from([
            ("maxmemory-policy".to_string(), "allkeys-lru".to_string()),
            ("save".to_string(), "".to_string()),
            ("timeout".to_string(), "10".to_string()),
            ("io-threads".to_string(), "2".to_string()),
            ("repl-timeout".to_string(), "7".to_string()),
        ]);
        let live = live_user_config(&settings, &UserConfigModel::default());
        assert_eq!(live.maxmemory_policy.as_deref(), Some("allkeys-lru"));
        assert_eq!(live.persistence.as_deref(), Some("off"));
        assert_eq!(
            (live.timeout, live.io_threads, live.repl_timeout),
            (Some(10), Some(2), Some(7))
        );
    }

    #[test]
    fn a_setting_changed_on_any_node_shows_as_drift() {
        let declared = UserConfigModel {
            maxmemory_policy: Some("noeviction".into()),
            timeout: Some(300),
            persistence: Some("rdb".into()),
            io_threads: Some(1),
            repl_timeout: Some(60),
        };
        let node = |policy: &str| NodeStatus {
            running: true,
            settings: HashMap::from([
                ("maxmemory-policy".to_string(), policy.to_string()),
                ("timeout".to_string(), "300".to_string()),
                ("save".to_string(), "3600 1".to_string()),
                ("io-threads".to_string(), "1".to_string()),
                ("repl-timeout".to_string(), "60".to_string()),
            ]),
            ..Default::default()
        };
        let same = observed_user_config(Some(&declared), &[node("noeviction"), node("noeviction")]);
        assert_eq!(same.as_ref(), Some(&declared));
        let standby_drifted = observed_user_config(Some(&declared), &[node("noeviction"), node("allkeys-lru")]);
        assert_eq!(
            standby_drifted.unwrap().maxmemory_policy.as_deref(),
            Some("allkeys-lru")
        );
        assert_eq!(observed_user_config(None, &[node("allkeys-lru")]), None);
    }

    #[test]
    fn secrets_are_long_and_url_safe() {
        let s = generate_secret();
        assert_eq!(s.len(), 32);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(s, generate_secret());
    }

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
        assert!(!all_running(&[up, down]));
    }
}
