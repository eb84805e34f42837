//! The apply, read and import flow every resource shares: decode the model, run the operation
//! under its timeout and Terraform's stop request, and hand back a state Terraform can track
//! even when the operation failed half-way.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::common_model::TimeoutsModel;
use super::error;
use super::plan_rules::PlanShape;
use super::records::load;
use super::timeouts::{bounded, timeout_of};
use super::validate;
use crate::runtime::{RuntimeError, ServiceRecord};
use crate::tfplug::provider::{ApplyResponse, ImportResponse, ReadResponse};
use crate::tfplug::value::{from_model, to_model};
use crate::tfplug::{Diagnostic, Diagnostics, Type, Value};

/// A create that failed after something was made returns that something with its errors.
pub type CreateResult<M> = Result<M, (Diagnostics, Option<M>)>;

#[tonic::async_trait]
pub trait Lifecycle: Send + Sync {
    type Model: Serialize + DeserializeOwned + Clone + Default + Send + Sync;

    fn value_type(&self) -> Type;
    /// How the resource's plan treats its attributes.
    fn plan_shape(&self) -> &'static PlanShape;
    fn name<'m>(&self, model: &'m Self::Model) -> &'m str;
    fn timeouts<'m>(&self, model: &'m Self::Model) -> Option<&'m TimeoutsModel>;

    async fn create(&self, ctx: &Context, planned: &Self::Model) -> CreateResult<Self::Model>;
    async fn update(
        &self,
        ctx: &Context,
        prior: &Self::Model,
        planned: &Self::Model,
    ) -> Result<Self::Model, Diagnostics>;
    async fn delete(&self, ctx: &Context, prior: &Self::Model) -> Result<(), Diagnostics>;

    /// The state of an existing resource: its record overlaid with what its nodes report;
    /// `prior` supplies what only Terraform knows (declared blocks, timeouts). Warnings say
    /// what could not be observed.
    async fn state_of(&self, ctx: &Context, record: &ServiceRecord, prior: &Self::Model) -> (Self::Model, Diagnostics);

    /// The stand-in prior state for an import: the record's declared settings. An error when
    /// the record is of the other resource type.
    fn imported(&self, record: &ServiceRecord) -> Result<Self::Model, String>;
}

fn encode<R: Lifecycle>(r: &R, model: &R::Model) -> Result<Value, Diagnostics> {
    from_model(model, &r.value_type()).map_err(|e| error("Provider produced an invalid state", e))
}

fn decode<R: Lifecycle>(value: &Value) -> Result<R::Model, Diagnostics> {
    to_model(value).map_err(|e| error("Invalid resource state", e))
}

pub async fn apply<R: Lifecycle>(
    r: &R,
    ctx: &Context,
    prior: &Value,
    planned: &Value,
    cancel: &CancellationToken,
) -> ApplyResponse {
    let outcome: Result<Value, (Diagnostics, Value)> = async {
        if planned.is_null() {
            let prior_model = decode::<R>(prior).map_err(|d| (d, prior.clone()))?;
            let limit = timeout_of(r.timeouts(&prior_model), |t| t.delete.as_ref());
            bounded("delete", limit, cancel, r.delete(ctx, &prior_model))
                .await
                .and_then(|done| done)
                .map_err(|d| (d, prior.clone()))?;
            return Ok(Value::Null);
        }
        let model = decode::<R>(planned).map_err(|d| (d, prior.clone()))?;
        if prior.is_null() {
            let limit = timeout_of(r.timeouts(&model), |t| t.create.as_ref());
            match bounded("create", limit, cancel, r.create(ctx, &model)).await {
                Ok(Ok(created)) => encode(r, &created).map_err(|d| (d, Value::Null)),
                Ok(Err((d, partial))) => Err((d, partial.and_then(|p| encode(r, &p).ok()).unwrap_or_default())),
                Err(d) => Err((d, recover_state(r, ctx, &model).await)),
            }
        } else {
            let prior_model = decode::<R>(prior).map_err(|d| (d, prior.clone()))?;
            let limit = timeout_of(r.timeouts(&model), |t| t.update.as_ref());
            match bounded("update", limit, cancel, r.update(ctx, &prior_model, &model))
                .await
                .and_then(|u| u)
            {
                Ok(updated) => encode(r, &updated)
                    .map(|state| keep_planned_observations(r.plan_shape(), planned, state))
                    .map_err(|d| (d, prior.clone())),
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
        Err((diagnostics, new_state)) => ApplyResponse { new_state, diagnostics },
    }
}

/// The state an update returns, with the values the plan kept from the prior state where the
/// nodes now report otherwise: those changed through other resources during this run (a
/// replica promoted beside this one's update, say), and Terraform requires an update to
/// return what it planned. The next refresh reads them anew.
fn keep_planned_observations(shape: &PlanShape, planned: &Value, mut state: Value) -> Value {
    for name in shape.observed_names() {
        let kept = planned.attr(name);
        if kept.is_wholly_known() && state.attr(name) != kept {
            tracing::debug!(attribute = name, "keeping the planned value until the next refresh");
            state.set_attr(name, kept.clone());
        }
    }
    state
}

/// After an interrupted create: whatever exists of the resource, so Terraform can track it.
async fn recover_state<R: Lifecycle>(r: &R, ctx: &Context, planned: &R::Model) -> Value {
    match load(ctx, r.name(planned)).await {
        Ok(Some(record)) => encode(r, &r.state_of(ctx, &record, planned).await.0).unwrap_or_default(),
        _ => Value::Null,
    }
}

/// Refresh: the state as the nodes report it, with a warning for what could not be reached.
/// When the records themselves cannot be reached, the state stays as last refreshed.
pub async fn read<R: Lifecycle>(r: &R, ctx: &Context, current: &Value) -> ReadResponse {
    let result = async {
        let prior = decode::<R>(current)?;
        let name = r.name(&prior);
        let record = match ctx.runtime.store().load(name).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                tracing::info!(%name, "resource no longer exists; removing it from state");
                return Ok((Value::Null, Diagnostics::new()));
            }
            Err(e @ RuntimeError::Unreachable { .. }) => {
                let warning = Diagnostic::warning(
                    format!("Could not refresh {name}"),
                    format!("{e}. Its state is kept as last refreshed; refresh again once it answers."),
                );
                return Ok((current.clone(), warning.into()));
            }
            Err(e) => return Err(error("Could not read the service record", e)),
        };
        let (model, warnings) = r.state_of(ctx, &record, &prior).await;
        Ok((encode(r, &model)?, warnings))
    }
    .await;
    ReadResponse::from_result(result, current)
}

pub async fn import<R: Lifecycle>(r: &R, ctx: &Context, id: &str, kind: &str) -> ImportResponse {
    let result = async {
        validate::resource_name(id)
            .map_err(|e| error("Invalid import ID", format!("{e}. The import ID is the {kind}'s name.")))?;
        let Some(record) = load(ctx, id).await? else {
            return Err(error(
                "Not found",
                format!("there is no {kind} named {id:?} in {}", ctx.runtime.location()),
            ));
        };
        let prior = r.imported(&record).map_err(|e| error("Cannot import", e))?;
        let (model, warnings) = r.state_of(ctx, &record, &prior).await;
        Ok((encode(r, &model)?, warnings))
    }
    .await;
    match result {
        Ok((state, diagnostics)) => ImportResponse { state, diagnostics },
        Err(diagnostics) => ImportResponse {
            state: Value::Null,
            diagnostics,
        },
    }
}
