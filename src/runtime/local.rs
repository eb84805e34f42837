//! The local runtime: each node is a valkey-server process on this host, with its files under
//! `data_dir/services/<service>/node-<n>/` (directories 0700, files 0600).
//!
//! Nodes run in their own process group, so Ctrl-C in the terminal running Terraform does not
//! reach them, and they outlive the provider process, which Terraform stops after each command.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use super::process;
use super::{NodeId, ProcessKind, ProcessSpec, Runtime, RuntimeError, ServiceRecord, Upstream};
use crate::valkey::NodeClient;
use crate::valkey::config_file::redact_secrets;

/// How long a node may take from spawn to answering PING (it loads its RDB file first).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to save and exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);
const RECORD_FILE: &str = "service.json";
const REPLICAS_DIR: &str = "replicas";
const PID_FILE: &str = "valkey.pid";
const LOG_FILE: &str = "valkey.log";

fn config_path(spec: &ProcessSpec) -> PathBuf {
    spec.dir
        .join(if spec.sentinel { "sentinel.conf" } else { "valkey.conf" })
}

pub struct LocalRuntime {
    data_dir: PathBuf,
    valkey_server: PathBuf,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Io { action, path, source }
}

/// Creates a directory (and parents) readable only by the owner.
pub fn create_private_dir(path: &Path) -> Result<(), RuntimeError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_error("cannot create directory", path))
}

/// Writes a file readable only by the owner, atomically (temporary file, then rename). On a
/// failure (a full disk) the old file stays as it was and no temporary file is left.
fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error("cannot write", &tmp))?;
    let written = file
        .write_all(contents)
        .and_then(|_| file.sync_all())
        .map_err(io_error("cannot write", &tmp))
        .and_then(|_| fs::rename(&tmp, path).map_err(io_error("cannot write", path)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Reads one record; None when the file does not exist.
fn read_record(path: &Path) -> Result<Option<ServiceRecord>, RuntimeError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::BadRecord {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("cannot read", path)(e)),
    }
}

/// The names of a primary's read replicas: one marker file each under
/// `services/<primary>/replicas/`, written and removed with the replica's record under the
/// lock, so counting them never needs to read every record in data_dir.
fn replica_markers(services: &Path, primary: &str) -> Result<Vec<String>, RuntimeError> {
    let dir = services.join(primary).join(REPLICAS_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("cannot list", &dir)(e)),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.ends_with(".tmp"))
        .collect();
    names.sort();
    Ok(names)
}

/// Ends a node's process: saving its data first when it will run again
/// (`process::terminate`), without when its data is deleted next (`process::discard`).
async fn end_node(node: NodeId, pid: i32, runs_again: bool) -> Result<(), RuntimeError> {
    let gone = if runs_again {
        process::terminate(pid, STOP_GRACE).await
    } else {
        process::discard(pid, STOP_GRACE).await
    };
    if gone {
        Ok(())
    } else {
        Err(RuntimeError::WouldNotStop {
            node: node.to_string(),
            pid,
            seconds: STOP_GRACE.as_secs(),
        })
    }
}

fn remove_if_present(path: &Path) -> Result<(), RuntimeError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("cannot remove", path)(e)),
    }
}

impl LocalRuntime {
    pub fn new(data_dir: PathBuf, valkey_server: PathBuf) -> Result<Self, RuntimeError> {
        create_private_dir(&data_dir.join("services"))?;
        Ok(LocalRuntime {
            data_dir,
            valkey_server,
        })
    }

    fn service_dir(&self, service: &str) -> PathBuf {
        self.data_dir.join("services").join(service)
    }

    fn record_path(&self, service: &str) -> PathBuf {
        self.service_dir(service).join(RECORD_FILE)
    }

    /// Holds an exclusive lock on `data_dir/.lock` while `f` runs, so concurrent Terraform
    /// runs sharing a data_dir cannot interleave checks and writes.
    async fn with_lock<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
    ) -> Result<T, RuntimeError> {
        let lock_path = self.data_dir.join(".lock");
        tokio::task::spawn_blocking(move || {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
                .map_err(io_error("cannot open lock file", &lock_path))?;
            file.lock().map_err(io_error("cannot lock", &lock_path))?;
            let result = f();
            drop(file);
            result
        })
        .await
        .map_err(|e| RuntimeError::Io {
            action: "lock task failed for",
            path: self.data_dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
    }

    fn pid_of(&self, node: &NodeId) -> Option<i32> {
        process::read_pid(&self.node_dir(node).join(PID_FILE))
    }
}

#[tonic::async_trait]
impl Runtime for LocalRuntime {
    fn node_dir(&self, node: &NodeId) -> PathBuf {
        let leaf = match node.kind {
            ProcessKind::Data => format!("node-{}", node.index),
            ProcessKind::Sentinel => format!("sentinel-{}", node.index),
        };
        self.service_dir(&node.service).join(leaf)
    }

    fn free_port(&self, bind: IpAddr) -> Result<u16, RuntimeError> {
        let listener = TcpListener::bind((bind, 0)).map_err(|e| RuntimeError::NoFreePort(bind, e))?;
        listener
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| RuntimeError::NoFreePort(bind, e))
    }

    async fn write_config(&self, _node: &NodeId, spec: &ProcessSpec) -> Result<(), RuntimeError> {
        create_private_dir(&spec.dir)?;
        let path = config_path(spec);
        if spec.sentinel && path.exists() {
            return Ok(());
        }
        write_private_file(&path, spec.config_text.as_bytes())
    }

    async fn remove_node(&self, node: &NodeId) -> Result<(), RuntimeError> {
        if let Some(pid) = self.pid_of(node) {
            end_node(node.clone(), pid, false).await?;
        }
        let dir = self.node_dir(node);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("cannot remove", &dir)(e)),
        }
    }

    async fn start(&self, node: &NodeId, spec: &ProcessSpec) -> Result<(), RuntimeError> {
        self.write_config(node, spec).await?;
        let (pid_file, log_file) = (spec.dir.join(PID_FILE), spec.dir.join(LOG_FILE));
        // valkey-server creates these with the default umask; create them first so they are
        // private too (it truncates or appends, keeping the mode).
        let _ = fs::remove_file(&pid_file);
        write_private_file(&pid_file, b"")?;
        if !log_file.exists() {
            write_private_file(&log_file, b"")?;
        }
        // What valkey-server prints before its log is open (a rejected config line) goes to
        // the log too, so the error below can show it.
        let stderr = OpenOptions::new()
            .append(true)
            .open(&log_file)
            .map_err(io_error("cannot open", &log_file))?;
        let mut command = Command::new(&self.valkey_server);
        command.arg(config_path(spec));
        if spec.sentinel {
            command.arg("--sentinel");
        }
        let mut child = command
            .current_dir(&spec.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| RuntimeError::Spawn {
                node: node.to_string(),
                binary: self.valkey_server.clone(),
                source,
            })?;
        tracing::debug!(node = %node, port = spec.port, pid = child.id(), "started valkey-server");
        let host = spec.bind.to_string();
        let ready = NodeClient::wait_ready(&host, spec.port, &spec.password, START_TIMEOUT);
        tokio::select! {
            ready = ready => {
                // Reap the process if it exits while this provider process still runs.
                tokio::spawn(async move { let _ = child.wait().await; });
                ready.map(|_| ()).map_err(|source| RuntimeError::NotReady { node: node.to_string(), source })
            }
            _ = child.wait() => {
                let log_tail = redact_secrets(&process::log_tail(&log_file, 5), &spec.config_text);
                let port_in_use = log_tail.contains("Address already in use");
                Err(RuntimeError::ExitedDuringStart { node: node.to_string(), log_tail, port_in_use })
            }
        }
    }

    async fn stop(&self, node: &NodeId) -> Result<(), RuntimeError> {
        let Some(pid) = self.pid_of(node) else {
            return Ok(());
        };
        end_node(node.clone(), pid, true).await?;
        tracing::debug!(node = %node, pid, "stopped valkey-server");
        Ok(())
    }

    fn is_running(&self, node: &NodeId) -> bool {
        self.pid_of(node).is_some_and(process::is_live_valkey)
    }

    async fn create_record(&self, record: &ServiceRecord, max_replicas: usize) -> Result<(), RuntimeError> {
        let dir = self.service_dir(&record.name);
        let path = self.record_path(&record.name);
        let json = serde_json::to_vec_pretty(record).map_err(|e| RuntimeError::BadRecord {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let services = self.data_dir.join("services");
        let record = record.clone();
        self.with_lock(move || {
            if let Some(existing) = read_record(&path)? {
                return Err(match existing.creating_pid {
                    Some(pid) if !process::is_live_provider(pid) => RuntimeError::InterruptedCreate(Box::new(existing)),
                    _ => RuntimeError::AlreadyExists { name: record.name },
                });
            }
            let marker = match &record.upstream {
                Some(Upstream::Service { name: primary }) => {
                    match read_record(&services.join(primary).join(RECORD_FILE))? {
                        Some(p) if p.upstream.is_none() => {}
                        _ => return Err(RuntimeError::PrimaryMissing(primary.clone())),
                    }
                    let replicas = replica_markers(&services, primary)?;
                    if replicas.len() >= max_replicas {
                        return Err(RuntimeError::ReplicaLimit {
                            primary: primary.clone(),
                            replicas,
                            max: max_replicas,
                        });
                    }
                    Some(services.join(primary).join(REPLICAS_DIR).join(&record.name))
                }
                _ => None,
            };
            let written = create_private_dir(&dir)
                .and_then(|_| write_private_file(&path, &json))
                .and_then(|_| match &marker {
                    Some(marker) => {
                        create_private_dir(marker.parent().unwrap_or(&dir))?;
                        write_private_file(marker, b"")
                    }
                    None => Ok(()),
                });
            if written.is_err() {
                // A full disk or a permission problem: leave nothing half-written behind.
                let _ = fs::remove_dir_all(&dir);
                if let Some(marker) = &marker {
                    let _ = fs::remove_file(marker);
                    let _ = fs::remove_file(marker.with_extension("tmp"));
                }
            }
            written
        })
        .await
    }

    async fn replicas_of(&self, primary: &str) -> Result<Vec<String>, RuntimeError> {
        replica_markers(&self.data_dir.join("services"), primary)
    }

    async fn save_record(&self, record: &ServiceRecord) -> Result<(), RuntimeError> {
        let path = self.record_path(&record.name);
        let json = serde_json::to_vec_pretty(record).map_err(|e| RuntimeError::BadRecord {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_private_file(&path, &json)
    }

    async fn load_record(&self, name: &str) -> Result<Option<ServiceRecord>, RuntimeError> {
        read_record(&self.record_path(name))
    }

    async fn remove_service(&self, record: &ServiceRecord) -> Result<(), RuntimeError> {
        let services = self.data_dir.join("services");
        let has_replicas = |name: &str| -> Result<(), RuntimeError> {
            let replicas = replica_markers(&services, name)?;
            if replicas.is_empty() {
                Ok(())
            } else {
                Err(RuntimeError::HasReplicas {
                    name: name.to_string(),
                    replicas,
                })
            }
        };
        has_replicas(&record.name)?;
        // Nodes first, record last: an interrupted delete leaves the record, so Terraform still
        // tracks the service and the next destroy finishes the job.
        let mut stops = tokio::task::JoinSet::new();
        let data = record.nodes.iter().map(|n| NodeId::data(&record.name, n.index));
        let sentinels = record.sentinels.iter().map(|s| NodeId::sentinel(&record.name, s.index));
        for id in data.chain(sentinels) {
            if let Some(pid) = self.pid_of(&id) {
                stops.spawn(end_node(id, pid, false));
            }
        }
        while let Some(Ok(stopped)) = stops.join_next().await {
            stopped?;
        }
        let path = self.record_path(&record.name);
        let name = record.name.clone();
        let upstream = record.upstream.clone();
        let locked_services = services.clone();
        self.with_lock(move || {
            // A replica may have attached while the nodes stopped; it keeps the service.
            let replicas = replica_markers(&locked_services, &name)?;
            if !replicas.is_empty() {
                return Err(RuntimeError::HasReplicas { name, replicas });
            }
            remove_if_present(&path)?;
            if let Some(Upstream::Service { name: primary }) = upstream {
                remove_if_present(&locked_services.join(primary).join(REPLICAS_DIR).join(&name))?;
            }
            Ok(())
        })
        .await?;
        let dir = self.service_dir(&record.name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("cannot remove", &dir)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{FailoverSettings, NodeRecord, UserConfigValues};
    use std::sync::Arc;

    fn record(name: &str, upstream: Option<Upstream>) -> ServiceRecord {
        ServiceRecord {
            name: name.into(),
            plan: "startup-4".into(),
            cloud: "local".into(),
            region: "local-1".into(),
            bind: "127.0.0.1".parse().unwrap(),
            password: "p".into(),
            replication_password: "r".into(),
            sentinel_password: "s".into(),
            sentinel_auth_password: "a".into(),
            user_config: UserConfigValues::default(),
            termination_protection: false,
            nodes: vec![NodeRecord { index: 0, port: 1 }],
            upstream,
            failover_priority: None,
            failover: FailoverSettings::default(),
            sentinels: Vec::new(),
            suspended_primary: None,
            creating_pid: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_replica_creates_never_exceed_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Arc::new(LocalRuntime::new(dir.path().to_path_buf(), "/bin/false".into()).unwrap());
        runtime.create_record(&record("main", None), 5).await.unwrap();
        let mut creates = tokio::task::JoinSet::new();
        for i in 0..8 {
            let runtime = runtime.clone();
            let replica = record(&format!("r{i}"), Some(Upstream::Service { name: "main".into() }));
            creates.spawn(async move { runtime.create_record(&replica, 5).await });
        }
        let mut refused = 0;
        while let Some(result) = creates.join_next().await {
            match result.unwrap() {
                Ok(()) => {}
                Err(RuntimeError::ReplicaLimit { .. }) => refused += 1,
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        assert_eq!(refused, 3);
        assert_eq!(runtime.replicas_of("main").await.unwrap().len(), 5);
        let err = runtime.remove_service(&record("main", None)).await.unwrap_err();
        assert!(err.to_string().contains("still has read replicas"), "{err}");
    }

    #[tokio::test]
    async fn a_replica_of_a_missing_or_replica_primary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = LocalRuntime::new(dir.path().to_path_buf(), "/bin/false".into()).unwrap();
        let orphan = record("r", Some(Upstream::Service { name: "nowhere".into() }));
        assert!(matches!(
            runtime.create_record(&orphan, 5).await,
            Err(RuntimeError::PrimaryMissing(_))
        ));
        runtime.create_record(&record("main", None), 5).await.unwrap();
        runtime
            .create_record(&record("r1", Some(Upstream::Service { name: "main".into() })), 5)
            .await
            .unwrap();
        let chained = record("r2", Some(Upstream::Service { name: "r1".into() }));
        assert!(matches!(
            runtime.create_record(&chained, 5).await,
            Err(RuntimeError::PrimaryMissing(_))
        ));
    }
}
