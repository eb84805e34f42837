//! The tfplugin6 `Provider` gRPC service: decodes requests, calls the [`Provider`], encodes
//! answers. Decoding problems become diagnostics, never gRPC errors or panics.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::diagnostics::{Diagnostic, Diagnostics};
use super::msgpack;
use super::proto::tfplugin6 as pb;
use super::provider::{ApplyRequest, PlanRequest, Provider};
use super::schema::Schema;
use super::types::Type;
use super::value::Value;

pub struct GrpcProvider<P: Provider> {
    provider: Arc<P>,
    /// Cancelled by StopProvider and then replaced, so the server keeps serving afterwards.
    stop: Mutex<CancellationToken>,
}

impl<P: Provider> GrpcProvider<P> {
    pub fn new(provider: Arc<P>) -> Self {
        GrpcProvider {
            provider,
            stop: Mutex::new(CancellationToken::new()),
        }
    }

    fn current_stop_token(&self) -> CancellationToken {
        self.stop.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn data_source_schema(&self, type_name: &str) -> Result<&Schema, Diagnostics> {
        self.provider
            .schemas()
            .data_source(type_name)
            .ok_or_else(|| unknown("data source", type_name))
    }

    fn resource_schema(&self, type_name: &str) -> Result<&Schema, Diagnostics> {
        self.provider
            .schemas()
            .resource(type_name)
            .ok_or_else(|| unknown("resource type", type_name))
    }
}

/// The error for a `kind` ("resource type", "data source") the provider does not have.
fn unknown(kind: &str, type_name: &str) -> Diagnostics {
    Diagnostic::error(
        format!("Unknown {kind} {type_name:?}"),
        format!("This provider does not implement that {kind}. Check the provider version."),
    )
    .into()
}

fn decode(value: Option<&pb::DynamicValue>, ty: &Type) -> Result<Value, Diagnostics> {
    let invalid = |e: String| -> Diagnostics {
        Diagnostic::error(
            "Invalid value received from Terraform",
            format!("The provider could not decode a value: {e}. This is a bug in the provider or an incompatible Terraform version."),
        )
        .into()
    };
    match value {
        Some(v) if !v.msgpack.is_empty() => msgpack::decode(&v.msgpack, ty).map_err(|e| invalid(e.to_string())),
        Some(v) if !v.json.is_empty() => {
            let json: serde_json::Value = serde_json::from_slice(&v.json).map_err(|e| invalid(e.to_string()))?;
            Value::from_serde_json(&json, ty).map_err(|e| invalid(e.to_string()))
        }
        _ => Ok(Value::Null),
    }
}

fn encode(value: &Value, ty: &Type, diagnostics: &mut Diagnostics) -> Option<pb::DynamicValue> {
    match msgpack::encode(value, ty) {
        Ok(bytes) => Some(pb::DynamicValue {
            msgpack: bytes,
            json: Vec::new(),
        }),
        Err(e) => {
            diagnostics.push(Diagnostic::error(
                "Provider produced a value it cannot encode",
                format!("{e}. This is a bug in the provider."),
            ));
            None
        }
    }
}

fn server_capabilities() -> pb::ServerCapabilities {
    pb::ServerCapabilities {
        // Destroy plans come to PlanResourceChange, so protections can fail at plan time.
        plan_destroy: true,
        get_provider_schema_optional: false,
        move_resource_state: false,
    }
}

#[tonic::async_trait]
impl<P: Provider> pb::provider_server::Provider for GrpcProvider<P> {
    async fn get_metadata(
        &self,
        _request: Request<pb::get_metadata::Request>,
    ) -> Result<Response<pb::get_metadata::Response>, Status> {
        let schemas = self.provider.schemas();
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(server_capabilities()),
            diagnostics: Vec::new(),
            data_sources: schemas
                .data_sources
                .iter()
                .map(|(name, _)| pb::get_metadata::DataSourceMetadata {
                    type_name: name.clone(),
                })
                .collect(),
            resources: schemas
                .resources
                .iter()
                .map(|(name, _)| pb::get_metadata::ResourceMetadata {
                    type_name: name.clone(),
                })
                .collect(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<pb::get_provider_schema::Request>,
    ) -> Result<Response<pb::get_provider_schema::Response>, Status> {
        let schemas = self.provider.schemas();
        Ok(Response::new(pb::get_provider_schema::Response {
            provider: Some(schemas.provider.to_proto()),
            resource_schemas: schemas
                .resources
                .iter()
                .map(|(name, schema)| (name.clone(), schema.to_proto()))
                .collect(),
            data_source_schemas: schemas
                .data_sources
                .iter()
                .map(|(name, schema)| (name.clone(), schema.to_proto()))
                .collect(),
            diagnostics: Vec::new(),
            provider_meta: None,
            server_capabilities: Some(server_capabilities()),
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<pb::validate_provider_config::Request>,
    ) -> Result<Response<pb::validate_provider_config::Response>, Status> {
        let ty = self.provider.schemas().provider.value_type();
        let diagnostics = match decode(request.get_ref().config.as_ref(), &ty) {
            Ok(config) => self.provider.validate_provider_config(&config),
            Err(d) => d,
        };
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics: diagnostics.to_proto(),
        }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<pb::validate_resource_config::Request>,
    ) -> Result<Response<pb::validate_resource_config::Response>, Status> {
        let req = request.get_ref();
        let diagnostics = match self
            .resource_schema(&req.type_name)
            .and_then(|s| decode(req.config.as_ref(), &s.value_type()))
        {
            Ok(config) => self.provider.validate_resource_config(&req.type_name, &config),
            Err(d) => d,
        };
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics: diagnostics.to_proto(),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<pb::validate_data_resource_config::Request>,
    ) -> Result<Response<pb::validate_data_resource_config::Response>, Status> {
        let req = request.get_ref();
        let diagnostics = match self
            .data_source_schema(&req.type_name)
            .and_then(|s| decode(req.config.as_ref(), &s.value_type()))
        {
            Ok(config) => self.provider.validate_data_source_config(&req.type_name, &config),
            Err(d) => d,
        };
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: diagnostics.to_proto(),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<pb::upgrade_resource_state::Request>,
    ) -> Result<Response<pb::upgrade_resource_state::Response>, Status> {
        // Every schema is still at version 0: stored JSON is read with the current type,
        // dropping attributes that no longer exist and nulling new ones.
        let req = request.get_ref();
        let mut diagnostics = Diagnostics::new();
        let upgraded = match self.resource_schema(&req.type_name) {
            Ok(schema) => {
                let ty = schema.value_type();
                let json = req.raw_state.as_ref().map(|r| r.json.as_slice()).unwrap_or_default();
                let value = pb::DynamicValue {
                    msgpack: Vec::new(),
                    json: json.to_vec(),
                };
                match decode(Some(&value), &ty) {
                    Ok(v) => encode(&v, &ty, &mut diagnostics),
                    Err(d) => {
                        diagnostics.extend(d);
                        None
                    }
                }
            }
            Err(d) => {
                diagnostics.extend(d);
                None
            }
        };
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state: upgraded,
            diagnostics: diagnostics.to_proto(),
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<pb::configure_provider::Request>,
    ) -> Result<Response<pb::configure_provider::Response>, Status> {
        let req = request.into_inner();
        let ty = self.provider.schemas().provider.value_type();
        let diagnostics = match decode(req.config.as_ref(), &ty) {
            Ok(config) => self.provider.configure(config, req.terraform_version).await,
            Err(d) => d,
        };
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: diagnostics.to_proto(),
        }))
    }

    async fn read_resource(
        &self,
        request: Request<pb::read_resource::Request>,
    ) -> Result<Response<pb::read_resource::Response>, Status> {
        let req = request.into_inner();
        let mut diagnostics = Diagnostics::new();
        let mut new_state = None;
        match self.resource_schema(&req.type_name) {
            Ok(schema) => {
                let ty = schema.value_type();
                match decode(req.current_state.as_ref(), &ty) {
                    Ok(current) => {
                        let response = self.provider.read(&req.type_name, current).await;
                        diagnostics.extend(response.diagnostics);
                        new_state = encode(&response.new_state, &ty, &mut diagnostics);
                    }
                    Err(d) => diagnostics.extend(d),
                }
            }
            Err(d) => diagnostics.extend(d),
        }
        Ok(Response::new(pb::read_resource::Response {
            new_state,
            diagnostics: diagnostics.to_proto(),
            private: req.private,
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<pb::plan_resource_change::Request>,
    ) -> Result<Response<pb::plan_resource_change::Response>, Status> {
        let req = request.into_inner();
        let mut diagnostics = Diagnostics::new();
        let mut planned_state = None;
        let mut requires_replace = Vec::new();
        let decoded = self.resource_schema(&req.type_name).and_then(|schema| {
            let ty = schema.value_type();
            Ok((
                ty.clone(),
                decode(req.prior_state.as_ref(), &ty)?,
                decode(req.proposed_new_state.as_ref(), &ty)?,
                decode(req.config.as_ref(), &ty)?,
            ))
        });
        match decoded {
            Ok((ty, prior_state, proposed_new_state, config)) => {
                let response = self
                    .provider
                    .plan(PlanRequest {
                        type_name: req.type_name.clone(),
                        prior_state,
                        proposed_new_state,
                        config,
                    })
                    .await;
                diagnostics.extend(response.diagnostics);
                planned_state = encode(&response.planned_state, &ty, &mut diagnostics);
                requires_replace = response.requires_replace.iter().map(|p| p.to_proto()).collect();
            }
            Err(d) => diagnostics.extend(d),
        }
        Ok(Response::new(pb::plan_resource_change::Response {
            planned_state,
            requires_replace,
            planned_private: req.prior_private,
            diagnostics: diagnostics.to_proto(),
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<pb::apply_resource_change::Request>,
    ) -> Result<Response<pb::apply_resource_change::Response>, Status> {
        let req = request.into_inner();
        let mut diagnostics = Diagnostics::new();
        let mut new_state = None;
        let decoded = self.resource_schema(&req.type_name).and_then(|schema| {
            let ty = schema.value_type();
            Ok((
                ty.clone(),
                decode(req.prior_state.as_ref(), &ty)?,
                decode(req.planned_state.as_ref(), &ty)?,
                decode(req.config.as_ref(), &ty)?,
            ))
        });
        match decoded {
            Ok((ty, prior_state, planned_state, config)) => {
                let response = self
                    .provider
                    .apply(ApplyRequest {
                        type_name: req.type_name.clone(),
                        prior_state,
                        planned_state,
                        config,
                        cancel: self.current_stop_token(),
                    })
                    .await;
                diagnostics.extend(response.diagnostics);
                new_state = encode(&response.new_state, &ty, &mut diagnostics);
            }
            Err(d) => diagnostics.extend(d),
        }
        Ok(Response::new(pb::apply_resource_change::Response {
            new_state,
            private: req.planned_private,
            diagnostics: diagnostics.to_proto(),
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<pb::import_resource_state::Request>,
    ) -> Result<Response<pb::import_resource_state::Response>, Status> {
        let req = request.into_inner();
        let mut diagnostics = Diagnostics::new();
        let mut imported_resources = Vec::new();
        match self.resource_schema(&req.type_name) {
            Ok(schema) => {
                let ty = schema.value_type();
                let response = self.provider.import(&req.type_name, &req.id).await;
                diagnostics.extend(response.diagnostics);
                if !response.state.is_null()
                    && let Some(state) = encode(&response.state, &ty, &mut diagnostics)
                {
                    imported_resources.push(pb::import_resource_state::ImportedResource {
                        type_name: req.type_name.clone(),
                        state: Some(state),
                        private: Vec::new(),
                    });
                }
            }
            Err(d) => diagnostics.extend(d),
        }
        Ok(Response::new(pb::import_resource_state::Response {
            imported_resources,
            diagnostics: diagnostics.to_proto(),
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<pb::read_data_source::Request>,
    ) -> Result<Response<pb::read_data_source::Response>, Status> {
        let req = request.into_inner();
        let mut diagnostics = Diagnostics::new();
        let mut state = None;
        match self.data_source_schema(&req.type_name) {
            Ok(schema) => {
                let ty = schema.value_type();
                match decode(req.config.as_ref(), &ty) {
                    Ok(config) => {
                        let response = self.provider.read_data_source(&req.type_name, config).await;
                        diagnostics.extend(response.diagnostics);
                        if !diagnostics.has_errors() {
                            state = encode(&response.new_state, &ty, &mut diagnostics);
                        }
                    }
                    Err(d) => diagnostics.extend(d),
                }
            }
            Err(d) => diagnostics.extend(d),
        }
        Ok(Response::new(pb::read_data_source::Response {
            state,
            diagnostics: diagnostics.to_proto(),
        }))
    }

    async fn stop_provider(
        &self,
        _request: Request<pb::stop_provider::Request>,
    ) -> Result<Response<pb::stop_provider::Response>, Status> {
        tracing::info!("StopProvider received: cancelling in-flight operations");
        if let Ok(mut token) = self.stop.lock() {
            token.cancel();
            *token = CancellationToken::new();
        }
        Ok(Response::new(pb::stop_provider::Response { error: String::new() }))
    }
}
