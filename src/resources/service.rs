//! valkey_service's lifecycle: create, update, delete and state against the runtime.

use tonic::async_trait;

use super::common_model::TimeoutsModel;
use super::lifecycle::{CreateResult, Lifecycle};
use super::observe::{self, NodeStatus};
use super::secrets::GroupSecrets;
use super::service_model::ServiceModel;
use super::service_model::TopologyModel;
use super::timeouts::timeout_of;
use super::{Context, error};
use super::{
    backlog, certificates, converge, failover, group_view, nodes, records, switchover, user_config, write_bound,
};
use crate::catalog;
use crate::registry;
use crate::runtime::{FailoverSettings, NodeId, NodeRecord, RuntimeError, ServiceRecord};
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Schema, Type};

pub const TYPE_NAME: &str = "valkey_service";

pub fn schema() -> Result<Schema, String> {
    crate::tfplug::schema_derive::schema_for::<ServiceModel>(0)
}

pub struct ServiceResource {
    value_type: Type,
}

impl ServiceResource {
    pub fn new(schema: &Schema) -> Self {
        ServiceResource {
            value_type: schema.value_type(),
        }
    }
}

fn failover_settings(model: &ServiceModel) -> FailoverSettings {
    let d = FailoverSettings::default();
    let f = model.failover.clone().unwrap_or_default();
    FailoverSettings {
        enabled: f.enabled.unwrap_or(d.enabled),
        down_after_ms: f.down_after_ms.unwrap_or(d.down_after_ms),
        min_replicas_to_write: f.min_replicas_to_write,
        min_replicas_max_lag: f.min_replicas_max_lag.unwrap_or(d.min_replicas_max_lag),
    }
}

/// The group's view: Sentinels, their password, and where the primary is now.
pub async fn topology(record: &ServiceRecord) -> TopologyModel {
    let own = record.endpoint().map(|at| at.to_string()).unwrap_or_default();
    let current = group_view::current_primary(record).await.map(|at| at.to_string());
    TopologyModel {
        sentinel_addresses: Some(group_view::sentinel_addresses(record)),
        sentinel_password: Some(record.sentinel_password.clone()),
        current_primary: Some(current.unwrap_or(own)),
    }
}

/// The state Terraform stores: the record's shape, overlaid with what the nodes report.
fn model_from(
    record: &ServiceRecord,
    statuses: &[NodeStatus],
    replicas: Vec<String>,
    topology: TopologyModel,
    sentinel_status: &str,
    prior: &ServiceModel,
) -> ServiceModel {
    ServiceModel {
        id: Some(record.name.clone()),
        name: record.name.clone(),
        plan: record.plan.clone(),
        cloud: Some(record.cloud.clone()),
        region: record.region.clone(),
        valkey_user_config: user_config::observed_user_config(
            prior.valkey_user_config.as_ref(),
            &observe::reported_settings(statuses),
        ),
        termination_protection: Some(prior.termination_protection.unwrap_or(record.termination_protection)),
        powered: Some(observe::powered(statuses, prior.powered)),
        endpoint: observe::endpoint(record),
        about: observe::about(record, statuses, &prior.about),
        state: Some(observe::overall_state(statuses).to_string()),
        role: Some(statuses.first().and_then(|s| s.role).unwrap_or("unknown").to_string()),
        nodes: Some(observe::node_models(record, statuses)),
        read_replicas: Some(replicas),
        failover: prior.failover.clone(),
        tls: prior.tls.clone(),
        sentinel_status: Some(sentinel_status.to_string()),
        backlog_reach_seconds: None,
        topology,
        timeouts: prior.timeouts.clone(),
    }
}

/// Places data node `index` of service `name` in `region`; an error at `region` when the
/// runtime cannot place a node there.
pub async fn place(ctx: &Context, name: &str, index: usize, region: &str) -> Result<NodeRecord, Diagnostics> {
    match ctx.runtime.place(&NodeId::data(name, index), region).await {
        Ok(at) => Ok(NodeRecord {
            index,
            host: at.host,
            port: at.port,
            cert: None,
        }),
        Err(e @ RuntimeError::CannotPlace { .. }) => {
            Err(Diagnostic::error("Cannot listen in this region", e.to_string())
                .at(AttrPath::root("region"))
                .into())
        }
        Err(e) => Err(error("Could not place a node", e)),
    }
}

/// An error about the `tls` block's attribute `attr` ("tls" for the block itself).
fn tls_error(summary: &str, attr: &str, detail: String) -> Diagnostics {
    let path = match attr {
        "tls" => AttrPath::root("tls"),
        attr => AttrPath::root("tls").attr(attr),
    };
    Diagnostic::error(summary, detail).at(path).into()
}

#[async_trait]
impl Lifecycle for ServiceResource {
    type Model = ServiceModel;

    fn value_type(&self) -> Type {
        self.value_type.clone()
    }

    fn plan_shape(&self) -> &'static super::plan_rules::PlanShape {
        &super::service_plan::SHAPE
    }

    fn name<'m>(&self, model: &'m ServiceModel) -> &'m str {
        &model.name
    }

    fn timeouts<'m>(&self, model: &'m ServiceModel) -> Option<&'m TimeoutsModel> {
        model.timeouts.as_ref()
    }

    async fn create(&self, ctx: &Context, planned: &ServiceModel) -> CreateResult<ServiceModel> {
        let cloud = planned
            .cloud
            .clone()
            .unwrap_or_else(|| catalog::LOCAL_CLOUD.to_string());
        let plan = catalog::plan(&planned.plan).map_err(|e| (error("Invalid plan", e), None))?;
        let mut node_records = Vec::with_capacity(plan.nodes);
        for index in 0..plan.nodes {
            let node = place(ctx, &planned.name, index, &planned.region)
                .await
                .map_err(|d| (d, None))?;
            node_records.push(node);
        }
        let secrets = GroupSecrets::generate();
        let tls = match &planned.tls {
            Some(model) => {
                let choice = certificates::choice_of(model)
                    .map_err(|(attr, e)| (tls_error("Invalid tls block", attr, e), None))?;
                let group = certificates::new_group(&planned.name, &choice)
                    .map_err(|e| (tls_error("Could not make the group's certificates", "tls", e), None))?;
                Some(group)
            }
            None => None,
        };
        let mut record = ServiceRecord {
            name: planned.name.clone(),
            plan: plan.name.to_string(),
            cloud,
            region: planned.region.clone(),
            password: secrets.password,
            replication_password: secrets.replication_password,
            user_config: user_config::effective_user_config(planned.valkey_user_config.as_ref()),
            termination_protection: planned.termination_protection.unwrap_or(false),
            tags: planned.about.tags.clone().unwrap_or_default(),
            nodes: node_records,
            sentinel_password: secrets.sentinel_password,
            sentinel_auth_password: secrets.sentinel_auth_password,
            upstream: None,
            failover_priority: None,
            failover: failover_settings(planned),
            tls,
            powered_off: planned.powered == Some(false),
            ..Default::default()
        };
        certificates::issue_due(&mut record, true)
            .map_err(|e| (tls_error("Could not issue a certificate", "tls", e), None))?;
        let lease_for = timeout_of(planned.timeouts.as_ref(), |t| t.create.as_ref());
        registry::create(&ctx.runtime, &mut record, lease_for)
            .await
            .map_err(|e| {
                let d = Diagnostic::error("Could not create the service", e.to_string()).at(AttrPath::root("name"));
                (d.into(), None)
            })?;
        // From here on the service exists: failures return its state so Terraform tracks it.
        let mut started = nodes::start_new(ctx, &mut record, planned.powered != Some(false)).await;
        if let Err(d) = records::finish_create(ctx, &mut record).await {
            started = started.and(Err(d));
        }
        // Standbys are failed over to from the start: the group's Sentinels, then the bound on
        // what a primary cut off from them acknowledges, once the standbys replicate.
        if started.is_ok() && planned.powered != Some(false) {
            started = failover::ensure_group(ctx, &record.name).await;
            if let Ok(Some(now)) = records::load(ctx, &record.name).await {
                record = now;
            }
        }
        if started.is_ok() {
            started = write_bound::settle(ctx, &record, &[]).await;
        }
        let (model, _) = self.state_of(ctx, &record, planned).await;
        started.map(|()| model.clone()).map_err(|d| (d, Some(model)))
    }

    async fn update(
        &self,
        ctx: &Context,
        _prior: &ServiceModel,
        planned: &ServiceModel,
    ) -> Result<ServiceModel, Diagnostics> {
        let mut record = records::load_existing(ctx, &planned.name, "service").await?;
        let plan = catalog::plan(&planned.plan).map_err(|e| error("Invalid plan", e))?;
        record.plan = plan.name.to_string();
        record.user_config = user_config::effective_user_config(planned.valkey_user_config.as_ref());
        record.termination_protection = planned.termination_protection.unwrap_or(false);
        record.tags = planned.about.tags.clone().unwrap_or_default();
        record.failover = failover_settings(planned);
        if let (Some(tls), Some(model)) = (record.tls.as_mut(), &planned.tls) {
            let choice = certificates::choice_of(model).map_err(|(attr, e)| tls_error("Invalid tls block", attr, e))?;
            tls.validity_seconds = choice.validity.as_secs();
            tls.renew_before_seconds = choice.renew_before.as_secs();
        }
        // Resize: new standbys are placed in the region; surplus standbys (highest first) are
        // removed.
        while record.nodes.len() < plan.nodes {
            let node = place(ctx, &record.name, record.nodes.len(), &record.region).await?;
            record.nodes.push(node);
        }
        let surplus: Vec<usize> = record.nodes.iter().skip(plan.nodes).map(|n| n.index).collect();
        let surplus_addrs: Vec<String> = surplus.iter().filter_map(|&i| record.node_address(i)).collect();
        // Renewal is planned: the plan shows certificate_expires_at unknown.
        let renewing = planned.endpoint.certificate_expires_at.is_none();
        certificates::issue_due(&mut record, renewing)
            .map_err(|e| tls_error("Could not issue a certificate", "tls", e))?;
        // A standby that is the group's primary (after a failover) hands over first.
        switchover::hand_over(ctx, &record, &surplus).await?;
        if !surplus_addrs.is_empty() {
            // The group's primary stops counting on the surplus standbys before they go.
            write_bound::settle(ctx, &record, &surplus_addrs).await?;
        }
        while record.nodes.len() > plan.nodes {
            if let Some(node) = record.nodes.pop() {
                ctx.runtime
                    .remove(&nodes::node_id(&record, node.index))
                    .await
                    .map_err(|e| error("Could not remove a node", e))?;
            }
        }
        records::save(ctx, &record).await?;
        let record = converge::power(ctx, &record.name, "service", planned.powered != Some(false)).await?;
        let mut model = self.state_of(ctx, &record, planned).await.0;
        // Read from the nodes at refresh; an update keeps what the plan showed.
        model.backlog_reach_seconds = planned.backlog_reach_seconds;
        Ok(model)
    }

    async fn delete(&self, ctx: &Context, prior: &ServiceModel) -> Result<(), Diagnostics> {
        if prior.termination_protection == Some(true) {
            return Err(super::plan_rules::protected("service", &prior.name));
        }
        records::remove(ctx, &prior.name, "service").await
    }

    async fn state_of(
        &self,
        ctx: &Context,
        record: &ServiceRecord,
        prior: &ServiceModel,
    ) -> (ServiceModel, Diagnostics) {
        let statuses = observe::observe(ctx, record).await;
        let replica_records = match records::replica_records(ctx, &record.name).await {
            Ok(records) => Some(records),
            Err(e) => {
                tracing::warn!(error = ?e, "could not list read replicas");
                None
            }
        };
        let replicas = match &replica_records {
            Some(records) => records.iter().map(|r| r.name.clone()).collect(),
            None => prior.read_replicas.clone().unwrap_or_default(),
        };
        let topology = topology(record).await;
        let sentinel_status = group_view::sentinel_status(ctx, record).await;
        let warnings = observe::unreachable_warning(record, &statuses);
        let reach = backlog::observed_reach(
            record,
            topology.current_primary.as_deref(),
            record.user_config.expected_write_kib_per_second.unwrap_or(0),
        )
        .await;
        // The bound is judged only when the group's members could be read.
        let drifted = match replica_records {
            Some(replicas) => {
                let members: Vec<ServiceRecord> = std::iter::once(record.clone()).chain(replicas).collect();
                let bound = write_bound::of_members(Some(&members));
                write_bound::drift(record, &statuses, topology.current_primary.as_deref(), bound).await
            }
            None => None,
        };
        let mut model = model_from(record, &statuses, replicas, topology, sentinel_status, prior);
        model.backlog_reach_seconds = reach;
        if let Some(running) = drifted {
            // A node runs with another bound than the group's (set outside Terraform): show
            // what it runs with, so the plan puts it back.
            let mut failover = model.failover.take().unwrap_or_default();
            failover.min_replicas_to_write = Some(running.to_write);
            failover.min_replicas_max_lag = Some(running.max_lag);
            model.failover = Some(failover);
        }
        (model, warnings)
    }

    fn imported(&self, record: &ServiceRecord) -> Result<ServiceModel, String> {
        if record.upstream.is_some() {
            return Err(format!(
                "{:?} is a read replica; import it as a valkey_read_replica",
                record.name
            ));
        }
        let d = FailoverSettings::default();
        Ok(ServiceModel {
            termination_protection: Some(record.termination_protection),
            about: super::common_model::VersionTagsModel {
                valkey_version: None,
                tags: (!record.tags.is_empty()).then(|| record.tags.clone()),
            },
            failover: (record.failover != d).then_some(super::service_model::FailoverModel {
                enabled: Some(record.failover.enabled),
                down_after_ms: Some(record.failover.down_after_ms),
                min_replicas_to_write: record.failover.min_replicas_to_write,
                min_replicas_max_lag: Some(record.failover.min_replicas_max_lag),
            }),
            valkey_user_config: user_config::imported_user_config(&record.user_config),
            tls: record.tls.as_ref().map(certificates::model_of),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_derives_from_the_model() {
        let s = schema().unwrap();
        let password = s.block.attribute("password").unwrap();
        assert!(password.sensitive && password.computed);
        assert!(s.block.attribute("name").unwrap().force_new);
        assert!(s.block.attribute("read_replicas").unwrap().computed);
        assert!(s.block.nested_block("valkey_user_config").is_some());
        // The user sets nothing inside the computed node list.
        match &s.block.attribute("nodes").unwrap().kind {
            crate::tfplug::schema::AttributeType::Nested(n) => {
                assert!(!n.attributes.is_empty());
                for a in &n.attributes {
                    assert!(
                        a.computed && !a.required && !a.optional,
                        "nodes.{} must be computed only",
                        a.name
                    );
                }
            }
            other => panic!("nodes should be a nested attribute, got {other:?}"),
        }
    }
}
