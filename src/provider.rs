//! The `valkey` provider: its configuration, and the dispatch of calls to resources.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::data_sources::{self, schemas as data_source_schemas};
use crate::registry;
use crate::resources::acl_user;
use crate::resources::lifecycle;
use crate::resources::read_replica::{self, ReadReplicaResource};
use crate::resources::service::{self, ServiceResource};
use crate::resources::{
    Context, acl_user_plan, certificates, planned::PlannedTopology, read_replica_plan, service_plan, user_config,
    validate,
};
use crate::runtime::RegionNames;
use crate::runtime::SettingError;
use crate::runtime::clouds::{self, CloudSettings, Clouds};
use crate::tfplug::provider::{
    ApplyRequest, ApplyResponse, ImportResponse, PlanRequest, PlanResponse, Provider, ProviderSchemas, ReadResponse,
};
use crate::tfplug::schema_derive::schema_for;
use crate::tfplug::value::to_model;
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Value};

/// Runs self-hosted Valkey services with read replicas. The `local` cloud runs nodes as
/// processes on the machine that runs Terraform.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProviderModel {
    #[serde(flatten)]
    pub clouds: CloudSettings,
}

pub struct ValkeyProvider {
    schemas: ProviderSchemas,
    clouds: RwLock<Option<Clouds>>,
    /// The regions of each cloud Terraform validated in this process, when they were known:
    /// resources are validated next, and an unknown region is then reported with every other
    /// error of the configuration instead of only once they are fixed.
    validated_regions: RwLock<Option<BTreeMap<String, RegionNames>>>,
    /// What this provider process has planned so far (one process serves one plan walk).
    planned: Arc<PlannedTopology>,
    group_lock: Arc<crate::resources::group_lock::GroupLock>,
    leaving: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    services: ServiceResource,
    replicas: ReadReplicaResource,
}

impl ValkeyProvider {
    pub fn new() -> Result<Self, String> {
        let service_schema = service::schema()?;
        let replica_schema = read_replica::schema()?;
        let user_schema = acl_user::schema()?;
        Ok(ValkeyProvider {
            services: ServiceResource::new(&service_schema),
            replicas: ReadReplicaResource::new(&replica_schema),
            schemas: ProviderSchemas {
                provider: schema_for::<ProviderModel>(0)?,
                resources: vec![
                    (service::TYPE_NAME.to_string(), service_schema),
                    (read_replica::TYPE_NAME.to_string(), replica_schema),
                    (acl_user::TYPE_NAME.to_string(), user_schema),
                ],
                data_sources: data_source_schemas::all()?,
            },
            clouds: RwLock::new(None),
            validated_regions: RwLock::new(None),
            planned: Arc::default(),
            group_lock: Arc::default(),
            leaving: Arc::default(),
        })
    }

    fn configured(&self) -> Result<Clouds, Diagnostics> {
        self.clouds.read().ok().and_then(|c| c.clone()).ok_or_else(|| {
            Diagnostic::error(
                "Provider not configured",
                "The valkey provider was used before Terraform configured it. This is a bug; please report it.",
            )
            .into()
        })
    }

    /// What a resource of `cloud` works with: that cloud's runtime and what this process shares.
    fn context(&self, cloud: &str) -> Result<Context, Diagnostics> {
        let runtime = self.configured()?.get(cloud).ok_or_else(|| {
            Diagnostics::from(
                Diagnostic::error(
                    "Cloud not available",
                    format!(
                        "cloud {cloud:?} is not configured in this provider; choose one of {:?}",
                        catalog::CLOUDS
                    ),
                )
                .at(AttrPath::root("cloud")),
            )
        })?;
        Ok(Context {
            runtime,
            planned: self.planned.clone(),
            group_lock: self.group_lock.clone(),
            leaving: self.leaving.clone(),
        })
    }

    /// The context for the resource `value` describes (its `cloud`, `local` when unset).
    fn context_of(&self, value: &Value) -> Result<Context, Diagnostics> {
        self.context(validate::cloud_of(value))
    }

    /// The context of the cloud that holds a record named `id` (local when none does: the
    /// import then says it was not found there).
    async fn import_context(&self, id: &str) -> Result<(String, Context), Diagnostics> {
        for (cloud, runtime) in self.configured()?.all() {
            if matches!(runtime.store().load(id).await, Ok(Some(_))) {
                return Ok((cloud.to_string(), self.context(cloud)?));
            }
        }
        Ok((catalog::LOCAL_CLOUD.to_string(), self.context(catalog::LOCAL_CLOUD)?))
    }

    fn value_type(&self, type_name: &str) -> crate::tfplug::Type {
        self.block(type_name)
            .map(|b| b.value_type())
            .unwrap_or(crate::tfplug::Type::Dynamic)
    }

    fn block(&self, type_name: &str) -> Option<&crate::tfplug::schema::Block> {
        self.schemas.resource(type_name).map(|s| &s.block)
    }
}

fn unknown_type(type_name: &str) -> Diagnostics {
    Diagnostic::error(
        format!("Unknown resource type {type_name:?}"),
        "This provider implements valkey_service, valkey_read_replica and valkey_user.",
    )
    .into()
}

/// Setting errors as diagnostics at their attributes.
fn setting_diagnostics(errors: Vec<SettingError>) -> Diagnostics {
    let mut d = Diagnostics::new();
    for e in errors {
        let mut path = AttrPath::root(e.attribute);
        if let Some(key) = &e.key {
            path = path.key(key);
        }
        d.push(Diagnostic::error(e.summary, e.detail).at(path));
    }
    d
}

/// An error at `name` when a new resource's name is already taken.
async fn name_free(ctx: &Context, config: &Value) -> Diagnostics {
    let Some(name) = config.attr("name").as_str() else {
        return Diagnostics::new();
    };
    match registry::name_in_use(ctx.runtime.as_ref(), name).await {
        Ok(false) => Diagnostics::new(),
        Ok(true) => Diagnostic::error(
            "Name already taken",
            format!(
                "a service or read replica named {name:?} already exists in {}; choose another name, bring it under \
                 this configuration with `terraform import`, or use a `moved` block if you renamed its resource",
                ctx.runtime.location()
            ),
        )
        .at(AttrPath::root("name"))
        .into(),
        Err(e) => Diagnostic::error("Could not read the service records", e.to_string()).into(),
    }
}

#[tonic::async_trait]
impl Provider for ValkeyProvider {
    fn schemas(&self) -> &ProviderSchemas {
        &self.schemas
    }

    fn validate_provider_config(&self, config: &Value) -> Diagnostics {
        let Ok(model) = to_model::<ProviderModel>(config) else {
            return Diagnostics::new();
        };
        let (regions, errors) = clouds::validate(&model.clouds);
        if config.is_wholly_known()
            && let Ok(mut slot) = self.validated_regions.write()
        {
            *slot = Some(regions);
        }
        setting_diagnostics(errors)
    }

    async fn configure(&self, config: Value, terraform_version: String) -> Diagnostics {
        tracing::debug!(%terraform_version, "configuring provider");
        for attr in &self.schemas.provider.block.attributes {
            let attr = attr.name.as_str();
            if !config.attr(attr).is_wholly_known() {
                return Diagnostic::error(
                    format!("{attr} must be known at plan time"),
                    format!(
                        "The provider's {attr} depends on a value that is only known after apply; use a literal or a variable."
                    ),
                )
                .at(AttrPath::root(attr))
                .into();
            }
        }
        let model: ProviderModel = match to_model(&config) {
            Ok(m) => m,
            Err(e) => return Diagnostic::error("Invalid provider configuration", e.to_string()).into(),
        };
        match clouds::configure(&model.clouds) {
            Ok(configured) => {
                if let Ok(mut slot) = self.clouds.write() {
                    *slot = Some(configured);
                }
                Diagnostics::new()
            }
            Err(errors) => setting_diagnostics(errors),
        }
    }

    fn validate_resource_config(&self, type_name: &str, config: &Value) -> Diagnostics {
        let mut d = match type_name {
            service::TYPE_NAME => service_plan::validate_config(config),
            read_replica::TYPE_NAME => read_replica_plan::validate_config(config),
            acl_user::TYPE_NAME => return acl_user_plan::validate_config(config),
            other => return unknown_type(other),
        };
        if let Ok(slot) = self.validated_regions.read()
            && let Some(names) = slot
                .as_ref()
                .and_then(|regions| regions.get(validate::cloud_of(config)))
        {
            validate::region(&mut d, config, names);
        }
        d
    }

    async fn read(&self, type_name: &str, current_state: Value) -> ReadResponse {
        let ctx = match self.context_of(&current_state) {
            Ok(c) => c,
            Err(diagnostics) => {
                return ReadResponse {
                    new_state: current_state,
                    diagnostics,
                };
            }
        };
        match type_name {
            service::TYPE_NAME => lifecycle::read(&self.services, &ctx, &current_state).await,
            read_replica::TYPE_NAME => lifecycle::read(&self.replicas, &ctx, &current_state).await,
            acl_user::TYPE_NAME => acl_user::read(&ctx, &current_state, &self.value_type(type_name)).await,
            other => ReadResponse {
                new_state: current_state,
                diagnostics: unknown_type(other),
            },
        }
    }

    async fn plan(&self, request: PlanRequest) -> PlanResponse {
        let Some(block) = self.block(&request.type_name) else {
            return PlanResponse {
                diagnostics: unknown_type(&request.type_name),
                ..Default::default()
            };
        };
        let (prior, proposed, config) = (&request.prior_state, &request.proposed_new_state, &request.config);
        let mut response = match request.type_name.as_str() {
            read_replica::TYPE_NAME => read_replica_plan::plan_change(block, prior, proposed, config),
            acl_user::TYPE_NAME => acl_user_plan::plan_change(block, prior, proposed, config),
            _ => service_plan::plan_change(block, prior, proposed, config),
        };
        response.planned_state = block.without_write_only(&response.planned_state);
        if proposed.is_null() {
            return response;
        }
        if request.type_name == acl_user::TYPE_NAME {
            if let Err(d) = self.context_of(config) {
                response.diagnostics.extend(d);
            }
            return response;
        }
        let ctx = match self.context_of(config) {
            Ok(ctx) => ctx,
            Err(d) => {
                response.diagnostics.extend(d);
                return response;
            }
        };
        validate::region(&mut response.diagnostics, config, &ctx.runtime.regions());
        let tls = config.attr("tls");
        if !tls.is_null()
            && !tls.is_unknown()
            && let Err(detail) = ctx.runtime.check_tls().await
        {
            response
                .diagnostics
                .push(Diagnostic::error("This cloud's Valkey cannot speak TLS", detail).at(AttrPath::root("tls")));
        }
        if config.attr(user_config::BLOCK).attr("activedefrag").as_bool() == Some(true)
            && let Err(detail) = ctx.runtime.check_active_defrag().await
        {
            response.diagnostics.push(
                Diagnostic::error("This cloud's Valkey cannot defragment", detail)
                    .at(AttrPath::root(user_config::BLOCK).attr("activedefrag")),
            );
        }
        if !prior.is_null() && response.requires_replace.is_empty() {
            certificates::plan_renewal(&ctx, prior, &mut response.planned_state).await;
        }
        if request.type_name != read_replica::TYPE_NAME {
            response
                .diagnostics
                .extend(service_plan::host_loss_warning(prior, config, |region| {
                    ctx.runtime.hosts_in(region)
                }));
        }
        if prior.is_null() {
            // A replacement's old resource still holds the name it is about to free, but a
            // replacement has a prior state: a create with none must find the name free. (The
            // apply checks again, atomically.)
            response.diagnostics.extend(name_free(&ctx, config).await);
        }
        if !response.diagnostics.has_errors() {
            match request.type_name.as_str() {
                read_replica::TYPE_NAME => response
                    .diagnostics
                    .extend(read_replica_plan::check_against_primary(&ctx, config, prior.is_null()).await),
                _ if prior.is_null() => {
                    if let Some(name) = config.attr("name").as_str() {
                        ctx.planned.plan_service(name);
                    }
                }
                _ => {}
            }
        }
        response
    }

    async fn apply(&self, request: ApplyRequest) -> ApplyResponse {
        let described = if request.planned_state.is_null() {
            &request.prior_state
        } else {
            &request.planned_state
        };
        let ctx = match self.context_of(described) {
            Ok(c) => c,
            Err(diagnostics) => {
                return ApplyResponse {
                    new_state: request.prior_state,
                    diagnostics,
                };
            }
        };
        let Some(block) = self.block(&request.type_name) else {
            return ApplyResponse {
                new_state: request.prior_state.clone(),
                diagnostics: unknown_type(&request.type_name),
            };
        };
        // Write-only arguments reach the apply from the configuration only, and leave it in no
        // state.
        let planned = block.with_write_only_from(&request.config, &request.planned_state);
        let (prior, cancel) = (&request.prior_state, &request.cancel);
        let mut response = match request.type_name.as_str() {
            read_replica::TYPE_NAME => lifecycle::apply(&self.replicas, &ctx, prior, &planned, cancel).await,
            acl_user::TYPE_NAME => acl_user::apply(&ctx, prior, &planned, &block.value_type()).await,
            _ => lifecycle::apply(&self.services, &ctx, prior, &planned, cancel).await,
        };
        response.new_state = block.without_write_only(&response.new_state);
        response
    }

    fn validate_data_source_config(&self, type_name: &str, config: &Value) -> Diagnostics {
        data_source_schemas::validate_config(type_name, config)
    }

    async fn read_data_source(&self, type_name: &str, config: Value) -> ReadResponse {
        let ty = self
            .schemas
            .data_source(type_name)
            .map(|s| s.value_type())
            .unwrap_or(crate::tfplug::Type::Dynamic);
        let cloud = validate::cloud_of(&config).to_string();
        let ctx = match self.context(&cloud) {
            Ok(ctx) => ctx,
            Err(diagnostics) => {
                return ReadResponse {
                    new_state: config,
                    diagnostics,
                };
            }
        };
        match type_name {
            service::TYPE_NAME => data_sources::read_member(&self.services, &ctx, &config, &ty, "service").await,
            read_replica::TYPE_NAME => {
                data_sources::read_member(&self.replicas, &ctx, &config, &ty, "read replica").await
            }
            acl_user::TYPE_NAME => data_sources::read_user(&ctx, &cloud, &config, &ty).await,
            other => ReadResponse {
                new_state: config,
                diagnostics: unknown_type(other),
            },
        }
    }

    async fn import(&self, type_name: &str, id: &str) -> ImportResponse {
        // A user's ID is SERVICE/USERNAME: its service's record says which cloud holds it.
        let record_name = match type_name {
            acl_user::TYPE_NAME => id.split('/').next().unwrap_or(id),
            _ => id,
        };
        let (cloud, ctx) = match self.import_context(record_name).await {
            Ok(c) => c,
            Err(diagnostics) => {
                return ImportResponse {
                    state: Value::Null,
                    diagnostics,
                };
            }
        };
        match type_name {
            service::TYPE_NAME => lifecycle::import(&self.services, &ctx, id, "service").await,
            read_replica::TYPE_NAME => lifecycle::import(&self.replicas, &ctx, id, "read replica").await,
            acl_user::TYPE_NAME => acl_user::import(&ctx, &cloud, id, &self.value_type(type_name)).await,
            other => ImportResponse {
                state: Value::Null,
                diagnostics: unknown_type(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_schema_describes_its_settings() {
        let p = ValkeyProvider::new().unwrap();
        let data_dir = p.schemas.provider.block.attribute("data_dir").unwrap();
        assert!(data_dir.optional && !data_dir.required);
        assert!(data_dir.description.contains("0700"));
        let names: Vec<&str> = p
            .schemas
            .provider
            .block
            .attributes
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["data_dir", "valkey_server", "regions"]);
        assert_eq!(p.schemas.resources.len(), 3);
    }

    #[test]
    fn setting_errors_land_on_their_attribute_and_key() {
        let d = setting_diagnostics(vec![SettingError {
            attribute: "regions",
            key: Some("EU/west".into()),
            summary: "Invalid region name".into(),
            detail: "bad".into(),
        }]);
        assert_eq!(d.0[0].path.as_ref().unwrap().to_string(), "regions[\"EU/west\"]");
    }
}
