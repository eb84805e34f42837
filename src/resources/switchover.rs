//! Planned changes of a replication group's primary: `promote = true` on a read replica, and
//! the hand-over that comes before the group's current primary is destroyed or scaled away.
//! Both are coordinated failovers through the Sentinels (the primary pauses writes until the
//! target has every acknowledged write), so no acknowledged write is lost.

use std::time::Duration;

use super::group_view::{connect_member, connect_sentinel, current_primary, settled_primary};
use super::records::{group_primary_record, replica_records};
use super::{Context, certificates, error, group_lock, write_bound};
use crate::catalog;
use crate::runtime::{Endpoint, ServiceRecord};
use crate::tfplug::Diagnostics;
use crate::valkey::TlsIdentity;
use crate::valkey::{Fields, NodeClient};

/// One data node of a replication group.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    addr: Endpoint,
    /// The group's application password (every member has it).
    password: String,
    /// What the provider presents to the group's nodes, when the group speaks TLS.
    tls: Option<TlsIdentity>,
    /// failover_priority of the member's resource: lower is promoted first, 0 never.
    priority: i64,
    /// Node 0 of the primary service: where the group began, preferred among equals.
    home: bool,
    /// Name of the member (service or read replica) the node belongs to.
    member: String,
}

/// Every data node of the group of `primary` (the primary service's record).
async fn group_members(ctx: &Context, primary: &ServiceRecord) -> Result<Vec<Member>, Diagnostics> {
    let mut all = vec![primary.clone()];
    all.extend(replica_records(ctx, &primary.name).await?);
    Ok(all
        .iter()
        .flat_map(|r| {
            let priority = r.failover_priority.unwrap_or(catalog::DEFAULT_FAILOVER_PRIORITY);
            let home_service = r.name == primary.name;
            r.nodes.iter().map(move |n| Member {
                addr: n.endpoint(),
                password: r.password.clone(),
                tls: certificates::client_identity(r),
                priority,
                home: home_service && n.index == 0,
                member: r.name.clone(),
            })
        })
        .collect())
}

/// `promote = true`: makes `target` (a read replica's record) its group's primary.
pub async fn promote(ctx: &Context, target: &ServiceRecord) -> Result<(), Diagnostics> {
    group_lock::exclusively(ctx, target.group(), promote_held(ctx, target)).await
}

async fn promote_held(ctx: &Context, target: &ServiceRecord) -> Result<(), Diagnostics> {
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
    if let Some(off) = &primary.suspended_primary {
        return Err(error(
            "Cannot promote",
            format!(
                "the group's primary ({off}) is powered off, and a switchover needs it running to hand over every \
                 acknowledged write; power it on (powered = true), apply, then promote"
            ),
        ));
    }
    let target_at = target
        .endpoint()
        .ok_or_else(|| error("Cannot promote", "the replica has no node"))?;
    switch_to(ctx, &primary, target_at).await
}

/// Before nodes `indices` of `leaving` are destroyed: when one of them is the group's primary,
/// switches the group over to the best other member (lowest failover_priority above 0, node 0
/// of the primary service among equals) that runs and replicates. An error, saying what to
/// do, when no member can take over; nothing to do when none of them is the primary.
pub async fn hand_over(ctx: &Context, leaving: &ServiceRecord, indices: &[usize]) -> Result<(), Diagnostics> {
    group_lock::exclusively(ctx, leaving.group(), hand_over_held(ctx, leaving, indices)).await
}

async fn hand_over_held(ctx: &Context, leaving: &ServiceRecord, indices: &[usize]) -> Result<(), Diagnostics> {
    let Some(primary) = group_primary_record(ctx, leaving).await else {
        return Ok(());
    };
    if primary.sentinels.is_empty() {
        return Ok(());
    }
    let leaving_addrs: Vec<String> = indices.iter().filter_map(|&i| leaving.node_address(i)).collect();
    let refuse = |why: String| {
        error(
            "The group's primary cannot be handed over",
            format!(
                "{} is the primary of replication group {:?}, and {why}. Destroying it now would leave the group \
                 without a writable primary.",
                leaving.name, primary.name
            ),
        )
    };
    if let Some(suspended) = &primary.suspended_primary {
        if leaving_addrs.contains(suspended) {
            return Err(refuse(format!(
                "it is powered off ({suspended}); set powered = true and apply, so it can hand over, then destroy it"
            )));
        }
        return Ok(());
    }
    let Some(current) = current_primary(&primary).await else {
        return Ok(());
    };
    if !leaving_addrs.contains(&current.to_string()) {
        return Ok(());
    }
    let also_leaving = ctx.leaving.lock().map(|set| set.clone()).unwrap_or_default();
    let mut candidates = Vec::new();
    for member in group_members(ctx, &primary).await? {
        if leaving_addrs.contains(&member.addr.to_string())
            || (member.member != leaving.name && also_leaving.contains(&member.member))
        {
            continue;
        }
        let healthy = follows(&member, &current).await;
        candidates.push((member, healthy));
    }
    let Some(target) = choose_successor(&candidates) else {
        return Err(refuse(
            "no other member can take over (each is stopped, not replicating it, or has failover_priority 0). \
             Apply to start the stopped members, or give one failover_priority above 0, then destroy again"
                .to_string(),
        ));
    };
    switch_to(ctx, &primary, target.addr.clone()).await
}

/// Whether `member` answers and replicates from `primary` with its link up.
async fn follows(member: &Member, primary: &Endpoint) -> bool {
    let Ok(mut client) = NodeClient::connect(
        &member.addr.host,
        member.addr.port,
        &member.password,
        member.tls.as_ref(),
        Duration::from_secs(2),
    )
    .await
    else {
        return false;
    };
    let Ok(info) = client.info(&["replication"]).await else {
        return false;
    };
    let following = (
        info.get("master_host"),
        info.get("master_port").and_then(|p| p.parse::<u16>().ok()),
    );
    info.role() == Some("replica")
        && info.primary_link_up()
        && following == (Some(primary.host.as_str()), Some(primary.port))
}

/// The member to hand the group to: healthy, eligible (priority above 0), lowest priority,
/// the primary service's node 0 among equals, then by address so the choice is stable.
fn choose_successor(candidates: &[(Member, bool)]) -> Option<&Member> {
    candidates
        .iter()
        .filter(|(m, healthy)| *healthy && m.priority > 0)
        .map(|(m, _)| m)
        .min_by(|a, b| (a.priority, !a.home, &a.addr).cmp(&(b.priority, !b.home, &b.addr)))
}

/// A coordinated switchover that makes `target` the group's primary: the other members are
/// made ineligible for a moment, the Sentinels are asked for a COORDINATED failover (the
/// primary pauses writes until the target has every acknowledged write), then eligibility
/// is restored. The caller holds the group lock.
async fn switch_to(ctx: &Context, primary: &ServiceRecord, target_addr: Endpoint) -> Result<(), Diagnostics> {
    if current_primary(primary).await.as_ref() == Some(&target_addr) {
        return Ok(());
    }
    let members = group_members(ctx, primary).await?;
    let set_priority = |addr: Endpoint, password: String, tls: Option<TlsIdentity>, priority: i64| async move {
        let set = async {
            let mut c =
                NodeClient::connect(&addr.host, addr.port, &password, tls.as_ref(), Duration::from_secs(2)).await?;
            c.config_set(&[("replica-priority", priority.to_string())]).await
        };
        if let Err(e) = set.await {
            tracing::warn!(node = %addr, error = %e, "could not set replica-priority");
        }
    };
    for m in &members {
        let priority = if m.addr == target_addr { 1 } else { 0 };
        set_priority(m.addr.clone(), m.password.clone(), m.tls.clone(), priority).await;
    }
    // The promoted node has no replica until the others follow it: a planned switchover must
    // not refuse writes meanwhile.
    write_bound::lift(ctx, primary).await?;
    let result = run_coordinated_failover(primary, &target_addr).await;
    for m in members {
        set_priority(m.addr, m.password, m.tls, m.priority).await;
    }
    let restored = write_bound::settle(ctx, primary, &[]).await;
    result.and(restored)
}

/// How long the primary's writes may stay held while Valkey 8's Sentinels hand the group over:
/// longer than they take to promote the target and demote the primary.
const HANDOVER_PAUSE: Duration = Duration::from_secs(30);
/// How long the target may take to catch up with the held primary.
const CATCH_UP: Duration = Duration::from_secs(10);

/// The group's primary, its writes held for a handover (Valkey 8).
struct Held {
    at: Endpoint,
    client: NodeClient,
    /// Whether it now replicates from the target.
    demoted: bool,
}

/// Before an uncoordinated failover (Valkey 8's Sentinels have no COORDINATED): holds the
/// primary's writes, then waits until `target` has every one it acknowledged, so promoting
/// the target loses none.
async fn hold_primary_for(primary: &ServiceRecord, target: &Endpoint) -> Result<Held, String> {
    let at = current_primary(primary)
        .await
        .ok_or("no Sentinel names the group's primary")?;
    let mut client = connect_member(primary, &at, Duration::from_secs(2))
        .await
        .map_err(|e| e.to_string())?;
    client
        .pause_writes(HANDOVER_PAUSE.as_millis() as u64)
        .await
        .map_err(|e| e.to_string())?;
    let caught_up = async {
        let offset = client.info(&["replication"]).await?.get_i64("master_repl_offset");
        let mut replica = connect_member(primary, target, Duration::from_secs(2)).await?;
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        while tokio::time::Instant::now() < deadline {
            let has = replica.info(&["replication"]).await?.get_i64("slave_repl_offset");
            if has.is_some() && has >= offset {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok::<_, crate::valkey::ValkeyError>(false)
    };
    match caught_up.await {
        Ok(true) => Ok(Held {
            at,
            client,
            demoted: false,
        }),
        outcome => {
            let _ = client.unpause().await;
            Err(match outcome {
                Err(e) => e.to_string(),
                _ => format!("{target} did not catch up with the primary within {CATCH_UP:?}"),
            })
        }
    }
}

/// Once the target answers as the primary, makes the held primary its replica. The Sentinels
/// would, but they cannot while its writes are held: their own announcements on it wait, and
/// every command they send it queues behind them.
async fn demote_once_promoted(primary: &ServiceRecord, target: &Endpoint, held: &mut Held) {
    let promoted = async {
        let mut client = connect_member(primary, target, Duration::from_secs(2)).await?;
        client.info(&["replication"]).await
    };
    if !promoted.await.is_ok_and(|info| info.role() == Some("primary")) {
        return;
    }
    // Its config already names the group's replication user and password.
    match held
        .client
        .command::<String>(&["REPLICAOF", &target.host, &target.port.to_string()])
        .await
    {
        Ok(_) => held.demoted = true,
        Err(e) => tracing::debug!(node = %held.at, error = %e, "could not demote the old primary yet"),
    }
}

/// Lets the held primary's writes go: demoted, it refuses them (unacknowledged, so nothing
/// acknowledged is lost); when the handover did not happen, it takes them as before.
async fn release(mut held: Held) {
    if let Err(e) = held.client.unpause().await {
        tracing::warn!(node = %held.at, error = %e, "could not release the old primary's writes; they resume when the pause ends");
    }
}

/// Asks a Sentinel for the switchover: a COORDINATED failover on Valkey 9; on Valkey 8, the
/// primary's writes are held until the target has them all, then a plain failover.
async fn request_failover(
    primary: &ServiceRecord,
    client: &mut crate::valkey::SentinelClient,
    target: &Endpoint,
    held: &mut Option<Held>,
) -> Result<(), String> {
    if client.major_version().await.ok().flatten().is_some_and(|v| v >= 9) {
        return client.failover_coordinated().await.map_err(|e| e.to_string());
    }
    if held.is_none() {
        *held = Some(hold_primary_for(primary, target).await?);
    }
    let asked = client.failover().await.map_err(|e| e.to_string());
    if asked.is_err()
        && let Some(refused) = held.take()
    {
        // Writes go on until the next attempt holds them again.
        release(refused).await;
    }
    asked
}

async fn run_coordinated_failover(primary: &ServiceRecord, target: &Endpoint) -> Result<(), Diagnostics> {
    let mut held = None;
    let result = run_failover_holding(primary, target, &mut held).await;
    if let Some(held) = held {
        release(held).await;
    }
    result
}

async fn run_failover_holding(
    primary: &ServiceRecord,
    target: &Endpoint,
    held: &mut Option<Held>,
) -> Result<(), Diagnostics> {
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
                let replicas = client.replicas().await.unwrap_or_default();
                if !only_candidate(&replicas, target) {
                    tracing::debug!(
                        ?replicas,
                        "waiting for Sentinel to see the switchover target as the only candidate"
                    );
                    break;
                }
                // The failover needs a majority of votes, asked for once when it starts: wait
                // until this Sentinel knows its peers and its links to them work (a new or reset
                // Sentinel hears of them within a second, then connects and pings them).
                let peers = client.peers().await.unwrap_or_default();
                if !peers_ready(&peers, primary.sentinels.len() - 1) {
                    tracing::debug!(?peers, "waiting for Sentinel's links to its peers before a switchover");
                    break;
                }
                match request_failover(primary, &mut client, target, held).await {
                    Ok(()) => requested = true,
                    Err(e) => tracing::debug!(error = %e, "Sentinel refused the failover request; retrying"),
                }
            }
            break;
        }
        if requested && let Some(h) = held.as_mut() {
            demote_once_promoted(primary, target, h).await;
            if h.demoted
                && let Some(demoted) = held.take()
            {
                release(demoted).await;
            }
        }
        // Done when every Sentinel that answers has finished: Sentinel already names the target
        // while it still reconfigures the other replicas.
        if requested && held.is_none() && settled_primary(primary).await.ok().flatten().as_ref() == Some(target) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(error(
        "Switchover did not complete",
        format!("the Sentinels did not make {target} the primary within {timeout:?}; see the Sentinel logs"),
    ))
}

/// Whether a `SENTINEL SENTINELS` reply lists `expected` peers, each connected and answering
/// pings within the last second (so a vote request reaches it).
fn peers_ready(peers: &[Fields], expected: usize) -> bool {
    peers.len() >= expected
        && peers.iter().all(|p| {
            // `master_down` only remembers the peer's answer to the last vote request.
            let flags = p.flags();
            !flags.is_empty()
                && flags.iter().all(|f| *f == "sentinel" || *f == "master_down")
                && p.number("last-ok-ping-reply").is_some_and(|ms| (0..1000).contains(&ms))
        })
}

/// Whether, in a SENTINEL REPLICAS reply, `target` is the only replica with a non-zero
/// priority (replicas Sentinel sees as down or disconnected are never chosen, so they do not
/// count).
fn only_candidate(replicas: &[Fields], target: &Endpoint) -> bool {
    let mut saw_target = false;
    let unreachable = |r: &Fields| r.flags().iter().any(|f| *f == "s_down" || *f == "disconnected");
    for r in replicas {
        if unreachable(r) && r.get("ip") != Some(target.host.as_str()) {
            continue;
        }
        let is_target = r.address().as_ref() == Some(&target.pair());
        let priority = r.number("slave-priority").unwrap_or(0);
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
    fn only_candidate_needs_the_target_alone_eligible() {
        let r =
            |ip: &str, port: &str, p: &str| -> Fields { Fields::from(["ip", ip, "port", port, "slave-priority", p]) };
        let target = Endpoint::new("127.0.2.1", 7000);
        assert!(only_candidate(
            &[r("127.0.2.1", "7000", "1"), r("127.0.3.1", "7001", "0")],
            &target
        ));
        assert!(!only_candidate(
            &[r("127.0.2.1", "7000", "1"), r("127.0.3.1", "7001", "100")],
            &target
        ));
        assert!(!only_candidate(&[r("127.0.3.1", "7001", "0")], &target));
        let gone = Fields::from([
            "ip",
            "127.0.4.1",
            "port",
            "7002",
            "slave-priority",
            "100",
            "flags",
            "slave,s_down,disconnected",
        ]);
        assert!(
            only_candidate(&[r("127.0.2.1", "7000", "1"), gone], &target),
            "a replica Sentinel sees as down is never chosen, whatever its priority"
        );
    }

    #[test]
    fn peers_are_ready_once_all_are_linked_and_answer_pings() {
        let peer = |flags: &str, ping: &str| Fields::from(["flags", flags, "last-ok-ping-reply", ping]);
        assert!(peers_ready(&[peer("sentinel", "120"), peer("sentinel", "900")], 2));
        assert!(!peers_ready(&[peer("sentinel", "120")], 2), "a peer not known yet");
        assert!(!peers_ready(
            &[peer("sentinel", "120"), peer("sentinel,disconnected", "120")],
            2
        ));
        assert!(
            !peers_ready(&[peer("sentinel", "120"), peer("sentinel", "5000")], 2),
            "no pong yet"
        );
    }

    fn member(port: u16, priority: i64, home: bool) -> Member {
        Member {
            addr: Endpoint::new("127.0.0.1", port),
            password: "pw".into(),
            tls: None,
            priority,
            home,
            member: format!("m{port}"),
        }
    }

    #[test]
    fn the_successor_is_the_healthy_eligible_member_with_the_lowest_priority() {
        let candidates = [
            (member(1, 100, true), true),
            (member(2, 10, false), false),
            (member(3, 50, false), true),
            (member(4, 0, false), true),
        ];
        assert_eq!(choose_successor(&candidates).unwrap().addr.port, 3);
        // Among equals the primary service's node 0 goes first, then the lower address.
        let equals = [(member(5, 100, false), true), (member(1, 100, true), true)];
        assert_eq!(choose_successor(&equals).unwrap().addr.port, 1);
        let equals = [(member(6, 100, false), true), (member(5, 100, false), true)];
        assert_eq!(choose_successor(&equals).unwrap().addr.port, 5);
        // Nobody healthy and eligible: nobody.
        assert!(choose_successor(&[(member(2, 10, false), false), (member(4, 0, false), true)]).is_none());
    }
}
