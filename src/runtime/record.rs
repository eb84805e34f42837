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
    /// Node 0 is created as the primary; the others are its standbys.
    pub nodes: Vec<NodeRecord>,
}
