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
}

impl Default for UserConfigValues {
    fn default() -> Self {
        UserConfigValues {
            maxmemory_policy: "noeviction".into(),
            timeout: 300,
            persistence: "rdb".into(),
            io_threads: 1,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub plan: String,
    pub cloud: String,
    pub region: String,
    /// Address the service's nodes bind to (the region's address).
    pub bind: IpAddr,
    pub password: String,
    pub replication_password: String,
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
}

impl ServiceRecord {
    /// Whether this is a read replica of the managed service `primary`.
    pub fn replicates(&self, primary: &str) -> bool {
        matches!(&self.upstream, Some(Upstream::Service { name }) if name == primary)
    }
}
