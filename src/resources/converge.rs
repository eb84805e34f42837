//! Brings one member of a replication group (a service or a read replica) to its declared
//! power state without moving the group's primary: Sentinels are asked before nodes restart,
//! and a member that is the group's primary is powered off only after the group's failover
//! is suspended, so that stopping it on purpose is not taken for a failure.

use super::Context;
use super::records::load_existing;
use super::{failover, group_view, nodes, records, write_bound};
use crate::runtime::ServiceRecord;
use crate::tfplug::Diagnostics;

/// Applies `powered` to the member recorded as `name` and returns its record as it is now.
/// `kind` names the resource in errors ("service", "read replica").
pub async fn power(ctx: &Context, name: &str, kind: &str, powered: bool) -> Result<ServiceRecord, Diagnostics> {
    let record = load_existing(ctx, name, kind).await?;
    let group = record.group().map(str::to_string);
    if !powered {
        // The group's other members go on: its Sentinels keep running, unless this member is
        // the primary, which pauses them (before its nodes stop, so that is not a failure).
        if let Some(group) = &group {
            failover::ensure_group(ctx, group).await?;
        }
        failover::suspend_if_primary(ctx, &record).await?;
        let mut record = load_existing(ctx, name, kind).await?;
        // The group's primary stops counting on these nodes before they stop.
        if !record.powered_off {
            record.powered_off = true;
            records::save(ctx, &record).await?;
        }
        write_bound::settle(ctx, &record, &[]).await?;
        nodes::reconcile(ctx, &mut record, false).await?;
        return Ok(record);
    }
    // Sentinels first: restarting or re-linking nodes asks them where the primary is (a
    // suspended group keeps them stopped until its primary is back).
    if let Some(group) = &group {
        failover::ensure_group(ctx, group).await?;
    }
    let mut record = load_existing(ctx, name, kind).await?;
    nodes::reconcile(ctx, &mut record, true).await?;
    // Its nodes replicate again: the group's primary may count on them (and any node whose
    // bound was changed outside Terraform gets it back).
    if record.powered_off {
        record.powered_off = false;
        records::save(ctx, &record).await?;
    }
    write_bound::settle(ctx, &record, &[]).await?;
    // This member may have been the suspended primary: now that it answers, resume the group.
    if let Some(group) = &group
        && group_view::suspended_primary(ctx, &record).await.is_some()
    {
        failover::ensure_group(ctx, group).await?;
    }
    load_existing(ctx, name, kind).await
}
