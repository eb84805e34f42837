//! valkey_service's plan-time rules: configuration checks and what a change plans. Pure
//! functions of values, so they are unit-tested without nodes.

use crate::catalog;
use crate::tfplug::provider::PlanResponse;
use crate::tfplug::schema::Block;
use crate::tfplug::{Diagnostics, Value};

use super::certificates;
use super::common_model::TlsModel;
use super::plan_rules::{self, PlanShape};
use super::validate;
use crate::tfplug::{AttrPath, Diagnostic};

/// A warning, when a service with standbys is created or its plan changes, of the host loss
/// its group cannot survive: Sentinels fail over only while a majority of them (2 of 3) run,
/// and with fewer than three hosts in the region no placement keeps a majority after losing
/// any one host. `hosts_in` counts a region's hosts (the local cloud has one: this machine).
pub fn host_loss_warning(prior: &Value, config: &Value, hosts_in: impl Fn(&str) -> usize) -> Diagnostics {
    let (Some(plan), Some(region)) = (config.attr("plan").as_str(), config.attr("region").as_str()) else {
        return Diagnostics::new();
    };
    let standbys = catalog::plan(plan).is_ok_and(|p| p.nodes > 1);
    let failover = config.attr("failover").attr("enabled").as_bool() != Some(false);
    let plan_changed = prior.is_null() || prior.attr("plan").as_str() != Some(plan);
    if !standbys || !failover || !plan_changed {
        return Diagnostics::new();
    }
    let cloud = config.attr("cloud").as_str().unwrap_or(catalog::LOCAL_CLOUD);
    let detail = match (cloud, hosts_in(region)) {
        (catalog::LOCAL_CLOUD, _) => format!(
            "On the local cloud every node and Sentinel of this service runs on this machine: a failed node \
             process is failed over to a standby, but the loss of the machine is not survived. Use the docker cloud \
             with three hosts in region {region:?} to survive the loss of a host."
        ),
        (_, 1) => format!(
            "Region {region:?} has one host: every node and Sentinel of this service runs on it, so a failed node \
             is failed over to a standby but the loss of the host is not survived. Give the region three hosts, or \
             add a read replica in another region."
        ),
        (_, 2) => format!(
            "Region {region:?} has two hosts, so the group's 3 Sentinels cannot be spread for a majority (2) to \
             survive the loss of either: they start with 1 on the primary's host and 2 on the standby's, so losing \
             the primary's host is failed over, but once the primary has moved to the other host, losing that one \
             is not. Give the region a third host, or add a read replica in another region (Sentinels are then \
             placed in its region)."
        ),
        _ => return Diagnostics::new(),
    };
    Diagnostic::warning("This service does not survive the loss of a host", detail)
        .at(AttrPath::root("plan"))
        .into()
}

/// Checks every known value of a valkey_service configuration that needs no provider
/// configuration (regions are checked at plan time, when the provider's regions are known).
pub fn validate_config(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    validate::common(&mut d, config, |p| catalog::plan(p).map(|_| ()));
    for (name, range) in [
        ("down_after_ms", catalog::DOWN_AFTER_MS_RANGE),
        ("min_replicas_to_write", catalog::MIN_REPLICAS_TO_WRITE_RANGE),
        ("min_replicas_max_lag", catalog::MIN_REPLICAS_MAX_LAG_RANGE),
    ] {
        validate::integer(
            &mut d,
            config.attr("failover").attr(name),
            AttrPath::root("failover").attr(name),
            name,
            range,
        );
    }
    validate_tls(&mut d, config.attr("tls"));
    d
}

/// The `tls` block's arguments that depend on one another, once all are known.
fn validate_tls(d: &mut Diagnostics, tls: &Value) {
    const ARGUMENTS: [&str; 5] = [
        "certificate_validity",
        "renew_before",
        "auth_clients",
        "ca_certificate",
        "ca_private_key_wo",
    ];
    if tls.is_null() || tls.is_unknown() || ARGUMENTS.iter().any(|a| tls.attr(a).is_unknown()) {
        return;
    }
    let text = |name: &str| tls.attr(name).as_str().map(str::to_string);
    let model = TlsModel {
        certificate_validity: text("certificate_validity"),
        renew_before: text("renew_before"),
        auth_clients: text("auth_clients"),
        ca_certificate: text("ca_certificate"),
        ca_private_key_wo: text("ca_private_key_wo"),
    };
    if let Err((attr, detail)) = certificates::choice_of(&model) {
        d.push(Diagnostic::error("Invalid tls block", detail).at(AttrPath::root("tls").attr(attr)));
    }
}

/// A change of a `tls` argument that is set at creation.
fn refuse_set_at_creation(prior: &Value, config: &Value) -> Option<Diagnostic> {
    let changed = ["auth_clients", "ca_certificate"].into_iter().find(|name| {
        let (was, is) = (prior.attr(name), config.attr(name));
        // An unset auth_clients is its default.
        let default = |v: &Value| v.is_null() && *name == "auth_clients";
        !is.is_unknown() && was != is && !(default(is) && was.as_str() == Some("no"))
    })?;
    Some(
        Diagnostic::error(
            "This TLS setting cannot change on an existing service",
            format!(
                "tls.{changed} is set when the service is created: every node, read replica and Sentinel of the group \
                 and every client would have to switch at once. Put it back as it was, or create a new service with \
                 the new setting and move clients to it."
            ),
        )
        .at(AttrPath::root("tls").attr(changed)),
    )
}

/// A plan that adds or removes the `tls` block of an existing service is refused: every
/// client, replica and Sentinel of the group would have to switch at the same instant, and
/// a node cannot serve both at once on its one port. So is one that changes the group's CA or
/// whether clients show certificates, which are set at creation.
fn refuse_tls_toggle(prior: &Value, config: &Value) -> Option<Diagnostic> {
    let (was, is) = (!prior.attr("tls").is_null(), !config.attr("tls").is_null());
    if was && is {
        return refuse_set_at_creation(prior.attr("tls"), config.attr("tls"));
    }
    if was == is || config.attr("tls").is_unknown() {
        return None;
    }
    let (verb, now) = if is {
        ("added to", "on")
    } else {
        ("removed from", "off")
    };
    Some(
        Diagnostic::error(
            "TLS cannot change on an existing service",
            format!(
                "the tls block cannot be {verb} an existing service: every node, read replica, Sentinel and client of \
                 its replication group would have to switch at the same instant, and a node serves either TLS or \
                 plaintext on its port. Create a new service with TLS {now} (and its read replicas), move clients \
                 to it, then destroy this one; or put the block back as it was."
            ),
        )
        .at(AttrPath::root("tls")),
    )
}

pub const SHAPE: PlanShape = PlanShape {
    kind: "service",
    observed: &[
        ("state", &["plan", "powered"]),
        ("role", &["powered"]),
        ("nodes", &["plan", "powered"]),
        // Other resources add and remove read replicas.
        ("read_replicas", &[]),
        ("valkey_version", &[]),
        ("sentinel_addresses", &["failover"]),
        // Powering off or on never moves the primary.
        ("current_primary", &["failover"]),
        ("sentinel_status", &["powered", "failover"]),
    ],
    volatile: &[],
    created: plan_rules::CREATED,
};

/// Plans a create, update or destroy of a service from Terraform's proposed state. A node out
/// of place in its replication group (a second writable primary, a node replicating from
/// anything but the group's primary) plans the update that re-links it.
pub fn plan_change(block: &Block, prior: &Value, proposed: &Value, config: &Value) -> PlanResponse {
    let mut response = plan_rules::plan_change(&SHAPE, block, prior, proposed, config);
    if prior.is_null() || response.planned_state.is_null() || !response.requires_replace.is_empty() {
        return response;
    }
    if let Some(refused) = refuse_tls_toggle(prior, config) {
        response.diagnostics.push(refused);
        return response;
    }
    if any_node_out_of_place(prior) {
        plan_rules::plan_repair(&SHAPE, &mut response.planned_state);
    }
    // Sentinels that stopped outside Terraform are started again.
    let planned = &mut response.planned_state;
    if planned.attr("sentinel_status").as_str() == Some("degraded") {
        planned.set_attr("sentinel_status", Value::String("running".into()));
    }
    response
}

fn any_node_out_of_place(prior: &Value) -> bool {
    let current = prior.attr("current_primary").as_str();
    let Value::List(nodes) = prior.attr("nodes") else {
        return false;
    };
    nodes.iter().any(|n| {
        let addr = format!(
            "{}:{}",
            n.attr("host").as_str().unwrap_or_default(),
            n.attr("port").as_i64().unwrap_or(0)
        );
        n.attr("state").as_str() == Some("running")
            && plan_rules::out_of_place(
                &addr,
                n.attr("role").as_str(),
                n.attr("replicates_from").as_str(),
                current,
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::service_model::ServiceModel;
    use crate::tfplug::AttrPath;
    use crate::tfplug::schema_derive::schema_for;
    use std::collections::BTreeMap;

    fn block() -> Block {
        schema_for::<ServiceModel>(0).unwrap().block
    }

    fn config(pairs: &[(&str, Value)]) -> Value {
        let ty = block().value_type();
        let mut v = Value::from_serde_json(&serde_json::json!({}), &ty).unwrap();
        for (k, val) in pairs {
            v.set_attr(k, val.clone());
        }
        v
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn user_config(pairs: &[(&str, Value)]) -> Value {
        let mut m: BTreeMap<String, Value> = [
            "maxmemory_policy",
            "timeout",
            "persistence",
            "io_threads",
            "repl_timeout",
        ]
        .iter()
        .map(|k| (k.to_string(), Value::Null))
        .collect();
        for (k, v) in pairs {
            m.insert(k.to_string(), v.clone());
        }
        Value::Object(m)
    }

    #[test]
    fn every_bad_value_is_reported_at_its_attribute() {
        let c = config(&[
            ("name", s("../escape")),
            ("plan", s("startup-8")),
            ("region", s("mars-1")),
            (
                "valkey_user_config",
                user_config(&[
                    ("maxmemory_policy", s("lru")),
                    ("io_threads", Value::Number(crate::tfplug::Number::Int(0))),
                ]),
            ),
        ]);
        let d = validate_config(&c);
        let paths: Vec<String> = d.0.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(
            paths,
            [
                "name",
                "plan",
                "valkey_user_config.maxmemory_policy",
                "valkey_user_config.io_threads"
            ]
        );
        // The region needs the provider's regions: it is checked at plan time.
        let mut regional = Diagnostics::new();
        validate::region(&mut regional, &c, &crate::runtime::local::Regions::default().names());
        assert_eq!(regional.0[0].path, Some(AttrPath::root("region")));
    }

    #[test]
    fn unknown_values_are_left_for_apply() {
        let c = config(&[
            ("name", Value::Unknown),
            ("plan", Value::Unknown),
            ("region", Value::Unknown),
        ]);
        assert!(validate_config(&c).is_empty());
    }

    #[test]
    fn create_fills_defaults_and_leaves_computed_unknown() {
        let c = config(&[("name", s("a")), ("plan", s("startup-4")), ("region", s("local-1"))]);
        let r = plan_change(&block(), &Value::Null, &c, &c);
        let p = &r.planned_state;
        assert_eq!(p.attr("cloud"), &s("local"));
        assert_eq!(p.attr("powered"), &Value::Bool(true));
        assert_eq!(p.attr("id"), &s("a"));
        assert!(p.attr("password").is_unknown() && p.attr("nodes").is_unknown());
    }

    fn applied() -> Value {
        let mut v = config(&[
            ("name", s("a")),
            ("plan", s("startup-4")),
            ("region", s("local-1")),
            ("cloud", s("local")),
        ]);
        for (k, val) in [
            ("id", s("a")),
            ("host", s("127.0.1.1")),
            ("password", s("pw")),
            ("state", s("RUNNING")),
            ("role", s("primary")),
        ] {
            v.set_attr(k, val);
        }
        v.set_attr("powered", Value::Bool(true));
        v.set_attr("termination_protection", Value::Bool(false));
        v
    }

    #[test]
    fn a_node_found_stopped_plans_powered_back_on_in_place() {
        let mut prior = applied();
        prior.set_attr("powered", Value::Bool(false));
        let c = config(&[("name", s("a")), ("plan", s("startup-4")), ("region", s("local-1"))]);
        let r = plan_change(&block(), &prior, &prior, &c);
        assert_eq!(r.planned_state.attr("powered"), &Value::Bool(true));
        assert!(r.requires_replace.is_empty());
        assert!(r.planned_state.attr("state").is_unknown());
        assert_eq!(r.planned_state.attr("password"), &s("pw"));
    }

    #[test]
    fn region_change_replaces_and_unchanged_config_plans_nothing() {
        let prior = applied();
        let c = config(&[("name", s("a")), ("plan", s("startup-4")), ("region", s("local-2"))]);
        let mut proposed = prior.clone();
        proposed.set_attr("region", s("local-2"));
        let r = plan_change(&block(), &prior, &proposed, &c);
        assert_eq!(r.requires_replace, vec![AttrPath::root("region")]);
        assert!(r.planned_state.attr("password").is_unknown());

        let same = config(&[("name", s("a")), ("plan", s("startup-4")), ("region", s("local-1"))]);
        let r = plan_change(&block(), &prior, &prior, &same);
        assert_eq!(r.planned_state, prior);
    }

    fn node(port: i64, role: &str, replicates_from: &str) -> Value {
        let mut n = Value::Object(BTreeMap::new());
        for (k, v) in [
            ("name", s("a-0")),
            ("host", s("127.0.1.1")),
            ("role", s(role)),
            ("state", s("running")),
            ("replicates_from", s(replicates_from)),
        ] {
            n.set_attr(k, v);
        }
        n.set_attr("port", Value::Number(crate::tfplug::Number::Int(port)));
        n
    }

    #[test]
    fn an_update_keeps_what_it_does_not_change_and_a_node_out_of_place_plans_a_repair() {
        let mut prior = applied();
        prior.set_attr("current_primary", s("127.0.1.1:7000"));
        prior.set_attr("read_replicas", Value::List(vec![s("r")]));
        prior.set_attr("sentinel_addresses", Value::List(vec![s("127.0.2.1:1")]));
        prior.set_attr(
            "nodes",
            Value::List(vec![node(7000, "primary", ""), node(7001, "replica", "127.0.1.1:7000")]),
        );
        let c = config(&[("name", s("a")), ("plan", s("startup-4")), ("region", s("local-1"))]);
        let mut proposed = prior.clone();
        proposed.set_attr("termination_protection", Value::Bool(true));
        let planned = plan_change(&block(), &prior, &proposed, &c).planned_state;
        for kept in [
            "nodes",
            "read_replicas",
            "sentinel_addresses",
            "role",
            "current_primary",
            "state",
        ] {
            assert_eq!(
                planned.attr(kept),
                prior.attr(kept),
                "{kept} should keep its prior value"
            );
        }
        assert_eq!(plan_change(&block(), &prior, &prior, &c).planned_state, prior);
        // A standby that became a second writable primary, or follows another node.
        for bad in [node(7001, "primary", ""), node(7001, "replica", "127.0.9.1:1")] {
            let mut drifted = prior.clone();
            drifted.set_attr("nodes", Value::List(vec![node(7000, "primary", ""), bad]));
            let planned = plan_change(&block(), &drifted, &drifted, &c).planned_state;
            assert!(
                planned.attr("nodes").is_unknown(),
                "a node out of place must plan a repair"
            );
        }
        // A hung node (role unknown) is left alone.
        let mut hung = prior.clone();
        hung.set_attr(
            "nodes",
            Value::List(vec![node(7000, "unknown", ""), node(7001, "replica", "127.0.1.1:7000")]),
        );
        assert_eq!(plan_change(&block(), &hung, &hung, &c).planned_state, hung);
    }

    #[test]
    fn stopped_sentinels_plan_their_restart_and_paused_ones_do_not() {
        let mut prior = applied();
        let c = config(&[("name", s("a")), ("plan", s("startup-4")), ("region", s("local-1"))]);
        prior.set_attr("sentinel_status", s("degraded"));
        let r = plan_change(&block(), &prior, &prior, &c);
        assert_eq!(r.planned_state.attr("sentinel_status"), &s("running"));
        prior.set_attr("sentinel_status", s("paused"));
        assert_eq!(plan_change(&block(), &prior, &prior, &c).planned_state, prior);
    }

    #[test]
    fn protected_service_cannot_be_planned_for_destroy() {
        let mut prior = applied();
        prior.set_attr("termination_protection", Value::Bool(true));
        let r = plan_change(&block(), &prior, &Value::Null, &Value::Null);
        assert!(r.diagnostics.has_errors());
        assert_eq!(r.diagnostics.0[0].path, Some(AttrPath::root("termination_protection")));
        assert!(
            !plan_change(&block(), &applied(), &Value::Null, &Value::Null)
                .diagnostics
                .has_errors()
        );
    }
}
