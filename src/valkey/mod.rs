//! Talking to Valkey nodes: their config file, INFO parsing, and a small async client on the
//! `redis` crate. Knows Valkey, not Terraform.

pub mod acl;
pub mod certs;
pub mod client;
pub mod config_file;
pub mod defrag_probe;
pub mod info;
pub mod sentinel;
pub mod sentinel_config;
pub mod sync_log;
pub mod tls_probe;
pub mod uri;

pub use client::{NodeClient, TlsIdentity, ValkeyError};
pub use config_file::{
    NodeConfig, REPLICATION_USER, SENTINEL_USER, UpstreamAuth, WRITE_BOUND_SETTINGS, write_bound_settings,
};
pub use info::Info;
pub use sentinel::{Fields, SentinelClient};
pub use sentinel_config::{SENTINEL_PEER_USER, SentinelConfig};
