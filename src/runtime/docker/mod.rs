//! The docker runtime: each node is a container on a Docker Engine of its region, created
//! through the Engine API, with a named volume for its data and config, a restart policy
//! (Sentinels restart; data nodes do not, see `ensure_container`), labels naming its service,
//! node and role, and its port published on its host's advertise
//! address, which it announces to its peers. Nodes of one service are spread over the
//! region's hosts. Records live with the engines ([`store`]).

pub mod engine;
pub mod settings;
pub mod ssh_state;
mod ssh_transport;
pub mod store;

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;

use engine::{ContainerSpec, Engine, EngineError};
pub use settings::{CLOUD, DockerHost, DockerRegion, DockerSettings};
use store::{DockerStore, LABEL_KIND, LABEL_SERVICE};

use crate::runtime::{
    Endpoint, NodeId, NodeKind, NodeSpec, NodeState, RecordStore, RegionNames, Runtime, RuntimeError, SettingError,
};
use crate::valkey::NodeClient;

/// How long a node may take from its container's start to answering PING.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Published ports are drawn from this range; a port found taken at start moves the node.
const PORTS: std::ops::Range<u16> = 20000..30000;
const PORT_RETRIES: usize = 3;
/// How long a container held by another create (one a cancelled start left under way) is
/// waited for.
const NAME_HELD_WAIT: Duration = Duration::from_secs(10);
const LABEL_ENDPOINT: &str = "io.terraform-provider-valkey.endpoint";
const LABEL_NODE: &str = "io.terraform-provider-valkey.node";
/// Where the image has valkey-server.
const VALKEY_SERVER: &str = "/usr/local/bin/valkey-server";
/// Where a node's volume is mounted: its config, data and TLS files.
const DATA_DIR: &str = "/data";

/// One engine of a region, with the address its published ports are reached at.
struct Host {
    region: String,
    engine: Engine,
    advertise: String,
}

/// Where a node's container was found.
enum Located<'a> {
    /// On this host, running or not.
    On(&'a Host, bool),
    /// No engine has it.
    Nowhere,
    /// No engine that answered has it, and some did not answer.
    Unknown,
}

pub struct DockerRuntime {
    settings: DockerSettings,
    /// Whether the image's valkey-server was built with TLS, probed once when first asked.
    has_tls: tokio::sync::OnceCell<Result<bool, String>>,
    /// Whether the image's valkey-server can defragment, probed once when first asked.
    can_defragment: tokio::sync::OnceCell<Result<bool, String>>,
    hosts: Vec<Host>,
    store: DockerStore,
    owner: String,
}

/// Lease owners taken on this machine start with this, then the provider's pid: a lease of
/// this machine's is known gone with its process; another machine's lease only expires.
fn owner_prefix() -> String {
    let machine = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    format!("docker-{machine}-pid-")
}

fn container_name(node: &NodeId) -> String {
    format!("vk-{node}")
}

fn config_file(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Data => "valkey.conf",
        NodeKind::Sentinel => "sentinel.conf",
    }
}

impl DockerRuntime {
    /// What the image's valkey-server prints when run once with `args`, in a probe container on
    /// the records' engine.
    async fn image_output(&self, args: &[&str]) -> Result<String, String> {
        let image = &self.settings.image;
        let mut cmd = vec![VALKEY_SERVER.to_string()];
        cmd.extend(args.iter().map(|a| a.to_string()));
        let name = format!("vkprobe-{}", rand::rng().random::<u32>());
        let engine = self.store.engine();
        engine
            .output_of(&name, image, cmd, START_TIMEOUT)
            .await
            .map_err(|e| format!("cannot run the image {image} on engine {} to check it: {e}", engine.url))
    }

    /// The runtime the settings describe; no engine is contacted yet.
    pub fn configure(settings: &DockerSettings) -> Result<Self, Vec<SettingError>> {
        let errors = settings.validate();
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut hosts = Vec::new();
        for region in &settings.regions {
            for host in &region.hosts {
                hosts.push(Host {
                    region: region.name.clone(),
                    engine: Engine::new(&host.url, region.cert_path.as_deref()),
                    advertise: host.advertise_address.clone(),
                });
            }
        }
        let store = DockerStore::new(hosts[0].engine.clone(), settings.image.clone());
        Ok(DockerRuntime {
            settings: settings.clone(),
            has_tls: tokio::sync::OnceCell::new(),
            can_defragment: tokio::sync::OnceCell::new(),
            hosts,
            store,
            owner: format!("{}{}", owner_prefix(), std::process::id()),
        })
    }

    /// The host whose advertise address is the endpoint's.
    fn host_at(&self, at: &Endpoint) -> Result<&Host, RuntimeError> {
        self.hosts.iter().find(|h| h.advertise == at.host).ok_or_else(|| {
            RuntimeError::Other(format!(
                "no docker host advertises {}; the provider's docker block no longer lists the host this node was placed on",
                at.host
            ))
        })
    }

    /// Where a node's container is, asked of every engine at once; the first engine that has
    /// it answers for it, so an engine that is down delays only the nodes it might hold.
    async fn locate(&self, node: &NodeId) -> Located<'_> {
        let name = container_name(node);
        let mut asks: futures_util::stream::FuturesUnordered<_> = self
            .hosts
            .iter()
            .map(|h| {
                let name = name.clone();
                async move { (h, h.engine.running(&name).await) }
            })
            .collect();
        let mut some_silent = false;
        while let Some((host, answer)) = futures_util::StreamExt::next(&mut asks).await {
            match answer {
                Ok(Some(running)) => return Located::On(host, running),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(node = %node, engine = %host.engine.url, error = %e, "engine did not say where the node is");
                    some_silent = true;
                }
            }
        }
        if some_silent {
            Located::Unknown
        } else {
            Located::Nowhere
        }
    }

    /// The config file: where the node listens and what it announces, then its settings.
    fn config_text(node: &NodeId, at: &Endpoint, spec: &NodeSpec) -> String {
        let mut lines = vec![
            "# Written by terraform-provider-valkey: terraform apply rewrites it (a Sentinel appends its own state)."
                .to_string(),
            "bind 0.0.0.0".into(),
        ];
        lines.extend(spec.listen_directives(at.port, DATA_DIR));
        lines.extend(["daemonize no".into(), format!("dir {DATA_DIR}")]);
        match node.kind {
            NodeKind::Data => {
                lines.push(format!("replica-announce-ip {}", at.host));
                lines.push(format!("replica-announce-port {}", at.port));
            }
            NodeKind::Sentinel => {
                lines.push(format!("sentinel announce-ip {}", at.host));
                lines.push(format!("sentinel announce-port {}", at.port));
            }
        }
        lines.join("\n") + "\n" + &spec.settings
    }

    /// Makes sure the node's container exists, published at `at` (a container published
    /// elsewhere is replaced; its volume stays).
    ///
    /// A create its caller gave up on (a cancelled start) may still be under way in the engine:
    /// it holds the name before the container is listed, so a create that finds the name taken
    /// and nothing listed waits for it, then takes the container it made or replaces it.
    async fn ensure_container(&self, host: &Host, node: &NodeId, at: &Endpoint) -> Result<(), RuntimeError> {
        let spec = self.container_spec(node, at);
        let deadline = tokio::time::Instant::now() + NAME_HELD_WAIT;
        loop {
            let existing = host
                .engine
                .list(&spec.name)
                .await
                .map_err(|e| host.engine.error("cannot list containers", e))?
                .into_iter()
                .find(|(n, _)| *n == spec.name);
            if let Some((_, labels)) = &existing {
                if labels.get(LABEL_ENDPOINT) == spec.labels.get(LABEL_ENDPOINT) {
                    return Ok(());
                }
                host.engine
                    .remove(&spec.name)
                    .await
                    .map_err(|e| host.engine.error("cannot replace a container", e))?;
            }
            match host.engine.create(&spec).await {
                Err(EngineError::Conflict) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => return other.map_err(|e| host.engine.error("cannot create a container", e)),
            }
        }
    }

    /// Writes the node's TLS files and config into its container; an error says what failed.
    async fn write_files(
        &self,
        host: &Host,
        node: &NodeId,
        at: &Endpoint,
        spec: &NodeSpec,
    ) -> Result<(), (&'static str, EngineError)> {
        let name = container_name(node);
        // A Sentinel keeps its config where it was started before, but takes a renewed
        // certificate at its next start.
        for (file, contents) in spec.tls_files() {
            host.engine
                .write_file(&name, file, contents.as_bytes())
                .await
                .map_err(|e| ("cannot write a node's TLS files", e))?;
        }
        let file = config_file(node.kind);
        if node.kind == NodeKind::Sentinel
            && host
                .engine
                .read_file(&name, file)
                .await
                .map_err(|e| ("cannot read a Sentinel's config", e))?
                .is_some_and(|kept| spec.sentinel_config_fits(&String::from_utf8_lossy(&kept), at))
        {
            return Ok(());
        }
        host.engine
            .write_file(&name, file, Self::config_text(node, at, spec).as_bytes())
            .await
            .map_err(|e| ("cannot write a node's config", e))
    }

    /// The container a node runs in, published at `at`.
    fn container_spec(&self, node: &NodeId, at: &Endpoint) -> ContainerSpec {
        let name = container_name(node);
        let role = match node.kind {
            NodeKind::Data => "data",
            NodeKind::Sentinel => "sentinel",
        };
        let mut cmd = vec![VALKEY_SERVER.to_string(), format!("/data/{}", config_file(node.kind))];
        if node.kind == NodeKind::Sentinel {
            cmd.push("--sentinel".into());
        }
        ContainerSpec {
            name: name.clone(),
            image: self.settings.image.clone(),
            cmd,
            labels: HashMap::from([
                (LABEL_KIND.to_string(), role.to_string()),
                (LABEL_SERVICE.to_string(), node.service.clone()),
                (LABEL_NODE.to_string(), node.to_string()),
                (LABEL_ENDPOINT.to_string(), at.to_string()),
            ]),
            volume: Some(name),
            publish: Some((at.host.clone(), at.port)),
            // A data node that exits stays down, as on the local cloud: restarted in place, a
            // primary would come back with an older dataset (or none, without persistence), and
            // its replicas would copy that before Sentinel could fail it over. Sentinel promotes
            // a replica instead, and the next apply starts the node as a replica of it.
            // Sentinels hold no data and restart.
            restart: node.kind == NodeKind::Sentinel,
        }
    }

    /// An endpoint on the `slot`th host of `region` (round the region's hosts), at a random
    /// port of the range.
    fn place_on_slot(&self, region: &str, slot: usize) -> Result<Endpoint, RuntimeError> {
        let in_region: Vec<&Host> = self.hosts.iter().filter(|h| h.region == region).collect();
        if in_region.is_empty() {
            return Err(RuntimeError::CannotPlace {
                region: region.to_string(),
                detail: self.regions().check(region).err().unwrap_or_default(),
            });
        }
        let host = in_region[slot % in_region.len()];
        Ok(Endpoint::new(host.advertise.clone(), rand::rng().random_range(PORTS)))
    }
}

#[tonic::async_trait]
impl Runtime for DockerRuntime {
    fn regions(&self) -> RegionNames {
        self.settings.region_names()
    }

    fn location(&self) -> String {
        format!("the Docker engine {}", self.store.engine().url)
    }

    fn log_location(&self, node: &NodeId) -> String {
        format!("`docker logs {}` on its engine", container_name(node))
    }

    fn store(&self) -> &dyn RecordStore {
        &self.store
    }

    fn lease_owner(&self) -> String {
        self.owner.clone()
    }

    /// A provider process on this machine that is gone (a killed apply, run again here).
    fn lease_holder_gone(&self, owner: &str) -> bool {
        owner
            .strip_prefix(&owner_prefix())
            .and_then(|pid| pid.parse().ok())
            .is_some_and(|pid| !crate::runtime::procfs::is_live_provider(pid))
    }

    /// Whether the image's valkey-server was built with TLS: probed once, in a container of the
    /// image on the records' engine.
    async fn check_tls(&self) -> Result<(), String> {
        let image = &self.settings.image;
        let probed = self
            .has_tls
            .get_or_init(|| async {
                self.image_output(&crate::valkey::tls_probe::PROBE_ARGS)
                    .await
                    .map(|output| crate::valkey::tls_probe::built_with_tls(&output))
            })
            .await;
        super::probe_verdict(probed, || {
            format!(
                "the valkey-server of the docker image {image} was built without TLS. Set the docker block's image \
                 to one whose valkey-server has TLS (the official and Debian-based Valkey images do), or remove the \
                 tls block"
            )
        })
    }

    async fn check_active_defrag(&self) -> Result<(), String> {
        let image = &self.settings.image;
        let probed = self
            .can_defragment
            .get_or_init(|| async {
                self.image_output(&crate::valkey::defrag_probe::PROBE_ARGS)
                    .await
                    .map(|output| crate::valkey::defrag_probe::can_defragment(&output))
            })
            .await;
        super::probe_verdict(probed, || {
            format!(
                "the valkey-server of the docker image {image} cannot defragment: active defragmentation \
                 needs a build with Valkey's own jemalloc (libc malloc builds and Debian's lack it). Use an image \
                 built from the Valkey source release (the official images are), or set activedefrag = false"
            )
        })
    }

    async fn place(&self, node: &NodeId, region: &str) -> Result<Endpoint, RuntimeError> {
        self.place_on_slot(region, node.index)
    }

    async fn place_sentinel(&self, _node: &NodeId, region: &str, nth: usize) -> Result<Endpoint, RuntimeError> {
        // Data node 0 is on the region's first host: start from the next one.
        self.place_on_slot(region, nth + 1)
    }

    fn hosts_in(&self, region: &str) -> usize {
        self.hosts.iter().filter(|h| h.region == region).count()
    }

    /// Makes the node's container and writes its files. A container the listing shows may not
    /// take files yet, or go again, while a create cut short (a cancelled start) is still under
    /// way in the engine: a write that finds no container is tried again, for a while.
    async fn configure(&self, node: &NodeId, at: &Endpoint, spec: &NodeSpec) -> Result<(), RuntimeError> {
        let host = self.host_at(at)?;
        let deadline = tokio::time::Instant::now() + NAME_HELD_WAIT;
        loop {
            self.ensure_container(host, node, at).await?;
            match self.write_files(host, node, at, spec).await {
                Err((_, EngineError::NotFound)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => return other.map_err(|(what, e)| host.engine.error(what, e)),
            }
        }
    }

    async fn start(
        &self,
        node: &NodeId,
        at: &Endpoint,
        spec: &NodeSpec,
        pinned: bool,
    ) -> Result<Endpoint, RuntimeError> {
        let mut at = at.clone();
        for _ in 0..=PORT_RETRIES {
            let host = self.host_at(&at)?;
            self.configure(node, &at, spec).await?;
            match host.engine.start(&container_name(node)).await {
                Ok(()) => {
                    NodeClient::wait_ready(&at.host, at.port, &spec.password, spec.tls.as_ref(), START_TIMEOUT)
                        .await
                        .map_err(|e| RuntimeError::NotReady {
                            node: node.to_string(),
                            detail: format!("{e}; see {}", self.log_location(node)),
                        })?;
                    return Ok(at);
                }
                Err(EngineError::PortTaken(_)) if pinned => {
                    let free_it = format!("free port {} on that host", at.port);
                    return Err(RuntimeError::endpoint_taken(&node.service, &at, &free_it));
                }
                Err(EngineError::PortTaken(_)) => {
                    at.port = rand::rng().random_range(PORTS);
                }
                Err(e) => {
                    return Err(RuntimeError::Start {
                        node: node.to_string(),
                        detail: format!("engine {}: {e}", host.engine.url),
                    });
                }
            }
        }
        Err(RuntimeError::Start {
            node: node.to_string(),
            detail: format!("every port tried on {} was taken", at.host),
        })
    }

    async fn stop(&self, node: &NodeId) -> Result<(), RuntimeError> {
        let host = match self.locate(node).await {
            Located::On(host, _) => host,
            Located::Nowhere => return Ok(()),
            Located::Unknown => {
                return Err(RuntimeError::WouldNotStop {
                    node: node.to_string(),
                    detail: "an engine that may hold it did not answer; see the provider log".into(),
                });
            }
        };
        host.engine
            .stop(&container_name(node))
            .await
            .map_err(|e| RuntimeError::WouldNotStop {
                node: node.to_string(),
                detail: format!("engine {}: {e}", host.engine.url),
            })
    }

    async fn remove(&self, node: &NodeId) -> Result<(), RuntimeError> {
        let name = container_name(node);
        for host in &self.hosts {
            host.engine
                .remove(&name)
                .await
                .map_err(|e| host.engine.error("cannot remove a container", e))?;
            host.engine
                .remove_volume(&name)
                .await
                .map_err(|e| host.engine.error("cannot remove a volume", e))?;
        }
        Ok(())
    }

    async fn node_log(&self, node: &NodeId) -> Option<String> {
        match self.locate(node).await {
            Located::On(host, _) => host.engine.logs(&container_name(node)).await.ok(),
            Located::Nowhere | Located::Unknown => None,
        }
    }

    async fn state(&self, node: &NodeId) -> NodeState {
        match self.locate(node).await {
            Located::On(_, true) => NodeState::Running,
            Located::On(_, false) | Located::Nowhere => NodeState::Stopped,
            Located::Unknown => NodeState::Unreachable,
        }
    }
}
