//! Data sources: an existing service, read replica or user read by name, so another
//! configuration can connect to it without owning it. Their schemas are the resources' own
//! models with every attribute but the lookup arguments computed; a user's password is
//! returned only when asked for.

use schemas::{INCLUDE_PASSWORD, lookup_name};

use crate::resources::lifecycle::Lifecycle;
use crate::resources::{Context, acl_user, error, records};
use crate::tfplug::provider::ReadResponse;
use crate::tfplug::value::from_model;
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Type, Value};

pub mod schemas;

/// The state of data source `type_name` for `config`: the service or replica named in it, as
/// the resource of the same type would read it (`kind` names it in messages).
pub async fn read_member<R: Lifecycle>(r: &R, ctx: &Context, config: &Value, ty: &Type, kind: &str) -> ReadResponse {
    let result = async {
        let name = lookup_name(config, "name")?;
        let Some(record) = records::load(ctx, &name).await? else {
            return Err(not_found(
                "name",
                format!("there is no {kind} named {name:?} in {}", ctx.runtime.location()),
            ));
        };
        let prior = r.imported(&record).map_err(|e| not_found("name", e))?;
        let (model, warnings) = r.state_of(ctx, &record, &prior).await;
        let state = from_model(&model, ty).map_err(|e| error("Provider produced an invalid state", e))?;
        Ok((state, warnings))
    }
    .await;
    ReadResponse::from_result(result, config)
}

/// The state of data source valkey_user: the user's rules and, with `include_password`, its
/// generated password.
pub async fn read_user(ctx: &Context, cloud: &str, config: &Value, ty: &Type) -> ReadResponse {
    let result = async {
        let (service, username) = (lookup_name(config, "service")?, lookup_name(config, "username")?);
        let mut model = acl_user::find(ctx, cloud, &service, &username).await?;
        if config.attr(INCLUDE_PASSWORD).as_bool() != Some(true) {
            model.password = None;
        }
        let mut state = from_model(&model, ty).map_err(|e| error("Provider produced an invalid state", e))?;
        state.set_attr(INCLUDE_PASSWORD, config.attr(INCLUDE_PASSWORD).clone());
        Ok((state, Diagnostics::new()))
    }
    .await;
    ReadResponse::from_result(result, config)
}

fn not_found(attribute: &str, detail: String) -> Diagnostics {
    Diagnostic::error("Not found", detail)
        .at(AttrPath::root(attribute))
        .into()
}
