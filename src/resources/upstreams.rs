//! Where each node of a record replicates from, and the config it runs with.

use super::group_view::sentinel_upstream;
use super::write_bound::{self, WriteBound};
use super::{Context, certificates, error, records, user_config};
use crate::catalog;
use crate::runtime::{AclUserRecord, NodeSpec, ServiceRecord, Upstream};
use crate::tfplug::Diagnostics;
use crate::valkey::{NodeConfig, REPLICATION_USER, UpstreamAuth, acl};

/// Where the record's node 0 replicates from when no Sentinel says otherwise: nowhere on a
/// primary service, its primary on a read replica.
pub async fn static_upstream(ctx: &Context, record: &ServiceRecord) -> Result<Option<UpstreamAuth>, Diagnostics> {
    match &record.upstream {
        None => Ok(None),
        Some(Upstream::External {
            host,
            port,
            user,
            password,
        }) => Ok(Some(UpstreamAuth {
            host: host.clone(),
            port: *port,
            user: user.clone(),
            password: password.clone(),
        })),
        Some(Upstream::Service { name }) => {
            let primary = records::load(ctx, name).await?.ok_or_else(|| {
                error(
                    "Primary service not found",
                    format!(
                        "primary service {name:?} no longer exists in {}",
                        ctx.runtime.location()
                    ),
                )
            })?;
            let at = primary.endpoint().ok_or_else(|| error("Primary has no nodes", name))?;
            Ok(Some(UpstreamAuth {
                host: at.host,
                port: at.port,
                user: REPLICATION_USER.to_string(),
                password: primary.replication_password.clone(),
            }))
        }
    }
}

/// Where each node of the record should replicate from, by position in `record.nodes`. While
/// Sentinels watch the group, every node follows the primary they report (and the node they
/// report replicates from nowhere); otherwise node 0 follows its static upstream and the
/// others follow node 0.
pub async fn desired_upstreams(
    ctx: &Context,
    record: &ServiceRecord,
) -> Result<Vec<Option<UpstreamAuth>>, Diagnostics> {
    let sentinel_primary = sentinel_upstream(ctx, record).await?;
    let first = static_upstream(ctx, record).await?;
    let first_node = record.endpoint();
    Ok(record
        .nodes
        .iter()
        .map(|n| match &sentinel_primary {
            Some(p) if p.host == n.host && p.port == n.port => None,
            Some(p) => Some(p.clone()),
            None if n.index == 0 => first.clone(),
            None => first_node.clone().map(|at| UpstreamAuth {
                host: at.host,
                port: at.port,
                user: REPLICATION_USER.to_string(),
                password: record.replication_password.clone(),
            }),
        })
        .collect())
}

/// The config of a node of the record, replicating from `upstream`, with the group's
/// application users `users` and write bound `bound`.
pub fn node_config(
    record: &ServiceRecord,
    upstream: Option<UpstreamAuth>,
    users: &[AclUserRecord],
    bound: WriteBound,
) -> Result<NodeConfig, Diagnostics> {
    let plan = catalog::plan(&record.plan).map_err(|e| error("Invalid service record", e))?;
    let uc = &record.user_config;
    Ok(NodeConfig {
        password: record.password.clone(),
        replication_password: record.replication_password.clone(),
        sentinel_auth_password: record.sentinel_auth_password.clone(),
        maxmemory_bytes: plan.memory_bytes,
        maxmemory_policy: uc.maxmemory_policy.clone(),
        timeout_seconds: uc.timeout,
        persistence: uc.persistence.clone(),
        io_threads: uc.io_threads,
        repl_timeout_seconds: uc.repl_timeout,
        upstream,
        replica_priority: record.failover_priority,
        tls_auth_clients: record.tls.as_ref().map(|t| t.auth_clients.clone()),
        databases: uc.number_of_databases,
        min_replicas_to_write: bound.to_write,
        min_replicas_max_lag: bound.max_lag,
        extra_settings: user_config::runtime_settings(uc),
        // The default user is requirepass's.
        acl_users: users
            .iter()
            .filter(|u| u.username != acl::DEFAULT_USER)
            .map(|u| acl::config_line(&u.username, &u.password_hash, &u.rules))
            .collect(),
    })
}

/// What the runtime runs node `index` of the record with.
pub fn node_spec(record: &ServiceRecord, index: usize, config: &NodeConfig) -> NodeSpec {
    NodeSpec {
        settings: config.render(),
        password: config.password.clone(),
        tls: certificates::node_identity(record, index),
    }
}

/// Every node's config, in `record.nodes` order, each with its desired upstream, the group's
/// application users (kept on the group's primary service's record) and its write bound.
pub async fn configs(ctx: &Context, record: &ServiceRecord) -> Result<Vec<NodeConfig>, Diagnostics> {
    let members = write_bound::members(ctx, record).await?;
    let users = members
        .as_ref()
        .and_then(|m| m.first())
        .map(|primary| primary.acl_users.clone())
        .unwrap_or_default();
    let bound = write_bound::of_members(members.as_deref());
    desired_upstreams(ctx, record)
        .await?
        .into_iter()
        .map(|up| node_config(record, up, &users, bound))
        .collect()
}
