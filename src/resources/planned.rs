//! What the current plan walk has planned so far. Terraform plans every resource of a run in
//! one provider process, primaries before the replicas that refer to them, so a replica's plan
//! can count the replicas planned beside it and see a primary that is about to be created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Terraform plans the instances of a `count` or `for_each` at the same moment: a replica's
/// plan waits until no sibling has been planned for this long before it counts them all.
const SIBLINGS_QUIET: Duration = Duration::from_millis(25);
/// ... but never longer than this.
const SIBLINGS_WAIT_MAX: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct PlannedTopology {
    inner: Mutex<Planned>,
}

#[derive(Debug, Default)]
struct Planned {
    services: BTreeSet<String>,
    replicas: BTreeMap<String, BTreeSet<String>>,
    /// When a replica was last planned for each primary.
    last_planned: BTreeMap<String, Instant>,
}

impl PlannedTopology {
    /// Notes a service planned for creation in this run.
    pub fn plan_service(&self, name: &str) {
        if let Ok(mut p) = self.inner.lock() {
            p.services.insert(name.to_string());
        }
    }

    pub fn service_planned(&self, name: &str) -> bool {
        self.inner.lock().map(|p| p.services.contains(name)).unwrap_or(false)
    }

    /// Notes a replica planned for `primary`; returns every replica planned for it so far.
    pub fn plan_replica(&self, primary: &str, replica: &str) -> BTreeSet<String> {
        match self.inner.lock() {
            Ok(mut p) => {
                p.last_planned.insert(primary.to_string(), Instant::now());
                let set = p.replicas.entry(primary.to_string()).or_default();
                set.insert(replica.to_string());
                set.clone()
            }
            Err(_) => BTreeSet::from([replica.to_string()]),
        }
    }

    /// Every replica planned for `primary` once its siblings planned in the same moment are
    /// in: the count, and so which replica is over the limit, is then the same on every plan.
    pub async fn replicas_once_settled(&self, primary: &str) -> BTreeSet<String> {
        let started = Instant::now();
        loop {
            let (quiet_for, planned) = match self.inner.lock() {
                Ok(p) => (
                    p.last_planned.get(primary).map_or(SIBLINGS_QUIET, Instant::elapsed),
                    p.replicas.get(primary).cloned().unwrap_or_default(),
                ),
                Err(_) => return BTreeSet::new(),
            };
            if quiet_for >= SIBLINGS_QUIET || started.elapsed() >= SIBLINGS_WAIT_MAX {
                return planned;
            }
            tokio::time::sleep(SIBLINGS_QUIET - quiet_for).await;
        }
    }
}

/// Which of the planned replicas are over the limit: the existing ones keep their places, and
/// the planned ones fill what is left in name order, so the same replicas are refused on every
/// plan, whatever order Terraform planned them in.
pub fn refused_replicas(existing: &[String], planned: &BTreeSet<String>, max: usize) -> BTreeSet<String> {
    let free = max.saturating_sub(existing.len());
    planned
        .iter()
        .filter(|name| !existing.contains(name))
        .skip(free)
        .cloned()
        .collect()
}

/// The replicas a primary would have (existing ones and those planned, by name) when that is
/// more than `max`; None when within the limit.
pub fn over_replica_limit(existing: &[String], planned: &BTreeSet<String>, max: usize) -> Option<Vec<String>> {
    let all: BTreeSet<&String> = existing.iter().chain(planned.iter()).collect();
    (all.len() > max).then(|| all.into_iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn counts_existing_and_planned_replicas_once_each() {
        let existing = names(&["r1", "r2", "r3"]);
        let planned: BTreeSet<String> = names(&["r3", "r4", "r5"]).into_iter().collect();
        assert_eq!(over_replica_limit(&existing, &planned, 5), None);
        let planned: BTreeSet<String> = names(&["r4", "r5", "r6"]).into_iter().collect();
        assert_eq!(over_replica_limit(&existing, &planned, 5).unwrap().len(), 6);
    }

    #[test]
    fn the_replicas_refused_are_the_last_by_name_whatever_the_planning_order() {
        let existing = names(&["a", "b"]);
        let planned: BTreeSet<String> = names(&["z", "c", "y", "d", "b"]).into_iter().collect();
        // 2 existing + 4 new (b exists already) = 6: the last new one by name is refused.
        assert_eq!(
            refused_replicas(&existing, &planned, 5),
            names(&["z"]).into_iter().collect::<BTreeSet<_>>()
        );
        let more: BTreeSet<String> = names(&["e", "f", "c", "d", "g"]).into_iter().collect();
        assert_eq!(
            refused_replicas(&existing, &more, 5),
            names(&["f", "g"]).into_iter().collect::<BTreeSet<_>>()
        );
        assert!(refused_replicas(&existing, &names(&["c"]).into_iter().collect(), 5).is_empty());
    }

    #[tokio::test]
    async fn siblings_planned_in_the_same_moment_are_all_counted() {
        let t = std::sync::Arc::new(PlannedTopology::default());
        t.plan_replica("p", "r1");
        let later = {
            let t = t.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                t.plan_replica("p", "r2");
            })
        };
        let seen = t.replicas_once_settled("p").await;
        later.await.unwrap();
        assert_eq!(seen.len(), 2, "a sibling planned 10 ms later is counted");
    }

    #[test]
    fn six_replicas_planned_in_one_run_exceed_the_limit() {
        let t = PlannedTopology::default();
        let mut last = BTreeSet::new();
        for i in 1..=6 {
            last = t.plan_replica("primary", &format!("r{i}"));
        }
        assert!(over_replica_limit(&[], &last, 5).is_some());
        assert_eq!(t.plan_replica("other", "x").len(), 1);
        t.plan_service("primary");
        assert!(t.service_planned("primary") && !t.service_planned("other"));
    }
}
