//! valkey_service's lifecycle: create, read, update, delete and import against the runtime.

use std::collections::HashMap;
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::service_model::{NodeModel, ServiceModel, UserConfigModel};
use super::validate;
use crate::catalog;
use crate::runtime::{NodeId, NodeRecord, RuntimeError, ServiceRecord, UserConfigValues};
use crate::tfplug::provider::{ApplyResponse, ImportResponse, ReadResponse};
use crate::tfplug::value::{from_model, to_model};
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Type, Value};
use crate::valkey::{NodeClient, NodeConfig};

pub const TYPE_NAME: &str = "valkey_service";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How often a start is retried when the chosen port was taken in the meantime.
const PORT_RETRIES: usize = 3;
const LINK_TIMEOUT: Duration = Duration::from_secs(120);
const SETTINGS: &[&str] = &["maxmemory-policy", "timeout", "save", "io-threads"];

fn generate_secret() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

fn error(summary: &str, detail: impl std::fmt::Display) -> Diagnostics {
    Diagnostic::error(summary, detail.to_string()).into()
}

/// The settings a user config asks for, defaults filled in.
pub fn effective_user_config(model: Option<&UserConfigModel>) -> UserConfigValues {
    let d = UserConfigValues::default();
    let Some(m) = model else { return d };
    UserConfigValues {
        maxmemory_policy: m.maxmemory_policy.clone().unwrap_or(d.maxmemory_policy),
        timeout: m.timeout.unwrap_or(d.timeout),
        persistence: m.persistence.clone().unwrap_or(d.persistence),
        io_threads: m.io_threads.unwrap_or(d.io_threads),
    }
}

fn node_id(record: &ServiceRecord, index: usize) -> NodeId {
    NodeId {
        service: record.name.clone(),
        index,
    }
}

/// The config of node `index`: node 0 is the primary, the others replicate from it.
fn node_config(ctx: &Context, record: &ServiceRecord, index: usize) -> Result<NodeConfig, String> {
    let plan = catalog::plan(&record.plan)?;
    let port = record
        .nodes
        .iter()
        .find(|n| n.index == index)
        .map(|n| n.port)
        .ok_or("no such node")?;
    let primary_port = record
        .nodes
        .first()
        .map(|n| n.port)
        .ok_or("service has no nodes")?;
    let uc = &record.user_config;
    Ok(NodeConfig {
        bind: record.bind,
        port,
        dir: ctx.runtime.node_dir(&node_id(record, index)),
        password: record.password.clone(),
        replication_password: record.replication_password.clone(),
        maxmemory_bytes: plan.memory_bytes,
        maxmemory_policy: uc.maxmemory_policy.clone(),
        timeout_seconds: uc.timeout,
        persistence: uc.persistence.clone(),
        io_threads: uc.io_threads,
        replica_of: (index > 0).then_some((record.bind, primary_port)),
    })
}

/// Starts the given nodes in parallel; a node whose port was taken meanwhile gets a new port.
async fn start_nodes(
    ctx: &Context,
    record: &mut ServiceRecord,
    indices: &[usize],
) -> Result<(), Diagnostics> {
    let mut pending: Vec<usize> = indices.to_vec();
    for attempt in 0..=PORT_RETRIES {
        let mut set = JoinSet::new();
        for &index in &pending {
            let config =
                node_config(ctx, record, index).map_err(|e| error("Invalid service record", e))?;
            let (runtime, id) = (ctx.runtime.clone(), node_id(record, index));
            set.spawn(async move { (index, runtime.start(&id, &config).await) });
        }
        let mut retry = Vec::new();
        let mut diagnostics = Diagnostics::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {}
                Ok((
                    index,
                    Err(RuntimeError::ExitedDuringStart {
                        port_in_use: true, ..
                    }),
                )) if attempt < PORT_RETRIES => retry.push(index),
                Ok((_, Err(e))) => diagnostics.extend(error("Could not start a Valkey node", e)),
                Err(e) => diagnostics.extend(error("Could not start a Valkey node", e)),
            }
        }
        if diagnostics.has_errors() {
            return Err(diagnostics);
        }
        if retry.is_empty() {
            return Ok(());
        }
        for &index in &retry {
            let port = ctx
                .runtime
                .free_port(record.bind)
                .map_err(|e| error("No free port", e))?;
            if let Some(node) = record.nodes.iter_mut().find(|n| n.index == index) {
                node.port = port;
            }
        }
        ctx.runtime
            .save_record(record)
            .await
            .map_err(|e| error("Could not save the service record", e))?;
        pending = retry;
    }
    Ok(())
}

/// Waits until every standby's replication link to the primary is up.
async fn wait_standbys_linked(record: &ServiceRecord) -> Result<(), Diagnostics> {
    let host = record.bind.to_string();
    for node in record.nodes.iter().filter(|n| n.index > 0) {
        let deadline = tokio::time::Instant::now() + LINK_TIMEOUT;
        let mut client =
            NodeClient::connect(&host, node.port, &record.password, Duration::from_secs(5))
                .await
                .map_err(|e| error("Standby node unreachable", e))?;
        loop {
            let info = client
                .info(&["replication"])
                .await
                .map_err(|e| error("Standby node unreachable", e))?;
            if info.primary_link_up() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(error(
                    "Standby did not link to its primary",
                    format!(
                        "node {}-{} had no replication link after {LINK_TIMEOUT:?}",
                        record.name, node.index
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}

/// What one node really is right now.
#[derive(Debug, Default)]
struct NodeStatus {
    running: bool,
    role: Option<&'static str>,
    settings: HashMap<String, String>,
}

async fn observe_node(host: String, port: u16, password: String, running: bool) -> NodeStatus {
    if !running {
        return NodeStatus::default();
    }
    let mut status = NodeStatus {
        running: true,
        ..Default::default()
    };
    if let Ok(mut client) =
        NodeClient::connect(&host, port, &password, Duration::from_secs(2)).await
    {
        if let Ok(info) = client.info(&["replication"]).await {
            status.role = info.role();
        }
        if let Ok(settings) = client.config_get(SETTINGS).await {
            status.settings = settings;
        }
    }
    status
}

/// Reads every node concurrently.
async fn observe(ctx: &Context, record: &ServiceRecord) -> Vec<NodeStatus> {
    let mut set = JoinSet::new();
    for (position, node) in record.nodes.iter().enumerate() {
        let running = ctx.runtime.is_running(&node_id(record, node.index));
        let fut = observe_node(
            record.bind.to_string(),
            node.port,
            record.password.clone(),
            running,
        );
        set.spawn(async move { (position, fut.await) });
    }
    let mut statuses: Vec<NodeStatus> =
        record.nodes.iter().map(|_| NodeStatus::default()).collect();
    while let Some(Ok((position, status))) = set.join_next().await {
        statuses[position] = status;
    }
    statuses
}

/// The user config a node reports, for drift detection.
fn live_user_config(
    settings: &HashMap<String, String>,
    fallback: &UserConfigModel,
) -> UserConfigModel {
    let get = |k: &str| settings.get(k).cloned();
    UserConfigModel {
        maxmemory_policy: get("maxmemory-policy").or_else(|| fallback.maxmemory_policy.clone()),
        timeout: get("timeout")
            .and_then(|t| t.parse().ok())
            .or(fallback.timeout),
        persistence: get("save")
            .map(|s| {
                if s.trim().is_empty() {
                    "off".to_string()
                } else {
                    "rdb".to_string()
                }
            })
            .or_else(|| fallback.persistence.clone()),
        io_threads: get("io-threads")
            .and_then(|t| t.parse().ok())
            .or(fallback.io_threads),
    }
}

/// The state Terraform stores: the record's shape, overlaid with what the nodes report.
fn model_from(
    record: &ServiceRecord,
    statuses: &[NodeStatus],
    prior: &ServiceModel,
) -> ServiceModel {
    let host = record.bind.to_string();
    let primary_port = record.nodes.first().map_or(0, |n| n.port);
    let running = statuses.iter().filter(|s| s.running).count();
    let state = match running {
        0 => "POWEROFF",
        n if n == statuses.len() && statuses.iter().all(|s| s.role.is_some()) => "RUNNING",
        _ => "DEGRADED",
    };
    let nodes = record
        .nodes
        .iter()
        .zip(statuses)
        .map(|(n, s)| NodeModel {
            name: format!("{}-{}", record.name, n.index),
            host: host.clone(),
            port: i64::from(n.port),
            role: s.role.unwrap_or("unknown").to_string(),
            state: if s.running { "running" } else { "stopped" }.to_string(),
        })
        .collect();
    let valkey_user_config =
        prior
            .valkey_user_config
            .as_ref()
            .map(|declared| match statuses.first() {
                Some(s) if s.running && !s.settings.is_empty() => {
                    live_user_config(&s.settings, declared)
                }
                _ => declared.clone(),
            });
    ServiceModel {
        id: Some(record.name.clone()),
        name: record.name.clone(),
        plan: record.plan.clone(),
        cloud: Some(record.cloud.clone()),
        region: record.region.clone(),
        valkey_user_config,
        termination_protection: Some(
            prior
                .termination_protection
                .unwrap_or(record.termination_protection),
        ),
        powered: Some(running == statuses.len() && !statuses.is_empty()),
        host: Some(host.clone()),
        port: Some(i64::from(primary_port)),
        password: Some(record.password.clone()),
        service_uri: Some(format!(
            "valkey://default:{}@{host}:{primary_port}",
            record.password
        )),
        state: Some(state.to_string()),
        role: Some(
            statuses
                .first()
                .and_then(|s| s.role)
                .unwrap_or("unknown")
                .to_string(),
        ),
        nodes: Some(nodes),
        timeouts: prior.timeouts.clone(),
    }
}

fn timeout_of(
    model: &ServiceModel,
    pick: fn(&super::service_model::TimeoutsModel) -> Option<&String>,
) -> Duration {
    model
        .timeouts
        .as_ref()
        .and_then(pick)
        .and_then(|t| validate::duration(t).ok())
        .unwrap_or(DEFAULT_TIMEOUT)
}

async fn create(
    ctx: &Context,
    planned: &ServiceModel,
) -> Result<ServiceModel, (Diagnostics, Option<ServiceModel>)> {
    let invalid = super::service_plan::validate_config(
        &from_model(planned, &crate::resources::service::value_type()).unwrap_or_default(),
    );
    if invalid.has_errors() {
        return Err((invalid, None));
    }
    let cloud = planned
        .cloud
        .clone()
        .unwrap_or_else(|| catalog::LOCAL_CLOUD.to_string());
    let plan = catalog::plan(&planned.plan).map_err(|e| (error("Invalid plan", e), None))?;
    let bind =
        catalog::region(&cloud, &planned.region).map_err(|e| (error("Invalid region", e), None))?;
    let bind = std::net::IpAddr::V4(bind);
    let mut nodes = Vec::with_capacity(plan.nodes);
    for index in 0..plan.nodes {
        let port = ctx
            .runtime
            .free_port(bind)
            .map_err(|e| (error("No free port", e), None))?;
        nodes.push(NodeRecord { index, port });
    }
    let mut record = ServiceRecord {
        name: planned.name.clone(),
        plan: plan.name.to_string(),
        cloud,
        region: planned.region.clone(),
        bind,
        password: generate_secret(),
        replication_password: generate_secret(),
        user_config: effective_user_config(planned.valkey_user_config.as_ref()),
        termination_protection: planned.termination_protection.unwrap_or(false),
        nodes,
    };
    ctx.runtime.create_record(&record).await.map_err(|e| {
        let d = Diagnostic::error("Could not create the service", e.to_string())
            .at(AttrPath::root("name"));
        (d.into(), None)
    })?;
    // From here on the service exists: failures return its state so Terraform tracks it.
    let result = async {
        if planned.powered != Some(false) {
            let indices: Vec<usize> = record.nodes.iter().map(|n| n.index).collect();
            start_nodes(ctx, &mut record, &indices).await?;
            wait_standbys_linked(&record).await?;
        }
        Ok::<_, Diagnostics>(())
    }
    .await;
    let statuses = observe(ctx, &record).await;
    let model = model_from(&record, &statuses, planned);
    match result {
        Ok(()) => Ok(model),
        Err(d) => Err((d, Some(model))),
    }
}

async fn update(ctx: &Context, planned: &ServiceModel) -> Result<ServiceModel, Diagnostics> {
    let mut record = load_existing(ctx, &planned.name).await?;
    let plan = catalog::plan(&planned.plan).map_err(|e| error("Invalid plan", e))?;
    record.plan = plan.name.to_string();
    record.user_config = effective_user_config(planned.valkey_user_config.as_ref());
    record.termination_protection = planned.termination_protection.unwrap_or(false);
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
    while record.nodes.len() > plan.nodes {
        if let Some(node) = record.nodes.pop() {
            ctx.runtime
                .remove_node(&node_id(&record, node.index))
                .await
                .map_err(|e| error("Could not remove a node", e))?;
        }
    }
    ctx.runtime
        .save_record(&record)
        .await
        .map_err(|e| error("Could not save the service record", e))?;

    if planned.powered == Some(false) {
        for node in &record.nodes {
            ctx.runtime
                .stop(&node_id(&record, node.index))
                .await
                .map_err(|e| error("Could not stop a node", e))?;
        }
    } else {
        let statuses = observe(ctx, &record).await;
        let mut to_start = Vec::new();
        for (node, status) in record.nodes.iter().zip(&statuses) {
            let id = node_id(&record, node.index);
            let config = node_config(ctx, &record, node.index)
                .map_err(|e| error("Invalid service record", e))?;
            ctx.runtime
                .write_config(&id, &config)
                .await
                .map_err(|e| error("Could not write a node's config", e))?;
            if !status.running {
                to_start.push(node.index);
                continue;
            }
            let live_threads = status
                .settings
                .get("io-threads")
                .and_then(|t| t.parse::<i64>().ok());
            if live_threads.is_some_and(|t| t != config.io_threads) {
                // io-threads cannot change on a running node: restart it with the new file.
                ctx.runtime
                    .stop(&id)
                    .await
                    .map_err(|e| error("Could not restart a node", e))?;
                to_start.push(node.index);
                continue;
            }
            let mut client = NodeClient::connect(
                &config.bind.to_string(),
                config.port,
                &config.password,
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| error("Node unreachable", e))?;
            client
                .config_set(&config.runtime_settings())
                .await
                .map_err(|e| error("Could not change a node's settings", e))?;
        }
        start_nodes(ctx, &mut record, &to_start).await?;
        wait_standbys_linked(&record).await?;
    }
    let statuses = observe(ctx, &record).await;
    Ok(model_from(&record, &statuses, planned))
}

async fn load_existing(ctx: &Context, name: &str) -> Result<ServiceRecord, Diagnostics> {
    match ctx.runtime.load_record(name).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(error(
            "Service not found",
            format!(
                "service {name:?} no longer exists in {}; run terraform apply again to recreate it",
                ctx.data_dir.display()
            ),
        )),
        Err(e) => Err(error("Could not read the service record", e)),
    }
}

async fn delete(ctx: &Context, prior: &ServiceModel) -> Result<(), Diagnostics> {
    if prior.termination_protection == Some(true) {
        return Err(Diagnostic::error(
            "Service is protected from deletion",
            format!("termination_protection is true on service {:?}. Set it to false and apply, then destroy.", prior.name),
        )
        .at(AttrPath::root("termination_protection"))
        .into());
    }
    match ctx.runtime.load_record(&prior.name).await {
        Ok(Some(record)) => ctx
            .runtime
            .remove_service(&record)
            .await
            .map_err(|e| error("Could not delete the service", e)),
        Ok(None) => Ok(()),
        Err(e) => Err(error("Could not read the service record", e)),
    }
}

/// The Terraform type of the resource's values.
pub fn value_type() -> Type {
    schema().map(|s| s.value_type()).unwrap_or(Type::Dynamic)
}

pub fn schema() -> Result<crate::tfplug::Schema, String> {
    crate::tfplug::schema_derive::schema_for::<ServiceModel>(0)
}

fn encode(model: &ServiceModel) -> Result<Value, Diagnostics> {
    from_model(model, &value_type()).map_err(|e| error("Provider produced an invalid state", e))
}

fn decode(value: &Value) -> Result<ServiceModel, Diagnostics> {
    to_model(value).map_err(|e| error("Invalid resource state", e))
}

/// Runs `work` under the operation's timeout and Terraform's stop request.
async fn bounded<T>(
    what: &str,
    limit: Duration,
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Diagnostics> {
    tokio::select! {
        r = tokio::time::timeout(limit, work) => r.map_err(|_| error(
            &format!("{what} timed out"),
            format!("the {what} did not finish within {limit:?}; raise it in the timeouts block, then apply again"),
        )),
        _ = cancel.cancelled() => Err(error(
            &format!("{what} interrupted"),
            "Terraform asked the provider to stop; run terraform apply again to finish",
        )),
    }
}

pub async fn apply(
    ctx: &Context,
    prior: &Value,
    planned: &Value,
    cancel: &CancellationToken,
) -> ApplyResponse {
    let outcome: Result<Value, (Diagnostics, Value)> = async {
        if planned.is_null() {
            let prior = decode(prior).map_err(|d| (d, prior.clone()))?;
            let limit = timeout_of(&prior, |t| t.delete.as_ref());
            bounded("delete", limit, cancel, delete(ctx, &prior))
                .await
                .and_then(|r| r)
                .map_err(|d| (d, from_model(&prior, &value_type()).unwrap_or_default()))?;
            return Ok(Value::Null);
        }
        let model = decode(planned).map_err(|d| (d, prior.clone()))?;
        if prior.is_null() {
            let limit = timeout_of(&model, |t| t.create.as_ref());
            match bounded("create", limit, cancel, create(ctx, &model)).await {
                Ok(Ok(created)) => encode(&created).map_err(|d| (d, Value::Null)),
                Ok(Err((d, partial))) => {
                    Err((d, partial.and_then(|p| encode(&p).ok()).unwrap_or_default()))
                }
                Err(d) => Err((d, recover_state(ctx, &model).await)),
            }
        } else {
            let limit = timeout_of(&model, |t| t.update.as_ref());
            match bounded("update", limit, cancel, update(ctx, &model))
                .await
                .and_then(|r| r)
            {
                Ok(updated) => encode(&updated).map_err(|d| (d, prior.clone())),
                Err(d) => Err((d, prior.clone())),
            }
        }
    }
    .await;
    match outcome {
        Ok(new_state) => ApplyResponse {
            new_state,
            diagnostics: Diagnostics::new(),
        },
        Err((diagnostics, new_state)) => ApplyResponse {
            new_state,
            diagnostics,
        },
    }
}

/// After an interrupted create: whatever exists of the service, so Terraform can track it.
async fn recover_state(ctx: &Context, planned: &ServiceModel) -> Value {
    match ctx.runtime.load_record(&planned.name).await {
        Ok(Some(record)) => {
            let statuses = observe(ctx, &record).await;
            encode(&model_from(&record, &statuses, planned)).unwrap_or_default()
        }
        _ => Value::Null,
    }
}

pub async fn read(ctx: &Context, current: &Value) -> ReadResponse {
    let result = async {
        let prior = decode(current)?;
        let Some(record) = ctx.runtime.load_record(&prior.name).await.map_err(|e| error("Could not read the service record", e))? else {
            tracing::info!(service = %prior.name, "service no longer exists; removing it from state");
            return Ok(Value::Null);
        };
        let statuses = observe(ctx, &record).await;
        encode(&model_from(&record, &statuses, &prior))
    }
    .await;
    match result {
        Ok(new_state) => ReadResponse {
            new_state,
            diagnostics: Diagnostics::new(),
        },
        Err(diagnostics) => ReadResponse {
            new_state: current.clone(),
            diagnostics,
        },
    }
}

pub async fn import(ctx: &Context, id: &str) -> ImportResponse {
    let result = async {
        validate::resource_name(id).map_err(|e| {
            error(
                "Invalid import ID",
                format!("{e}. The import ID is the service name."),
            )
        })?;
        let Some(record) = ctx
            .runtime
            .load_record(id)
            .await
            .map_err(|e| error("Could not read the service record", e))?
        else {
            return Err(error(
                "Service not found",
                format!(
                    "there is no service named {id:?} in data_dir {}",
                    ctx.data_dir.display()
                ),
            ));
        };
        let uc = &record.user_config;
        let prior = ServiceModel {
            termination_protection: Some(record.termination_protection),
            valkey_user_config: Some(UserConfigModel {
                maxmemory_policy: Some(uc.maxmemory_policy.clone()),
                timeout: Some(uc.timeout),
                persistence: Some(uc.persistence.clone()),
                io_threads: Some(uc.io_threads),
            }),
            ..Default::default()
        };
        let statuses = observe(ctx, &record).await;
        encode(&model_from(&record, &statuses, &prior))
    }
    .await;
    match result {
        Ok(state) => ImportResponse {
            state,
            diagnostics: Diagnostics::new(),
        },
        Err(diagnostics) => ImportResponse {
            state: Value::Null,
            diagnostics,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_config_defaults_fill_what_is_unset() {
        let partial = UserConfigModel {
            timeout: Some(0),
            ..Default::default()
        };
        let eff = effective_user_config(Some(&partial));
        assert_eq!(eff.timeout, 0);
        assert_eq!(eff.maxmemory_policy, "noeviction");
        assert_eq!(effective_user_config(None), UserConfigValues::default());
    }

    #[test]
    fn live_settings_translate_back_to_user_config() {
        let settings = HashMap::from([
            ("maxmemory-policy".to_string(), "allkeys-lru".to_string()),
            ("save".to_string(), "".to_string()),
            ("timeout".to_string(), "10".to_string()),
            ("io-threads".to_string(), "2".to_string()),
        ]);
        let live = live_user_config(&settings, &UserConfigModel::default());
        assert_eq!(live.maxmemory_policy.as_deref(), Some("allkeys-lru"));
        assert_eq!(live.persistence.as_deref(), Some("off"));
        assert_eq!((live.timeout, live.io_threads), (Some(10), Some(2)));
    }

    #[test]
    fn secrets_are_long_and_url_safe() {
        let s = generate_secret();
        assert_eq!(s.len(), 32);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(s, generate_secret());
    }

    #[test]
    fn schema_derives_from_the_model() {
        let s = schema().unwrap();
        let password = s.block.attribute("password").unwrap();
        assert!(password.sensitive && password.computed);
        assert!(s.block.attribute("name").unwrap().force_new);
        assert!(s.block.nested_block("valkey_user_config").is_some());
    }
}
