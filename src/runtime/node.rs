//! What the boundary speaks of: nodes, their endpoints and specs, regions.

use crate::valkey::TlsIdentity;

/// A data node, or a Sentinel watching the service's replication group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    Data,
    Sentinel,
}

/// One node of a service: data node `index`, or Sentinel `index`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    pub service: String,
    pub index: usize,
    pub kind: NodeKind,
}

impl NodeId {
    pub fn data(service: &str, index: usize) -> Self {
        NodeId {
            service: service.to_string(),
            index,
            kind: NodeKind::Data,
        }
    }

    pub fn sentinel(service: &str, index: usize) -> Self {
        NodeId {
            service: service.to_string(),
            index,
            kind: NodeKind::Sentinel,
        }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            NodeKind::Data => write!(f, "{}-{}", self.service, self.index),
            NodeKind::Sentinel => write!(f, "{}-sentinel-{}", self.service, self.index),
        }
    }
}

/// The address clients and the other nodes reach a node at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    /// A `host:port` text as an endpoint.
    pub fn parse(text: &str) -> Option<Endpoint> {
        let (host, port) = text.rsplit_once(':')?;
        Some(Endpoint::new(host, port.parse().ok()?))
    }

    /// As a `(host, port)` pair.
    pub fn pair(&self) -> (String, u16) {
        (self.host.clone(), self.port)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What a node runs with, whatever the runtime: its config directives (the runtime adds those
/// that depend on where it runs: address, port, announced address, paths), the `default`
/// user's password, with which the runtime checks it answers, and its TLS identity when its
/// group speaks TLS: the runtime keeps those in files only the node's user reads, and the
/// node then listens with TLS only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub settings: String,
    pub password: String,
    pub tls: Option<TlsIdentity>,
}

/// File names of a node's TLS identity, in its directory.
const TLS_CA_FILE: &str = "tls-ca.crt";
const TLS_CERT_FILE: &str = "tls-node.crt";
const TLS_KEY_FILE: &str = "tls-node.key";

impl NodeSpec {
    /// The directives saying where the node listens, its files kept in `dir`: `port` in
    /// plaintext, or with TLS only (no plaintext port at all).
    pub fn listen_directives(&self, port: u16, dir: &str) -> Vec<String> {
        match &self.tls {
            None => vec![format!("port {port}")],
            Some(_) => vec![
                "port 0".into(),
                format!("tls-port {port}"),
                format!("tls-ca-cert-file {dir}/{TLS_CA_FILE}"),
                format!("tls-cert-file {dir}/{TLS_CERT_FILE}"),
                format!("tls-key-file {dir}/{TLS_KEY_FILE}"),
            ],
        }
    }

    /// Whether a Sentinel's kept config (which Sentinel rewrites with what it learns) is one
    /// to start from at `at`: it listens on `at`'s port, announces `at`'s host and monitors a
    /// group. One written for another endpoint (a start that moved the Sentinel off a taken
    /// port) would have it listen where it is no longer published.
    pub fn sentinel_config_fits(&self, config: &str, at: &Endpoint) -> bool {
        let last = |key: &str| {
            config
                .lines()
                .rev()
                .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix(' '))
                .map(|value| value.trim().trim_matches('"'))
        };
        let port_key = if self.tls.is_some() { "tls-port" } else { "port" };
        last(port_key) == Some(at.port.to_string().as_str())
            && last("sentinel announce-ip") == Some(at.host.as_str())
            && last("sentinel monitor").is_some()
    }

    /// The files of the node's TLS identity, by name: what `listen_directives` points at.
    pub fn tls_files(&self) -> Vec<(&'static str, &str)> {
        self.tls.as_ref().map_or_else(Vec::new, |tls| {
            vec![
                (TLS_CA_FILE, tls.ca_pem.as_str()),
                (TLS_CERT_FILE, tls.cert_pem.as_str()),
                (TLS_KEY_FILE, tls.key_pem.as_str()),
            ]
        })
    }
}

/// What a runtime sees of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Its process or container runs (it may still not answer).
    Running,
    /// Placed and perhaps configured, not running.
    Stopped,
    /// The runtime could not find out in time: the host or its engine did not answer.
    Unreachable,
}

/// The regions a cloud offers, in the order users see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionNames {
    pub cloud: String,
    pub names: Vec<String>,
}

/// Whether `name` may name a region users declare: lowercase letters, digits and hyphens,
/// starting with a letter, at most 63 characters (it shows in messages and placement).
pub fn valid_region_name(name: &str) -> bool {
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    chars_ok && name.len() <= 63 && name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && !name.ends_with('-')
}

impl RegionNames {
    /// Ok when the cloud offers `region`; else a message listing the choices.
    pub fn check(&self, region: &str) -> Result<(), String> {
        if self.names.iter().any(|n| n == region) {
            return Ok(());
        }
        let choices: Vec<String> = self.names.iter().map(|n| format!("{n:?}")).collect();
        Err(format!(
            "unknown region {region:?} in cloud {:?}; choose one of {}",
            self.cloud,
            choices.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plaintext() -> NodeSpec {
        NodeSpec {
            settings: String::new(),
            password: "pw".into(),
            tls: None,
        }
    }

    /// As Sentinel rewrites it: values quoted, its own state appended.
    const KEPT: &str = "port 7001\nsentinel announce-ip \"10.0.0.1\"\nsentinel monitor main 10.0.0.2 7000 2\n\
                        sentinel myid 0123\nsentinel known-sentinel main 10.0.0.3 7002 4567\n";

    #[test]
    fn a_kept_sentinel_config_fits_only_the_endpoint_it_was_written_for() {
        assert!(plaintext().sentinel_config_fits(KEPT, &Endpoint::new("10.0.0.1", 7001)));
        assert!(!plaintext().sentinel_config_fits(KEPT, &Endpoint::new("10.0.0.1", 7009)));
        assert!(!plaintext().sentinel_config_fits(KEPT, &Endpoint::new("10.0.0.9", 7001)));
        // The known Sentinel's port is not where this one listens.
        assert!(!plaintext().sentinel_config_fits(KEPT, &Endpoint::new("10.0.0.1", 7002)));
    }

    #[test]
    fn a_sentinel_config_cut_short_or_without_its_monitor_does_not_fit() {
        let at = Endpoint::new("10.0.0.1", 7001);
        assert!(!plaintext().sentinel_config_fits("port 7001\nsentinel announce-ip 10.0.0.1\n", &at));
        assert!(!plaintext().sentinel_config_fits("", &at));
        assert!(!plaintext().sentinel_config_fits("port 7001\nsentinel announce-ip 10.0.", &at));
    }

    #[test]
    fn with_tls_the_sentinel_listens_on_its_tls_port() {
        let tls = NodeSpec {
            tls: Some(TlsIdentity {
                ca_pem: String::new(),
                cert_pem: String::new(),
                key_pem: String::new(),
            }),
            ..plaintext()
        };
        let kept = "port 0\ntls-port 7001\nsentinel announce-ip 10.0.0.1\nsentinel monitor main 10.0.0.2 7000 2\n";
        assert!(tls.sentinel_config_fits(kept, &Endpoint::new("10.0.0.1", 7001)));
        assert!(!plaintext().sentinel_config_fits(kept, &Endpoint::new("10.0.0.1", 7001)));
    }
}
