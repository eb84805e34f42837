//! The node engine both resources share: starting a record's nodes through the runtime,
//! waiting for their replication links, and reconciling running nodes with the record.

use std::time::Duration;

use tokio::task::JoinSet;

use super::observe::observe;
use super::upstreams::{configs, desired_upstreams, node_spec};
use super::{Context, error, failover, group_view, records, write_bound};
use crate::runtime::{Endpoint, NodeId, RuntimeError, ServiceRecord};
use crate::tfplug::Diagnostics;
use crate::valkey::NodeClient;

/// Longest wait for a replication link and its initial sync.
const LINK_TIMEOUT: Duration = Duration::from_secs(300);

pub fn node_id(record: &ServiceRecord, index: usize) -> NodeId {
    NodeId::data(&record.name, index)
}

/// Starts the given nodes in parallel. The runtime may move a node whose endpoint was taken
/// meanwhile, except the endpoint's node of a service that exists (`keep_endpoint`): clients
/// know that address, so moving it would send them elsewhere; that is an error to resolve.
pub async fn start_nodes(
    ctx: &Context,
    record: &mut ServiceRecord,
    indices: &[usize],
    keep_endpoint: bool,
) -> Result<(), Diagnostics> {
    if indices.is_empty() {
        return Ok(());
    }
    let endpoint_index = record.nodes.first().map(|n| n.index);
    let mut set = JoinSet::new();
    for (node, config) in record.nodes.iter().zip(configs(ctx, record).await?) {
        if !indices.contains(&node.index) {
            continue;
        }
        let (runtime, id, at) = (ctx.runtime.clone(), node_id(record, node.index), node.endpoint());
        let pinned = keep_endpoint && Some(node.index) == endpoint_index;
        let (index, spec) = (node.index, node_spec(record, node.index, &config));
        set.spawn(async move { (index, runtime.start(&id, &at, &spec, pinned).await) });
    }
    let mut moved: Vec<(usize, Endpoint)> = Vec::new();
    let mut diagnostics = Diagnostics::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((index, Ok(at))) => {
                if record.node_endpoint(index).as_ref() != Some(&at) {
                    moved.push((index, at));
                }
            }
            Ok((_, Err(e @ RuntimeError::EndpointTaken { .. }))) => {
                diagnostics.extend(error("The endpoint's port is taken", e))
            }
            Ok((_, Err(e))) => diagnostics.extend(error("Could not start a Valkey node", e)),
            Err(e) => diagnostics.extend(error("Could not start a Valkey node", e)),
        }
    }
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    if moved.is_empty() {
        return Ok(());
    }
    for (index, at) in moved {
        if let Some(node) = record.nodes.iter_mut().find(|n| n.index == index) {
            (node.host, node.port) = (at.host, at.port);
        }
    }
    records::save(ctx, record).await?;
    relink_started(ctx, record, indices).await
}

/// A connection to a node of the record, as the default user.
async fn connect_node(at: &Endpoint, record: &ServiceRecord) -> Result<NodeClient, Diagnostics> {
    group_view::connect_member(record, at, Duration::from_secs(5))
        .await
        .map_err(|e| error("Node unreachable", e))
}

/// After the runtime moved a node, the nodes started before it replicate from its old
/// endpoint, where another process may listen now: point each at its upstream as it is now
/// (config and running node alike).
async fn relink_started(ctx: &Context, record: &ServiceRecord, started: &[usize]) -> Result<(), Diagnostics> {
    for (node, config) in record.nodes.iter().zip(configs(ctx, record).await?) {
        let Some(up) = &config.upstream else { continue };
        if !started.contains(&node.index) {
            continue;
        }
        ctx.runtime
            .configure(
                &node_id(record, node.index),
                &node.endpoint(),
                &node_spec(record, node.index, &config),
            )
            .await
            .map_err(|e| error("Could not write a node's config", e))?;
        let mut client = connect_node(&node.endpoint(), record).await?;
        client
            .replicate(Some((&up.host, up.port, &up.user, &up.password)))
            .await
            .map_err(|e| error("Could not re-link a replica", e))?;
    }
    Ok(())
}

/// Starts every node of a newly recorded service (unless it is created powered off) and waits
/// for its replication links.
pub async fn start_new(ctx: &Context, record: &mut ServiceRecord, powered: bool) -> Result<(), Diagnostics> {
    start_new_then(ctx, record, powered, async { Ok(()) }).await
}

/// `start_new`, running `meanwhile` while the links come up (an initial sync takes a while,
/// and the group's Sentinels need not wait for it); both must succeed.
pub async fn start_new_then(
    ctx: &Context,
    record: &mut ServiceRecord,
    powered: bool,
    meanwhile: impl std::future::Future<Output = Result<(), Diagnostics>>,
) -> Result<(), Diagnostics> {
    if powered {
        let indices: Vec<usize> = record.nodes.iter().map(|n| n.index).collect();
        start_nodes(ctx, record, &indices, false).await?;
    }
    let record: &ServiceRecord = record;
    let linked = async {
        match powered {
            true => wait_linked(ctx, record).await,
            false => Ok(()),
        }
    };
    let (linked, done) = tokio::join!(linked, meanwhile);
    linked.and(done)
}

/// Waits until every node that should replicate (see `desired_upstreams`: standbys, read
/// replicas, a former primary after a failover) has its link up and its initial sync done.
/// Nodes that follow a primary powered off on purpose (in another member) are not waited for:
/// their link comes up when that primary is powered on.
pub async fn wait_linked(ctx: &Context, record: &ServiceRecord) -> Result<(), Diagnostics> {
    let upstreams = desired_upstreams(ctx, record).await?;
    let powered_off_primary = group_view::suspended_primary(ctx, record)
        .await
        .filter(|addr| !record.node_addresses().contains(addr));
    let replicating = record.nodes.iter().zip(upstreams).filter(|(_, up)| {
        up.as_ref()
            .is_some_and(|up| powered_off_primary.as_deref() != Some(format!("{}:{}", up.host, up.port).as_str()))
    });
    let mut waits = JoinSet::new();
    for (node, _) in replicating {
        let (at, member) = (node.endpoint(), record.clone());
        let id = node_id(record, node.index);
        let log = ctx.runtime.log_location(&id);
        waits.spawn(async move {
            let mut client = group_view::connect_member(&member, &at, Duration::from_secs(5))
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
                        format!("node {id} had no working replication link after {LINK_TIMEOUT:?}; see its log, {log}"),
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

/// Whether a running node must restart to take `config`: io-threads and databases cannot
/// change on a running node.
fn needs_restart(status: &super::observe::NodeStatus, config: &crate::valkey::NodeConfig) -> bool {
    let live = |name: &str| status.settings.get(name).and_then(|t| t.parse::<i64>().ok());
    live("io-threads").is_some_and(|t| t != config.io_threads)
        || live("databases").is_some_and(|d| d != config.databases)
}

/// Brings running nodes in line with the record: configs rewritten, settings applied with
/// CONFIG SET, nodes restarted where a setting needs it, stopped nodes started. With
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
    let group_watched = records::group_primary_record(ctx, record)
        .await
        .is_some_and(|p| !p.sentinels.is_empty());
    let restarting: Vec<String> = record
        .nodes
        .iter()
        .zip(&statuses)
        .zip(&configs)
        .filter(|((_, status), config)| status.running && needs_restart(status, config))
        .map(|((node, _), _)| node.endpoint().to_string())
        .collect();
    if !restarting.is_empty() {
        // The group's primary stops counting on them while they restart (converge::power
        // restores the bound once they replicate again).
        write_bound::settle(ctx, record, &restarting).await?;
    }
    let mut to_start = Vec::new();
    for ((node, status), config) in record.nodes.iter().zip(&statuses).zip(&configs) {
        let (id, at) = (node_id(record, node.index), node.endpoint());
        ctx.runtime
            .configure(&id, &at, &node_spec(record, node.index, config))
            .await
            .map_err(|e| error("Could not write a node's config", e))?;
        if !status.running {
            to_start.push(node.index);
            continue;
        }
        if needs_restart(status, config) {
            // io-threads and databases cannot change on a running node: restart it with the
            // new config. When it is the group's primary, the group is suspended first, as for
            // a power-off (converge::power resumes it once the node answers): a restart that
            // saves and loads a large dataset outlasts down_after_ms, and Sentinel would fail
            // over meanwhile while the node came back as a primary.
            failover::suspend_if_primary(ctx, record).await?;
            ctx.runtime
                .stop(&id)
                .await
                .map_err(|e| error("Could not restart a node", e))?;
            to_start.push(node.index);
            continue;
        }
        let mut client = connect_node(&at, record).await?;
        client
            .config_set(&config.runtime_settings())
            .await
            .map_err(|e| error("Could not change a node's settings", e))?;
        if record.tls.is_some() {
            client
                .reload_tls()
                .await
                .map_err(|e| error("Could not reload a node's certificate", e))?;
        }
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
