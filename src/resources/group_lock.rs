//! One change to a replication group at a time (its Sentinels placed or restarted, a
//! switchover, a suspension): within this provider process by a mutex, and across every
//! Terraform run that shares the records by the registry's group lock, so two workstations
//! adding replicas to one primary cannot both place its Sentinels.

use std::future::Future;

use super::{Context, error};
use crate::registry;
use crate::tfplug::Diagnostics;

/// Runs `change` holding the lock of `group` (a primary service's name); a record with no group
/// (a replica of a server this provider does not run) takes the process mutex only.
pub async fn exclusively<T>(
    ctx: &Context,
    group: Option<&str>,
    change: impl Future<Output = Result<T, Diagnostics>>,
) -> Result<T, Diagnostics> {
    let _serialised = ctx.group_lock.lock().await;
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
