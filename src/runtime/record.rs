//! The record a runtime keeps per service: what should run, where, and with which secrets.
//! It is what `terraform import` reads, and what lets a restart rebuild a node exactly.

use serde::{Deserialize, Serialize};

use super::node::Endpoint;

/// Effective user configuration: every setting with its value (defaults filled in). A record
/// written before a setting existed reads it at its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserConfigValues {
    pub maxmemory_policy: String,
    pub timeout: i64,
    pub persistence: String,
    pub io_threads: i64,
    /// Records written before this setting existed ran with Valkey's default.
    pub repl_timeout: i64,
    pub notify_keyspace_events: String,
    pub number_of_databases: i64,
    pub lfu_log_factor: i64,
    pub lfu_decay_time: i64,
    pub active_expire_effort: i64,
    pub activedefrag: bool,
    /// MiB.
    pub pubsub_client_output_buffer_limit: i64,
    pub acl_channels_default: String,
    /// MiB.
    pub repl_backlog_size: i64,
    pub rdb_compression: bool,
    /// KiB/s the user expects the replication stream to reach, when declared.
    pub expected_write_kib_per_second: Option<i64>,
    /// Seconds of link outage the backlog is sized to ride out, when declared.
    pub longest_link_outage_seconds: Option<i64>,
}

impl Default for UserConfigValues {
    fn default() -> Self {
        UserConfigValues {
            maxmemory_policy: "noeviction".into(),
            timeout: 300,
            persistence: "rdb".into(),
            io_threads: 1,
            repl_timeout: crate::catalog::DEFAULT_REPL_TIMEOUT,
            notify_keyspace_events: String::new(),
            number_of_databases: crate::catalog::DEFAULT_DATABASES,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            active_expire_effort: 1,
            activedefrag: false,
            pubsub_client_output_buffer_limit: 32,
            acl_channels_default: "resetchannels".into(),
            repl_backlog_size: crate::catalog::DEFAULT_REPL_BACKLOG_MB,
            rdb_compression: true,
            expected_write_kib_per_second: None,
            longest_link_outage_seconds: None,
        }
    }
}

/// A certificate and its private key (PEM), with when it ends and the host it names.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    pub cert: String,
    pub key: String,
    /// Seconds since the Unix epoch after which the certificate is no longer valid.
    pub not_after_unix: i64,
    /// The address the certificate names; empty for the CA and the provider's own.
    #[serde(default)]
    pub host: String,
}

impl std::fmt::Debug for CertRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertRecord")
            .field("not_after_unix", &self.not_after_unix)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// How a replication group speaks TLS: kept alike on the record of every member, so each can
/// issue and renew its nodes' certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTls {
    /// The group's certificate authority, with its key.
    pub ca: CertRecord,
    /// Whether the user gave the CA (else the provider made it).
    #[serde(default)]
    pub user_ca: bool,
    /// Whether nodes ask clients for a certificate: `no`, `optional` or `yes`.
    pub auth_clients: String,
    /// How long the certificates the CA issues last, seconds.
    pub validity_seconds: u64,
    /// How long before its end an apply renews a certificate, seconds.
    pub renew_before_seconds: u64,
    /// The certificate the provider presents to the group's nodes and Sentinels.
    pub client: CertRecord,
}

/// An application ACL user of a replication group. Valkey does not replicate ACLs, so the
/// provider sets it on every member and writes it into every node's config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclUserRecord {
    pub username: String,
    /// SHA-256 of its password, hex: what nodes hold.
    pub password_hash: String,
    /// The password itself when the provider generated it (it is in Terraform's state too);
    /// none when the user gave it write-only, which nothing keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Its access rules, as ACL SETUSER takes them after the password.
    pub rules: String,
    /// How a node lists it (ACL LIST) once set: a member that lists it otherwise was changed
    /// outside Terraform.
    pub listed: String,
}

/// A data node and the endpoint its runtime placed it at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub index: usize,
    /// Empty in records written before each node had its own host: `ServiceRecord::upgraded`
    /// fills it in.
    #[serde(default)]
    pub host: String,
    pub port: u16,
    /// The node's certificate, when its group speaks TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertRecord>,
}

impl NodeRecord {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.host.clone(), self.port)
    }
}

/// Where a read replica replicates from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Upstream {
    /// A primary service managed by this provider, found by name in the same store.
    Service { name: String },
    /// A Valkey server this provider does not manage, with the credentials to replicate it.
    External {
        host: String,
        port: u16,
        user: String,
        password: String,
    },
}

/// One Sentinel of a primary's failover group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentinelRecord {
    pub index: usize,
    pub region: String,
    #[serde(alias = "bind")]
    pub host: String,
    pub port: u16,
    /// The Sentinel's certificate, when its group speaks TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertRecord>,
}

impl SentinelRecord {
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.host.clone(), self.port)
    }
}

/// A provider process's hold on a record while it creates or removes the service: a lease
/// that has expired, or whose holder its runtime knows is gone, holds nothing any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The provider process that holds it, as its runtime names it.
    pub owner: String,
    /// Milliseconds since the Unix epoch after which the operation cannot still be running
    /// (it is bounded by its timeout).
    pub expires_unix_ms: u64,
}

impl Lease {
    /// A lease for `owner` that ends `lasting` from now.
    pub fn new(owner: String, lasting: std::time::Duration) -> Self {
        Lease {
            owner,
            expires_unix_ms: unix_ms() + u64::try_from(lasting.as_millis()).unwrap_or(u64::MAX / 2),
        }
    }

    pub fn expired(&self) -> bool {
        unix_ms() >= self.expires_unix_ms
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How a primary's failover group detects failure, and how long a primary cut off from the
/// group's other data nodes goes on acknowledging writes. Records written before the write
/// bound existed read it at its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailoverSettings {
    pub enabled: bool,
    pub down_after_ms: i64,
    /// Replicas a primary must hear from to take writes, as the user declared it; None lets
    /// the provider choose (see `resources::write_bound`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_replicas_to_write: Option<i64>,
    /// Seconds within which those replicas must have acknowledged the stream.
    pub min_replicas_max_lag: i64,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            enabled: true,
            down_after_ms: 5000,
            min_replicas_to_write: None,
            min_replicas_max_lag: crate::catalog::DEFAULT_MIN_REPLICAS_MAX_LAG,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub plan: String,
    pub cloud: String,
    pub region: String,
    /// The region address of records written before each node had its own host.
    #[serde(default, rename = "bind", skip_serializing_if = "Option::is_none")]
    pub legacy_host: Option<String>,
    pub password: String,
    /// Password of the replication ACL user, shared by every member of a replication group
    /// so that any member can follow whichever one is promoted.
    pub replication_password: String,
    /// Password clients give the group's Sentinels (their `default` user, which may only ask
    /// where the primary is and watch events). It grants nothing on data nodes.
    #[serde(default)]
    pub sentinel_password: String,
    /// What the Sentinels authenticate with, to data nodes (ACL user `sentinel`) and to each
    /// other (ACL user `sentinel-peer`); the provider administers Sentinels with it too. It
    /// never leaves the provider: no state attribute holds it. Shared by the group.
    #[serde(default)]
    pub sentinel_auth_password: String,
    pub user_config: UserConfigValues,
    pub termination_protection: bool,
    /// Node 0 is created as the primary (or, on a read replica, replicates from `upstream`);
    /// the others are its standbys.
    pub nodes: Vec<NodeRecord>,
    /// Set on read replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Upstream>,
    /// A read replica's replica-priority: lower is promoted first, 0 never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_priority: Option<i64>,
    /// On a primary service: how its failover group works.
    #[serde(default)]
    pub failover: FailoverSettings,
    /// Whether the user powered the member off (`powered = false`): its nodes do not count
    /// among those a primary can expect to hear from.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub powered_off: bool,
    /// Held while the service is being created: until its nodes are up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating: Option<Lease>,
    /// Held while the service's record is being removed: a read replica created meanwhile
    /// backs off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removing: Option<Lease>,
    /// On a primary service with read replicas: the Sentinels watching it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<SentinelRecord>,
    /// On a primary service whose group's primary was powered off on purpose: that primary's
    /// `host:port`. The Sentinels are stopped meanwhile (so the power-off is not a failure to
    /// fail over) and start again once that node answers as the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_primary: Option<String>,
    /// Set when the group speaks TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GroupTls>,
    /// The user's labels for the service or replica (`tags`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
    /// On a primary service: the group's application ACL users (valkey_user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl_users: Vec<AclUserRecord>,
    /// Set on every member once the `default` user's password was given write-only: no state
    /// attribute may then show it (`password` and `service_uri` go without it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub password_write_only: bool,
}

impl ServiceRecord {
    /// The name of the failover group this record belongs to: its primary's name.
    pub fn group(&self) -> Option<&str> {
        match &self.upstream {
            None => Some(&self.name),
            Some(Upstream::Service { name }) => Some(name),
            Some(Upstream::External { .. }) => None,
        }
    }

    /// The endpoint of node `index`.
    pub fn node_endpoint(&self, index: usize) -> Option<Endpoint> {
        self.nodes.iter().find(|n| n.index == index).map(NodeRecord::endpoint)
    }

    /// `host:port` of node `index`.
    pub fn node_address(&self, index: usize) -> Option<String> {
        self.node_endpoint(index).map(|e| e.to_string())
    }

    /// `host:port` of every node, in `nodes` order.
    pub fn node_addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.endpoint().to_string()).collect()
    }

    /// The endpoint clients use: node 0's.
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.nodes.first().map(NodeRecord::endpoint)
    }

    /// The record in today's form: each node with its own host.
    pub fn upgraded(mut self) -> Self {
        if let Some(host) = self.legacy_host.take() {
            for node in self.nodes.iter_mut().filter(|n| n.host.is_empty()) {
                node.host = host.clone();
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_written_with_one_bind_address_gives_each_node_that_host() {
        let old = r#"{"name":"a","plan":"startup-4","cloud":"local","region":"local-1","bind":"127.0.1.1",
            "password":"p","replication_password":"r","user_config":{"maxmemory_policy":"noeviction",
            "timeout":0,"persistence":"off","io_threads":1},"termination_protection":false,
            "nodes":[{"index":0,"port":7000}],"creating_pid":12,
            "sentinels":[{"index":0,"region":"local-2","bind":"127.0.2.1","port":26379}]}"#;
        let record: ServiceRecord = serde_json::from_str(old).unwrap();
        let record = record.upgraded();
        assert_eq!(record.node_address(0).as_deref(), Some("127.0.1.1:7000"));
        assert_eq!(record.sentinels[0].endpoint().to_string(), "127.0.2.1:26379");
        assert!(record.creating.is_none() && record.legacy_host.is_none());
        assert!(!serde_json::to_string(&record).unwrap().contains("\"bind\""));
    }

    #[test]
    fn a_user_config_recorded_before_repl_timeout_existed_reads_with_valkeys_default() {
        let old = r#"{"maxmemory_policy":"allkeys-lru","timeout":0,"persistence":"off","io_threads":2}"#;
        let values: UserConfigValues = serde_json::from_str(old).unwrap();
        assert_eq!(values.repl_timeout, 60);
        assert_eq!(values.maxmemory_policy, "allkeys-lru");
    }
}
