//! What the current plan walk has planned so far. Terraform plans every resource of a run in
//! one provider process, primaries before the replicas that refer to them, so a replica's plan
//! can count the replicas planned beside it and see a primary that is about to be created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct PlannedTopology {
    inner: Mutex<Planned>,
}

#[derive(Debug, Default)]
struct Planned {
    services: BTreeSet<String>,
    replicas: BTreeMap<String, BTreeSet<String>>,
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
                let set = p.replicas.entry(primary.to_string()).or_default();
                set.insert(replica.to_string());
                set.clone()
            }
            Err(_) => BTreeSet::from([replica.to_string()]),
        }
    }
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
