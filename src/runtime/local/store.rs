//! The local runtime's records: `data_dir/services/<name>/service.json`, and a primary's
//! replica slots as files `services/<primary>/replicas/slot-<k>` holding the replica's name,
//! and locks as `flock`s on empty files `locks/<name>`: the kernel releases the lock of a
//! process that dies, and taking one writes nothing, so it works on a full disk too.
//! Each call holds an exclusive lock on `data_dir/.lock`, so Terraform runs sharing a data_dir
//! see every call as atomic.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::files::{
    create_exclusive, create_private_dir, io_error, remove_dir_if_present, remove_if_present, write_private_file,
};
use crate::runtime::{Lease, RecordStore, RuntimeError, ServiceRecord};

const RECORD_FILE: &str = "service.json";
const SLOTS_DIR: &str = "replicas";
const SLOT_PREFIX: &str = "slot-";

pub struct LocalStore {
    data_dir: PathBuf,
    /// The locks this process holds: the open lock file (closing it releases the lock) and
    /// the owner it was taken for.
    held: std::sync::Mutex<std::collections::HashMap<String, (fs::File, String)>>,
}

fn bad_record(path: &Path, reason: String) -> RuntimeError {
    RuntimeError::BadRecord {
        location: path.display().to_string(),
        reason,
        start_over: "stop its nodes, remove its directory and `terraform state rm` its resource".to_string(),
    }
}

/// Reads one record; None when the file does not exist.
fn read_record(path: &Path) -> Result<Option<ServiceRecord>, RuntimeError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<ServiceRecord>(&bytes)
            .map(|r| Some(r.upgraded()))
            .map_err(|e| bad_record(path, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("cannot read", path)(e)),
    }
}

/// A file to `flock`, made empty and private if it is missing (creating it writes no data).
fn open_lock_file(path: &Path) -> Result<fs::File, RuntimeError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error("cannot open lock file", path))
}

fn encode(record: &ServiceRecord, path: &Path) -> Result<Vec<u8>, RuntimeError> {
    serde_json::to_vec_pretty(record).map_err(|e| bad_record(path, e.to_string()))
}

/// The slot files of a directory with who holds each: a slot's contents, or, for the marker
/// files of data_dirs written before slots existed, the file's name.
fn slots_in(dir: &Path) -> Result<Vec<(PathBuf, String)>, RuntimeError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("cannot list", dir)(e)),
    };
    let mut slots = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.ends_with(".tmp") {
            continue;
        }
        let holder = if name.starts_with(SLOT_PREFIX) {
            fs::read_to_string(entry.path()).map_err(io_error("cannot read", &entry.path()))?
        } else {
            name
        };
        slots.push((entry.path(), holder));
    }
    Ok(slots)
}

impl LocalStore {
    pub fn new(data_dir: PathBuf) -> Result<Self, RuntimeError> {
        create_private_dir(&data_dir.join("services"))?;
        Ok(LocalStore {
            data_dir,
            held: Default::default(),
        })
    }

    pub fn service_dir(&self, service: &str) -> PathBuf {
        self.data_dir.join("services").join(service)
    }

    fn record_path(&self, service: &str) -> PathBuf {
        self.service_dir(service).join(RECORD_FILE)
    }

    fn slots_dir(&self, owner: &str) -> PathBuf {
        self.service_dir(owner).join(SLOTS_DIR)
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.data_dir.join("locks").join(name)
    }

    /// Runs `f` holding the data_dir lock.
    async fn locked<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
    ) -> Result<T, RuntimeError> {
        let lock_path = self.data_dir.join(".lock");
        tokio::task::spawn_blocking(move || {
            let file = open_lock_file(&lock_path)?;
            file.lock().map_err(io_error("cannot lock", &lock_path))?;
            let result = f();
            drop(file);
            result
        })
        .await
        .map_err(|e| RuntimeError::Other(format!("the data_dir lock task failed: {e}")))?
    }
}

#[tonic::async_trait]
impl RecordStore for LocalStore {
    async fn insert(&self, record: &ServiceRecord) -> Result<Option<ServiceRecord>, RuntimeError> {
        let (dir, path) = (self.service_dir(&record.name), self.record_path(&record.name));
        let json = encode(record, &path)?;
        self.locked(move || {
            if let Some(existing) = read_record(&path)? {
                return Ok(Some(existing));
            }
            let written = create_private_dir(&dir).and_then(|_| write_private_file(&path, &json));
            if written.is_err() {
                // A full disk or a permission problem: leave nothing half-written behind.
                let _ = fs::remove_dir_all(&dir);
            }
            written.map(|_| None)
        })
        .await
    }

    async fn save(&self, record: &ServiceRecord) -> Result<(), RuntimeError> {
        let path = self.record_path(&record.name);
        write_private_file(&path, &encode(record, &path)?)
    }

    async fn load(&self, name: &str) -> Result<Option<ServiceRecord>, RuntimeError> {
        read_record(&self.record_path(name))
    }

    async fn delete(&self, name: &str) -> Result<(), RuntimeError> {
        let (dir, path) = (self.service_dir(name), self.record_path(name));
        // The record first: a delete interrupted after it leaves only files no one reads.
        self.locked(move || remove_if_present(&path)).await?;
        remove_dir_if_present(&dir)
    }

    async fn claim_slot(&self, owner: &str, slot: usize, holder: &str) -> Result<bool, RuntimeError> {
        let dir = self.slots_dir(owner);
        let path = dir.join(format!("{SLOT_PREFIX}{slot}"));
        let holder = holder.to_string();
        self.locked(move || {
            create_private_dir(&dir)?;
            create_exclusive(&path, holder.as_bytes())
        })
        .await
    }

    async fn release_slots(&self, owner: &str, holder: &str) -> Result<(), RuntimeError> {
        let dir = self.slots_dir(owner);
        let holder = holder.to_string();
        self.locked(move || {
            for (path, held_by) in slots_in(&dir)? {
                if held_by == holder {
                    remove_if_present(&path)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn slot_holders(&self, owner: &str) -> Result<Vec<String>, RuntimeError> {
        let mut holders: Vec<String> = slots_in(&self.slots_dir(owner))?.into_iter().map(|(_, h)| h).collect();
        holders.sort();
        Ok(holders)
    }

    async fn take_lock(&self, name: &str, lease: &Lease) -> Result<Option<Lease>, RuntimeError> {
        let path = self.lock_path(name);
        create_private_dir(path.parent().unwrap_or(&path))?;
        // Never removed: a process waiting on this file's lock would hold a lock on nothing.
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => {
                let mut held = self
                    .held
                    .lock()
                    .map_err(|_| RuntimeError::Other("lock table poisoned".into()))?;
                held.insert(name.to_string(), (file, lease.owner.clone()));
                Ok(None)
            }
            // Held by a live process (the kernel frees a dead one's): it holds until released.
            Err(fs::TryLockError::WouldBlock) => Ok(Some(Lease {
                owner: "another Terraform run using this data_dir".into(),
                expires_unix_ms: u64::MAX,
            })),
            Err(fs::TryLockError::Error(e)) => Err(io_error("cannot lock", &path)(e)),
        }
    }

    async fn release_lock(&self, name: &str, owner: &str) -> Result<(), RuntimeError> {
        let mut held = self
            .held
            .lock()
            .map_err(|_| RuntimeError::Other("lock table poisoned".into()))?;
        if held.get(name).is_some_and(|(_, holder)| holder == owner) {
            held.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marker_files_of_older_data_dirs_count_as_slots() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf()).unwrap();
        let slots = dir.path().join("services/main/replicas");
        fs::create_dir_all(&slots).unwrap();
        fs::write(slots.join("old-replica"), "").unwrap();
        assert!(store.claim_slot("main", 1, "new-replica").await.unwrap());
        assert_eq!(
            store.slot_holders("main").await.unwrap(),
            ["new-replica", "old-replica"]
        );
        store.release_slots("main", "old-replica").await.unwrap();
        assert_eq!(store.slot_holders("main").await.unwrap(), ["new-replica"]);
    }

    #[tokio::test]
    async fn a_lock_dies_with_the_process_that_held_it() {
        let dir = tempfile::tempdir().unwrap();
        let lease = |owner: &str| Lease::new(owner.into(), std::time::Duration::from_secs(60));
        let killed = LocalStore::new(dir.path().to_path_buf()).unwrap();
        assert_eq!(killed.take_lock("main", &lease("killed")).await.unwrap(), None);
        let next = LocalStore::new(dir.path().to_path_buf()).unwrap();
        assert!(next.take_lock("main", &lease("next")).await.unwrap().is_some());
        // Its open file closes with it, as when the process ends.
        drop(killed);
        assert_eq!(next.take_lock("main", &lease("next")).await.unwrap(), None);
    }
}
