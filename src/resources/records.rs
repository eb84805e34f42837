//! Service records as the resources use them: loading an existing one, creating, finishing
//! and removing through the registry's rules, and finding a group's primary and replicas.

use super::{Context, error};
use crate::registry;
use crate::runtime::ServiceRecord;
use crate::tfplug::Diagnostics;

/// The record of service `name`, if there is one.
pub async fn load(ctx: &Context, name: &str) -> Result<Option<ServiceRecord>, Diagnostics> {
    ctx.runtime
        .store()
        .load(name)
        .await
        .map_err(|e| error("Could not read the service record", e))
}

/// The record of an existing resource; an error when it vanished.
pub async fn load_existing(ctx: &Context, name: &str, kind: &str) -> Result<ServiceRecord, Diagnostics> {
    ctx.runtime
        .store()
        .load(name)
        .await
        .map_err(|e| error(&format!("Could not read the {kind}'s record"), e))?
        .ok_or_else(|| {
            error(
                &format!("The {kind} was not found"),
                format!(
                    "{kind} {name:?} no longer exists in {}; apply again to recreate it",
                    ctx.runtime.location()
                ),
            )
        })
}

pub async fn save(ctx: &Context, record: &ServiceRecord) -> Result<(), Diagnostics> {
    ctx.runtime
        .store()
        .save(record)
        .await
        .map_err(|e| error("Could not save the service record", e))
}

/// Marks a create as finished, whether its nodes started or not: from here on Terraform
/// tracks the resource (as tainted when the create failed).
pub async fn finish_create(ctx: &Context, record: &mut ServiceRecord) -> Result<(), Diagnostics> {
    registry::finish_create(ctx.runtime.as_ref(), record)
        .await
        .map_err(|e| error("Could not save the record", e))
}

/// Stops and removes a resource's nodes and record; a resource already gone is not an error.
pub async fn remove(ctx: &Context, name: &str, kind: &str) -> Result<(), Diagnostics> {
    match ctx.runtime.store().load(name).await {
        Ok(Some(record)) => registry::remove(&ctx.runtime, &record)
            .await
            .map_err(|e| error(&format!("Could not delete the {kind}"), e)),
        Ok(None) => Ok(()),
        Err(e) => Err(error(&format!("Could not read the {kind}'s record"), e)),
    }
}

/// The records of a primary's read replicas.
pub async fn replica_records(ctx: &Context, primary: &str) -> Result<Vec<ServiceRecord>, Diagnostics> {
    registry::replica_records_of(ctx.runtime.as_ref(), primary)
        .await
        .map_err(|e| error("Could not list read replicas", e))
}

/// The record of the group's primary service for `record` (itself, for a primary).
pub async fn group_primary_record(ctx: &Context, record: &ServiceRecord) -> Option<ServiceRecord> {
    let group = record.group()?;
    if group == record.name {
        return Some(record.clone());
    }
    ctx.runtime.store().load(group).await.ok().flatten()
}
