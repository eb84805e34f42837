//! terraform-provider-valkey: a Terraform/OpenTofu provider that runs self-hosted Valkey
//! services with cross-region read replicas.
//!
//! Layers, each allowed to use only those below it:
//! - [`tfplug`]: the plugin protocol (knows Terraform, not Valkey);
//! - [`provider`] and [`resources`]: the provider, its resources and their plan rules;
//! - [`catalog`]: plans, clouds, regions and every limit;
//! - [`runtime`]: where nodes run (local processes today);
//! - [`valkey`]: talking to nodes.

pub mod catalog;
pub mod docs;
pub mod provider;
pub mod resources;
pub mod runtime;
pub mod tfplug;
pub mod valkey;
