//! The record a runtime keeps per service: what should run, where, and with which secrets.
//! It is what `terraform import` reads, and what lets a restart rebuild a node exactly.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Effective user configuration: every setting with its value (defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserConfigValues {
    pub maxmemory_policy: String,
    pub timeout: i64,
    pub persistence: String,
    pub io_threads: i64,
    /// Records written before this setting existed ran with Valkey's default.
    #[serde(default = "default_repl_timeout")]
    pub repl_timeout: i64,
}

fn default_repl_timeout() -> i64 {
    crate::catalog::DEFAULT_REPL_TIMEOUT
}

impl Default for UserConfigValues {
    fn default() -> Self {
        UserConfigValues {
            maxmemory_policy: "noeviction".into(),
            timeout: 300,
            persistence: "rdb".into(),
            io_threads: 1,
            repl_timeout: default_repl_timeout(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub index: usize,
    pub port: u16,
}

/// Where a read replica replicates from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Upstream {
    /// A primary service managed by this provider, found by name in the same data_dir.
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
    pub bind: IpAddr,
    pub port: u16,
}

/// How a primary's failover group detects failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverSettings {
    pub enabled: bool,
    pub down_after_ms: i64,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            enabled: true,
            down_after_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub plan: String,
    pub cloud: String,
    pub region: String,
    /// Address the service's nodes bind to (the region's address).
    pub bind: IpAddr,
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
    /// The provider process creating this service, until its nodes are up: a record that
    /// still names a process that is gone is the leftover of an interrupted create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating_pid: Option<u32>,
    /// On a primary service with read replicas: the Sentinels watching it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sentinels: Vec<SentinelRecord>,
    /// On a primary service whose group's primary was powered off on purpose: that primary's
    /// `host:port`. The Sentinels are stopped meanwhile (so the power-off is not a failure to
    /// fail over) and start again once that node answers as the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_primary: Option<String>,
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

    /// `host:port` of node `index`.
    pub fn node_address(&self, index: usize) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.index == index)
            .map(|n| format!("{}:{}", self.bind, n.port))
    }

    /// `host:port` of every node, in `nodes` order.
    pub fn node_addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("{}:{}", self.bind, n.port)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_config_recorded_before_repl_timeout_existed_reads_with_valkeys_default() {
        let old = r#"{"maxmemory_policy":"allkeys-lru","timeout":0,"persistence":"off","io_threads":2}"#;
        let values: UserConfigValues = serde_json::from_str(old).unwrap();
        assert_eq!(values.repl_timeout, 60);
        assert_eq!(values.maxmemory_policy, "allkeys-lru");
    }
}
