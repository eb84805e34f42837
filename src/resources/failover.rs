//! Automatic failover with Valkey Sentinel. A primary service that has read replicas is
//! watched by a group of Sentinels (3, quorum 2) spread over the group's regions; when the
//! primary fails they promote the best replica (lowest failover_priority, then most data) and
//! the others follow it. The provider never restarts a former primary as a primary: it asks
//! Sentinel where the primary is now and restarts the node as its replica.

use std::net::IpAddr;
use std::time::Duration;

use super::{Context, error};
use crate::catalog;
use crate::runtime::{NodeId, SentinelRecord, ServiceRecord};
use crate::tfplug::Diagnostics;
use crate::valkey::{NodeClient, REPLICATION_USER, SENTINEL_PEER_USER, SentinelConfig, UpstreamAuth};

/// Regions for the group's Sentinels: the replicas' regions first, then the primary's, so
/// that a majority of Sentinels survives the loss of the primary's region when there is
/// another region to be in.
pub fn place_sentinels(primary: (&str, IpAddr), replicas: &[(String, IpAddr)], count: usize) -> Vec<(String, IpAddr)> {
    let mut regions: Vec<(String, IpAddr)> = Vec::new();
    for (region, addr) in replicas {
        if region != primary.0 && !regions.iter().any(|(r, _)| r == region) {
            regions.push((region.clone(), *addr));
        }
    }
    regions.push((primary.0.to_string(), primary.1));
    (0..count).map(|k| regions[k % regions.len()].clone()).collect()
}

fn sentinel_id(primary: &ServiceRecord, s: &SentinelRecord) -> NodeId {
    NodeId::sentinel(&primary.name, s.index)
}

pub fn sentinel_addresses(primary: &ServiceRecord) -> Vec<String> {
    primary
        .sentinels
        .iter()
        .map(|s| format!("{}:{}", s.bind, s.port))
        .collect()
}

/// A `host:port` text as its parts.
pub fn split_address(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.to_string(), port.parse().ok()?))
}

/// A connection to one of the group's Sentinels as their peer user, which may change them.
pub async fn connect_sentinel(primary: &ServiceRecord, s: &SentinelRecord) -> Option<NodeClient> {
    NodeClient::connect_as(
        &s.bind.to_string(),
        s.port,
        Some(SENTINEL_PEER_USER),
        &primary.sentinel_auth_password,
        Duration::from_secs(1),
    )
    .await
    .ok()
}

/// Where the group's primary is now: the node powered off as the primary while the group is
/// suspended, else what the first Sentinel that answers reports.
pub async fn current_primary(primary: &ServiceRecord) -> Option<(String, u16)> {
    if let Some(suspended) = &primary.suspended_primary {
        return split_address(suspended);
    }
    for s in &primary.sentinels {
        let Some(mut client) = connect_sentinel(primary, s).await else {
            continue;
        };
        if let Ok(addr) = client
            .command::<Vec<String>>(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &primary.name])
            .await
            && let [host, port] = addr.as_slice()
            && let Ok(port) = port.parse()
        {
            return Some((host.clone(), port));
        }
    }
    None
}

/// The record of the group's primary service for `record` (itself, for a primary).
pub async fn group_primary_record(ctx: &Context, record: &ServiceRecord) -> Option<ServiceRecord> {
    let group = record.group()?;
    if group == record.name {
        return Some(record.clone());
    }
    ctx.runtime.load_record(group).await.ok().flatten()
}

/// The group's primary once Sentinel's view is settled: a majority of the Sentinels answer,
/// all of them name the same primary, none considers it down and none is failing it over.
/// Err describes what is unsettled; Ok(None) when no Sentinel answers at all.
pub async fn settled_primary(primary: &ServiceRecord) -> Result<Option<(String, u16)>, String> {
    let mut views: Vec<(String, u16, String)> = Vec::new();
    for s in &primary.sentinels {
        let Some(mut client) = connect_sentinel(primary, s).await else {
            continue;
        };
        let Ok(fields) = client
            .command::<Vec<String>>(&["SENTINEL", "MASTER", &primary.name])
            .await
        else {
            continue;
        };
        if let (Some(ip), Some(Ok(port)), Some(flags)) = (
            setting(&fields, "ip"),
            setting(&fields, "port").map(str::parse),
            setting(&fields, "flags"),
        ) {
            views.push((ip.to_string(), port, flags.to_string()));
        }
    }
    let Some((ip, port, _)) = views.first().cloned() else {
        return Ok(None);
    };
    if views.len() * 2 <= primary.sentinels.len() {
        return Err(format!(
            "only {} of {} Sentinels answer",
            views.len(),
            primary.sentinels.len()
        ));
    }
    for (other_ip, other_port, flags) in &views {
        if (other_ip, *other_port) != (&ip, port) {
            return Err(format!(
                "Sentinels disagree on the primary ({ip}:{port} or {other_ip}:{other_port})"
            ));
        }
        if !flags.split(',').all(|f| f == "master") {
            return Err(format!("Sentinel reports the primary {ip}:{port} as {flags}"));
        }
    }
    Ok(Some((ip, port)))
}

/// How long to wait for Sentinel to finish a failover before giving up on a restart.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The group's current primary with the credentials to replicate it, when Sentinels watch
/// the group (or watched it until its primary was powered off). While a failover is under
/// way this waits for it to end: restarting a node against a primary that is being replaced
/// could demote the new primary or bring back an empty old one.
pub async fn sentinel_upstream(ctx: &Context, record: &ServiceRecord) -> Result<Option<UpstreamAuth>, Diagnostics> {
    let Some(primary) = group_primary_record(ctx, record).await else {
        return Ok(None);
    };
    if primary.sentinels.is_empty() {
        return Ok(None);
    }
    let upstream = |(host, port): (String, u16)| UpstreamAuth {
        host,
        port,
        user: REPLICATION_USER.to_string(),
        password: primary.replication_password.clone(),
    };
    if let Some(suspended) = primary.suspended_primary.as_deref().and_then(split_address) {
        return Ok(Some(upstream(suspended)));
    }
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        match settled_primary(&primary).await {
            Ok(Some(addr)) => return Ok(Some(upstream(addr))),
            Ok(None) => return Ok(None),
            Err(unsettled) if tokio::time::Instant::now() > deadline => {
                return Err(error(
                    "Failover in progress",
                    format!(
                        "{unsettled}; nodes of this replication group are not restarted or re-linked until Sentinel has \
                         elected a primary. Apply again once the failover has finished."
                    ),
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The primary the group was suspended at, when its Sentinels are stopped because that
/// primary was powered off.
pub async fn suspended_primary(ctx: &Context, record: &ServiceRecord) -> Option<String> {
    group_primary_record(ctx, record).await?.suspended_primary
}

/// The records of a primary's read replicas.
pub async fn replica_records(ctx: &Context, primary: &str) -> Result<Vec<ServiceRecord>, Diagnostics> {
    let names = ctx
        .runtime
        .replicas_of(primary)
        .await
        .map_err(|e| error("Could not list read replicas", e))?;
    let mut records = Vec::with_capacity(names.len());
    for name in names {
        if let Some(r) = ctx
            .runtime
            .load_record(&name)
            .await
            .map_err(|e| error("Could not read a record", e))?
        {
            records.push(r);
        }
    }
    Ok(records)
}

/// How the group's Sentinels are: `none` (no group: no read replica, or failover disabled),
/// `paused` (stopped on purpose while the group's primary is powered off), `running` (every
/// one runs) or `degraded` (one or more stopped outside Terraform).
pub fn sentinel_status(ctx: &Context, primary: &ServiceRecord) -> &'static str {
    if primary.sentinels.is_empty() {
        "none"
    } else if primary.suspended_primary.is_some() {
        "paused"
    } else if primary
        .sentinels
        .iter()
        .all(|s| ctx.runtime.is_running(&sentinel_id(primary, s)))
    {
        "running"
    } else {
        "degraded"
    }
}

/// Sentinel's periods, set after every start (they are not kept in its config file). It reads
/// each node's INFO (its replica-priority and role) every INFO-PERIOD: the default 10 s made a
/// switchover wait that long to see new priorities. It announces itself to its peers every
/// PUBLISH-PERIOD: the default 2 s made a Sentinel that was reset to forget removed nodes
/// wait that long to find its peers again.
const SENTINEL_PERIODS: [(&str, &str); 2] = [("INFO-PERIOD", "1000"), ("PUBLISH-PERIOD", "500")];

/// Makes the group of primary service `name` what it should be: Sentinels while failover is
/// enabled and the primary has read replicas, none otherwise; dead Sentinels restarted; the
/// down-after setting applied. A suspended group (its primary powered off) keeps its
/// Sentinels stopped until that primary answers again, then resumes.
pub async fn ensure_group(ctx: &Context, name: &str) -> Result<(), Diagnostics> {
    let _serialised = ctx.group_lock.lock().await;
    let Some(mut primary) = ctx
        .runtime
        .load_record(name)
        .await
        .map_err(|e| error("Could not read a record", e))?
    else {
        return Ok(());
    };
    let replicas = replica_records(ctx, name).await?;
    if !primary.failover.enabled || replicas.is_empty() {
        return dissolve(ctx, &mut primary).await;
    }
    if let Some(suspended) = primary.suspended_primary.clone() {
        if !answers_as_primary(&primary, &suspended).await {
            return Ok(());
        }
        // The primary is back where it was: the Sentinels may watch it again.
        primary.suspended_primary = None;
        save(ctx, &primary).await?;
    }
    if primary.sentinels.is_empty() {
        let replica_regions: Vec<(String, IpAddr)> = replicas.iter().map(|r| (r.region.clone(), r.bind)).collect();
        for (index, (region, bind)) in place_sentinels(
            (&primary.region, primary.bind),
            &replica_regions,
            catalog::SENTINELS_PER_GROUP,
        )
        .into_iter()
        .enumerate()
        {
            let port = ctx.runtime.free_port(bind).map_err(|e| error("No free port", e))?;
            primary.sentinels.push(SentinelRecord {
                index,
                region,
                bind,
                port,
            });
        }
        save(ctx, &primary).await?;
    }
    // A Sentinel started now must monitor where the primary is now.
    let (host, port) = match current_primary(&primary).await {
        Some(addr) => addr,
        None => (primary.bind.to_string(), primary.nodes.first().map_or(0, |n| n.port)),
    };
    // Start the missing Sentinels in parallel.
    let mut starts = tokio::task::JoinSet::new();
    for s in primary.sentinels.clone() {
        let id = sentinel_id(&primary, &s);
        if ctx.runtime.is_running(&id) {
            continue;
        }
        let config = SentinelConfig {
            bind: s.bind,
            port: s.port,
            dir: ctx.runtime.node_dir(&id),
            group: primary.name.clone(),
            primary_host: host.clone(),
            primary_port: port,
            quorum: catalog::SENTINEL_QUORUM,
            down_after_ms: primary.failover.down_after_ms,
            client_password: primary.sentinel_password.clone(),
            auth_password: primary.sentinel_auth_password.clone(),
        };
        let runtime = ctx.runtime.clone();
        starts.spawn(async move { runtime.start(&id, &config.process_spec()).await });
    }
    while let Some(started) = starts.join_next().await {
        started
            .map_err(|e| error("Could not start a Sentinel", e))?
            .map_err(|e| error("Could not start a Sentinel", e))?;
    }
    let down_after = primary.failover.down_after_ms.to_string();
    for s in &primary.sentinels {
        let Some(mut client) = connect_sentinel(&primary, s).await else {
            continue;
        };
        // Only when it differs: every SENTINEL SET makes the Sentinel rewrite and fsync its
        // config file, and on a busy disk that stalls it long enough (measured: over a second)
        // to see every instance as down and fail over a healthy primary.
        let fields: Vec<String> = client
            .command(&["SENTINEL", "MASTER", &primary.name])
            .await
            .unwrap_or_default();
        if setting(&fields, "down-after-milliseconds") != Some(down_after.as_str()) {
            let _: Result<String, _> = client
                .command(&["SENTINEL", "SET", &primary.name, "down-after-milliseconds", &down_after])
                .await;
        }
        let periods: Vec<String> = client.command(&["SENTINEL", "DEBUG"]).await.unwrap_or_default();
        for (name, value) in SENTINEL_PERIODS {
            if setting(&periods, name) != Some(value) {
                let _: Result<String, _> = client.command(&["SENTINEL", "DEBUG", name, value]).await;
            }
        }
    }
    forget_removed(&primary, &replicas).await;
    Ok(())
}

async fn save(ctx: &Context, record: &ServiceRecord) -> Result<(), Diagnostics> {
    ctx.runtime
        .save_record(record)
        .await
        .map_err(|e| error("Could not save the record", e))
}

/// Whether the group member at `addr` runs and answers as a primary (every member has the
/// group's password).
async fn answers_as_primary(primary: &ServiceRecord, addr: &str) -> bool {
    let Some((host, port)) = split_address(addr) else {
        return false;
    };
    let Ok(mut client) = NodeClient::connect(&host, port, &primary.password, Duration::from_secs(2)).await else {
        return false;
    };
    client
        .info(&["replication"])
        .await
        .is_ok_and(|info| info.role() == Some("primary"))
}

/// A field of a `SENTINEL MASTER`, `REPLICAS` or `DEBUG` reply (name, value, name, value, ...).
pub fn setting<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields
        .chunks(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair.get(1))
        .map(String::as_str)
}

/// Before `record`'s nodes are powered off: when one of them is the group's primary, the
/// group is suspended (that primary remembered, the Sentinels stopped with their state) so
/// that the power-off is not taken for a failure and failed over.
pub async fn suspend_if_primary(ctx: &Context, record: &ServiceRecord) -> Result<(), Diagnostics> {
    let _serialised = ctx.group_lock.lock().await;
    let Some(mut primary) = group_primary_record(ctx, record).await else {
        return Ok(());
    };
    if primary.sentinels.is_empty() || primary.suspended_primary.is_some() {
        return Ok(());
    }
    let Some((host, port)) = current_primary(&primary).await else {
        return Ok(());
    };
    let current = format!("{host}:{port}");
    if !record.node_addresses().contains(&current) {
        return Ok(());
    }
    primary.suspended_primary = Some(current);
    save(ctx, &primary).await?;
    for s in &primary.sentinels {
        ctx.runtime
            .stop(&sentinel_id(&primary, s))
            .await
            .map_err(|e| error("Could not stop a Sentinel", e))?;
    }
    Ok(())
}

/// Makes every Sentinel that still lists a node which is no longer a member of the group
/// (a destroyed replica, a standby scaled away) forget it, so that it is not kept as a
/// disconnected replica for ever: SENTINEL RESET, one Sentinel at a time, each waiting until
/// it has found its peers again so the group never lacks a quorum.
async fn forget_removed(primary: &ServiceRecord, replicas: &[ServiceRecord]) {
    let members: Vec<String> = std::iter::once(primary)
        .chain(replicas)
        .flat_map(ServiceRecord::node_addresses)
        .collect();
    let peers = primary.sentinels.len().saturating_sub(1).to_string();
    for s in &primary.sentinels {
        let Some(mut client) = connect_sentinel(primary, s).await else {
            continue;
        };
        let known: Vec<Vec<String>> = client
            .command(&["SENTINEL", "REPLICAS", &primary.name])
            .await
            .unwrap_or_default();
        let stranger = known.iter().find_map(|fields| {
            let addr = format!("{}:{}", setting(fields, "ip")?, setting(fields, "port")?);
            (!members.contains(&addr)).then_some(addr)
        });
        let Some(stranger) = stranger else { continue };
        tracing::debug!(sentinel = s.index, %stranger, "making a Sentinel forget a removed node");
        let _: Result<i64, _> = client.command(&["SENTINEL", "RESET", &primary.name]).await;
        let deadline = tokio::time::Instant::now() + RESET_REDISCOVERY_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let fields: Vec<String> = client
                .command(&["SENTINEL", "MASTER", &primary.name])
                .await
                .unwrap_or_default();
            if setting(&fields, "num-other-sentinels") == Some(peers.as_str()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
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
            .remove_node(&sentinel_id(primary, s))
            .await
            .map_err(|e| error("Could not stop a Sentinel", e))?;
    }
    primary.sentinels.clear();
    primary.suspended_primary = None;
    save(ctx, primary).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_master_reply_is_read_by_field_name() {
        let fields: Vec<String> = ["name", "primary", "down-after-milliseconds", "1000", "odd"]
            .map(String::from)
            .into();
        assert_eq!(setting(&fields, "down-after-milliseconds"), Some("1000"));
        assert_eq!(setting(&fields, "name"), Some("primary"));
        assert_eq!(setting(&fields, "odd"), None);
        assert_eq!(setting(&fields, "quorum"), None);
    }

    fn addr(n: u8) -> IpAddr {
        IpAddr::from([127, 0, n, 1])
    }

    #[test]
    fn a_majority_of_sentinels_sits_outside_the_primary_region_when_it_can() {
        let placed = place_sentinels(("local-1", addr(1)), &[("local-2".into(), addr(2))], 3);
        let regions: Vec<&str> = placed.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(regions, ["local-2", "local-1", "local-2"]);
        let placed = place_sentinels(
            ("local-1", addr(1)),
            &[("local-2".into(), addr(2)), ("local-3".into(), addr(3))],
            3,
        );
        let regions: Vec<&str> = placed.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(regions, ["local-2", "local-3", "local-1"]);
    }

    #[test]
    fn replicas_in_the_primary_region_put_every_sentinel_there() {
        let placed = place_sentinels(("local-1", addr(1)), &[("local-1".into(), addr(1))], 3);
        assert!(placed.iter().all(|(r, _)| r == "local-1"));
    }
}
