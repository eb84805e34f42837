//! The interface between the protocol layer and a provider: decoded values in, values and
//! diagnostics out. Nothing here knows about gRPC or msgpack.

use tokio_util::sync::CancellationToken;

use super::diagnostics::{AttrPath, Diagnostics};
use super::schema::Schema;
use super::value::Value;

/// Every schema the provider serves.
pub struct ProviderSchemas {
    pub provider: Schema,
    pub resources: Vec<(String, Schema)>,
    pub data_sources: Vec<(String, Schema)>,
}

impl ProviderSchemas {
    /// The schema of resource type `type_name`, if the provider has it.
    pub fn resource(&self, type_name: &str) -> Option<&Schema> {
        named(&self.resources, type_name)
    }

    /// The schema of data source `type_name`, if the provider has it.
    pub fn data_source(&self, type_name: &str) -> Option<&Schema> {
        named(&self.data_sources, type_name)
    }
}

fn named<'a>(schemas: &'a [(String, Schema)], type_name: &str) -> Option<&'a Schema> {
    schemas
        .iter()
        .find(|(name, _)| name == type_name)
        .map(|(_, schema)| schema)
}

pub struct PlanRequest {
    pub type_name: String,
    /// Null when the resource is being created.
    pub prior_state: Value,
    /// Null when the resource is being destroyed.
    pub proposed_new_state: Value,
    pub config: Value,
}

#[derive(Default)]
pub struct PlanResponse {
    pub planned_state: Value,
    pub requires_replace: Vec<AttrPath>,
    pub diagnostics: Diagnostics,
}

pub struct ApplyRequest {
    pub type_name: String,
    pub prior_state: Value,
    /// Null when the resource is being destroyed.
    pub planned_state: Value,
    pub config: Value,
    /// Cancelled when Terraform asks the provider to stop (Ctrl-C): finish or undo the step
    /// under way and return what exists.
    pub cancel: CancellationToken,
}

#[derive(Default)]
pub struct ApplyResponse {
    /// What exists after the call; null after a delete. On error, whatever was created so far,
    /// so Terraform can track it.
    pub new_state: Value,
    pub diagnostics: Diagnostics,
}

#[derive(Default)]
pub struct ReadResponse {
    /// Null when the resource no longer exists.
    pub new_state: Value,
    pub diagnostics: Diagnostics,
}

impl ReadResponse {
    /// The state read with its warnings, or on error `unchanged` (what Terraform had) with the
    /// error.
    pub fn from_result(result: Result<(Value, Diagnostics), Diagnostics>, unchanged: &Value) -> Self {
        match result {
            Ok((new_state, diagnostics)) => ReadResponse { new_state, diagnostics },
            Err(diagnostics) => ReadResponse {
                new_state: unchanged.clone(),
                diagnostics,
            },
        }
    }
}

#[derive(Default)]
pub struct ImportResponse {
    pub state: Value,
    pub diagnostics: Diagnostics,
}

/// What a provider implements. Values are decoded with the schemas from [`Provider::schemas`].
#[tonic::async_trait]
pub trait Provider: Send + Sync + 'static {
    fn schemas(&self) -> &ProviderSchemas;

    fn validate_provider_config(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    async fn configure(&self, config: Value, terraform_version: String) -> Diagnostics;

    fn validate_resource_config(&self, type_name: &str, config: &Value) -> Diagnostics;

    async fn read(&self, type_name: &str, current_state: Value) -> ReadResponse;

    async fn plan(&self, request: PlanRequest) -> PlanResponse;

    async fn apply(&self, request: ApplyRequest) -> ApplyResponse;

    async fn import(&self, type_name: &str, id: &str) -> ImportResponse;

    fn validate_data_source_config(&self, _type_name: &str, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// A data source's state from its configuration (its arguments set, the rest null).
    async fn read_data_source(&self, type_name: &str, config: Value) -> ReadResponse;
}
