//! Where service records live is each runtime's business; this is what it must offer. Every
//! call is atomic on its own, across Terraform runs on any workstation that reaches the same
//! store: the rules built on them (names, the replica limit, a primary that exists) are
//! written once, in `crate::registry`, and hold because `insert` and `claim_slot` are
//! create-if-absent operations (a file created exclusively; on a remote runtime, a uniquely
//! named object).

use super::error::RuntimeError;
use super::record::{Lease, ServiceRecord};

#[tonic::async_trait]
pub trait RecordStore: Send + Sync {
    /// Writes `record` unless a record of that name exists; returns the existing one then.
    async fn insert(&self, record: &ServiceRecord) -> Result<Option<ServiceRecord>, RuntimeError>;

    /// Replaces the record of an existing service.
    async fn save(&self, record: &ServiceRecord) -> Result<(), RuntimeError>;

    /// The record of service `name`, if there is one.
    async fn load(&self, name: &str) -> Result<Option<ServiceRecord>, RuntimeError>;

    /// Deletes service `name`'s record and whatever the store kept with it (its slots).
    async fn delete(&self, name: &str) -> Result<(), RuntimeError>;

    /// Takes slot `slot` of `owner`'s slots for `holder`; false when it is taken already.
    async fn claim_slot(&self, owner: &str, slot: usize, holder: &str) -> Result<bool, RuntimeError>;

    /// Frees every slot of `owner`'s that `holder` holds.
    async fn release_slots(&self, owner: &str, holder: &str) -> Result<(), RuntimeError>;

    /// Who holds `owner`'s slots, sorted by name.
    async fn slot_holders(&self, owner: &str) -> Result<Vec<String>, RuntimeError>;

    /// Takes lock `name` with `lease` unless it is held: None when taken, else the holder's
    /// lease (which may be stale: the caller decides, and releases it in the holder's name).
    async fn take_lock(&self, name: &str, lease: &Lease) -> Result<Option<Lease>, RuntimeError>;

    /// Releases lock `name` if `owner` holds it; a lock taken by another meanwhile stays.
    async fn release_lock(&self, name: &str, owner: &str) -> Result<(), RuntimeError>;
}
