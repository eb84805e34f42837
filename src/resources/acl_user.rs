//! valkey_user's lifecycle: an ACL user set on every member of a replication group, kept on
//! the group's primary service's record so that nodes started later (new read replicas,
//! restarted or recreated nodes) have it in their config file from the start.

use super::acl_user_members::{members, set_everywhere};
use super::acl_user_model::AclUserModel;
use super::acl_user_plan::id_of;
use super::secrets::generate_secret;
use super::{Context, acl_user_members, error, group_lock, records};

use crate::runtime::{AclUserRecord, ServiceRecord};
use crate::tfplug::provider::{ApplyResponse, ImportResponse, ReadResponse};
use crate::tfplug::value::{from_model, to_model};
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Schema, Type, Value};
use crate::valkey::acl::{self, AccessRules, DEFAULT_USER};

pub const TYPE_NAME: &str = "valkey_user";

pub fn schema() -> Result<Schema, String> {
    crate::tfplug::schema_derive::schema_for::<AclUserModel>(0)
}

/// The group's primary service record, named by the user's `service`; an error at `service`
/// when it is a read replica's.
async fn primary_record(ctx: &Context, service: &str) -> Result<Option<ServiceRecord>, Diagnostics> {
    let Some(record) = records::load(ctx, service).await? else {
        return Ok(None);
    };
    match record.group() {
        Some(group) if group == record.name => Ok(Some(record)),
        group => Err(Diagnostic::error(
            "A user belongs to the primary service",
            format!(
                "{service:?} is a read replica{}; ACL users are set on the whole replication group, so name its \
                 primary service in `service`",
                group.map(|g| format!(" of {g:?}")).unwrap_or_default()
            ),
        )
        .at(AttrPath::root("service"))
        .into()),
    }
}

/// The password to set and whether it is write-only: the planned write-only one when given
/// and new (a create, a new `password_wo_version`, or a change from a password in state), a
/// fresh one when the plan left `password` unknown, the planned `password` when it changed,
/// else none (keep).
fn new_password(prior: &AclUserModel, planned: &AclUserModel, planned_value: &Value) -> Option<(String, bool)> {
    if let Some(wo) = &planned.password_wo {
        let fresh = prior.username.is_empty()
            || prior.password_wo_version != planned.password_wo_version
            || prior.password.as_deref().is_some_and(|p| !p.is_empty());
        return fresh.then(|| (wo.clone(), true));
    }
    match planned_value.attr("password") {
        Value::Unknown => Some((generate_secret(), false)),
        Value::String(given) if !given.is_empty() && prior.password.as_deref() != Some(given) => {
            Some((given.clone(), false))
        }
        _ => None,
    }
}

/// The record entry of the group's `default` user with `password`: its password kept only when
/// it is not write-only; no rules (requirepass makes the user, with every permission).
fn default_entry(password: &str, write_only: bool) -> AclUserRecord {
    AclUserRecord {
        username: DEFAULT_USER.to_string(),
        password_hash: acl::password_hash(password),
        password: (!write_only).then(|| password.to_string()),
        rules: String::new(),
        listed: String::new(),
    }
}

/// The state of a user as applied: what was planned, with the password generated (empty when
/// write-only) and the rules given.
fn applied_state(planned: &AclUserModel, entry: &AclUserRecord, rules: &str) -> AclUserModel {
    AclUserModel {
        id: Some(id_of(&planned.service, &planned.username)),
        password: Some(entry.password.clone().unwrap_or_default()),
        password_wo: None,
        acl_rules: Some(rules.to_string()),
        ..planned.clone()
    }
}

/// Creates or updates an application user on every member, then records it.
async fn put_user(
    ctx: &Context,
    mut primary: ServiceRecord,
    prior: &AclUserModel,
    planned: &AclUserModel,
    planned_value: &Value,
) -> Result<AclUserModel, Diagnostics> {
    let rules = AccessRules {
        categories: planned.categories.clone().unwrap_or_default(),
        commands: planned.commands.clone().unwrap_or_default(),
        keys: planned.keys.clone().unwrap_or_default(),
        channels: planned.channels.clone().unwrap_or_default(),
    }
    .render();
    let existing = primary
        .acl_users
        .iter()
        .find(|u| u.username == planned.username)
        .cloned();
    let (password_hash, password) = match (new_password(prior, planned, planned_value), &existing) {
        (Some((password, write_only)), _) => (acl::password_hash(&password), (!write_only).then_some(password)),
        (None, Some(e)) => (e.password_hash.clone(), e.password.clone()),
        (None, None) => {
            let password = generate_secret();
            (acl::password_hash(&password), Some(password))
        }
    };
    let args = acl::setuser_args(&planned.username, &password_hash, &rules);
    // The first member that answers checks the rules before anything is recorded.
    let mut members = members(ctx, &primary).await?;
    set_everywhere(&members[..members.len().min(1)], &args, &planned.username).await?;
    let mut entry = AclUserRecord {
        username: planned.username.clone(),
        password_hash,
        password,
        rules: rules.clone(),
        listed: String::new(),
    };
    primary.acl_users.retain(|u| u.username != planned.username);
    primary.acl_users.push(entry.clone());
    // Recorded first: a member that starts from here on has the user in its config file; the
    // members listed after that get it now (and a new read replica catches up once started).
    records::save(ctx, &primary).await?;
    members = self::members(ctx, &primary).await?;
    entry.listed = set_everywhere(&members, &args, &planned.username).await?;
    if let Some(recorded) = primary.acl_users.iter_mut().find(|u| u.username == entry.username) {
        recorded.listed = entry.listed.clone();
    }
    records::save(ctx, &primary).await?;
    Ok(applied_state(planned, &entry, &rules))
}

/// Gives the group's `default` user a new password on every member: added beside the old one
/// first, recorded on every member's record, then the old one removed, so the provider (which
/// administers nodes as that user) never finds a node it cannot log in to.
async fn rotate_default(
    ctx: &Context,
    primary: ServiceRecord,
    prior: &AclUserModel,
    planned: &AclUserModel,
    planned_value: &Value,
) -> Result<AclUserModel, Diagnostics> {
    let old = primary.password.clone();
    let (new, write_only) = match new_password(prior, planned, planned_value) {
        Some(chosen) => chosen,
        None => (old.clone(), primary.password_write_only),
    };
    let mut members = members(ctx, &primary).await?;
    if new != old {
        let add = vec!["SETUSER".to_string(), DEFAULT_USER.to_string(), format!(">{new}")];
        set_everywhere(&members, &add, DEFAULT_USER).await?;
    }
    let mut records_of_group = vec![primary];
    records_of_group.extend(records::replica_records(ctx, &records_of_group[0].name).await?);
    for record in &mut records_of_group {
        record.password = new.clone();
        record.password_write_only = write_only;
        if record.group() == Some(record.name.as_str()) {
            record.acl_users.retain(|u| u.username != DEFAULT_USER);
            record.acl_users.push(default_entry(&new, write_only));
        }
        records::save(ctx, record).await?;
    }
    if new != old {
        for member in &mut members {
            member.record.password = new.clone();
        }
        let remove = vec!["SETUSER".to_string(), DEFAULT_USER.to_string(), format!("<{old}")];
        set_everywhere(&members, &remove, DEFAULT_USER).await?;
    }
    Ok(applied_state(planned, &default_entry(&new, write_only), ""))
}

/// Removes an application user from the record and from every member. The `default` user
/// stays, with its password, since the provider administers the nodes as it.
async fn remove_user(ctx: &Context, prior: &AclUserModel) -> Result<(), Diagnostics> {
    let Some(mut primary) = primary_record(ctx, &prior.service).await? else {
        return Ok(());
    };
    primary.acl_users.retain(|u| u.username != prior.username);
    records::save(ctx, &primary).await?;
    if prior.username == DEFAULT_USER {
        return Ok(());
    }
    let members = members(ctx, &primary).await?;
    let args = vec!["DELUSER".to_string(), prior.username.clone()];
    set_everywhere(&members, &args, &prior.username).await.map(|_| ())
}

/// Create, update or delete, under the group's lock: the record of the group's primary is
/// what changes, and Sentinels placed meanwhile save it too.
pub async fn apply(ctx: &Context, prior: &Value, planned: &Value, value_type: &Type) -> ApplyResponse {
    let outcome = async {
        let prior_model: AclUserModel = if prior.is_null() {
            AclUserModel::default()
        } else {
            to_model(prior).map_err(|e| error("Invalid resource state", e))?
        };
        if planned.is_null() {
            let group = prior_model.service.clone();
            group_lock::exclusively(ctx, Some(&group), remove_user(ctx, &prior_model)).await?;
            return Ok(Value::Null);
        }
        let model: AclUserModel = to_model(planned).map_err(|e| error("Invalid planned state", e))?;
        let group = model.service.clone();
        let applied = group_lock::exclusively(ctx, Some(&group), async {
            let primary = primary_record(ctx, &model.service).await?.ok_or_else(|| {
                Diagnostics::from(
                    Diagnostic::error(
                        "Service not found",
                        format!(
                            "there is no service named {:?} in {}; create it first (reference its name, so \
                             Terraform orders the two)",
                            model.service,
                            ctx.runtime.location()
                        ),
                    )
                    .at(AttrPath::root("service")),
                )
            })?;
            let taken = primary.acl_users.iter().any(|u| u.username == model.username);
            if prior.is_null() && taken {
                return Err(Diagnostic::error(
                    "User already exists",
                    format!(
                        "service {:?} already has a valkey_user {:?}; import it with `terraform import` (ID {}) or \
                         choose another username",
                        model.service,
                        model.username,
                        id_of(&model.service, &model.username)
                    ),
                )
                .at(AttrPath::root("username"))
                .into());
            }
            if model.username == DEFAULT_USER {
                rotate_default(ctx, primary, &prior_model, &model, planned).await
            } else {
                put_user(ctx, primary, &prior_model, &model, planned).await
            }
        })
        .await?;
        from_model(&applied, value_type).map_err(|e| error("Provider produced an invalid state", e))
    }
    .await;
    match outcome {
        Ok(new_state) => ApplyResponse {
            new_state,
            diagnostics: Diagnostics::new(),
        },
        Err(diagnostics) => ApplyResponse {
            new_state: prior.clone(),
            diagnostics,
        },
    }
}

/// The user as its group has it, `known` supplying what only Terraform knows; None when the
/// service or the user is gone.
async fn observed(ctx: &Context, known: &AclUserModel) -> Result<Option<AclUserModel>, Diagnostics> {
    let Some(primary) = primary_record(ctx, &known.service).await? else {
        return Ok(None);
    };
    let Some(entry) = primary.acl_users.iter().find(|u| u.username == known.username) else {
        return Ok(None);
    };
    let rules = match acl_user_members::drift(&members(ctx, &primary).await?, entry).await {
        Some(drifted) => drifted,
        None => entry.rules.clone(),
    };
    Ok(Some(AclUserModel {
        id: Some(id_of(&known.service, &known.username)),
        password: Some(entry.password.clone().unwrap_or_default()),
        acl_rules: Some(rules),
        ..known.clone()
    }))
}

/// Refresh: the user as the members have it; gone when its service or record entry is.
pub async fn read(ctx: &Context, current: &Value, value_type: &Type) -> ReadResponse {
    let result = async {
        let known: AclUserModel = to_model(current).map_err(|e| error("Invalid resource state", e))?;
        let new_state = match observed(ctx, &known).await? {
            Some(model) => {
                from_model(&model, value_type).map_err(|e| error("Provider produced an invalid state", e))?
            }
            None => Value::Null,
        };
        Ok((new_state, Diagnostics::new()))
    }
    .await;
    ReadResponse::from_result(result, current)
}

/// The user `username` of `service`'s group as it is now, with its rules from the record and
/// the password when the provider generated it (a write-only one is known to no one but its
/// owner): what an import and the data source return.
pub async fn find(ctx: &Context, cloud: &str, service: &str, username: &str) -> Result<AclUserModel, Diagnostics> {
    let primary = primary_record(ctx, service).await?;
    let recorded = primary
        .as_ref()
        .and_then(|p| p.acl_users.iter().find(|u| u.username == username))
        .cloned();
    let entry = match (recorded, &primary) {
        (Some(entry), _) => entry,
        // The default user exists on every group, managed or not: recorded now, so a refresh
        // finds it.
        (None, Some(p)) if username == DEFAULT_USER => {
            let entry = default_entry(&p.password, p.password_write_only);
            let mut p = p.clone();
            p.acl_users.push(entry.clone());
            records::save(ctx, &p).await?;
            entry
        }
        _ => {
            return Err(error(
                "Not found",
                format!(
                    "service {service:?} in {} has no valkey_user {username:?}",
                    ctx.runtime.location()
                ),
            ));
        }
    };
    let parsed = |list: Vec<String>| (!list.is_empty()).then_some(list);
    let rules = AccessRules::parse(&entry.rules);
    let known = AclUserModel {
        service: service.to_string(),
        cloud: Some(cloud.to_string()),
        username: username.to_string(),
        categories: parsed(rules.categories),
        commands: parsed(rules.commands),
        keys: parsed(rules.keys),
        channels: parsed(rules.channels),
        ..Default::default()
    };
    Ok(observed(ctx, &known).await?.unwrap_or(known))
}

/// Import by `SERVICE/USERNAME`.
pub async fn import(ctx: &Context, cloud: &str, id: &str, value_type: &Type) -> ImportResponse {
    let result = async {
        let (service, username) = id.split_once('/').ok_or_else(|| {
            error(
                "Invalid import ID",
                format!("{id:?} is not SERVICE/USERNAME; import a user as, say, main/app"),
            )
        })?;
        let model = find(ctx, cloud, service, username).await?;
        from_model(&model, value_type).map_err(|e| error("Provider produced an invalid state", e))
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
    fn the_schema_keeps_the_write_only_password_out_of_state() {
        let s = schema().unwrap();
        let wo = s.block.attribute("password_wo").unwrap();
        assert!(wo.write_only && wo.sensitive && wo.optional);
        let generated = s.block.attribute("password").unwrap();
        assert!(generated.computed && generated.sensitive && generated.optional && !generated.write_only);
        assert!(s.block.attribute("username").unwrap().force_new);
    }
}
