//! valkey_read_replica's lifecycle: a one-node service whose node replicates from a primary,
//! as a dedicated replication ACL user of that primary.

use std::time::Duration;

use tonic::async_trait;

use super::common_model::TimeoutsModel;
use super::lifecycle::{CreateResult, Lifecycle};
use super::observe::{self, NodeStatus};
use super::read_replica_model::ReadReplicaModel;
use super::read_replica_model::TopologyModel;
use super::read_replica_plan;
use super::secrets::GroupSecrets;
use super::timeouts::timeout_of;
use super::{Context, acl_user_members, certificates, error, write_bound};
use super::{backlog, converge, failover, group_view, nodes, records, service, switchover, upstreams, user_config};
use crate::catalog;
use crate::registry;
use crate::runtime::{Endpoint, ServiceRecord, Upstream};
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Schema, Type};
use crate::valkey::{Info, NodeClient, UpstreamAuth, sync_log, uri};

pub const TYPE_NAME: &str = "valkey_read_replica";

pub fn schema() -> Result<Schema, String> {
    crate::tfplug::schema_derive::schema_for::<ReadReplicaModel>(0)
}

pub struct ReadReplicaResource {
    value_type: Type,
}

impl ReadReplicaResource {
    pub fn new(schema: &Schema) -> Self {
        ReadReplicaResource {
            value_type: schema.value_type(),
        }
    }
}

/// The primary's INFO replication and stats, read once for the replica's lag and the backlog's
/// reach. A read replica of a service shares its group's TLS; an external primary speaks
/// plaintext.
async fn primary_info(upstream: Option<&UpstreamAuth>, record: &ServiceRecord) -> Option<Info> {
    let up = upstream?;
    let tls = certificates::client_identity(record);
    let mut primary = NodeClient::connect_as(
        &up.host,
        up.port,
        Some(&up.user),
        &up.password,
        tls.as_ref(),
        Duration::from_secs(2),
    )
    .await
    .ok()?;
    primary.info(&["replication", "stats"]).await.ok()
}

/// How far the replica trails its primary, in bytes: the primary's master_repl_offset minus
/// the replica's slave_repl_offset (INFO has no lag-in-bytes field). The replica is read after
/// the primary, so what reached it in between (Sentinel's announcements, every half second)
/// does not count as lag: an idle, healthy link reads 0.
async fn lag_bytes(primary: Option<&Info>, replica: &NodeStatus, record: &ServiceRecord) -> Option<i64> {
    (replica.role == Some("replica")).then_some(())?;
    let primary_offset = primary?.get_i64("master_repl_offset")?;
    let at = record.endpoint()?;
    let mut own = group_view::connect_member(record, &at, Duration::from_secs(2))
        .await
        .ok()?;
    let replica_offset = own.info(&["replication"]).await.ok()?.get_i64("slave_repl_offset")?;
    Some((primary_offset - replica_offset).max(0))
}

/// Who can read the primary's offset: the group's application user on the group's current
/// primary (every member shares it), or the URI's user for a primary this provider does not
/// manage.
async fn primary_reader(ctx: &Context, record: &ServiceRecord, topology: &TopologyModel) -> Option<UpstreamAuth> {
    match record.upstream.as_ref()? {
        Upstream::Service { .. } => {
            let at = Endpoint::parse(topology.current_primary.as_deref()?)?;
            Some(UpstreamAuth {
                host: at.host,
                port: at.port,
                user: "default".into(),
                password: record.password.clone(),
            })
        }
        Upstream::External { .. } => upstreams::static_upstream(ctx, record).await.ok()?,
    }
}

/// The group's view for a replica: its primary service's Sentinels and current primary.
async fn topology(ctx: &Context, record: &ServiceRecord, group_primary: Option<&ServiceRecord>) -> TopologyModel {
    match group_primary {
        Some(primary) => service::topology(primary).await,
        None => {
            let current = upstreams::static_upstream(ctx, record)
                .await
                .ok()
                .flatten()
                .map(|u| format!("{}:{}", u.host, u.port));
            TopologyModel {
                sentinel_addresses: Some(Vec::new()),
                sentinel_password: Some(String::new()),
                current_primary: current,
            }
        }
    }
}

/// `up` or `down` for a node that should replicate; `none` for the group's primary, which
/// replicates from no one.
fn replication_status(node: &NodeStatus, record: &ServiceRecord, topology: &TopologyModel) -> &'static str {
    let own = record.node_address(0);
    if node.role == Some("primary") && own.is_some() && topology.current_primary == own {
        "none"
    } else if node.link_up {
        "up"
    } else {
        "down"
    }
}

fn primary_fields(record: &ServiceRecord) -> (Option<String>, Option<String>) {
    match &record.upstream {
        Some(Upstream::Service { name }) => (Some(name.clone()), None),
        Some(Upstream::External {
            host,
            port,
            user,
            password,
        }) => {
            let up = UpstreamAuth {
                host: host.clone(),
                port: *port,
                user: user.clone(),
                password: password.clone(),
            };
            (None, Some(uri::format(&up)))
        }
        None => (None, None),
    }
}

#[async_trait]
impl Lifecycle for ReadReplicaResource {
    type Model = ReadReplicaModel;

    fn value_type(&self) -> Type {
        self.value_type.clone()
    }

    fn plan_shape(&self) -> &'static super::plan_rules::PlanShape {
        &read_replica_plan::SHAPE
    }

    fn name<'m>(&self, model: &'m ReadReplicaModel) -> &'m str {
        &model.name
    }

    fn timeouts<'m>(&self, model: &'m ReadReplicaModel) -> Option<&'m TimeoutsModel> {
        model.timeouts.as_ref()
    }

    async fn create(&self, ctx: &Context, planned: &ReadReplicaModel) -> CreateResult<ReadReplicaModel> {
        let fail = |summary: &str, path: &str, detail: String| -> (Diagnostics, Option<ReadReplicaModel>) {
            (Diagnostic::error(summary, detail).at(AttrPath::root(path)).into(), None)
        };
        catalog::read_replica_plan(&planned.plan).map_err(|e| fail("Invalid plan", "plan", e))?;
        let cloud = planned
            .cloud
            .clone()
            .unwrap_or_else(|| catalog::LOCAL_CLOUD.to_string());
        // Values unknown at plan time are checked now.
        let upstream = match (&planned.primary_service, &planned.primary_uri) {
            (Some(name), None) => Upstream::Service { name: name.clone() },
            (None, Some(text)) => {
                read_replica_plan::probe_primary_uri(text)
                    .await
                    .map_err(|e| fail("Primary is not a usable Valkey server", "primary_uri", e))?;
                let up = uri::parse(text).map_err(|e| fail("Invalid primary_uri", "primary_uri", e))?;
                Upstream::External {
                    host: up.host,
                    port: up.port,
                    user: up.user,
                    password: up.password,
                }
            }
            _ => {
                return Err(fail(
                    "Invalid primary",
                    "primary_service",
                    "set exactly one of primary_service and primary_uri".into(),
                ));
            }
        };
        let node = service::place(ctx, &planned.name, 0, &planned.region)
            .await
            .map_err(|d| (d, None))?;
        // Members of a replication group share its secrets: one application password that
        // works on whichever member is the primary, and the replication and Sentinel
        // passwords, so that each member can follow whichever one is promoted.
        let secrets = match &upstream {
            Upstream::Service { name } => match ctx.runtime.store().load(name).await {
                Ok(Some(primary)) => GroupSecrets::of(primary),
                _ => {
                    return Err(fail(
                        "Primary service not found",
                        "primary_service",
                        format!("no valkey_service named {name:?} exists"),
                    ));
                }
            },
            // A primary this provider does not manage: the replica is a group of its own.
            Upstream::External { .. } => GroupSecrets::generate(),
        };
        let mut record = ServiceRecord {
            name: planned.name.clone(),
            plan: catalog::READ_REPLICA_PLAN.to_string(),
            cloud,
            region: planned.region.clone(),
            password: secrets.password,
            replication_password: secrets.replication_password,
            sentinel_password: secrets.sentinel_password,
            sentinel_auth_password: secrets.sentinel_auth_password,
            user_config: user_config::effective_user_config(planned.valkey_user_config.as_ref()),
            termination_protection: planned.termination_protection.unwrap_or(false),
            tags: planned.about.tags.clone().unwrap_or_default(),
            nodes: vec![node],
            upstream: Some(upstream),
            failover_priority: Some(planned.failover_priority.unwrap_or(catalog::DEFAULT_FAILOVER_PRIORITY)),
            tls: secrets.tls,
            password_write_only: secrets.password_write_only,
            powered_off: planned.powered == Some(false),
            ..Default::default()
        };
        certificates::issue_due(&mut record, true).map_err(|e| fail("Could not issue a certificate", "name", e))?;
        // The 5-replica limit is enforced here again, atomically, by the registry.
        let lease_for = timeout_of(planned.timeouts.as_ref(), |t| t.create.as_ref());
        registry::create(&ctx.runtime, &mut record, lease_for)
            .await
            .map_err(|e| {
                let path = if planned.primary_service.is_some() {
                    "primary_service"
                } else {
                    "name"
                };
                fail("Could not create the read replica", path, e.to_string())
            })?;
        // The first replica forms the primary's failover group, while its link comes up; a
        // group run that starts once the record is there covers this replica.
        let recorded = std::time::Instant::now();
        let group = match &record.upstream {
            Some(Upstream::Service { name }) => Some(name.clone()),
            _ => None,
        };
        let grouping = async {
            match &group {
                Some(primary) => failover::ensure_group_since(ctx, primary, recorded).await,
                None => Ok(()),
            }
        };
        let mut started = nodes::start_new_then(ctx, &mut record, planned.powered != Some(false), grouping).await;
        if started.is_ok() && group.is_some() && planned.powered != Some(false) {
            started = acl_user_members::catch_up(ctx, &mut record).await;
        }
        if started.is_ok() && group.is_some() && planned.promote == Some(true) {
            started = switchover::promote(ctx, &record).await;
        }
        if let Err(d) = records::finish_create(ctx, &mut record).await {
            started = started.and(Err(d));
        }
        // Now that it replicates, the group's primary may count on it.
        if started.is_ok() {
            started = write_bound::settle(ctx, &record, &[]).await;
        }
        let (model, _) = self.state_of(ctx, &record, planned).await;
        started.map(|()| model.clone()).map_err(|d| (d, Some(model)))
    }

    async fn update(
        &self,
        ctx: &Context,
        _prior: &ReadReplicaModel,
        planned: &ReadReplicaModel,
    ) -> Result<ReadReplicaModel, Diagnostics> {
        let mut record = records::load_existing(ctx, &planned.name, "read replica").await?;
        record.user_config = user_config::effective_user_config(planned.valkey_user_config.as_ref());
        record.failover_priority = Some(planned.failover_priority.unwrap_or(catalog::DEFAULT_FAILOVER_PRIORITY));
        record.termination_protection = planned.termination_protection.unwrap_or(false);
        record.tags = planned.about.tags.clone().unwrap_or_default();
        // Renewal is planned: the plan shows certificate_expires_at unknown.
        let renewing = planned.endpoint.certificate_expires_at.is_none();
        certificates::issue_due(&mut record, renewing).map_err(|e| error("Could not renew a certificate", e))?;
        records::save(ctx, &record).await?;
        let mut record = converge::power(ctx, &record.name, "read replica", planned.powered != Some(false)).await?;
        // A powered-off replica cannot take over; it is promoted once it runs again.
        if planned.promote == Some(true) && planned.powered != Some(false) {
            switchover::promote(ctx, &record).await?;
            record = records::load_existing(ctx, &planned.name, "read replica").await?;
        }
        let mut model = self.state_of(ctx, &record, planned).await.0;
        // Figures read from the nodes stay as the last refresh read them (and the plan showed
        // them): an update changes neither, and the next refresh reads them again.
        model.backlog_reach_seconds = planned.backlog_reach_seconds;
        model.full_resyncs = planned.full_resyncs;
        Ok(model)
    }

    async fn delete(&self, ctx: &Context, prior: &ReadReplicaModel) -> Result<(), Diagnostics> {
        if prior.termination_protection == Some(true) {
            return Err(super::plan_rules::protected("read replica", &prior.name));
        }
        let _leaving = super::Leaving::mark(ctx, &prior.name);
        // A replica that is the group's primary (promoted, or failed over to) hands over first.
        if let Some(record) = records::load(ctx, &prior.name).await? {
            let indices: Vec<usize> = record.nodes.iter().map(|n| n.index).collect();
            switchover::hand_over(ctx, &record, &indices).await?;
            // The group's primary stops counting on its nodes before they go.
            write_bound::settle(ctx, &record, &record.node_addresses()).await?;
        }
        records::remove(ctx, &prior.name, "read replica").await?;
        // The group's Sentinels forget the node; the last replica gone dissolves the group.
        match &prior.primary_service {
            Some(primary) => failover::ensure_group(ctx, primary).await,
            None => Ok(()),
        }
    }

    async fn state_of(
        &self,
        ctx: &Context,
        record: &ServiceRecord,
        prior: &ReadReplicaModel,
    ) -> (ReadReplicaModel, Diagnostics) {
        let statuses = observe::observe(ctx, record).await;
        let node = statuses.first().cloned().unwrap_or_default();
        let group_primary = records::group_primary_record(ctx, record).await;
        let topology = topology(ctx, record, group_primary.as_ref()).await;
        let reader = primary_reader(ctx, record, &topology).await;
        let primary = primary_info(reader.as_ref(), record).await;
        let lag = lag_bytes(primary.as_ref(), &node, record).await;
        // The backlog of a service's primary; the declared rate is the group's or this replica's.
        let reach = group_primary.as_ref().zip(primary.as_ref()).and_then(|(group, info)| {
            let declared = [group, record].map(|r| r.user_config.expected_write_kib_per_second.unwrap_or(0));
            backlog::reach_of(info, declared[0].max(declared[1]))
        });
        let log = match record.nodes.first() {
            Some(first) => ctx.runtime.node_log(&nodes::node_id(record, first.index)).await,
            None => None,
        };
        let full_resyncs = log
            .map(|log| sync_log::full_resyncs(&log) as i64)
            .or(prior.full_resyncs);
        let (primary_service, primary_uri) = primary_fields(record);
        let warnings = observe::unreachable_warning(record, &statuses);
        let model = ReadReplicaModel {
            id: Some(record.name.clone()),
            name: record.name.clone(),
            primary_service,
            primary_uri,
            plan: record.plan.clone(),
            cloud: Some(record.cloud.clone()),
            region: record.region.clone(),
            failover_priority: record.failover_priority.or(prior.failover_priority),
            valkey_user_config: user_config::observed_user_config(
                prior.valkey_user_config.as_ref(),
                &observe::reported_settings(&statuses),
            ),
            powered: Some(observe::powered(&statuses, prior.powered)),
            termination_protection: Some(record.termination_protection),
            endpoint: observe::endpoint(record),
            about: observe::about(record, &statuses, &prior.about),
            state: Some(observe::overall_state(&statuses).to_string()),
            role: Some(node.role.unwrap_or("unknown").to_string()),
            replication_status: Some(replication_status(&node, record, &topology).to_string()),
            replicates_from: Some(observe::replicates_from(&node)),
            replication_lag_bytes: lag,
            backlog_reach_seconds: reach,
            full_resyncs,
            promote: prior.promote.or(Some(false)),
            topology,
            timeouts: prior.timeouts.clone(),
        };
        (model, warnings)
    }

    fn imported(&self, record: &ServiceRecord) -> Result<ReadReplicaModel, String> {
        if record.upstream.is_none() {
            return Err(format!(
                "{:?} is a primary service; import it as a valkey_service",
                record.name
            ));
        }
        Ok(ReadReplicaModel {
            valkey_user_config: user_config::imported_user_config(&record.user_config),
            termination_protection: Some(record.termination_protection),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_marks_the_primary_uri_sensitive_and_the_link_computed() {
        let s = schema().unwrap();
        let uri = s.block.attribute("primary_uri").unwrap();
        assert!(uri.sensitive && uri.optional && uri.force_new);
        assert!(s.block.attribute("replication_status").unwrap().computed);
        assert!(s.block.attribute("replication_lag_bytes").unwrap().computed);
        assert_eq!(
            s.block.attribute("failover_priority").unwrap().default,
            Some(crate::tfplug::Value::Number(crate::tfplug::Number::Int(100)))
        );
    }

    #[test]
    fn external_primaries_show_as_a_uri_and_managed_ones_by_name() {
        let mut record = ServiceRecord {
            name: "r".into(),
            plan: "startup-4".into(),
            cloud: "local".into(),
            region: "local-2".into(),
            password: "p".into(),
            upstream: Some(Upstream::Service { name: "main".into() }),
            ..Default::default()
        };
        assert_eq!(primary_fields(&record), (Some("main".into()), None));
        record.upstream = Some(Upstream::External {
            host: "127.0.0.9".into(),
            port: 7000,
            user: "repl".into(),
            password: "pw".into(),
        });
        assert_eq!(
            primary_fields(&record),
            (None, Some("valkey://repl:pw@127.0.0.9:7000".into()))
        );
    }
}
