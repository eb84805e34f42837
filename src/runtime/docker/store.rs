//! The docker runtime's records, kept with the engines, not on the machine running Terraform:
//! on the store engine (the first host of the first region), a service's record is the file
//! `service.json` in the volume of a container named `vkrec-<name>` that never runs, and a
//! primary's replica slot `k` is a container named `vkslot-<primary>-<k>` labelled with its
//! holder; a lock is a container `vklock-<name>` labelled with its lease. The engine refuses a
//! second container of a name, which makes `insert`, `claim_slot` and `take_lock` atomic for
//! every workstation that reaches it. Secrets are only in the file.

use std::collections::HashMap;

use super::engine::{ContainerSpec, Engine, EngineError};
use crate::runtime::{Lease, RecordStore, RuntimeError, ServiceRecord};

const RECORD_FILE: &str = "service.json";
pub const LABEL_KIND: &str = "io.terraform-provider-valkey.kind";
pub const LABEL_SERVICE: &str = "io.terraform-provider-valkey.service";
const LABEL_HOLDER: &str = "io.terraform-provider-valkey.holder";
const LABEL_EXPIRES: &str = "io.terraform-provider-valkey.expires-unix-ms";

pub struct DockerStore {
    engine: Engine,
    image: String,
}

fn record_container(name: &str) -> String {
    format!("vkrec-{name}")
}

fn lock_container(name: &str) -> String {
    format!("vklock-{name}")
}

/// The lease a lock container's labels hold (an unreadable expiry has ended).
fn lease_of(labels: &HashMap<String, String>) -> Lease {
    Lease {
        owner: labels.get(LABEL_HOLDER).cloned().unwrap_or_default(),
        expires_unix_ms: labels.get(LABEL_EXPIRES).and_then(|e| e.parse().ok()).unwrap_or(0),
    }
}

fn slot_prefix(owner: &str) -> String {
    format!("vkslot-{owner}-")
}

impl DockerStore {
    pub fn new(engine: Engine, image: String) -> Self {
        DockerStore { engine, image }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A container that never runs and exists for its name (and, for a record, its volume):
    /// `kind` and `labels` say what it stands for.
    fn placeholder(
        &self,
        name: String,
        kind: &str,
        labels: &[(&str, String)],
        volume: Option<String>,
    ) -> ContainerSpec {
        let mut all = HashMap::from([(LABEL_KIND.to_string(), kind.to_string())]);
        all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.clone())));
        ContainerSpec {
            name,
            image: self.image.clone(),
            cmd: vec!["true".into()],
            labels: all,
            volume,
            publish: None,
            restart: false,
        }
    }

    fn bad(&self, name: &str, reason: String) -> RuntimeError {
        RuntimeError::BadRecord {
            location: format!(
                "{RECORD_FILE} of container {} on engine {}",
                record_container(name),
                self.engine.url
            ),
            reason,
            start_over: format!(
                "remove the service's containers and volumes (label {LABEL_SERVICE}={name}) and `terraform state rm` \
                 its resource"
            ),
        }
    }

    /// `owner`'s slot containers with their holders (exact names only: `main-2`'s slots are
    /// not `main`'s).
    async fn slots(&self, owner: &str) -> Result<Vec<(String, String)>, RuntimeError> {
        let prefix = slot_prefix(owner);
        let found = self
            .engine
            .list(&prefix)
            .await
            .map_err(|e| self.engine.error("cannot list replica slots", e))?;
        Ok(found
            .into_iter()
            .filter(|(name, _)| name[prefix.len()..].chars().all(|c| c.is_ascii_digit()))
            .map(|(name, labels)| (name, labels.get(LABEL_HOLDER).cloned().unwrap_or_default()))
            .collect())
    }
}

#[tonic::async_trait]
impl RecordStore for DockerStore {
    async fn insert(&self, record: &ServiceRecord) -> Result<Option<ServiceRecord>, RuntimeError> {
        let name = record_container(&record.name);
        let spec = self.placeholder(
            name.clone(),
            "record",
            &[(LABEL_SERVICE, record.name.clone())],
            Some(name.clone()),
        );
        match self.engine.create(&spec).await {
            Ok(()) => {}
            Err(EngineError::Conflict) => {
                return match self.load(&record.name).await? {
                    Some(existing) => Ok(Some(existing)),
                    // A record container without its file: an insert that stopped half-way.
                    None => Ok(Some(ServiceRecord {
                        name: record.name.clone(),
                        creating: Some(crate::runtime::Lease {
                            owner: "an insert that did not finish".into(),
                            expires_unix_ms: 0,
                        }),
                        ..Default::default()
                    })),
                };
            }
            Err(e) => return Err(self.engine.error("cannot create the record", e)),
        }
        if let Err(e) = self.save(record).await {
            let _ = self.engine.remove(&name).await;
            let _ = self.engine.remove_volume(&name).await;
            return Err(e);
        }
        Ok(None)
    }

    async fn save(&self, record: &ServiceRecord) -> Result<(), RuntimeError> {
        let json = serde_json::to_vec_pretty(record).map_err(|e| self.bad(&record.name, e.to_string()))?;
        self.engine
            .write_file(&record_container(&record.name), RECORD_FILE, &json)
            .await
            .map_err(|e| self.engine.error("cannot save the record", e))
    }

    async fn load(&self, name: &str) -> Result<Option<ServiceRecord>, RuntimeError> {
        let Some(bytes) = self
            .engine
            .read_file(&record_container(name), RECORD_FILE)
            .await
            .map_err(|e| self.engine.error("cannot read the record", e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice::<ServiceRecord>(&bytes)
            .map(|r| Some(r.upgraded()))
            .map_err(|e| self.bad(name, e.to_string()))
    }

    async fn delete(&self, name: &str) -> Result<(), RuntimeError> {
        let container = record_container(name);
        for (slot, _) in self.slots(name).await? {
            self.engine
                .remove(&slot)
                .await
                .map_err(|e| self.engine.error("cannot remove a replica slot", e))?;
        }
        // A lock a killed run left on the service goes with it.
        for object in [lock_container(name), container.clone()] {
            self.engine
                .remove(&object)
                .await
                .map_err(|e| self.engine.error("cannot remove the record", e))?;
        }
        self.engine
            .remove_volume(&container)
            .await
            .map_err(|e| self.engine.error("cannot remove the record's volume", e))
    }

    async fn claim_slot(&self, owner: &str, slot: usize, holder: &str) -> Result<bool, RuntimeError> {
        let spec = self.placeholder(
            format!("{}{slot}", slot_prefix(owner)),
            "slot",
            &[(LABEL_SERVICE, owner.to_string()), (LABEL_HOLDER, holder.to_string())],
            None,
        );
        match self.engine.create(&spec).await {
            Ok(()) => Ok(true),
            Err(EngineError::Conflict) => Ok(false),
            Err(e) => Err(self.engine.error("cannot claim a replica slot", e)),
        }
    }

    async fn release_slots(&self, owner: &str, holder: &str) -> Result<(), RuntimeError> {
        for (slot, held_by) in self.slots(owner).await? {
            if held_by == holder {
                self.engine
                    .remove(&slot)
                    .await
                    .map_err(|e| self.engine.error("cannot release a replica slot", e))?;
            }
        }
        Ok(())
    }

    async fn slot_holders(&self, owner: &str) -> Result<Vec<String>, RuntimeError> {
        let mut holders: Vec<String> = self.slots(owner).await?.into_iter().map(|(_, h)| h).collect();
        holders.sort();
        Ok(holders)
    }

    async fn take_lock(&self, name: &str, lease: &Lease) -> Result<Option<Lease>, RuntimeError> {
        let container = lock_container(name);
        let spec = self.placeholder(
            container.clone(),
            "lock",
            &[
                (LABEL_HOLDER, lease.owner.clone()),
                (LABEL_EXPIRES, lease.expires_unix_ms.to_string()),
            ],
            None,
        );
        match self.engine.create(&spec).await {
            Ok(()) => return Ok(None),
            Err(EngineError::Conflict) => {}
            Err(e) => return Err(self.engine.error("cannot take a lock", e)),
        }
        // The engine reserves a name before the container can be inspected: a lock being
        // taken by another run this instant is waited for briefly.
        for _ in 0..20 {
            match self.engine.labels(&container).await {
                Ok(Some((_, labels))) => return Ok(Some(lease_of(&labels))),
                Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                Err(e) => return Err(self.engine.error("cannot read a lock", e)),
            }
        }
        // Released meanwhile: held by nobody now, but not taken by this call either.
        Ok(Some(Lease {
            owner: "a holder that just released it".into(),
            expires_unix_ms: 0,
        }))
    }

    async fn release_lock(&self, name: &str, owner: &str) -> Result<(), RuntimeError> {
        let container = lock_container(name);
        match self.engine.labels(&container).await {
            // By id: a lock another took since this look is a new container, and stays.
            Ok(Some((id, labels))) if lease_of(&labels).owner == owner => self
                .engine
                .remove(&id)
                .await
                .map_err(|e| self.engine.error("cannot release a lock", e)),
            Ok(_) => Ok(()),
            Err(e) => Err(self.engine.error("cannot read a lock", e)),
        }
    }
}
