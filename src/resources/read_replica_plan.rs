//! valkey_read_replica's plan-time rules: configuration checks, the topology checks that need
//! the runtime's records and the current run (primary exists, at most 5 replicas, same service type),
//! and what a change plans.

use std::time::Duration;

use crate::catalog;
use crate::registry;
use crate::runtime::ServiceRecord;
use crate::tfplug::provider::PlanResponse;
use crate::tfplug::schema::Block;
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Value};
use crate::valkey::{NodeClient, uri};

use super::plan_rules::{self, PlanShape};
use super::planned::{over_replica_limit, refused_replicas};
use super::validate;
use super::{Context, user_config};

/// Checks every known value that needs no provider configuration.
pub fn validate_config(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    validate::common(&mut d, config, catalog::read_replica_plan);
    validate::integer(
        &mut d,
        config.attr("failover_priority"),
        AttrPath::root("failover_priority"),
        "failover_priority",
        catalog::FAILOVER_PRIORITY_RANGE,
    );
    let (service, uri_value) = (config.attr("primary_service"), config.attr("primary_uri"));
    validate::string(
        &mut d,
        service,
        AttrPath::root("primary_service"),
        "primary_service",
        validate::resource_name,
    );
    validate::string(&mut d, uri_value, AttrPath::root("primary_uri"), "primary_uri", |u| {
        uri::parse(u).map(|_| ())
    });
    match (service.is_null(), uri_value.is_null()) {
        (true, true) => d.push(
            Diagnostic::error(
                "Missing primary",
                "set primary_service to the name of a valkey_service, or primary_uri to a Valkey server this provider does not manage",
            )
            .at(AttrPath::root("primary_service")),
        ),
        (false, false) => d.push(
            Diagnostic::error("Conflicting primaries", "set only one of primary_service and primary_uri").at(AttrPath::root("primary_uri")),
        ),
        _ => {}
    }
    d
}

pub const SHAPE: PlanShape = PlanShape {
    kind: "read replica",
    observed: &[
        ("state", &["powered"]),
        ("role", &["powered", "promote"]),
        ("replication_status", &["powered", "promote"]),
        ("replicates_from", &["powered", "promote"]),
        ("sentinel_addresses", &[]),
        ("current_primary", &["promote"]),
        ("valkey_version", &[]),
    ],
    volatile: &["replication_lag_bytes"],
    created: plan_rules::CREATED,
};

pub fn plan_change(block: &Block, prior: &Value, proposed: &Value, config: &Value) -> PlanResponse {
    let mut response = plan_rules::plan_change(&SHAPE, block, prior, proposed, config);
    let planned = &mut response.planned_state;
    if prior.is_null() || planned.is_null() || !response.requires_replace.is_empty() {
        return response;
    }
    if needs_role_change(prior, planned) {
        plan_rules::plan_repair(&SHAPE, planned);
    }
    response
}

/// Whether apply must change the replica's role: promote it when `promote` is set and it is
/// not the group's primary, or re-link it when it stopped replicating (REPLICAOF NO ONE run
/// outside Terraform) without having been promoted by a failover.
fn needs_role_change(prior: &Value, planned: &Value) -> bool {
    let own = match (prior.attr("host").as_str(), prior.attr("port").as_i64()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        _ => return false,
    };
    let current = prior.attr("current_primary").as_str();
    let is_group_primary = current == Some(own.as_str());
    // A replica powered off is promoted once it runs again, not before.
    let promote = planned.attr("promote").as_bool() == Some(true) && planned.attr("powered").as_bool() != Some(false);
    let running = prior.attr("powered").as_bool() == Some(true);
    // Promotion wanted, or the node out of place in its group (replication stopped or
    // pointed elsewhere without a failover behind it).
    (promote && !is_group_primary)
        || (running
            && plan_rules::out_of_place(
                &own,
                prior.attr("role").as_str(),
                prior.attr("replicates_from").as_str(),
                current,
            ))
}

/// Refuses a server that is not Valkey: read replicas replicate the same service type only.
pub async fn probe_primary_uri(text: &str) -> Result<(), String> {
    let up = uri::parse(text)?;
    let mut client = NodeClient::connect_as(
        &up.host,
        up.port,
        Some(&up.user),
        &up.password,
        None,
        Duration::from_secs(3),
    )
    .await
    .map_err(|e| format!("cannot check the primary: {e}"))?;
    let info = client
        .info(&["server"])
        .await
        .map_err(|e| format!("cannot check the primary: {e}"))?;
    if info.is_valkey() {
        return Ok(());
    }
    let reported = match (info.get("server_name"), info.get("redis_version")) {
        (Some(name), _) => format!("server_name {name:?}"),
        (None, Some(version)) => {
            format!("redis_version {version} and no server_name, so it is Redis or a Redis-compatible server")
        }
        (None, None) => "no server name".to_string(),
    };
    Err(format!(
        "the server at {}:{} is not Valkey (INFO server reports {reported}); read replicas replicate Valkey only, \
         cross-service replication is not supported",
        up.host, up.port
    ))
}

/// Plan-time checks of a replica against its primary's record (read once), the runtime's
/// other records and the rest of this run: on every plan, that it has at least its primary's
/// databases; on a create, that the primary exists, is a service, and has room for it.
pub async fn check_against_primary(ctx: &Context, config: &Value, new: bool) -> Diagnostics {
    let mut d = Diagnostics::new();
    if let Some(primary) = config.attr("primary_service").as_str() {
        let record = match ctx.runtime.store().load(primary).await {
            Ok(record) => record,
            Err(e) if new => return Diagnostic::error("Could not read the service records", e.to_string()).into(),
            // An existing replica's plan goes on: its apply reports an unreadable record.
            Err(_) => None,
        };
        if let Some(refused) = record.as_ref().and_then(|r| fewer_databases(primary, r, config)) {
            return refused.into();
        }
        if new {
            d.extend(check_new_replica(ctx, primary, record.as_ref(), config).await);
        }
    }
    if new
        && let Some(text) = config.attr("primary_uri").as_str()
        && let Err(e) = probe_primary_uri(text).await
    {
        d.push(Diagnostic::error("Primary is not a usable Valkey server", e).at(AttrPath::root("primary_uri")));
    }
    d
}

/// A replica needs at least its primary's logical databases: the primary's writes to a
/// database the replica lacks fail there (`SELECT` out of range) and land in another one.
fn fewer_databases(primary: &str, record: &ServiceRecord, config: &Value) -> Option<Diagnostic> {
    let wanted = config.attr(user_config::BLOCK).attr("number_of_databases");
    if wanted.is_unknown() {
        return None;
    }
    let wanted = wanted.as_i64().unwrap_or(catalog::DEFAULT_DATABASES);
    let has = record.user_config.number_of_databases;
    if wanted >= has {
        return None;
    }
    let at = AttrPath::root(user_config::BLOCK).attr("number_of_databases");
    Some(
        Diagnostic::error(
            "Fewer databases than the primary",
            format!(
                "{at}: {wanted} is fewer than the {has} of primary service {primary:?}; its writes to databases {wanted} to {} \
                 would fail on this replica and land in another database. Set number_of_databases = {has} or more",
                has - 1
            ),
        )
        .at(at),
    )
}

/// A new replica's checks against `record` (its primary's, when there is one), the other
/// replicas of that primary and the rest of this run.
async fn check_new_replica(
    ctx: &Context,
    primary: &str,
    record: Option<&ServiceRecord>,
    config: &Value,
) -> Diagnostics {
    let mut d = Diagnostics::new();
    let existing = match registry::replicas_of(ctx.runtime.as_ref(), primary).await {
        Ok(names) => names,
        Err(e) => return Diagnostic::error("Could not read the service records", e.to_string()).into(),
    };
    let at = || AttrPath::root("primary_service");
    match record {
        Some(r) if r.upstream.is_some() => d.push(
            Diagnostic::error(
                "Primary is a read replica",
                format!("{primary:?} is a read replica; a read replica replicates from a valkey_service only"),
            )
            .at(at()),
        ),
        Some(_) => {}
        None if ctx.planned.service_planned(primary) => {}
        None => d.push(
            Diagnostic::error(
                "Primary service not found",
                format!(
                    "no valkey_service named {primary:?} exists in {} or is created in this configuration. \
                     Refer to the primary resource (primary_service = valkey_service.NAME.name) so Terraform creates it first.",
                    ctx.runtime.location()
                ),
            )
            .at(at()),
        ),
    }
    if let Some(name) = config.attr("name").as_str() {
        ctx.planned.plan_replica(primary, name);
        let planned = ctx.planned.replicas_once_settled(primary).await;
        if refused_replicas(&existing, &planned, catalog::MAX_READ_REPLICAS).contains(name)
            && let Some(all) = over_replica_limit(&existing, &planned, catalog::MAX_READ_REPLICAS)
        {
            d.push(
                Diagnostic::error(
                    "Too many read replicas",
                    format!(
                        "primary service {primary:?} would have {} read replicas ({}), counting existing ones and those in this plan; \
                         a primary can have at most {}. Those past the limit, in name order, are refused.",
                        all.len(),
                        all.join(", "),
                        catalog::MAX_READ_REPLICAS
                    ),
                )
                .at(at()),
            );
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::read_replica_model::ReadReplicaModel;
    use crate::tfplug::schema_derive::schema_for;

    fn config(pairs: &[(&str, Value)]) -> Value {
        let ty = schema_for::<ReadReplicaModel>(0).unwrap().value_type();
        let mut v = Value::from_serde_json(&serde_json::json!({}), &ty).unwrap();
        for (k, val) in pairs {
            v.set_attr(k, val.clone());
        }
        v
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn paths(d: &Diagnostics) -> Vec<String> {
        d.0.iter()
            .map(|d| d.path.as_ref().map(|p| p.to_string()).unwrap_or_default())
            .collect()
    }

    #[test]
    fn replica_on_another_plan_than_startup_4_is_refused() {
        let d = validate_config(&config(&[
            ("name", s("r")),
            ("plan", s("business-4")),
            ("primary_service", s("p")),
        ]));
        assert_eq!(paths(&d), ["plan"]);
        assert!(d.0[0].detail.contains("startup-4"));
    }

    #[test]
    fn exactly_one_primary_must_be_given() {
        let none = validate_config(&config(&[("name", s("r")), ("plan", s("startup-4"))]));
        assert_eq!(paths(&none), ["primary_service"]);
        let both = validate_config(&config(&[
            ("name", s("r")),
            ("plan", s("startup-4")),
            ("primary_service", s("p")),
            ("primary_uri", s("valkey://u:p@127.0.0.1:1")),
        ]));
        assert_eq!(paths(&both), ["primary_uri"]);
        let unknown = validate_config(&config(&[
            ("name", s("r")),
            ("plan", s("startup-4")),
            ("primary_service", Value::Unknown),
        ]));
        assert!(unknown.is_empty());
    }

    #[test]
    fn bad_priority_uri_and_primary_name_are_reported_at_their_attributes() {
        let d = validate_config(&config(&[
            ("name", s("r")),
            ("plan", s("startup-4")),
            ("primary_uri", s("http://x")),
            ("failover_priority", Value::Number(crate::tfplug::Number::Int(-1))),
        ]));
        assert_eq!(paths(&d), ["failover_priority", "primary_uri"]);
        let d = validate_config(&config(&[
            ("name", s("r")),
            ("plan", s("startup-4")),
            ("primary_service", s("../p")),
        ]));
        assert_eq!(paths(&d), ["primary_service"]);
    }

    fn applied(role: &str, current_primary: &str) -> Value {
        let mut v = config(&[
            ("name", s("r")),
            ("plan", s("startup-4")),
            ("primary_service", s("p")),
            ("region", s("local-2")),
            ("cloud", s("local")),
            ("host", s("127.0.2.1")),
            ("port", Value::Number(crate::tfplug::Number::Int(7000))),
            ("role", s(role)),
            ("current_primary", s(current_primary)),
            ("state", s("RUNNING")),
            ("replication_status", s(if role == "replica" { "up" } else { "down" })),
            (
                "replicates_from",
                s(if role == "replica" { current_primary } else { "" }),
            ),
        ]);
        v.set_attr("powered", Value::Bool(true));
        v.set_attr("promote", Value::Bool(false));
        v.set_attr("termination_protection", Value::Bool(false));
        v.set_attr("failover_priority", Value::Number(crate::tfplug::Number::Int(100)));
        v.set_attr("id", s("r"));
        v
    }

    fn block() -> Block {
        schema_for::<ReadReplicaModel>(0).unwrap().block
    }

    #[test]
    fn a_detached_replica_plans_a_relink_but_a_promoted_one_does_not() {
        let c = config(&[
            ("name", s("r")),
            ("plan", s("startup-4")),
            ("primary_service", s("p")),
            ("region", s("local-2")),
        ]);
        let detached = applied("primary", "127.0.1.1:6000");
        let r = plan_change(&block(), &detached, &detached, &c);
        assert!(
            r.planned_state.attr("role").is_unknown(),
            "REPLICAOF NO ONE must show as drift"
        );
        let promoted = applied("primary", "127.0.2.1:7000");
        let r = plan_change(&block(), &promoted, &promoted, &c);
        assert_eq!(
            r.planned_state, promoted,
            "a replica promoted by failover is left alone"
        );
        let healthy = applied("replica", "127.0.1.1:6000");
        assert_eq!(plan_change(&block(), &healthy, &healthy, &c).planned_state, healthy);
        let mut misdirected = healthy.clone();
        misdirected.set_attr("replicates_from", s("127.0.9.1:6000"));
        let r = plan_change(&block(), &misdirected, &misdirected, &c);
        assert!(
            r.planned_state.attr("replicates_from").is_unknown(),
            "a replica following another node than the group's primary plans a re-link"
        );
    }

    #[test]
    fn an_update_keeps_what_it_does_not_change_and_never_the_lag() {
        let mut c = config(&[
            ("name", s("r")),
            ("plan", s("startup-4")),
            ("primary_service", s("p")),
            ("region", s("local-2")),
            ("failover_priority", Value::Number(crate::tfplug::Number::Int(5))),
        ]);
        let mut prior = applied("replica", "127.0.1.1:6000");
        prior.set_attr("replication_lag_bytes", Value::Number(crate::tfplug::Number::Int(0)));
        prior.set_attr("sentinel_addresses", Value::List(vec![s("127.0.2.1:1")]));
        let mut proposed = prior.clone();
        proposed.set_attr("failover_priority", Value::Number(crate::tfplug::Number::Int(5)));
        let planned = plan_change(&block(), &prior, &proposed, &c).planned_state;
        for kept in [
            "state",
            "role",
            "replication_status",
            "current_primary",
            "sentinel_addresses",
        ] {
            assert_eq!(
                planned.attr(kept),
                prior.attr(kept),
                "{kept} should keep its prior value"
            );
        }
        assert!(planned.attr("replication_lag_bytes").is_unknown());
        proposed.set_attr("powered", Value::Bool(false));
        c.set_attr("powered", Value::Bool(false));
        let planned = plan_change(&block(), &prior, &proposed, &c).planned_state;
        assert!(planned.attr("state").is_unknown() && planned.attr("role").is_unknown());
    }

    #[test]
    fn promote_plans_a_switchover_until_the_replica_is_the_primary() {
        let mut c = config(&[
            ("name", s("r")),
            ("plan", s("startup-4")),
            ("primary_service", s("p")),
            ("region", s("local-2")),
        ]);
        c.set_attr("promote", Value::Bool(true));
        let replica = applied("replica", "127.0.1.1:6000");
        let mut proposed = replica.clone();
        proposed.set_attr("promote", Value::Bool(true));
        let r = plan_change(&block(), &replica, &proposed, &c);
        assert!(r.planned_state.attr("role").is_unknown());
        let mut done = applied("primary", "127.0.2.1:7000");
        done.set_attr("promote", Value::Bool(true));
        assert_eq!(
            plan_change(&block(), &done, &done, &c).planned_state,
            done,
            "stable once promoted"
        );
    }

    #[test]
    fn a_replica_with_fewer_databases_than_its_primary_is_refused_at_the_setting() {
        let mut primary = ServiceRecord::default();
        primary.user_config.number_of_databases = 32;
        let with = |databases: serde_json::Value| {
            let ty = schema_for::<ReadReplicaModel>(0).unwrap().value_type();
            let c = serde_json::json!({ user_config::BLOCK: { "number_of_databases": databases } });
            Value::from_serde_json(&c, &ty).unwrap()
        };
        let refused = fewer_databases("p", &primary, &with(16.into())).unwrap();
        assert_eq!(
            refused.path.map(|p| p.to_string()).as_deref(),
            Some("valkey_user_config.number_of_databases")
        );
        assert!(
            refused.detail.contains("16 is fewer than the 32") && refused.detail.contains("number_of_databases = 32"),
            "{}",
            refused.detail
        );
        // Unset means Valkey's 16: fewer too.
        assert!(fewer_databases("p", &primary, &with(serde_json::Value::Null)).is_some());
        assert!(fewer_databases("p", &primary, &with(32.into())).is_none());
        let mut unknown = with(32.into());
        let mut block = unknown.attr(user_config::BLOCK).clone();
        block.set_attr("number_of_databases", Value::Unknown);
        unknown.set_attr(user_config::BLOCK, block);
        assert!(fewer_databases("p", &primary, &unknown).is_none());
    }

    #[tokio::test]
    async fn an_unreachable_primary_uri_is_an_error_that_hides_the_password() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let err = probe_primary_uri(&format!("valkey://u:hunter2@127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(
            err.contains("cannot check the primary") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
