//! terraform-provider-valkey: a Terraform/OpenTofu provider that runs self-hosted Valkey
//! services with cross-region read replicas.
//!
//! Layers, each allowed to use only those below it:
//! - [`tfplug`]: the plugin protocol (knows Terraform, not Valkey);
//! - [`provider`], [`data_sources`] and [`resources`]: the provider, its data sources, its
//!   resources and their plan rules;
//! - [`registry`]: the rules on service records (names, the replica limit), over any runtime;
//! - [`runtime`]: where nodes run and records live, one folder per cloud (`local` today);
//! - [`catalog`]: plans, clouds and every limit (data, no behaviour);
//! - [`valkey`]: talking to nodes (knows Valkey, not Terraform or the runtime).

pub mod catalog;
pub mod data_sources;
pub mod docs;
pub mod provider;
pub mod registry;
pub mod resources;
pub mod runtime;
pub mod tfplug;
pub mod valkey;
