//! The bound on what a primary cut off from its replication group acknowledges. Valkey's
//! `min-replicas-to-write` / `min-replicas-max-lag` make a primary refuse writes once it has
//! heard from too few replicas for too long: in a split brain (the primary's host cut off from
//! the others, clients still connected to it) the majority promotes another node, and whatever
//! the old primary acknowledged meanwhile is lost when the cut heals. Without the bound that is
//! every write of the cut; with it, the writes of its first `max_lag` seconds or so.
//!
//! The provider keeps the setting consistent with what it does itself: it counts only the nodes
//! that should run, lowers the requirement on every node before it stops or removes nodes, and
//! raises it again once new or restarted nodes replicate.

use std::collections::HashMap;
use std::time::Duration;

use super::Context;
use super::group_view::connect_member;
use super::observe::NodeStatus;
use super::records::{self, replica_records};
use crate::catalog;
use crate::runtime::{Endpoint, FailoverSettings, NodeId, NodeState, ServiceRecord};
use crate::tfplug::Diagnostics;
use crate::valkey::{NodeClient, WRITE_BOUND_SETTINGS, write_bound_settings};

/// What every data node of a group runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBound {
    /// Replicas a primary must hear from to take writes; 0 turns the bound off.
    pub to_write: i64,
    /// Seconds within which they must have acknowledged the stream.
    pub max_lag: i64,
}

impl WriteBound {
    /// No bound: a primary takes writes whatever it hears from its replicas.
    fn off(max_lag: i64) -> WriteBound {
        WriteBound { to_write: 0, max_lag }
    }

    /// The bound a node runs with, from its settings (valkey-server's names); none when it did
    /// not report them.
    fn reported(settings: &HashMap<String, String>) -> Option<WriteBound> {
        let [to_write, max_lag] =
            WRITE_BOUND_SETTINGS.map(|name| settings.get(name).and_then(|v| v.parse::<i64>().ok()));
        Some(WriteBound {
            to_write: to_write?,
            max_lag: max_lag?,
        })
    }

    /// Whether a node reporting `settings` runs with this bound. A node that did not report
    /// them (it did not answer in time) is not judged.
    pub fn held_by(&self, settings: &HashMap<String, String>) -> bool {
        WriteBound::reported(settings).is_none_or(|running| {
            running.to_write == self.to_write && (self.to_write == 0 || running.max_lag == self.max_lag)
        })
    }
}

/// The bound for a group whose `nodes_on` data nodes (the primary's included) should run.
/// Undeclared, it asks for one replica once the group keeps one after losing any node (3 nodes
/// or more): with 2, a failover leaves the new primary alone and it would refuse every write.
/// Declared, it asks for that many, never more than the other nodes that should run. No
/// failover, no split brain: without Sentinels nothing else is promoted, so no bound.
pub fn effective(settings: &FailoverSettings, nodes_on: usize) -> WriteBound {
    let others = i64::try_from(nodes_on.saturating_sub(1)).unwrap_or(i64::MAX);
    let to_write = match (settings.enabled, settings.min_replicas_to_write) {
        (false, _) => 0,
        (true, None) => (others - 1).clamp(0, 1),
        (true, Some(declared)) => declared.clamp(0, others),
    };
    WriteBound {
        to_write,
        max_lag: settings.min_replicas_max_lag,
    }
}

/// The members of `record`'s group: its primary service's record first, then every read
/// replica's; none for a replica of a server this provider does not manage (or whose primary
/// is gone).
pub async fn members(ctx: &Context, record: &ServiceRecord) -> Result<Option<Vec<ServiceRecord>>, Diagnostics> {
    let Some(group) = record.group() else {
        return Ok(None);
    };
    let primary = match group == record.name {
        true => Some(record.clone()),
        false => records::load(ctx, group).await?,
    };
    let Some(primary) = primary else {
        return Ok(None);
    };
    let mut all = replica_records(ctx, group).await?;
    all.insert(0, primary);
    Ok(Some(all))
}

/// The data nodes of `members` that should run: members powered on and no longer being
/// created (a new replica counts once it replicates), less the nodes at `leaving` (host:port).
fn nodes_on(members: &[ServiceRecord], leaving: &[String]) -> usize {
    members
        .iter()
        .filter(|m| !m.powered_off && m.creating.is_none())
        .flat_map(ServiceRecord::node_addresses)
        .filter(|addr| !leaving.contains(addr))
        .count()
}

/// The bound the nodes of a group should run with now: `members` as `members` gives them; no
/// bound without a group.
pub fn of_members(members: Option<&[ServiceRecord]>) -> WriteBound {
    match members.and_then(|m| Some((m.first()?, m))) {
        Some((primary, members)) => effective(&primary.failover, nodes_on(members, &[])),
        None => WriteBound::off(catalog::DEFAULT_MIN_REPLICAS_MAX_LAG),
    }
}

/// Sets the bound on the running data nodes of `record`'s group, counting the nodes at
/// `leaving` (host:port) as gone: called with the nodes about to stop before they stop, and
/// with none once nodes have started and replicate. When whether `record`'s nodes count makes
/// no difference to the group's bound, only they are set (one connection instead of one per
/// node of the group); the primary service's own changes set every node, which also repairs a
/// bound changed outside Terraform anywhere in the group. A node that does not answer is left:
/// it gets the bound from its config file when it starts.
pub async fn settle(ctx: &Context, record: &ServiceRecord, leaving: &[String]) -> Result<(), Diagnostics> {
    let Some(members) = members(ctx, record).await? else {
        return Ok(());
    };
    let bound = effective(&members[0].failover, nodes_on(&members, leaving));
    let touched = match record.group() == Some(record.name.as_str()) || moves_the_bound(&members, record, leaving) {
        true => members,
        false => members.into_iter().filter(|m| m.name == record.name).collect(),
    };
    set_on_running(ctx, &touched, bound).await;
    Ok(())
}

/// Whether the group's bound depends on whether `record`'s nodes count.
fn moves_the_bound(members: &[ServiceRecord], record: &ServiceRecord, leaving: &[String]) -> bool {
    let others: Vec<ServiceRecord> = members.iter().filter(|m| m.name != record.name).cloned().collect();
    let mut with_record = others.clone();
    with_record.push(ServiceRecord {
        powered_off: false,
        creating: None,
        ..record.clone()
    });
    let own = record.node_addresses();
    let others_leaving: Vec<String> = leaving.iter().filter(|a| !own.contains(a)).cloned().collect();
    let settings = &members[0].failover;
    effective(settings, nodes_on(&others, &others_leaving))
        != effective(settings, nodes_on(&with_record, &others_leaving))
}

/// Sets `bound` on every running data node of `members`, in parallel. A node that cannot take
/// it now (it does not answer, or another resource's apply is re-linking it and closed the
/// connection) is tried once more, then left: it gets the bound from its config file when it
/// restarts, and a refresh shows it if it runs with another (see `drift`).
pub async fn set_on_running(ctx: &Context, members: &[ServiceRecord], bound: WriteBound) {
    let sets = members.iter().flat_map(|m| {
        m.nodes.iter().map(move |n| async move {
            if ctx.runtime.state(&NodeId::data(&m.name, n.index)).await != NodeState::Running {
                return;
            }
            let mut outcome = Ok(());
            for attempt in 0..2 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                outcome = async {
                    let mut client = connect_member(m, &n.endpoint(), Duration::from_secs(2)).await?;
                    let bound = within_reach(&mut client, bound).await;
                    client
                        .config_set(&write_bound_settings(bound.to_write, bound.max_lag))
                        .await
                }
                .await;
                if outcome.is_ok() {
                    return;
                }
            }
            if let Err(e) = outcome {
                tracing::warn!(node = %n.endpoint(), member = %m.name, error = %e, "could not set the write bound");
            }
        })
    });
    futures_util::future::join_all(sets).await;
}

/// Longest wait for a primary's replicas to follow it again before its bound is raised.
const REPLICAS_BACK: Duration = Duration::from_secs(10);

/// `bound` for the node behind `client`: a primary gets it once it hears from that many
/// replicas (they follow a switched-over or restarted primary within a second or so), so that
/// raising it never makes a healthy primary refuse writes; one whose replicas do not come back
/// in time gets what it has (the next refresh shows the difference, the next apply retries).
async fn within_reach(client: &mut NodeClient, bound: WriteBound) -> WriteBound {
    if bound.to_write == 0 {
        return bound;
    }
    let deadline = tokio::time::Instant::now() + REPLICAS_BACK;
    loop {
        let Ok(info) = client.info(&["replication"]).await else {
            return bound;
        };
        if info.role() != Some("primary") {
            return bound;
        }
        let good = i64::try_from(info.good_replicas(bound.max_lag)).unwrap_or(i64::MAX);
        if good >= bound.to_write {
            return bound;
        }
        if tokio::time::Instant::now() > deadline {
            return WriteBound {
                to_write: good,
                ..bound
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bound a node of `record`'s group runs with where it is not `bound`: one of the
/// record's own nodes (as `statuses` read them), or the group's current primary at
/// `current_primary` when that is another member's node (the one node whose bound acts).
pub async fn drift(
    record: &ServiceRecord,
    statuses: &[NodeStatus],
    current_primary: Option<&str>,
    bound: WriteBound,
) -> Option<WriteBound> {
    if let Some(own) = statuses.iter().find(|s| s.running && !bound.held_by(&s.settings)) {
        return WriteBound::reported(&own.settings);
    }
    let elsewhere = current_primary.filter(|at| !record.node_addresses().iter().any(|a| a == at))?;
    let at = Endpoint::parse(elsewhere)?;
    let mut client = connect_member(record, &at, Duration::from_secs(2)).await.ok()?;
    let settings: HashMap<String, String> = client.config_get(&WRITE_BOUND_SETTINGS).await.ok()?;
    (!bound.held_by(&settings))
        .then(|| WriteBound::reported(&settings))
        .flatten()
}

/// Turns the bound off on every running data node of the group of `primary` (its primary
/// service's record) for a switchover: the promoted node has no replica until the others
/// follow it, and a planned switchover must not refuse writes meanwhile. `settle` restores it.
pub async fn lift(ctx: &Context, primary: &ServiceRecord) -> Result<(), Diagnostics> {
    let Some(members) = members(ctx, primary).await? else {
        return Ok(());
    };
    let off = WriteBound::off(members[0].failover.min_replicas_max_lag);
    set_on_running(ctx, &members, off).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(to_write: Option<i64>) -> FailoverSettings {
        FailoverSettings {
            min_replicas_to_write: to_write,
            ..Default::default()
        }
    }

    #[test]
    fn undeclared_asks_for_one_replica_only_where_losing_a_node_leaves_one() {
        let to_write = |nodes| effective(&declared(None), nodes).to_write;
        assert_eq!([to_write(0), to_write(1), to_write(2)], [0, 0, 0]);
        assert_eq!([to_write(3), to_write(4), to_write(8)], [1, 1, 1]);
    }

    #[test]
    fn a_declared_count_never_asks_for_more_replicas_than_should_run() {
        let to_write = |n, nodes| effective(&declared(Some(n)), nodes).to_write;
        assert_eq!(to_write(1, 2), 1);
        assert_eq!(to_write(3, 2), 1);
        assert_eq!(to_write(3, 1), 0);
        assert_eq!(to_write(2, 6), 2);
        assert_eq!(to_write(0, 6), 0);
    }

    fn member(name: &str, nodes: usize, upstream: Option<&str>) -> ServiceRecord {
        ServiceRecord {
            name: name.into(),
            nodes: (0..nodes)
                .map(|index| crate::runtime::NodeRecord {
                    index,
                    host: format!("127.0.0.{}", name.bytes().map(u32::from).sum::<u32>() % 250),
                    port: 7000 + index as u16,
                    cert: None,
                })
                .collect(),
            upstream: upstream.map(|p| crate::runtime::Upstream::Service { name: p.into() }),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_member_whose_nodes_move_the_bound_touches_the_others() {
        // business-4 and a read replica: the replica's node makes the third, so its coming or
        // going moves the bound from 0 to 1; a second replica's does not.
        let (main, eu, us) = (
            member("main", 2, None),
            member("eu", 1, Some("main")),
            member("us", 1, Some("main")),
        );
        let group = [main.clone(), eu.clone()];
        assert!(moves_the_bound(&group, &eu, &[]));
        assert!(moves_the_bound(&group, &eu, &eu.node_addresses()));
        let group = [main, eu, us.clone()];
        assert!(!moves_the_bound(&group, &us, &[]));
        assert!(!moves_the_bound(&group, &us, &us.node_addresses()));
    }

    #[test]
    fn no_failover_means_no_bound() {
        let off = FailoverSettings {
            enabled: false,
            min_replicas_to_write: Some(2),
            ..Default::default()
        };
        assert_eq!(effective(&off, 5).to_write, 0);
    }

    #[test]
    fn a_node_is_judged_by_what_it_reports() {
        let bound = WriteBound {
            to_write: 1,
            max_lag: 2,
        };
        let report = |to_write: &str, lag: &str| {
            WRITE_BOUND_SETTINGS
                .into_iter()
                .zip([to_write, lag])
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(bound.held_by(&report("1", "2")));
        assert!(!bound.held_by(&report("0", "2")));
        assert!(!bound.held_by(&report("1", "10")));
        assert!(bound.held_by(&Default::default()));
        let off = WriteBound {
            to_write: 0,
            max_lag: 2,
        };
        assert!(off.held_by(&report("0", "10")));
    }
}
