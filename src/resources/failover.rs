//! Automatic failover with Valkey Sentinel. A primary service that has read replicas is
//! watched by a group of Sentinels (3, quorum 2) spread over the group's regions; when the
//! primary fails they promote the best replica (lowest failover_priority, then most data) and
//! the others follow it. The provider never restarts a former primary as a primary: it asks
//! Sentinel where the primary is now and restarts the node as its replica.

use std::net::IpAddr;
use std::time::Duration;

use super::Context;
use super::nodes::error;
use crate::catalog;
use crate::runtime::{NodeId, SentinelRecord, ServiceRecord};
use crate::tfplug::Diagnostics;
use crate::valkey::{NodeClient, REPLICATION_USER, SentinelConfig, UpstreamAuth};

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

async fn connect_sentinel(primary: &ServiceRecord, s: &SentinelRecord) -> Option<NodeClient> {
    NodeClient::connect(
        &s.bind.to_string(),
        s.port,
        &primary.sentinel_password,
        Duration::from_secs(1),
    )
    .await
    .ok()
}

/// Where the group's primary is now, as the first Sentinel that answers reports it.
pub async fn current_primary(primary: &ServiceRecord) -> Option<(String, u16)> {
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
async fn settled_primary(primary: &ServiceRecord) -> Result<Option<(String, u16)>, String> {
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
        let get = |key: &str| {
            fields
                .chunks(2)
                .find(|kv| kv[0] == key)
                .and_then(|kv| kv.get(1).cloned())
        };
        if let (Some(ip), Some(Ok(port)), Some(flags)) = (get("ip"), get("port").map(|p| p.parse()), get("flags")) {
            views.push((ip, port, flags));
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
/// the group. While a failover is under way this waits for it to end: restarting a node
/// against a primary that is being replaced could demote the new primary or bring back an
/// empty old one.
pub async fn sentinel_upstream(ctx: &Context, record: &ServiceRecord) -> Result<Option<UpstreamAuth>, Diagnostics> {
    let Some(primary) = group_primary_record(ctx, record).await else {
        return Ok(None);
    };
    if primary.sentinels.is_empty() {
        return Ok(None);
    }
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    let (host, port) = loop {
        match settled_primary(&primary).await {
            Ok(Some(addr)) => break addr,
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
    };
    Ok(Some(UpstreamAuth {
        host,
        port,
        user: REPLICATION_USER.to_string(),
        password: primary.replication_password.clone(),
    }))
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

/// Whether every Sentinel of the primary's group runs.
pub fn sentinels_running(ctx: &Context, primary: &ServiceRecord) -> bool {
    primary
        .sentinels
        .iter()
        .all(|s| ctx.runtime.is_running(&sentinel_id(primary, s)))
}

/// Makes the group of primary service `name` what it should be: Sentinels while failover is
/// enabled and the primary has read replicas, none otherwise; dead Sentinels restarted; the
/// down-after setting applied.
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
        ctx.runtime
            .save_record(&primary)
            .await
            .map_err(|e| error("Could not save the record", e))?;
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
            password: primary.sentinel_password.clone(),
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
    }
    Ok(())
}

/// A field of a `SENTINEL MASTER` reply (name, value, name, value, ...).
fn setting<'a>(fields: &'a [String], name: &str) -> Option<&'a str> {
    fields
        .chunks(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair.get(1))
        .map(String::as_str)
}

/// Stops the group's Sentinels, keeping their state, while its primary is powered off.
pub async fn stop_group(ctx: &Context, primary: &ServiceRecord) -> Result<(), Diagnostics> {
    for s in &primary.sentinels {
        ctx.runtime
            .stop(&sentinel_id(primary, s))
            .await
            .map_err(|e| error("Could not stop a Sentinel", e))?;
    }
    Ok(())
}

/// Stops and forgets the group's Sentinels.
async fn dissolve(ctx: &Context, primary: &mut ServiceRecord) -> Result<(), Diagnostics> {
    if primary.sentinels.is_empty() {
        return Ok(());
    }
    for s in &primary.sentinels {
        ctx.runtime
            .remove_node(&sentinel_id(primary, s))
            .await
            .map_err(|e| error("Could not stop a Sentinel", e))?;
    }
    primary.sentinels.clear();
    ctx.runtime
        .save_record(primary)
        .await
        .map_err(|e| error("Could not save the record", e))
}

/// A coordinated switchover that makes `target` the group's primary: the other replicas are
/// made ineligible for a moment, the Sentinels are asked for a COORDINATED failover (the
/// primary pauses writes until the target has every acknowledged write), then eligibility
/// is restored.
pub async fn switchover(ctx: &Context, target: &ServiceRecord) -> Result<(), Diagnostics> {
    let _serialised = ctx.group_lock.lock().await;
    let primary = group_primary_record(ctx, target).await.ok_or_else(|| {
        error(
            "Cannot promote",
            "a replica of a server this provider does not manage cannot be promoted",
        )
    })?;
    if primary.sentinels.is_empty() {
        return Err(error(
            "Cannot promote",
            format!(
                "failover is disabled on primary service {:?}; enable it to promote a replica",
                primary.name
            ),
        ));
    }
    if target.failover_priority == Some(0) {
        return Err(error(
            "Cannot promote",
            "failover_priority 0 means this replica is never promoted; raise it",
        ));
    }
    let target_port = target.nodes.first().map_or(0, |n| n.port);
    let target_addr = (target.bind.to_string(), target_port);
    if current_primary(&primary).await.as_ref() == Some(&target_addr) {
        return Ok(());
    }
    let members = group_members(ctx, &primary).await?;
    let set_priority = |addr: (String, u16), password: String, priority: i64| async move {
        let set = async {
            let mut c = NodeClient::connect(&addr.0, addr.1, &password, Duration::from_secs(2)).await?;
            c.config_set(&[("replica-priority", priority.to_string())]).await
        };
        if let Err(e) = set.await {
            tracing::warn!(node = %format!("{}:{}", addr.0, addr.1), error = %e, "could not set replica-priority");
        }
    };
    for (addr, password, _) in &members {
        let priority = if *addr == target_addr { 1 } else { 0 };
        set_priority(addr.clone(), password.clone(), priority).await;
    }
    let result = run_coordinated_failover(&primary, &target_addr).await;
    for (addr, password, priority) in members {
        set_priority(addr, password, priority).await;
    }
    result
}

/// Every data node of the group: address, default-user password, configured priority.
async fn group_members(
    ctx: &Context,
    primary: &ServiceRecord,
) -> Result<Vec<((String, u16), String, i64)>, Diagnostics> {
    let mut all = replica_records(ctx, &primary.name).await?;
    all.push(primary.clone());
    Ok(all
        .iter()
        .flat_map(|r| {
            let priority = r.failover_priority.unwrap_or(catalog::DEFAULT_FAILOVER_PRIORITY);
            r.nodes
                .iter()
                .map(move |n| ((r.bind.to_string(), n.port), r.password.clone(), priority))
        })
        .collect())
}

async fn run_coordinated_failover(primary: &ServiceRecord, target: &(String, u16)) -> Result<(), Diagnostics> {
    let timeout = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut requested = false;
    while tokio::time::Instant::now() < deadline {
        for s in &primary.sentinels {
            let Some(mut client) = connect_sentinel(primary, s).await else {
                continue;
            };
            if !requested {
                // Sentinel reads replica priorities from INFO every few seconds: wait until it
                // sees the target as the only candidate before asking.
                let replicas: Vec<Vec<String>> = client
                    .command(&["SENTINEL", "REPLICAS", &primary.name])
                    .await
                    .unwrap_or_default();
                if !only_candidate(&replicas, target) {
                    tracing::debug!(
                        ?replicas,
                        "waiting for Sentinel to see the switchover target as the only candidate"
                    );
                    break;
                }
                match client
                    .command::<String>(&["SENTINEL", "FAILOVER", &primary.name, "COORDINATED"])
                    .await
                {
                    Ok(_) => requested = true,
                    Err(e) => tracing::debug!(error = %e, "Sentinel refused the failover request; retrying"),
                }
            }
            let now: Vec<String> = client
                .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &primary.name])
                .await
                .unwrap_or_default();
            if now.first() == Some(&target.0) && now.get(1) == Some(&target.1.to_string()) {
                return Ok(());
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(error(
        "Switchover did not complete",
        format!(
            "the Sentinels did not make {}:{} the primary within {timeout:?}; see the Sentinel logs",
            target.0, target.1
        ),
    ))
}

/// Whether, in a SENTINEL REPLICAS reply, `target` is the only replica with a non-zero
/// priority.
fn only_candidate(replicas: &[Vec<String>], target: &(String, u16)) -> bool {
    let field = |r: &Vec<String>, key: &str| r.chunks(2).find(|kv| kv[0] == key).and_then(|kv| kv.get(1).cloned());
    let mut saw_target = false;
    for r in replicas {
        let is_target = field(r, "ip").as_deref() == Some(target.0.as_str())
            && field(r, "port").as_deref() == Some(target.1.to_string().as_str());
        let priority = field(r, "slave-priority")
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(0);
        match (is_target, priority) {
            (true, p) if p > 0 => saw_target = true,
            (true, _) => return false,
            (false, 0) => {}
            (false, _) => return false,
        }
    }
    saw_target
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

    #[test]
    fn only_candidate_needs_the_target_alone_eligible() {
        let r = |ip: &str, port: &str, p: &str| -> Vec<String> {
            ["ip", ip, "port", port, "slave-priority", p]
                .iter()
                .map(|s| s.to_string())
                .collect()
        };
        let target = ("127.0.2.1".to_string(), 7000);
        assert!(only_candidate(
            &[r("127.0.2.1", "7000", "1"), r("127.0.3.1", "7001", "0")],
            &target
        ));
        assert!(!only_candidate(
            &[r("127.0.2.1", "7000", "1"), r("127.0.3.1", "7001", "100")],
            &target
        ));
        assert!(!only_candidate(&[r("127.0.3.1", "7001", "0")], &target));
    }
}
