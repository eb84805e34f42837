//! Checks of single attributes that produce diagnostics pinned to the attribute. Unknown and
//! null values are skipped here: unknown ones are checked again at apply, when known.

use std::time::Duration;

use super::user_config::BLOCK;
use crate::catalog;
use crate::runtime::RegionNames;
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics, Value};

/// Checks a string attribute with `check`, reporting "Invalid <label>" at `path`.
pub fn string(
    diags: &mut Diagnostics,
    value: &Value,
    path: AttrPath,
    label: &str,
    check: impl FnOnce(&str) -> Result<(), String>,
) {
    if let Some(s) = value.as_str()
        && let Err(message) = check(s)
    {
        diags.push(Diagnostic::error(format!("Invalid {label}"), format!("{path}: {message}.")).at(path));
    }
}

/// Checks a whole-number attribute against an inclusive range.
pub fn integer(diags: &mut Diagnostics, value: &Value, path: AttrPath, label: &str, range: (i64, i64)) {
    if let Value::Number(n) = value {
        let result = match n.as_i64() {
            Some(i) => catalog::in_range(i, range),
            None => Err(format!("{n:?} is not a whole number")),
        };
        if let Err(message) = result {
            diags.push(Diagnostic::error(format!("Invalid {label}"), format!("{path}: {message}.")).at(path));
        }
    }
}

/// The checks services and replicas share: name, plan (with the resource's own rule), cloud,
/// user config block, timeouts.
pub fn common(diags: &mut Diagnostics, config: &Value, plan_rule: fn(&str) -> Result<(), String>) {
    string(
        diags,
        config.attr("name"),
        AttrPath::root("name"),
        "name",
        resource_name,
    );
    string(diags, config.attr("plan"), AttrPath::root("plan"), "plan", plan_rule);
    string(diags, config.attr("cloud"), AttrPath::root("cloud"), "cloud", |c| {
        catalog::cloud(c).map(|_| ())
    });
    user_config(diags, config);
    timeouts(diags, config);
}

/// The valkey_user_config block shared by services and replicas.
pub fn user_config(diags: &mut Diagnostics, config: &Value) {
    let uc = config.attr(BLOCK);
    let at = |name: &str| AttrPath::root(BLOCK).attr(name);
    string(
        diags,
        uc.attr("maxmemory_policy"),
        at("maxmemory_policy"),
        "maxmemory_policy",
        catalog::maxmemory_policy,
    );
    string(
        diags,
        uc.attr("persistence"),
        at("persistence"),
        "persistence",
        catalog::persistence,
    );
    integer(
        diags,
        uc.attr("timeout"),
        at("timeout"),
        "timeout",
        catalog::CLIENT_TIMEOUT_RANGE,
    );
    integer(
        diags,
        uc.attr("io_threads"),
        at("io_threads"),
        "io_threads",
        catalog::IO_THREADS_RANGE,
    );
    integer(
        diags,
        uc.attr("repl_timeout"),
        at("repl_timeout"),
        "repl_timeout",
        catalog::REPL_TIMEOUT_RANGE,
    );
    string(
        diags,
        uc.attr("notify_keyspace_events"),
        at("notify_keyspace_events"),
        "notify_keyspace_events",
        catalog::keyspace_events,
    );
    string(
        diags,
        uc.attr("acl_channels_default"),
        at("acl_channels_default"),
        "acl_channels_default",
        catalog::acl_channels_default,
    );
    let ranges = [
        ("number_of_databases", catalog::DATABASES_RANGE),
        ("lfu_log_factor", catalog::LFU_LOG_FACTOR_RANGE),
        ("lfu_decay_time", catalog::LFU_DECAY_TIME_RANGE),
        ("active_expire_effort", catalog::ACTIVE_EXPIRE_EFFORT_RANGE),
        (
            "pubsub_client_output_buffer_limit",
            catalog::PUBSUB_BUFFER_LIMIT_MB_RANGE,
        ),
        ("expected_write_kib_per_second", catalog::WRITE_RATE_KIB_RANGE),
        ("longest_link_outage_seconds", catalog::LINK_OUTAGE_SECONDS_RANGE),
    ];
    for (name, range) in ranges {
        integer(diags, uc.attr(name), at(name), name, range);
    }
    repl_backlog_size(diags, config, uc.attr("repl_backlog_size"), at("repl_backlog_size"));
    declared_backlog(diags, config, uc, at);
}

/// The backlog sized from a write rate and an outage: both given, no `repl_backlog_size`
/// beside them, and the size they ask for within the plan's limit.
fn declared_backlog(diags: &mut Diagnostics, config: &Value, uc: &Value, at: impl Fn(&str) -> AttrPath) {
    let (rate_name, outage_name) = ("expected_write_kib_per_second", "longest_link_outage_seconds");
    let (rate, outage) = (uc.attr(rate_name), uc.attr(outage_name));
    if rate.is_null() && outage.is_null() {
        return;
    }
    if rate.is_null() != outage.is_null() {
        let (given, missing) = if rate.is_null() {
            (outage_name, rate_name)
        } else {
            (rate_name, outage_name)
        };
        let detail = format!(
            "{}: the backlog is sized from a write rate and an outage together; set {missing} as well, or \
             remove {given}",
            at(given)
        );
        diags.push(Diagnostic::error(format!("Missing {missing}"), detail).at(at(given)));
        return;
    }
    if !uc.attr("repl_backlog_size").is_null() {
        let detail = format!(
            "{}: set either repl_backlog_size or {rate_name} with {outage_name}, which size it, not both",
            at("repl_backlog_size")
        );
        diags.push(Diagnostic::error("Conflicting backlog settings", detail).at(at("repl_backlog_size")));
        return;
    }
    let (Some(kib), Some(seconds)) = (rate.as_i64(), outage.as_i64()) else {
        return;
    };
    let size = super::user_config::backlog_for(kib, seconds);
    let Some(plan) = config.attr("plan").as_str().and_then(|p| catalog::plan(p).ok()) else {
        return;
    };
    let most = catalog::max_repl_backlog_mb(plan);
    if size > most {
        let detail = format!(
            "{}: {seconds} s of writes at {kib} KiB/s, with a quarter more for bursts, needs a backlog of {size} MiB; \
             plan {:?} keeps at most {most} MiB (a quarter of its memory). Declare a shorter outage or a lower rate, \
             or use a bigger plan",
            at(outage_name),
            plan.name
        );
        diags.push(Diagnostic::error("Backlog too large for the plan", detail).at(at(outage_name)));
    }
}

/// The backlog against what the configured plan allows (the largest plan's limit while the
/// plan is not known yet).
fn repl_backlog_size(diags: &mut Diagnostics, config: &Value, value: &Value, path: AttrPath) {
    let plan = config.attr("plan").as_str().and_then(|p| catalog::plan(p).ok());
    let most = match plan {
        Some(plan) => catalog::max_repl_backlog_mb(plan),
        None => catalog::PLANS
            .iter()
            .map(catalog::max_repl_backlog_mb)
            .max()
            .unwrap_or(1),
    };
    let Some(size) = value.as_i64() else {
        // Not a whole number (or null): the general check says so.
        integer(diags, value, path, "repl_backlog_size", (1, most));
        return;
    };
    if (1..=most).contains(&size) {
        return;
    }
    let detail = match plan {
        Some(plan) => format!(
            "{path}: {size} MiB is not allowed on plan {:?}, whose nodes may keep from 1 MiB to a quarter of their \
             memory ({most} MiB) as backlog; use at most {most}, or a bigger plan",
            plan.name
        ),
        None => format!("{path}: {size} MiB is out of range; use 1 to {most}, within a quarter of the plan's memory"),
    };
    diags.push(Diagnostic::error("Invalid repl_backlog_size", detail).at(path));
}

/// What a change of the user config block cannot do to an existing service or replica: shrink
/// `number_of_databases` (keys in the dropped databases would be lost).
pub fn user_config_change(diags: &mut Diagnostics, prior: &Value, config: &Value) {
    let name = "number_of_databases";
    let was = prior
        .attr(BLOCK)
        .attr(name)
        .as_i64()
        .unwrap_or(catalog::DEFAULT_DATABASES);
    let wanted = config.attr(BLOCK).attr(name);
    let is = match wanted {
        Value::Unknown => return,
        Value::Null => catalog::DEFAULT_DATABASES,
        v => v.as_i64().unwrap_or(was),
    };
    if is < was {
        diags.push(
            Diagnostic::error(
                "number_of_databases cannot shrink",
                format!(
                    "valkey_user_config.number_of_databases: {is} is fewer than the {was} the nodes have; keys in \
                     databases {is} to {} would be lost. Keep {was} or more, or move the data and create a new service.",
                    was - 1
                ),
            )
            .at(AttrPath::root(BLOCK).attr(name)),
        );
    }
}

/// The timeouts block: each duration must parse.
pub fn timeouts(diags: &mut Diagnostics, config: &Value) {
    for op in ["create", "update", "delete"] {
        let path = AttrPath::root("timeouts").attr(op);
        string(diags, config.attr("timeouts").attr(op), path, "timeout", |t| {
            duration(t).map(|_| ())
        });
    }
}

/// The region, against the regions the resource's cloud offers.
pub fn region(diags: &mut Diagnostics, config: &Value, regions: &RegionNames) {
    string(diags, config.attr("region"), AttrPath::root("region"), "region", |r| {
        regions.check(r)
    });
}

/// The cloud a resource's value names: its `cloud`, `local` when unset or not known yet.
pub fn cloud_of(value: &Value) -> &str {
    value.attr("cloud").as_str().unwrap_or(catalog::LOCAL_CLOUD)
}

/// Service and replica names become directory names and node names, so they are kept to a
/// safe alphabet: no path separators, no dots, nothing that could leave the directory or object a runtime names after them.
pub fn resource_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if name.is_empty()
        || name.len() > catalog::MAX_SERVICE_NAME_LEN
        || !valid_chars
        || !starts_with_letter
        || name.ends_with('-')
    {
        return Err(format!(
            "{name:?} is not a valid name; use 1 to {} lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen",
            catalog::MAX_SERVICE_NAME_LEN
        ));
    }
    Ok(())
}

/// Parses a Terraform-style duration ("30s", "10m", "1h30m"), from 1s to a day.
pub fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration; write it like \"30s\", \"10m\" or \"1h30m\"");
    let too_long = || format!("{text:?} is longer than the limit of 24h");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let amount: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let seconds = match &rest[digits..digits + unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        total = amount
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(Duration::from_secs(s)))
            .filter(|t| *t <= catalog::MAX_OPERATION_TIMEOUT)
            .ok_or_else(too_long)?;
        rest = &rest[digits + unit_len..];
    }
    if total.is_zero() {
        return Err(format!("{text:?} is no time at all; give at least \"1s\""));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_a_directory_or_hold_odd_characters() {
        for bad in [
            "",
            "../etc",
            "a/b",
            "A",
            "1abc",
            "abc-",
            "a.b",
            "名前",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(resource_name(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["a", "primary-eu", "cache-01", &"a".repeat(63)] {
            assert!(resource_name(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn durations_parse_like_terraform_timeouts() {
        assert_eq!(duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("24h").unwrap(), Duration::from_secs(86_400));
        for bad in ["", "10", "5 minutes", "m", "-1m", "1d", "0s", "0h0m", "５m", "1h0"] {
            assert!(duration(bad).is_err(), "{bad:?} should be refused");
        }
        // Sums that overflow are refused, not a panic.
        let huge = format!("{0}s{0}s", u64::MAX);
        for too_long in ["25h", "24h1s", "99999999999999999999h", huge.as_str()] {
            assert!(duration(too_long).unwrap_err().contains("limit of 24h"), "{too_long}");
        }
    }

    #[test]
    fn diagnostics_name_the_attribute_and_skip_unknowns() {
        let mut d = Diagnostics::new();
        string(
            &mut d,
            &Value::String("x".into()),
            AttrPath::root("plan"),
            "plan",
            |p| catalog::plan(p).map(|_| ()),
        );
        string(&mut d, &Value::Unknown, AttrPath::root("plan"), "plan", |_| {
            Err("never".into())
        });
        integer(
            &mut d,
            &Value::Number(crate::tfplug::Number::Int(99)),
            AttrPath::root("c").attr("io_threads"),
            "io_threads",
            (1, 16),
        );
        assert_eq!(d.0.len(), 2);
        assert_eq!(d.0[0].summary, "Invalid plan");
        assert!(d.0[1].detail.starts_with("c.io_threads: 99 is out of range"));
    }

    fn backlog_config(settings: &[(&str, i64)]) -> Value {
        let number = |v: i64| Value::Number(crate::tfplug::Number::Int(v));
        let block = Value::Object(settings.iter().map(|(k, v)| (k.to_string(), number(*v))).collect());
        Value::Object(
            [
                ("plan".to_string(), Value::String("startup-4".into())),
                (BLOCK.to_string(), block),
            ]
            .into_iter()
            .collect(),
        )
    }

    fn backlog_problems(settings: &[(&str, i64)]) -> Vec<String> {
        let config = backlog_config(settings);
        let mut d = Diagnostics::new();
        declared_backlog(&mut d, &config, config.attr(BLOCK), |name| {
            AttrPath::root(BLOCK).attr(name)
        });
        d.0.iter().map(|d| format!("{}: {}", d.summary, d.detail)).collect()
    }

    #[test]
    fn a_declared_backlog_needs_both_halves_no_explicit_size_and_room_in_the_plan() {
        let (rate, outage) = ("expected_write_kib_per_second", "longest_link_outage_seconds");
        assert!(backlog_problems(&[(rate, 1024), (outage, 60)]).is_empty());
        let missing = backlog_problems(&[(rate, 1024)]);
        assert!(
            missing[0].contains("set longest_link_outage_seconds as well"),
            "{missing:?}"
        );
        let both = backlog_problems(&[(rate, 1024), (outage, 60), ("repl_backlog_size", 64)]);
        assert!(both[0].starts_with("Conflicting backlog settings"), "{both:?}");
        // 1 GiB/s for an hour is far beyond a quarter of 4 GiB.
        let large = backlog_problems(&[(rate, 1024 * 1024), (outage, 3600)]);
        assert!(
            large[0].contains("needs a backlog of 4608000 MiB") && large[0].contains("at most 1024 MiB"),
            "{large:?}"
        );
    }
}
