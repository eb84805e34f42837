//! What the group's Sentinels say: where the primary is now, whether their view is settled,
//! and how they are. Read-only: changing the group is `failover` and `switchover`.

use std::time::Duration;

use super::records::group_primary_record;
use super::{Context, certificates, error};
use crate::runtime::{Endpoint, NodeId, NodeState, SentinelRecord, ServiceRecord};
use crate::tfplug::Diagnostics;
use crate::valkey::{NodeClient, REPLICATION_USER, SENTINEL_PEER_USER, SentinelClient, UpstreamAuth, ValkeyError};

/// How long to wait for Sentinel to finish a failover before giving up on a restart.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn sentinel_addresses(primary: &ServiceRecord) -> Vec<String> {
    primary.sentinels.iter().map(|s| s.endpoint().to_string()).collect()
}

/// A connection to one of the group's Sentinels as their peer user, which may change them.
pub async fn connect_sentinel(primary: &ServiceRecord, s: &SentinelRecord) -> Option<SentinelClient> {
    SentinelClient::connect(
        &s.host,
        s.port,
        SENTINEL_PEER_USER,
        &primary.sentinel_auth_password,
        certificates::client_identity(primary).as_ref(),
        &primary.name,
        Duration::from_secs(1),
    )
    .await
    .ok()
}

/// A connection to the data node at `at`, a member of `record`'s group, as the `default` user
/// with the group's password, over TLS with the provider's certificate when the group speaks it.
pub async fn connect_member(
    record: &ServiceRecord,
    at: &Endpoint,
    timeout: Duration,
) -> Result<NodeClient, ValkeyError> {
    let tls = certificates::client_identity(record);
    NodeClient::connect(&at.host, at.port, &record.password, tls.as_ref(), timeout).await
}

/// Where the group's primary is now: the node powered off as the primary while the group is
/// suspended, else what the first Sentinel that answers reports.
pub async fn current_primary(primary: &ServiceRecord) -> Option<Endpoint> {
    if let Some(suspended) = &primary.suspended_primary {
        return Endpoint::parse(suspended);
    }
    for s in &primary.sentinels {
        let Some(mut client) = connect_sentinel(primary, s).await else {
            continue;
        };
        if let Ok(Some((host, port))) = client.primary_address().await {
            return Some(Endpoint::new(host, port));
        }
    }
    None
}

/// The group's primary once Sentinel's view is settled: a majority of the Sentinels answer,
/// all of them name the same primary, none considers it down and none is failing it over.
/// Err describes what is unsettled; Ok(None) when no Sentinel answers at all.
pub async fn settled_primary(primary: &ServiceRecord) -> Result<Option<Endpoint>, String> {
    let mut views: Vec<(Endpoint, String)> = Vec::new();
    for s in &primary.sentinels {
        let Some(mut client) = connect_sentinel(primary, s).await else {
            continue;
        };
        let Ok(fields) = client.primary().await else {
            continue;
        };
        if let (Some((host, port)), Some(flags)) = (fields.address(), fields.get("flags")) {
            views.push((Endpoint::new(host, port), flags.to_string()));
        }
    }
    let Some((first, _)) = views.first().cloned() else {
        return Ok(None);
    };
    if views.len() * 2 <= primary.sentinels.len() {
        return Err(format!(
            "only {} of {} Sentinels answer",
            views.len(),
            primary.sentinels.len()
        ));
    }
    for (other, flags) in &views {
        if *other != first {
            return Err(format!("Sentinels disagree on the primary ({first} or {other})"));
        }
        if !flags.split(',').all(|f| f == "master") {
            return Err(format!("Sentinel reports the primary {first} as {flags}"));
        }
    }
    Ok(Some(first))
}

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
    let upstream = |at: Endpoint| UpstreamAuth {
        host: at.host,
        port: at.port,
        user: REPLICATION_USER.to_string(),
        password: primary.replication_password.clone(),
    };
    if let Some(suspended) = primary.suspended_primary.as_deref().and_then(Endpoint::parse) {
        return Ok(Some(upstream(suspended)));
    }
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        match settled_primary(&primary).await {
            Ok(Some(at)) => return Ok(Some(upstream(at))),
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

/// How the group's Sentinels are: `none` (no group: no read replica, or failover disabled),
/// `paused` (stopped on purpose while the group's primary is powered off), `running` (every
/// one runs), `degraded` (one or more stopped outside Terraform) or `unreachable` (none known
/// stopped, one or more on a host that does not answer: nothing to plan until it does).
pub async fn sentinel_status(ctx: &Context, primary: &ServiceRecord) -> &'static str {
    if primary.sentinels.is_empty() {
        return "none";
    }
    if primary.suspended_primary.is_some() {
        return "paused";
    }
    let states = futures_util::future::join_all(
        primary
            .sentinels
            .iter()
            .map(|s| async move { ctx.runtime.state(&NodeId::sentinel(&primary.name, s.index)).await }),
    )
    .await;
    if states.contains(&NodeState::Stopped) {
        "degraded"
    } else if states.contains(&NodeState::Unreachable) {
        "unreachable"
    } else {
        "running"
    }
}
