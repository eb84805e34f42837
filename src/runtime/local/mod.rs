//! The local runtime: each node is a valkey-server process on this host, bound to its
//! region's address, with its files under `data_dir/services/<service>/node-<n>/` (or
//! `sentinel-<n>/`; directories 0700, files 0600). Records live beside them ([`store`]).
//!
//! Nodes run in their own process group, so Ctrl-C in the terminal running Terraform does not
//! reach them, and they outlive the provider process, which Terraform stops after each command.

mod files;
mod process;
pub mod settings;
pub mod store;

use std::fs::OpenOptions;
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use files::{create_private_dir, io_error, remove_dir_if_present, write_private_file};
pub use settings::{CLOUD, LocalSettings, Regions};
use store::LocalStore;

use crate::runtime::{
    Endpoint, NodeId, NodeKind, NodeSpec, NodeState, RecordStore, RegionNames, Runtime, RuntimeError, SettingError,
};
use crate::valkey::NodeClient;
use crate::valkey::config_file::redact_secrets;

/// How long a node may take from spawn to answering PING (it loads its RDB file first).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to save and exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How often a start moves to another port when the one it was placed at was taken.
const PORT_RETRIES: usize = 3;
const PID_FILE: &str = "valkey.pid";
const LOG_FILE: &str = "valkey.log";

pub struct LocalRuntime {
    data_dir: PathBuf,
    valkey_server: PathBuf,
    /// Whether valkey_server was built with TLS, probed once when first asked.
    has_tls: tokio::sync::OnceCell<Result<bool, String>>,
    /// Whether valkey_server can defragment, probed once when first asked.
    can_defragment: tokio::sync::OnceCell<Result<bool, String>>,
    regions: Regions,
    store: LocalStore,
    owner: String,
}

fn config_file(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Data => "valkey.conf",
        NodeKind::Sentinel => "sentinel.conf",
    }
}

/// A port nothing listens on at `bind` right now.
fn free_port(bind: IpAddr) -> std::io::Result<u16> {
    TcpListener::bind((bind, 0))?.local_addr().map(|a| a.port())
}

impl LocalRuntime {
    pub fn new(data_dir: PathBuf, valkey_server: PathBuf, regions: Regions) -> Result<Self, RuntimeError> {
        Ok(LocalRuntime {
            store: LocalStore::new(data_dir.clone())?,
            data_dir,
            valkey_server,
            has_tls: tokio::sync::OnceCell::new(),
            can_defragment: tokio::sync::OnceCell::new(),
            regions,
            owner: format!("local-pid-{}", std::process::id()),
        })
    }

    /// The runtime the provider block's settings describe: its binary found and checked, its
    /// data_dir created.
    pub fn configure(settings: &LocalSettings) -> Result<Self, Vec<SettingError>> {
        let (regions, errors) = settings::validate(settings);
        let Some(regions) = regions.filter(|_| errors.is_empty()) else {
            return Err(errors);
        };
        let binary = settings::find_valkey_server(
            settings.valkey_server.as_deref(),
            std::env::var("VALKEY_SERVER").ok(),
            std::env::var("PATH").ok(),
        )
        .and_then(|b| settings::check_valkey_binary(&b).map(|version| (b, version)));
        let binary = match binary {
            Ok((binary, version)) => {
                tracing::debug!(binary = %binary.display(), %version, "found valkey-server");
                binary
            }
            Err(detail) => {
                return Err(vec![SettingError {
                    attribute: "valkey_server",
                    key: None,
                    summary: "valkey-server not usable".into(),
                    detail,
                }]);
            }
        };
        LocalRuntime::new(settings::data_dir(settings), binary, regions).map_err(|e| {
            vec![SettingError {
                attribute: "data_dir",
                key: None,
                summary: "Invalid data_dir".into(),
                detail: e.to_string(),
            }]
        })
    }

    /// Directory a node keeps its config, data, pid file and log in.
    fn node_dir(&self, node: &NodeId) -> PathBuf {
        let leaf = match node.kind {
            NodeKind::Data => format!("node-{}", node.index),
            NodeKind::Sentinel => format!("sentinel-{}", node.index),
        };
        self.store.service_dir(&node.service).join(leaf)
    }

    fn pid_of(&self, node: &NodeId) -> Option<i32> {
        process::read_pid(&self.node_dir(node).join(PID_FILE))
    }

    /// The node's config file: where it runs (address, port, paths), then its settings.
    fn config_text(&self, node: &NodeId, at: &Endpoint, spec: &NodeSpec) -> String {
        let dir = self.node_dir(node);
        let mut lines = vec![
            "# Written by terraform-provider-valkey: terraform apply rewrites it (a Sentinel appends its own state)."
                .to_string(),
            format!("bind {}", at.host),
        ];
        lines.extend(spec.listen_directives(at.port, &dir.display().to_string()));
        lines.extend([
            "daemonize no".into(),
            format!("dir {}", dir.display()),
            format!("pidfile {}", dir.join(PID_FILE).display()),
            format!("logfile {}", dir.join(LOG_FILE).display()),
        ]);
        // Peers and Sentinels must reach the node at its region's address, not at the source
        // address of its outgoing connections.
        match node.kind {
            NodeKind::Data => {
                lines.push(format!("replica-announce-ip {}", at.host));
                lines.push(format!("bind-source-addr {}", at.host));
            }
            NodeKind::Sentinel => lines.push(format!("sentinel announce-ip {}", at.host)),
        }
        lines.join("\n") + "\n" + &spec.settings
    }

    /// Spawns the node and waits until it answers; Ok(false) when it exited because its port
    /// was taken.
    async fn spawn_and_wait(&self, node: &NodeId, at: &Endpoint, spec: &NodeSpec) -> Result<bool, RuntimeError> {
        let dir = self.node_dir(node);
        let (pid_file, log_file) = (dir.join(PID_FILE), dir.join(LOG_FILE));
        // valkey-server creates these with the default umask; create them first so they are
        // private too (it truncates or appends, keeping the mode).
        let _ = std::fs::remove_file(&pid_file);
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
        command.arg(dir.join(config_file(node.kind)));
        if node.kind == NodeKind::Sentinel {
            command.arg("--sentinel");
        }
        let mut child = command
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| RuntimeError::Start {
                node: node.to_string(),
                detail: format!("cannot run {}: {source}", self.valkey_server.display()),
            })?;
        tracing::debug!(node = %node, port = at.port, pid = child.id(), "started valkey-server");
        // valkey-server writes its pid file once it runs; write it now, so a start cancelled
        // before then still leaves the process findable by the next stop or remove.
        if let Some(pid) = child.id() {
            write_private_file(&pid_file, pid.to_string().as_bytes())?;
        }
        let ready = NodeClient::wait_ready(&at.host, at.port, &spec.password, spec.tls.as_ref(), START_TIMEOUT);
        tokio::select! {
            ready = ready => {
                // Reap the process if it exits while this provider process still runs.
                tokio::spawn(async move { let _ = child.wait().await; });
                ready.map(|_| true).map_err(|e| RuntimeError::NotReady { node: node.to_string(), detail: e.to_string() })
            }
            _ = child.wait() => {
                let config = self.config_text(node, at, spec);
                let log_tail = redact_secrets(&process::log_tail(&log_file, 5), &config);
                if log_tail.contains("Address already in use") {
                    return Ok(false);
                }
                Err(RuntimeError::ExitedDuringStart {
                    node: node.to_string(),
                    detail: format!("the end of its log ({}) says:\n{log_tail}", log_file.display()),
                })
            }
        }
    }

    /// Ends a node's process: saving its data first when it will run again
    /// (`process::terminate`), without when its data is deleted next (`process::discard`).
    async fn end(&self, node: &NodeId, runs_again: bool) -> Result<(), RuntimeError> {
        let Some(pid) = self.pid_of(node) else {
            return Ok(());
        };
        let gone = if runs_again {
            process::terminate(pid, STOP_GRACE).await
        } else {
            process::discard(pid, STOP_GRACE).await
        };
        if gone {
            tracing::debug!(node = %node, pid, "stopped valkey-server");
            Ok(())
        } else {
            Err(RuntimeError::WouldNotStop {
                node: node.to_string(),
                detail: format!(
                    "process {pid} was still there {} s after SIGTERM and SIGKILL; end it, then apply again",
                    STOP_GRACE.as_secs()
                ),
            })
        }
    }
}

#[tonic::async_trait]
impl Runtime for LocalRuntime {
    fn regions(&self) -> RegionNames {
        self.regions.names()
    }

    fn location(&self) -> String {
        format!("data_dir {}", self.data_dir.display())
    }

    fn log_location(&self, node: &NodeId) -> String {
        self.node_dir(node).join(LOG_FILE).display().to_string()
    }

    fn store(&self) -> &dyn RecordStore {
        &self.store
    }

    fn lease_owner(&self) -> String {
        self.owner.clone()
    }

    fn lease_holder_gone(&self, owner: &str) -> bool {
        owner
            .strip_prefix("local-pid-")
            .and_then(|pid| pid.parse().ok())
            .is_some_and(|pid| !crate::runtime::procfs::is_live_provider(pid))
    }

    async fn check_tls(&self) -> Result<(), String> {
        let binary = &self.valkey_server;
        let probed = self
            .has_tls
            .get_or_init(|| async {
                settings::probe_output(binary, &crate::valkey::tls_probe::PROBE_ARGS)
                    .await
                    .map(|out| crate::valkey::tls_probe::built_with_tls(&out))
            })
            .await;
        super::probe_verdict(probed, || {
            format!(
                "the valkey-server this provider runs ({}) was built without TLS. Set the provider's valkey_server \
                 (or VALKEY_SERVER) to a TLS-capable build, such as the valkey-server of Debian 13 or of the \
                 official images, or remove the tls block",
                binary.display()
            )
        })
    }

    async fn check_active_defrag(&self) -> Result<(), String> {
        let binary = &self.valkey_server;
        let probed = self
            .can_defragment
            .get_or_init(|| async {
                settings::probe_output(binary, &crate::valkey::defrag_probe::PROBE_ARGS)
                    .await
                    .map(|out| crate::valkey::defrag_probe::can_defragment(&out))
            })
            .await;
        super::probe_verdict(probed, || {
            format!(
                "the valkey-server this provider runs ({}) cannot defragment: active defragmentation \
                 needs a build with Valkey's own jemalloc (libc malloc builds and Debian's lack it). Set the provider's \
                 valkey_server (or VALKEY_SERVER) to such a build, as from the Valkey source release, or set \
                 activedefrag = false",
                binary.display()
            )
        })
    }

    async fn place(&self, node: &NodeId, region: &str) -> Result<Endpoint, RuntimeError> {
        let bind = self.regions.address(region).ok_or_else(|| RuntimeError::CannotPlace {
            region: region.to_string(),
            detail: self.regions.names().check(region).err().unwrap_or_default(),
        })?;
        let port = free_port(bind).map_err(|e| RuntimeError::CannotPlace {
            region: region.to_string(),
            detail: format!(
                "no free TCP port on {bind} for {node}: {e}. Region {region:?} maps to {bind}, which this machine \
                 cannot listen on; use an address of this machine (loopback, or a network namespace you manage) in \
                 the provider's regions."
            ),
        })?;
        Ok(Endpoint::new(bind.to_string(), port))
    }

    async fn configure(&self, node: &NodeId, at: &Endpoint, spec: &NodeSpec) -> Result<(), RuntimeError> {
        let dir = self.node_dir(node);
        create_private_dir(&dir)?;
        // A Sentinel keeps its config where it was started before, but takes a renewed
        // certificate at its next start.
        for (name, contents) in spec.tls_files() {
            write_private_file(&dir.join(name), contents.as_bytes())?;
        }
        let path = dir.join(config_file(node.kind));
        if node.kind == NodeKind::Sentinel
            && std::fs::read_to_string(&path).is_ok_and(|kept| spec.sentinel_config_fits(&kept, at))
        {
            return Ok(());
        }
        write_private_file(&path, self.config_text(node, at, spec).as_bytes())
    }

    async fn start(
        &self,
        node: &NodeId,
        at: &Endpoint,
        spec: &NodeSpec,
        pinned: bool,
    ) -> Result<Endpoint, RuntimeError> {
        // A process of this node still running (from a start that was cancelled) goes first.
        self.end(node, true).await?;
        let mut at = at.clone();
        for _ in 0..=PORT_RETRIES {
            self.configure(node, &at, spec).await?;
            if self.spawn_and_wait(node, &at, spec).await? {
                return Ok(at);
            }
            if pinned {
                let find_it = format!("stop that process (`ss -ltnp 'sport = :{}'` shows it)", at.port);
                return Err(RuntimeError::endpoint_taken(&node.service, &at, &find_it));
            }
            let bind: IpAddr = at
                .host
                .parse()
                .map_err(|_| RuntimeError::Other(format!("{at} is not local")))?;
            let port = free_port(bind).map_err(|e| RuntimeError::Start {
                node: node.to_string(),
                detail: format!("no free TCP port on {bind}: {e}"),
            })?;
            tracing::debug!(node = %node, taken = %at, port, "port taken meanwhile; moving the node");
            at.port = port;
        }
        Err(RuntimeError::Start {
            node: node.to_string(),
            detail: format!("every port tried on {} was taken by the time the node started", at.host),
        })
    }

    async fn stop(&self, node: &NodeId) -> Result<(), RuntimeError> {
        self.end(node, true).await
    }

    async fn remove(&self, node: &NodeId) -> Result<(), RuntimeError> {
        self.end(node, false).await?;
        remove_dir_if_present(&self.node_dir(node))
    }

    async fn node_log(&self, node: &NodeId) -> Option<String> {
        tokio::fs::read_to_string(self.node_dir(node).join(LOG_FILE)).await.ok()
    }

    async fn state(&self, node: &NodeId) -> NodeState {
        if self.pid_of(node).is_some_and(process::is_live_valkey) {
            NodeState::Running
        } else {
            NodeState::Stopped
        }
    }
}
