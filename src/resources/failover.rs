//! Automatic failover with Valkey Sentinel. A replication group with more than one data node
//! (a primary service with standbys, read replicas, or both) is watched by a group of
//! Sentinels (3, quorum 2) spread over the group's regions; when the primary fails they
//! promote the best replica (lowest failover_priority, then most data) and the others follow
//! it. The provider never restarts a former primary as a primary: it asks
//! Sentinel where the primary is now and restarts the node as its replica.

use std::time::Duration;

use super::group_view::{connect_member, connect_sentinel, current_primary};
use super::records::{self, group_primary_record, replica_records};
use super::{Context, certificates, error, group_lock};
use crate::catalog;
use crate::runtime::{Endpoint, NodeId, NodeSpec, NodeState, SentinelRecord, ServiceRecord};
use crate::tfplug::Diagnostics;
use crate::valkey::SentinelConfig;
use crate::valkey::sentinel::Fields;

/// Regions for the group's Sentinels: the replicas' regions first, then the primary's, so
/// that a majority of Sentinels survives the loss of the primary's region when there is
/// another region to be in.
pub fn place_sentinels(primary: &str, replicas: &[String], count: usize) -> Vec<String> {
    let mut regions: Vec<String> = Vec::new();
    for region in replicas {
        if region != primary && !regions.contains(region) {
            regions.push(region.clone());
        }
    }
    regions.push(primary.to_string());
    (0..count).map(|k| regions[k % regions.len()].clone()).collect()
}

fn sentinel_id(primary: &ServiceRecord, s: &SentinelRecord) -> NodeId {
    NodeId::sentinel(&primary.name, s.index)
}

/// Sentinel's periods, set after every start (they are not kept in its config file). It reads
/// each node's INFO (its replica-priority and role) every INFO-PERIOD: the default 10 s made a
/// switchover wait that long to see new priorities. It announces itself to its peers every
/// PUBLISH-PERIOD: the default 2 s made a Sentinel that was reset to forget removed nodes
/// wait that long to find its peers again.
const SENTINEL_PERIODS: [(&str, &str); 2] = [("INFO-PERIOD", "1000"), ("PUBLISH-PERIOD", "500")];

/// Makes the group of primary service `name` what it should be: Sentinels while failover is
/// enabled and the group has a node to fail over to (a standby or a read replica), none
/// otherwise; dead Sentinels restarted; the
/// down-after setting applied. A suspended group (its primary powered off) keeps its
/// Sentinels stopped until that primary answers again, then resumes.
pub async fn ensure_group(ctx: &Context, name: &str) -> Result<(), Diagnostics> {
    ensure_group_since(ctx, name, std::time::Instant::now()).await
}

/// `ensure_group` for a caller whose records were saved at `changed`: a run that started
/// since then has done its work.
pub async fn ensure_group_since(ctx: &Context, name: &str, changed: std::time::Instant) -> Result<(), Diagnostics> {
    group_lock::converge_once(ctx, name, changed, || ensure_group_held(ctx, name)).await
}

async fn ensure_group_held(ctx: &Context, name: &str) -> Result<(), Diagnostics> {
    let Some(mut primary) = records::load(ctx, name).await? else {
        return Ok(());
    };
    let replicas = replica_records(ctx, name).await?;
    if !primary.failover.enabled || !has_failover_target(&primary, &replicas) {
        return dissolve(ctx, &mut primary).await;
    }
    if let Some(suspended) = primary.suspended_primary.clone() {
        if !answers_as_primary(&primary, &suspended).await {
            return Ok(());
        }
        // The primary is back where it was: the Sentinels may watch it again.
        primary.suspended_primary = None;
        records::save(ctx, &primary).await?;
    }
    let replica_regions: Vec<String> = replicas.iter().map(|r| r.region.clone()).collect();
    let regions = place_sentinels(&primary.region, &replica_regions, catalog::SENTINELS_PER_GROUP);
    if primary.sentinels.is_empty() {
        for index in 0..regions.len() {
            let placed = place_sentinel(ctx, &primary.name, index, &regions).await?;
            primary.sentinels.push(placed);
        }
        records::save(ctx, &primary).await?;
    } else {
        move_to_regions(ctx, &mut primary, &regions).await?;
    }
    // Certificates of new Sentinels, and those due for renewal: a running Sentinel cannot
    // reload its certificate, so it restarts, one at a time (the others keep the quorum).
    let issued =
        certificates::issue_sentinels_due(&mut primary).map_err(|e| error("Could not issue a certificate", e))?;
    if !issued.is_empty() {
        records::save(ctx, &primary).await?;
        // Those not running yet (new ones) start with theirs below.
        for index in issued {
            let id = NodeId::sentinel(&primary.name, index);
            if ctx.runtime.state(&id).await != NodeState::Running {
                continue;
            }
            ctx.runtime
                .stop(&id)
                .await
                .map_err(|e| error("Could not restart a Sentinel with its renewed certificate", e))?;
            let now = primary_now(&primary).await;
            start_stopped_sentinels(ctx, &mut primary, &now).await?;
        }
    }
    // A Sentinel started now must monitor where the primary is now.
    let now = primary_now(&primary).await;
    start_stopped_sentinels(ctx, &mut primary, &now).await?;
    let down_after = primary.failover.down_after_ms.to_string();
    let settle = primary
        .sentinels
        .iter()
        .map(|s| settle_sentinel(&primary, s, &down_after));
    futures_util::future::join_all(settle).await;
    forget_removed(&primary, &replicas).await;
    Ok(())
}

/// Whether the group has a data node besides its primary service's first: a standby or a
/// read replica that Sentinel can promote.
fn has_failover_target(primary: &ServiceRecord, replicas: &[ServiceRecord]) -> bool {
    primary.nodes.len() > 1 || !replicas.is_empty()
}

/// Moves the group's Sentinels that are not in the region `regions` gives them, when fewer
/// than a majority are outside the primary's region and the group has a read replica elsewhere:
/// a group formed by a service's standbys has them all in its region, and its first read replica
/// in another region wants a majority there, so that the loss of the primary's host or region is
/// failed over. One at a time so the others keep a quorum: each is removed, placed anew and started as a new
/// Sentinel (its peers forget its old address in `forget_removed`). A Sentinel that cannot be
/// removed now (its host does not answer) stays where it is until a later apply.
async fn move_to_regions(ctx: &Context, primary: &mut ServiceRecord, regions: &[String]) -> Result<(), Diagnostics> {
    // Only that move: clients are configured with the Sentinels' addresses, so Sentinels that
    // already have a majority outside the primary's region (or all the outside there is) stay.
    let outside = |region: &String| *region != primary.region;
    let wanted = regions
        .iter()
        .filter(|r| outside(r))
        .count()
        .min(catalog::SENTINEL_QUORUM);
    if primary.sentinels.iter().filter(|s| outside(&s.region)).count() >= wanted {
        return Ok(());
    }
    for position in 0..primary.sentinels.len() {
        let Some(region) = regions.get(position) else { break };
        if primary.sentinels[position].region == *region {
            continue;
        }
        let index = primary.sentinels[position].index;
        if let Err(e) = ctx.runtime.remove(&NodeId::sentinel(&primary.name, index)).await {
            tracing::warn!(sentinel = index, error = %e, "could not move a Sentinel; it stays where it is");
            continue;
        }
        primary.sentinels[position] = place_sentinel(ctx, &primary.name, position, regions).await?;
        certificates::issue_sentinels_due(primary).map_err(|e| error("Could not issue a certificate", e))?;
        records::save(ctx, primary).await?;
        let now = primary_now(primary).await;
        start_stopped_sentinels(ctx, primary, &now).await?;
        let down_after = primary.failover.down_after_ms.to_string();
        settle_sentinel(primary, &primary.sentinels[position], &down_after).await;
    }
    Ok(())
}

/// Places the group's Sentinel `index` in `regions[index]`, as the how-manyth of the group's
/// Sentinels in that region (a runtime spreads them over the region's hosts). Nothing runs yet.
async fn place_sentinel(
    ctx: &Context,
    group: &str,
    index: usize,
    regions: &[String],
) -> Result<SentinelRecord, Diagnostics> {
    let region = &regions[index];
    let nth = regions[..index].iter().filter(|r| *r == region).count();
    let at = ctx
        .runtime
        .place_sentinel(&NodeId::sentinel(group, index), region, nth)
        .await
        .map_err(|e| error("Could not place a Sentinel", e))?;
    Ok(SentinelRecord {
        index,
        region: region.clone(),
        host: at.host,
        port: at.port,
        cert: None,
    })
}

/// Where a Sentinel started now must find the group's primary: where the Sentinels say it is,
/// else the primary service's first node.
async fn primary_now(primary: &ServiceRecord) -> Endpoint {
    match current_primary(primary).await {
        Some(at) => at,
        None => primary.endpoint().unwrap_or_else(|| Endpoint::new("", 0)),
    }
}

/// Gives a running Sentinel the group's down-after setting and the periods it needs; a
/// Sentinel that does not answer is left as it is.
async fn settle_sentinel(primary: &ServiceRecord, s: &SentinelRecord, down_after: &str) {
    let Some(mut client) = connect_sentinel(primary, s).await else {
        return;
    };
    // Only when it differs: every SENTINEL SET makes the Sentinel rewrite and fsync its
    // config file, and on a busy disk that stalls it long enough (measured: over a second)
    // to see every instance as down and fail over a healthy primary.
    let fields = client.primary().await.unwrap_or_default();
    if fields.get("down-after-milliseconds") != Some(down_after) {
        let _ = client.set("down-after-milliseconds", down_after).await;
    }
    let periods = client.periods().await.unwrap_or_default();
    for (name, value) in SENTINEL_PERIODS {
        if periods.get(name) != Some(value) {
            let _ = client.set_period(name, value).await;
        }
    }
}

/// Starts the group's Sentinels that are not running, in parallel; a new one monitors the
/// primary at `primary_now`. A Sentinel the runtime had to move is recorded where it is.
async fn start_stopped_sentinels(
    ctx: &Context,
    primary: &mut ServiceRecord,
    primary_now: &Endpoint,
) -> Result<(), Diagnostics> {
    let config = SentinelConfig {
        group: primary.name.clone(),
        primary_host: primary_now.host.clone(),
        primary_port: primary_now.port,
        quorum: catalog::SENTINEL_QUORUM,
        down_after_ms: primary.failover.down_after_ms,
        client_password: primary.sentinel_password.clone(),
        auth_password: primary.sentinel_auth_password.clone(),
        tls_auth_clients: primary.tls.as_ref().map(|t| t.auth_clients.clone()),
    };
    let mut starts = tokio::task::JoinSet::new();
    for (position, s) in primary.sentinels.iter().enumerate() {
        let id = sentinel_id(primary, s);
        let spec = NodeSpec {
            settings: config.render(),
            password: primary.sentinel_password.clone(),
            tls: certificates::sentinel_identity(primary, s.index),
        };
        let (runtime, at) = (ctx.runtime.clone(), s.endpoint());
        starts.spawn(async move {
            if runtime.state(&id).await == NodeState::Running {
                return (position, None);
            }
            (position, Some(runtime.start(&id, &at, &spec, false).await))
        });
    }
    let mut moved = false;
    while let Some(started) = starts.join_next().await {
        let (position, started) = started.map_err(|e| error("Could not start a Sentinel", e))?;
        let Some(started) = started else { continue };
        let at = started.map_err(|e| error("Could not start a Sentinel", e))?;
        let s = &mut primary.sentinels[position];
        if s.endpoint() != at {
            (s.host, s.port, moved) = (at.host, at.port, true);
        }
    }
    if moved {
        records::save(ctx, primary).await?;
    }
    Ok(())
}

/// Whether the group member at `addr` runs and answers as a primary (every member has the
/// group's password).
async fn answers_as_primary(primary: &ServiceRecord, addr: &str) -> bool {
    let Some(at) = Endpoint::parse(addr) else {
        return false;
    };
    let Ok(mut client) = connect_member(primary, &at, Duration::from_secs(2)).await else {
        return false;
    };
    client
        .info(&["replication"])
        .await
        .is_ok_and(|info| info.role() == Some("primary"))
}

/// Before `record`'s nodes are powered off: when one of them is the group's primary, the
/// group is suspended (that primary remembered, the Sentinels stopped with their state) so
/// that the power-off is not taken for a failure and failed over.
pub async fn suspend_if_primary(ctx: &Context, record: &ServiceRecord) -> Result<(), Diagnostics> {
    group_lock::exclusively(ctx, record.group(), suspend_if_primary_held(ctx, record)).await
}

async fn suspend_if_primary_held(ctx: &Context, record: &ServiceRecord) -> Result<(), Diagnostics> {
    let Some(mut primary) = group_primary_record(ctx, record).await else {
        return Ok(());
    };
    if primary.sentinels.is_empty() || primary.suspended_primary.is_some() {
        return Ok(());
    }
    let Some(current) = current_primary(&primary).await.map(|at| at.to_string()) else {
        return Ok(());
    };
    if !record.node_addresses().contains(&current) {
        return Ok(());
    }
    primary.suspended_primary = Some(current);
    records::save(ctx, &primary).await?;
    for s in &primary.sentinels {
        ctx.runtime
            .stop(&sentinel_id(&primary, s))
            .await
            .map_err(|e| error("Could not stop a Sentinel", e))?;
    }
    Ok(())
}

/// Makes every Sentinel that still lists a node which is no longer a member of the group
/// (a destroyed replica, a standby scaled away) or a peer Sentinel which is no longer where
/// the group's Sentinels are (one that moved off a taken port and started afresh) forget it,
/// so that it is not kept as a disconnected replica, or counted as a Sentinel whose vote a
/// failover needs, for ever: SENTINEL RESET, one Sentinel at a time, each waiting until it
/// has found its peers again so the group never lacks a quorum.
async fn forget_removed(primary: &ServiceRecord, replicas: &[ServiceRecord]) {
    let members: Vec<String> = std::iter::once(primary)
        .chain(replicas)
        .flat_map(ServiceRecord::node_addresses)
        .collect();
    let sentinels: Vec<String> = primary.sentinels.iter().map(|s| s.endpoint().to_string()).collect();
    let peers = primary.sentinels.len().saturating_sub(1).to_string();
    for s in &primary.sentinels {
        let Some(mut client) = connect_sentinel(primary, s).await else {
            continue;
        };
        let mut stranger = stranger_in(&client.replicas().await.unwrap_or_default(), &members);
        if stranger.is_none() {
            stranger = stranger_in(&client.peers().await.unwrap_or_default(), &sentinels);
        }
        let Some(stranger) = stranger else { continue };
        tracing::debug!(sentinel = s.index, %stranger, "making a Sentinel forget a removed node");
        let _ = client.reset().await;
        let deadline = tokio::time::Instant::now() + RESET_REDISCOVERY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let fields = client.primary().await.unwrap_or_default();
            if fields.get("num-other-sentinels") == Some(peers.as_str()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The first address a Sentinel lists (`ip` and `port` fields) that is not among `expected`.
fn stranger_in(listed: &[Fields], expected: &[String]) -> Option<String> {
    listed.iter().find_map(|fields| {
        let addr = Endpoint::parse(&format!("{}:{}", fields.get("ip")?, fields.get("port")?))?.to_string();
        (!expected.contains(&addr)).then_some(addr)
    })
}

/// Longest wait for a reset Sentinel to hear from its peers again (they announce themselves
/// every PUBLISH-PERIOD).
const RESET_REDISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Stops and forgets the group's Sentinels.
async fn dissolve(ctx: &Context, primary: &mut ServiceRecord) -> Result<(), Diagnostics> {
    if primary.sentinels.is_empty() && primary.suspended_primary.is_none() {
        return Ok(());
    }
    for s in &primary.sentinels {
        ctx.runtime
            .remove(&sentinel_id(primary, s))
            .await
            .map_err(|e| error("Could not stop a Sentinel", e))?;
    }
    primary.sentinels.clear();
    primary.suspended_primary = None;
    records::save(ctx, primary).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_of_sentinels_sits_outside_the_primary_region_when_it_can() {
        assert_eq!(
            place_sentinels("local-1", &["local-2".into()], 3),
            ["local-2", "local-1", "local-2"]
        );
        assert_eq!(
            place_sentinels("local-1", &["local-2".into(), "local-3".into()], 3),
            ["local-2", "local-3", "local-1"]
        );
    }

    #[test]
    fn replicas_in_the_primary_region_put_every_sentinel_there() {
        let placed = place_sentinels("local-1", &["local-1".into()], 3);
        assert!(placed.iter().all(|r| r == "local-1"));
    }
}
