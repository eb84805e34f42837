//! The rules on service records, written once over any runtime's [`RecordStore`]: a name is
//! taken once; a read replica's primary exists and is a primary; a primary has at most
//! `MAX_READ_REPLICAS` replicas; a primary with replicas is not removed; the leftover of an
//! interrupted create is recognised by its lease. They hold across concurrent Terraform runs
//! because they rest on the store's create-if-absent calls, in an order that lets no two
//! runs both pass: a replica takes a slot and then checks its primary is not being removed; a
//! removal marks the primary first and then checks for slots.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::MAX_READ_REPLICAS;
use crate::runtime::{Lease, NodeId, Runtime, RuntimeError, ServiceRecord, Upstream};

/// How long a removal's mark keeps new replicas away from a primary.
const REMOVAL_LEASE: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "a service named {name:?} already exists in {location}; choose another name, or bring it under Terraform \
         with `terraform import`"
    )]
    AlreadyExists { name: String, location: String },
    #[error(
        "a service named {name:?} already exists in {location}, its create still under way; choose another name, or \
         bring it under Terraform with `terraform import` once it is created (if the run creating it was killed, \
         apply again once its lease has run out: at most the create timeout)"
    )]
    BeingCreated { name: String, location: String },
    #[error(
        "primary service {primary:?} already has {max} read replicas ({}); a primary can have at most {max}",
        replicas.join(", ")
    )]
    ReplicaLimit {
        primary: String,
        replicas: Vec<String>,
        max: usize,
    },
    #[error(
        "service {name:?} still has read replicas ({}); destroy them first, or in the same run \
         (Terraform orders that when each replica's primary_service refers to this service)",
        replicas.join(", ")
    )]
    HasReplicas { name: String, replicas: Vec<String> },
    #[error("primary service {primary:?} does not exist in {location}, or is being destroyed")]
    PrimaryMissing { primary: String, location: String },
    #[error(
        "the replication group of {group:?} has been changed by another Terraform run ({holder}) for longer than \
         {waited:?}; apply again once that run has finished"
    )]
    GroupBusy {
        group: String,
        holder: String,
        waited: Duration,
    },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// How long a group lock lasts at most: a group change (Sentinels started, a switchover)
/// ends well within it, and a holder killed on another machine delays the next change no longer.
const GROUP_LOCK_LEASE: Duration = Duration::from_secs(180);
/// How long a group change waits for another run's to finish.
const GROUP_LOCK_WAIT: Duration = Duration::from_secs(120);

/// Whether a lease still holds: not expired, and its holder not known to be gone.
fn holds(runtime: &Arc<dyn Runtime>, lease: Option<&Lease>) -> bool {
    lease.is_some_and(|l| !l.expired() && !runtime.lease_holder_gone(&l.owner))
}

/// Whether a service or read replica of that name exists, its create finished. A create still
/// under way, or the leftover of one that was interrupted, does not count: `create` tells them
/// apart.
pub async fn name_in_use(runtime: &dyn Runtime, name: &str) -> Result<bool, RuntimeError> {
    Ok(runtime.store().load(name).await?.is_some_and(|r| r.creating.is_none()))
}

/// The read replicas of primary `primary`, sorted: holders of its slots whose record says so
/// (a slot whose holder's record is gone was left by an interrupted removal).
pub async fn replicas_of(runtime: &dyn Runtime, primary: &str) -> Result<Vec<String>, RuntimeError> {
    Ok(replica_records_of(runtime, primary)
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect())
}

/// The records of primary `primary`'s read replicas, sorted by name, read concurrently.
pub async fn replica_records_of(runtime: &dyn Runtime, primary: &str) -> Result<Vec<ServiceRecord>, RuntimeError> {
    let holders = runtime.store().slot_holders(primary).await?;
    let loads = holders.iter().map(|holder| runtime.store().load(holder));
    let mut replicas = Vec::new();
    for record in futures_util::future::join_all(loads).await {
        if let Some(record) = record?
            && matches!(&record.upstream, Some(Upstream::Service { name }) if name == primary)
        {
            replicas.push(record);
        }
    }
    Ok(replicas)
}

/// Records a new service or read replica, held by a lease of `lease_for` (the create's
/// timeout) until `finish_create`. The leftover of a create that was interrupted is removed
/// first, so the next apply converges.
pub async fn create(
    runtime: &Arc<dyn Runtime>,
    record: &mut ServiceRecord,
    lease_for: Duration,
) -> Result<(), RecordError> {
    record.creating = Some(Lease::new(runtime.lease_owner(), lease_for));
    let store = runtime.store();
    let location = || runtime.location();
    let mut existing = store.insert(record).await?;
    if let Some(stale) = existing.take_if(|e| e.creating.is_some() && !holds(runtime, e.creating.as_ref())) {
        tracing::warn!(name = %stale.name, "removing the leftover of an interrupted create");
        remove(runtime, &stale).await?;
        existing = store.insert(record).await?;
    }
    if let Some(existing) = existing {
        return Err(if existing.creating.is_some() {
            RecordError::BeingCreated {
                name: existing.name,
                location: location(),
            }
        } else {
            RecordError::AlreadyExists {
                name: existing.name,
                location: location(),
            }
        });
    }
    let Some(Upstream::Service { name: primary }) = record.upstream.clone() else {
        return Ok(());
    };
    let joined = join_primary(runtime, &record.name, &primary).await;
    if joined.is_err() {
        // Leave nothing behind: the name is free again.
        let _ = store.release_slots(&primary, &record.name).await;
        let _ = store.delete(&record.name).await;
    }
    joined
}

/// Takes one of `primary`'s replica slots for `replica`, then checks the primary is there,
/// is a primary and is not being removed (a removal marks it before its last look for slots,
/// so one of the two always sees the other).
async fn join_primary(runtime: &Arc<dyn Runtime>, replica: &str, primary: &str) -> Result<(), RecordError> {
    let store = runtime.store();
    let usable =
        |p: Option<ServiceRecord>| p.is_some_and(|p| p.upstream.is_none() && !holds(runtime, p.removing.as_ref()));
    let missing = || RecordError::PrimaryMissing {
        primary: primary.to_string(),
        location: runtime.location(),
    };
    // The slots are tried from a random one on: replicas created together mostly find a free
    // slot at the first try. The primary is checked once the slot is held (see below).
    let first = rand::random_range(0..MAX_READ_REPLICAS);
    let mut claimed = false;
    for slot in (0..MAX_READ_REPLICAS).map(|k| (first + k) % MAX_READ_REPLICAS) {
        if store.claim_slot(primary, slot, replica).await? {
            claimed = true;
            break;
        }
    }
    if !claimed {
        return Err(RecordError::ReplicaLimit {
            primary: primary.to_string(),
            replicas: replicas_of(runtime.as_ref(), primary).await?,
            max: MAX_READ_REPLICAS,
        });
    }
    if !usable(store.load(primary).await?) {
        return Err(missing());
    }
    Ok(())
}

/// Takes the lock of replication group `group` (its primary service's name) for this process,
/// so that no two Terraform runs, on any workstation, change one group's Sentinels or switch it
/// over at once. Waits while another run holds it; a holder known gone or whose lease has run
/// out is released.
pub async fn lock_group(runtime: &Arc<dyn Runtime>, group: &str) -> Result<(), RecordError> {
    let lease = Lease::new(runtime.lease_owner(), GROUP_LOCK_LEASE);
    let started = tokio::time::Instant::now();
    loop {
        let Some(holder) = runtime.store().take_lock(group, &lease).await? else {
            return Ok(());
        };
        if !holds(runtime, Some(&holder)) {
            tracing::info!(group, holder = %holder.owner, "releasing a group lock whose holder is gone");
            runtime.store().release_lock(group, &holder.owner).await?;
            continue;
        }
        if started.elapsed() >= GROUP_LOCK_WAIT {
            return Err(RecordError::GroupBusy {
                group: group.to_string(),
                holder: holder.owner,
                waited: GROUP_LOCK_WAIT,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Releases the lock `lock_group` took.
pub async fn unlock_group(runtime: &Arc<dyn Runtime>, group: &str) -> Result<(), RuntimeError> {
    runtime.store().release_lock(group, &runtime.lease_owner()).await
}

/// Marks a create as finished, whether its nodes started or not: from here on Terraform
/// tracks the resource (as tainted when the create failed).
pub async fn finish_create(runtime: &dyn Runtime, record: &mut ServiceRecord) -> Result<(), RuntimeError> {
    record.creating = None;
    runtime.store().save(record).await
}

/// Every node of a record, data nodes and Sentinels.
fn nodes_of(record: &ServiceRecord) -> impl Iterator<Item = NodeId> + '_ {
    let data = record.nodes.iter().map(|n| NodeId::data(&record.name, n.index));
    let sentinels = record.sentinels.iter().map(|s| NodeId::sentinel(&record.name, s.index));
    data.chain(sentinels)
}

/// Removes a service's nodes and its record; refuses while read replicas replicate from it.
/// Nodes go first and the record last, so an interrupted removal leaves the record and
/// Terraform still tracks the service; the next destroy finishes the job.
pub async fn remove(runtime: &Arc<dyn Runtime>, record: &ServiceRecord) -> Result<(), RecordError> {
    let has_replicas = |replicas: Vec<String>| RecordError::HasReplicas {
        name: record.name.clone(),
        replicas,
    };
    let replicas = replicas_of(runtime.as_ref(), &record.name).await?;
    if !replicas.is_empty() {
        return Err(has_replicas(replicas));
    }
    let mut removals = tokio::task::JoinSet::new();
    for node in nodes_of(record) {
        let runtime = runtime.clone();
        removals.spawn(async move { runtime.remove(&node).await });
    }
    while let Some(removed) = removals.join_next().await {
        removed.map_err(|e| RuntimeError::Other(format!("a node removal failed: {e}")))??;
    }
    // A replica may have attached while the nodes stopped: it keeps the service. The mark
    // makes one that attaches from now on back off.
    let store = runtime.store();
    if let Some(mut current) = store.load(&record.name).await? {
        current.removing = Some(Lease::new(runtime.lease_owner(), REMOVAL_LEASE));
        store.save(&current).await?;
        let replicas = replicas_of(runtime.as_ref(), &record.name).await?;
        if !replicas.is_empty() {
            current.removing = None;
            store.save(&current).await?;
            return Err(has_replicas(replicas));
        }
    }
    store.delete(&record.name).await?;
    if let Some(Upstream::Service { name: primary }) = &record.upstream {
        store.release_slots(primary, &record.name).await?;
    }
    Ok(())
}
