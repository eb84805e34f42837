//! valkey_service's lifecycle: create, update, delete and state against the runtime.

use tonic::async_trait;

use super::Context;
use super::common_model::TimeoutsModel;
use super::error;
use super::lifecycle::{CreateResult, Lifecycle};
use super::nodes;
use super::service_model::ServiceModel;
use super::service_model::TopologyModel;
use super::{converge, failover, switchover};
use crate::catalog;
use crate::runtime::{FailoverSettings, NodeRecord, ServiceRecord};
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
    }
}

/// The group's view: Sentinels, their password, and where the primary is now.
pub async fn topology(record: &ServiceRecord) -> TopologyModel {
    let own = format!("{}:{}", record.bind, record.nodes.first().map_or(0, |n| n.port));
    let current = failover::current_primary(record).await.map(|(h, p)| format!("{h}:{p}"));
    TopologyModel {
        sentinel_addresses: Some(failover::sentinel_addresses(record)),
        sentinel_password: Some(record.sentinel_password.clone()),
        current_primary: Some(current.unwrap_or(own)),
    }
}

/// The state Terraform stores: the record's shape, overlaid with what the nodes report.
fn model_from(
    record: &ServiceRecord,
    statuses: &[nodes::NodeStatus],
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
        valkey_user_config: nodes::observed_user_config(prior.valkey_user_config.as_ref(), statuses),
        termination_protection: Some(prior.termination_protection.unwrap_or(record.termination_protection)),
        powered: Some(nodes::all_running(statuses)),
        endpoint: nodes::endpoint(record),
        state: Some(nodes::overall_state(statuses).to_string()),
        role: Some(statuses.first().and_then(|s| s.role).unwrap_or("unknown").to_string()),
        nodes: Some(nodes::node_models(record, statuses)),
        read_replicas: Some(replicas),
        failover: prior.failover.clone(),
        sentinel_status: Some(sentinel_status.to_string()),
        topology,
        timeouts: prior.timeouts.clone(),
    }
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
        let bind = ctx
            .regions
            .address(&cloud, &planned.region)
            .map_err(|e| (error("Invalid region", e), None))?;
        let mut node_records = Vec::with_capacity(plan.nodes);
        for index in 0..plan.nodes {
            let port = nodes::port_in_region(ctx, bind, &planned.region).map_err(|d| (d, None))?;
            node_records.push(NodeRecord { index, port });
        }
        let secrets = nodes::GroupSecrets::generate();
        let mut record = ServiceRecord {
            name: planned.name.clone(),
            plan: plan.name.to_string(),
            cloud,
            region: planned.region.clone(),
            bind,
            password: secrets.password,
            replication_password: secrets.replication_password,
            user_config: nodes::effective_user_config(planned.valkey_user_config.as_ref()),
            termination_protection: planned.termination_protection.unwrap_or(false),
            nodes: node_records,
            sentinel_password: secrets.sentinel_password,
            sentinel_auth_password: secrets.sentinel_auth_password,
            upstream: None,
            failover_priority: None,
            failover: failover_settings(planned),
            sentinels: Vec::new(),
            suspended_primary: None,
            creating_pid: Some(std::process::id()),
        };
        nodes::create_record(ctx, &record).await.map_err(|e| {
            let d = Diagnostic::error("Could not create the service", e.to_string()).at(AttrPath::root("name"));
            (d.into(), None)
        })?;
        // From here on the service exists: failures return its state so Terraform tracks it.
        let mut started = nodes::start_new(ctx, &mut record, planned.powered != Some(false)).await;
        if let Err(d) = nodes::finish_create(ctx, &mut record).await {
            started = started.and(Err(d));
        }
        let model = self.state_of(ctx, &record, planned).await;
        started.map(|()| model.clone()).map_err(|d| (d, Some(model)))
    }

    async fn update(
        &self,
        ctx: &Context,
        _prior: &ServiceModel,
        planned: &ServiceModel,
    ) -> Result<ServiceModel, Diagnostics> {
        let mut record = nodes::load_existing(ctx, &planned.name, "service").await?;
        let plan = catalog::plan(&planned.plan).map_err(|e| error("Invalid plan", e))?;
        record.plan = plan.name.to_string();
        record.user_config = nodes::effective_user_config(planned.valkey_user_config.as_ref());
        record.termination_protection = planned.termination_protection.unwrap_or(false);
        record.failover = failover_settings(planned);
        // Resize: new standbys get fresh ports; surplus standbys (highest first) are removed.
        while record.nodes.len() < plan.nodes {
            let port = ctx
                .runtime
                .free_port(record.bind)
                .map_err(|e| error("No free port", e))?;
            record.nodes.push(NodeRecord {
                index: record.nodes.len(),
                port,
            });
        }
        let surplus: Vec<usize> = record.nodes.iter().skip(plan.nodes).map(|n| n.index).collect();
        // A standby that is the group's primary (after a failover) hands over first.
        switchover::hand_over(ctx, &record, &surplus).await?;
        while record.nodes.len() > plan.nodes {
            if let Some(node) = record.nodes.pop() {
                ctx.runtime
                    .remove_node(&nodes::node_id(&record, node.index))
                    .await
                    .map_err(|e| error("Could not remove a node", e))?;
            }
        }
        ctx.runtime
            .save_record(&record)
            .await
            .map_err(|e| error("Could not save the service record", e))?;
        let record = converge::power(ctx, &record.name, "service", planned.powered != Some(false)).await?;
        Ok(self.state_of(ctx, &record, planned).await)
    }

    async fn delete(&self, ctx: &Context, prior: &ServiceModel) -> Result<(), Diagnostics> {
        if prior.termination_protection == Some(true) {
            return Err(Diagnostic::error(
                "Service is protected from deletion",
                format!(
                    "termination_protection is true on service {:?}. Set it to false and apply, then destroy.",
                    prior.name
                ),
            )
            .at(AttrPath::root("termination_protection"))
            .into());
        }
        nodes::remove(ctx, &prior.name, "service").await
    }

    async fn state_of(&self, ctx: &Context, record: &ServiceRecord, prior: &ServiceModel) -> ServiceModel {
        let statuses = nodes::observe(ctx, record).await;
        let replicas = match ctx.runtime.replicas_of(&record.name).await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "could not list read replicas");
                prior.read_replicas.clone().unwrap_or_default()
            }
        };
        let topology = topology(record).await;
        let sentinel_status = failover::sentinel_status(ctx, record);
        model_from(record, &statuses, replicas, topology, sentinel_status, prior)
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
            failover: (record.failover != d).then_some(super::service_model::FailoverModel {
                enabled: Some(record.failover.enabled),
                down_after_ms: Some(record.failover.down_after_ms),
            }),
            valkey_user_config: nodes::imported_user_config(&record.user_config),
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
