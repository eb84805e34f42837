//! valkey_user's plan-time rules: configuration checks and what a change plans. Pure.

use crate::catalog;
use crate::tfplug::plan::{fill_defaults, requires_replace};
use crate::tfplug::provider::PlanResponse;
use crate::tfplug::schema::Block;
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Value};
use crate::valkey::acl::{self, AccessRules};

use super::validate;

/// The access-rule attributes, in the order Valkey applies them.
pub const RULE_ATTRIBUTES: [&str; 4] = ["keys", "channels", "categories", "commands"];

/// A list-of-strings attribute; None while it or any element is unknown.
fn strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::List(items) => items.iter().map(|v| v.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

/// The access rules a configuration (or state) declares; None while any is unknown.
pub fn rules_of(value: &Value) -> Option<AccessRules> {
    Some(AccessRules {
        categories: strings(value.attr("categories"))?,
        commands: strings(value.attr("commands"))?,
        keys: strings(value.attr("keys"))?,
        channels: strings(value.attr("channels"))?,
    })
}

/// The `SERVICE/USERNAME` id of a user.
pub fn id_of(service: &str, username: &str) -> String {
    format!("{service}/{username}")
}

/// Checks every known value of a valkey_user configuration.
pub fn validate_config(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    validate::string(
        &mut d,
        config.attr("service"),
        AttrPath::root("service"),
        "service",
        validate::resource_name,
    );
    validate::string(&mut d, config.attr("cloud"), AttrPath::root("cloud"), "cloud", |c| {
        catalog::cloud(c).map(|_| ())
    });
    validate::string(
        &mut d,
        config.attr("username"),
        AttrPath::root("username"),
        "username",
        acl::check_username,
    );
    if let Some(rules) = rules_of(config) {
        for (attr, index, problem) in rules.problems() {
            let path = AttrPath::root(attr).index(i64::try_from(index).unwrap_or(i64::MAX));
            d.push(Diagnostic::error(format!("Invalid ACL rule in {attr}"), format!("{path}: {problem}.")).at(path));
        }
        if config.attr("username").as_str() == Some(acl::DEFAULT_USER) && !rules.is_empty() {
            d.push(
                Diagnostic::error(
                    "The default user's access cannot be narrowed",
                    "valkey_user \"default\" manages the password of the group's default user only: the provider \
                     administers the nodes as that user. Remove categories, commands, keys and channels, or create \
                     another user with those rules.",
                )
                .at(AttrPath::root("username")),
            );
        }
    }
    let length = |attr: &str, d: &mut Diagnostics| {
        if let Some(password) = config.attr(attr).as_str()
            && !(8..=256).contains(&password.chars().count())
        {
            d.push(
                Diagnostic::error(
                    format!("Invalid {attr}"),
                    format!("{attr} must be 8 to 256 characters; leave it unset to have one generated."),
                )
                .at(AttrPath::root(attr)),
            );
        }
    };
    length("password", &mut d);
    length("password_wo", &mut d);
    let wo = config.attr("password_wo");
    if !wo.is_null() && !config.attr("password").is_null() {
        d.push(
            Diagnostic::error(
                "Conflicting passwords",
                "set password or password_wo, not both: password_wo keeps the password out of state.",
            )
            .at(AttrPath::root("password")),
        );
    }
    if !wo.is_null() && config.attr("password_wo_version").is_null() {
        d.push(
            Diagnostic::error(
                "password_wo needs password_wo_version",
                "Terraform keeps no trace of password_wo, so it cannot see it change: set password_wo_version \
                 (to 1, say) and change it whenever you change password_wo.",
            )
            .at(AttrPath::root("password_wo_version")),
        );
    }
    d
}

/// What a create, update or destroy of a user plans.
pub fn plan_change(block: &Block, prior: &Value, proposed: &Value, config: &Value) -> PlanResponse {
    if proposed.is_null() {
        return PlanResponse::default();
    }
    let creating = prior.is_null();
    let mut planned = fill_defaults(block, config, proposed, creating);
    let id = match (config.attr("service").as_str(), config.attr("username").as_str()) {
        (Some(service), Some(username)) => Value::String(id_of(service, username)),
        _ => Value::Unknown,
    };
    planned.set_attr("id", id);
    let rules = rules_of(config).map_or(Value::Unknown, |r| Value::String(r.render()));
    planned.set_attr("acl_rules", rules);
    let write_only = !config.attr("password_wo").is_null();
    let given = config.attr("password");
    let generated_before = prior.attr("password").as_str().is_some_and(|p| !p.is_empty());
    let password = if write_only {
        Value::String(String::new())
    } else if !given.is_null() {
        given.clone()
    } else if creating || !generated_before {
        Value::Unknown
    } else {
        prior.attr("password").clone()
    };
    planned.set_attr("password", password);
    let requires_replace = requires_replace(block, prior, &planned);
    if !requires_replace.is_empty() && !write_only && given.is_null() {
        planned.set_attr("password", Value::Unknown);
    }
    PlanResponse {
        planned_state: planned,
        requires_replace,
        diagnostics: Diagnostics::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::acl_user::schema;
    use crate::tfplug::Number;
    use std::collections::BTreeMap;

    fn obj(pairs: &[(&str, Value)]) -> Value {
        let block = schema().unwrap().block;
        let mut map: BTreeMap<String, Value> = block.attributes.iter().map(|a| (a.name.clone(), Value::Null)).collect();
        for (k, v) in pairs {
            map.insert(k.to_string(), v.clone());
        }
        Value::Object(map)
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn list(items: &[&str]) -> Value {
        Value::List(items.iter().map(|i| s(i)).collect())
    }

    fn config(extra: &[(&str, Value)]) -> Value {
        let mut pairs = vec![("service", s("main")), ("username", s("app"))];
        pairs.extend_from_slice(extra);
        obj(&pairs)
    }

    #[test]
    fn a_create_plans_the_rules_and_a_generated_password() {
        let block = schema().unwrap().block;
        let c = config(&[("keys", list(&["app:*"])), ("categories", list(&["+@read"]))]);
        let r = plan_change(&block, &Value::Null, &c, &c);
        let p = r.planned_state;
        assert_eq!(p.attr("id"), &s("main/app"));
        assert_eq!(p.attr("acl_rules"), &s("~app:* +@read"));
        assert!(p.attr("password").is_unknown());
        assert_eq!(p.attr("cloud"), &s("local"));
    }

    #[test]
    fn a_write_only_password_plans_no_password_and_its_version_plans_the_update() {
        let block = schema().unwrap().block;
        let c = config(&[
            ("password_wo", s("secret-1")),
            ("password_wo_version", Value::Number(Number::Int(1))),
        ]);
        let created = plan_change(&block, &Value::Null, &c, &c).planned_state;
        assert_eq!(created.attr("password"), &s(""));
        let mut prior = block.without_write_only(&created);
        assert!(prior.attr("password_wo").is_null());
        let same = plan_change(&block, &prior, &c, &c).planned_state;
        assert_eq!(block.without_write_only(&same), prior);
        let bumped = config(&[
            ("password_wo", s("secret-2")),
            ("password_wo_version", Value::Number(Number::Int(2))),
        ]);
        let updated = plan_change(&block, &prior, &bumped, &bumped);
        assert!(updated.requires_replace.is_empty());
        assert_ne!(block.without_write_only(&updated.planned_state), prior);
        // Back to a generated password: a new one.
        prior.set_attr("password_wo_version", Value::Number(Number::Int(2)));
        let generated = plan_change(&block, &prior, &config(&[]), &config(&[])).planned_state;
        assert!(generated.attr("password").is_unknown());
        // A password of yours is planned as given, and a new one is an update.
        let own = config(&[("password", s("my-own-password"))]);
        let planned = plan_change(&block, &prior, &own, &own).planned_state;
        assert_eq!(planned.attr("password"), &s("my-own-password"));
    }

    #[test]
    fn drift_in_acl_rules_plans_the_rules_back_and_a_new_username_replaces() {
        let block = schema().unwrap().block;
        let c = config(&[("commands", list(&["+get"]))]);
        let mut prior = plan_change(&block, &Value::Null, &c, &c).planned_state;
        prior.set_attr("password", s("generated"));
        let same = plan_change(&block, &prior, &c, &c).planned_state;
        assert_eq!(same, prior);
        prior.set_attr("acl_rules", s("differs on main-1: user app on +get +flushall"));
        let repair = plan_change(&block, &prior, &c, &c).planned_state;
        assert_eq!(repair.attr("acl_rules"), &s("+get"));
        assert_eq!(repair.attr("password"), &s("generated"));
        let renamed = config(&[("username", s("other"))]);
        let r = plan_change(&block, &prior, &renamed, &renamed);
        assert_eq!(r.requires_replace.len(), 1);
        assert!(r.planned_state.attr("password").is_unknown());
    }

    #[test]
    fn bad_rules_and_a_narrowed_default_user_are_refused_at_their_attribute() {
        let c = config(&[
            ("commands", list(&["get"])),
            ("password_wo", s("x")),
            ("password", s("long-enough")),
        ]);
        let d = validate_config(&c);
        let paths: Vec<String> = d.0.iter().map(|d| d.path.as_ref().unwrap().to_string()).collect();
        assert_eq!(paths, ["commands[0]", "password_wo", "password", "password_wo_version"]);
        let default = obj(&[
            ("service", s("main")),
            ("username", s("default")),
            ("keys", list(&["*"])),
        ]);
        let d = validate_config(&default);
        assert!(d.0[0].summary.contains("default user"), "{:?}", d.0);
        assert!(
            validate_config(&config(&[("categories", list(&["+@all"]))]))
                .0
                .is_empty()
        );
    }
}
