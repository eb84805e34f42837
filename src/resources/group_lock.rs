//! One change to a replication group at a time (its Sentinels placed or restarted, a
//! switchover, a suspension): within this provider process by a mutex, and across every
//! Terraform run that shares the records by the registry's group lock, so two workstations
//! adding replicas to one primary cannot both place its Sentinels.

use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use super::{Context, error};
use crate::registry;
use crate::tfplug::Diagnostics;

/// This provider process's side of the lock, shared by its resources.
#[derive(Default)]
pub struct GroupLock {
    serialised: tokio::sync::Mutex<()>,
    /// When the last successful run of each group's convergence started.
    converged: std::sync::Mutex<HashMap<String, Instant>>,
}

/// Runs `converge`, which makes `group` what its records say, unless a run of it that started
/// after `changed` (when the caller last saved what the run must see) has succeeded meanwhile:
/// that run read the caller's records. Replicas created together queue for the group; this
/// way the queue does the work once, not once per replica.
pub async fn converge_once<F: Future<Output = Result<(), Diagnostics>>>(
    ctx: &Context,
    group: &str,
    changed: Instant,
    converge: impl FnOnce() -> F,
) -> Result<(), Diagnostics> {
    exclusively(ctx, Some(group), async {
        let done_since = |converged: &HashMap<String, Instant>| converged.get(group).is_some_and(|t| *t > changed);
        if ctx.group_lock.converged.lock().is_ok_and(|c| done_since(&c)) {
            return Ok(());
        }
        let started = Instant::now();
        converge().await?;
        if let Ok(mut converged) = ctx.group_lock.converged.lock() {
            converged.insert(group.to_string(), started);
        }
        Ok(())
    })
    .await
}

/// Runs `change` holding the lock of `group` (a primary service's name); a record with no group
/// (a replica of a server this provider does not run) takes the process mutex only.
pub async fn exclusively<T>(
    ctx: &Context,
    group: Option<&str>,
    change: impl Future<Output = Result<T, Diagnostics>>,
) -> Result<T, Diagnostics> {
    let _serialised = ctx.group_lock.serialised.lock().await;
    let Some(group) = group else {
        return change.await;
    };
    registry::lock_group(&ctx.runtime, group)
        .await
        .map_err(|e| error("Could not lock the replication group", e))?;
    let outcome = change.await;
    if let Err(e) = registry::unlock_group(&ctx.runtime, group).await {
        // Its lease runs out; the next change waits until then at most.
        tracing::warn!(group, error = %e, "could not release the group lock");
    }
    outcome
}
