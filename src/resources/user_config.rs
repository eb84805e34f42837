//! The user config block: defaults, how it maps to a record, and how nodes' live settings read
//! back as the block (drift).

use std::collections::HashMap;

use super::common_model::UserConfigModel;
use crate::runtime::UserConfigValues;
use crate::tfplug::{Number, Value};

/// The block's name in both resources' schemas.
pub const BLOCK: &str = "valkey_user_config";

/// The settings read back from nodes for drift detection.
pub const DRIFT_SETTINGS: &[&str] = &[
    "maxmemory-policy",
    "timeout",
    "save",
    "io-threads",
    "repl-timeout",
    "notify-keyspace-events",
    "databases",
    "lfu-log-factor",
    "lfu-decay-time",
    "active-expire-effort",
    "activedefrag",
    "client-output-buffer-limit",
    "acl-pubsub-default",
    "repl-backlog-size",
    "rdbcompression",
];

const MIB: i64 = 1024 * 1024;

/// The settings a user config asks for, defaults filled in.
pub fn effective_user_config(model: Option<&UserConfigModel>) -> UserConfigValues {
    let d = UserConfigValues::default();
    let Some(m) = model else { return d };
    UserConfigValues {
        maxmemory_policy: m.maxmemory_policy.clone().unwrap_or(d.maxmemory_policy),
        timeout: m.timeout.unwrap_or(d.timeout),
        persistence: m.persistence.clone().unwrap_or(d.persistence),
        io_threads: m.io_threads.unwrap_or(d.io_threads),
        repl_timeout: m.repl_timeout.unwrap_or(d.repl_timeout),
        notify_keyspace_events: m.notify_keyspace_events.clone().unwrap_or(d.notify_keyspace_events),
        number_of_databases: m.number_of_databases.unwrap_or(d.number_of_databases),
        lfu_log_factor: m.lfu_log_factor.unwrap_or(d.lfu_log_factor),
        lfu_decay_time: m.lfu_decay_time.unwrap_or(d.lfu_decay_time),
        active_expire_effort: m.active_expire_effort.unwrap_or(d.active_expire_effort),
        activedefrag: m.activedefrag.unwrap_or(d.activedefrag),
        pubsub_client_output_buffer_limit: m
            .pubsub_client_output_buffer_limit
            .unwrap_or(d.pubsub_client_output_buffer_limit),
        acl_channels_default: m.acl_channels_default.clone().unwrap_or(d.acl_channels_default),
        repl_backlog_size: m
            .repl_backlog_size
            .or_else(|| declared_backlog(m))
            .unwrap_or(d.repl_backlog_size),
        rdb_compression: m.rdb_compression.unwrap_or(d.rdb_compression),
        expected_write_kib_per_second: m.expected_write_kib_per_second,
        longest_link_outage_seconds: m.longest_link_outage_seconds,
    }
}

/// The backlog, MiB, that holds `seconds` of writes at `kib_per_second`, with a quarter more
/// for bursts: what a declared write rate and longest outage ask for.
pub fn backlog_for(kib_per_second: i64, seconds: i64) -> i64 {
    let kib = kib_per_second.saturating_mul(seconds).saturating_mul(5) / 4;
    kib.saturating_add(1023) / 1024
}

/// The backlog a block's declared write rate and outage ask for, when it declares both.
fn declared_backlog(m: &UserConfigModel) -> Option<i64> {
    Some(backlog_for(
        m.expected_write_kib_per_second?,
        m.longest_link_outage_seconds?,
    ))
}

/// The plan's `repl_backlog_size` when the configuration sizes it from a write rate and an
/// outage instead of giving it (unknown while either is).
pub fn plan_declared_backlog(planned: &mut Value, config: &Value) {
    let declared = config.attr(BLOCK);
    if !declared.attr("repl_backlog_size").is_null() {
        return;
    }
    let (rate, outage) = (
        declared.attr("expected_write_kib_per_second"),
        declared.attr("longest_link_outage_seconds"),
    );
    let size = match (rate.as_i64(), outage.as_i64()) {
        (Some(rate), Some(outage)) => Value::Number(Number::Int(backlog_for(rate, outage))),
        _ if rate.is_unknown() || outage.is_unknown() => Value::Unknown,
        _ => return,
    };
    let mut block = planned.attr(BLOCK).clone();
    if matches!(block, Value::Object(_)) {
        block.set_attr("repl_backlog_size", size);
        planned.set_attr(BLOCK, block);
    }
}

/// A record's user config as the model's block.
pub fn user_config_model(values: &UserConfigValues) -> UserConfigModel {
    UserConfigModel {
        maxmemory_policy: Some(values.maxmemory_policy.clone()),
        timeout: Some(values.timeout),
        persistence: Some(values.persistence.clone()),
        io_threads: Some(values.io_threads),
        repl_timeout: Some(values.repl_timeout),
        notify_keyspace_events: Some(values.notify_keyspace_events.clone()),
        number_of_databases: Some(values.number_of_databases),
        lfu_log_factor: Some(values.lfu_log_factor),
        lfu_decay_time: Some(values.lfu_decay_time),
        active_expire_effort: Some(values.active_expire_effort),
        activedefrag: Some(values.activedefrag),
        pubsub_client_output_buffer_limit: Some(values.pubsub_client_output_buffer_limit),
        acl_channels_default: Some(values.acl_channels_default.clone()),
        repl_backlog_size: Some(values.repl_backlog_size),
        rdb_compression: Some(values.rdb_compression),
        expected_write_kib_per_second: values.expected_write_kib_per_second,
        longest_link_outage_seconds: values.longest_link_outage_seconds,
    }
}

/// The settings beyond the node engine's own that CONFIG SET changes on a running node, as
/// valkey-server names them.
pub fn runtime_settings(values: &UserConfigValues) -> Vec<(&'static str, String)> {
    let hard = values.pubsub_client_output_buffer_limit;
    vec![
        ("notify-keyspace-events", values.notify_keyspace_events.clone()),
        ("lfu-log-factor", values.lfu_log_factor.to_string()),
        ("lfu-decay-time", values.lfu_decay_time.to_string()),
        ("active-expire-effort", values.active_expire_effort.to_string()),
        ("activedefrag", yes_no(values.activedefrag)),
        (
            "client-output-buffer-limit",
            format!("pubsub {}mb {}mb 60", hard, hard / 4),
        ),
        ("acl-pubsub-default", values.acl_channels_default.clone()),
        ("repl-backlog-size", format!("{}mb", values.repl_backlog_size)),
        ("rdbcompression", yes_no(values.rdb_compression)),
    ]
}

fn yes_no(on: bool) -> String {
    if on { "yes" } else { "no" }.to_string()
}

/// The block an import puts in state: absent when every setting is at its default, so a
/// configuration without the block plans no change after an import.
pub fn imported_user_config(values: &UserConfigValues) -> Option<UserConfigModel> {
    (*values != UserConfigValues::default()).then(|| user_config_model(values))
}

/// Keyspace event flags as a set: Valkey reorders them, and `A` stands for `g$lshzxetd`.
fn event_classes(flags: &str) -> std::collections::BTreeSet<char> {
    flags.replace('A', "g$lshzxetd").chars().collect()
}

/// The pub/sub hard limit, MiB, in a `client-output-buffer-limit` value.
fn pubsub_limit_mb(value: &str) -> Option<i64> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "pubsub")?;
    words.get(at + 1)?.parse::<i64>().ok().map(|bytes| bytes / MIB)
}

/// The user config a node reports, for drift detection.
pub fn live_user_config(settings: &HashMap<String, String>, fallback: &UserConfigModel) -> UserConfigModel {
    let get = |k: &str| settings.get(k).cloned();
    let number = |k: &str| get(k).and_then(|t| t.parse::<i64>().ok());
    let events = get("notify-keyspace-events").map(|live| match &fallback.notify_keyspace_events {
        Some(declared) if event_classes(declared) == event_classes(&live) => declared.clone(),
        _ => live,
    });
    UserConfigModel {
        maxmemory_policy: get("maxmemory-policy").or_else(|| fallback.maxmemory_policy.clone()),
        timeout: number("timeout").or(fallback.timeout),
        persistence: get("save")
            .map(|s| {
                if s.trim().is_empty() {
                    "off".to_string()
                } else {
                    "rdb".to_string()
                }
            })
            .or_else(|| fallback.persistence.clone()),
        io_threads: number("io-threads").or(fallback.io_threads),
        repl_timeout: number("repl-timeout").or(fallback.repl_timeout),
        notify_keyspace_events: events.or_else(|| fallback.notify_keyspace_events.clone()),
        number_of_databases: number("databases").or(fallback.number_of_databases),
        lfu_log_factor: number("lfu-log-factor").or(fallback.lfu_log_factor),
        lfu_decay_time: number("lfu-decay-time").or(fallback.lfu_decay_time),
        active_expire_effort: number("active-expire-effort").or(fallback.active_expire_effort),
        activedefrag: get("activedefrag").map(|v| v == "yes").or(fallback.activedefrag),
        pubsub_client_output_buffer_limit: get("client-output-buffer-limit")
            .and_then(|v| pubsub_limit_mb(&v))
            .or(fallback.pubsub_client_output_buffer_limit),
        acl_channels_default: get("acl-pubsub-default").or_else(|| fallback.acl_channels_default.clone()),
        repl_backlog_size: number("repl-backlog-size")
            .map(|bytes| bytes / MIB)
            .or(fallback.repl_backlog_size),
        rdb_compression: get("rdbcompression").map(|v| v == "yes").or(fallback.rdb_compression),
        // What the user expects, not a node setting: as declared.
        expected_write_kib_per_second: fallback.expected_write_kib_per_second,
        longest_link_outage_seconds: fallback.longest_link_outage_seconds,
    }
}

/// The declared user config block, overlaid with what the nodes report: the first node that
/// answers with a setting other than the declared one shows it (a standby changed out of band
/// is drift as much as the first node). A setting the block leaves unset is compared at its
/// default. `reported` holds the settings of each node that answered.
pub fn observed_user_config(
    declared: Option<&UserConfigModel>,
    reported: &[&HashMap<String, String>],
) -> Option<UserConfigModel> {
    let declared = declared?;
    let complete = user_config_model(&effective_user_config(Some(declared)));
    let drifted = reported
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| live_user_config(s, &complete))
        .find(|live| *live != complete);
    Some(match drifted {
        // Settings the block leaves unset stay unset in state unless they drifted.
        Some(live) => keep_unset(declared, &complete, live),
        None => declared.clone(),
    })
}

/// `live` with each setting that `declared` leaves unset and that is at its default (in
/// `complete`) unset again, so only real drift shows in the plan.
fn keep_unset(declared: &UserConfigModel, complete: &UserConfigModel, live: UserConfigModel) -> UserConfigModel {
    let to_json = |m: &UserConfigModel| serde_json::to_value(m).unwrap_or_default();
    let (declared_json, complete_json, mut live_json) = (to_json(declared), to_json(complete), to_json(&live));
    if let Some(fields) = live_json.as_object_mut() {
        for (name, value) in fields.iter_mut() {
            if declared_json[name].is_null() && *value == complete_json[name] {
                *value = serde_json::Value::Null;
            }
        }
    }
    serde_json::from_value(live_json).unwrap_or(live)
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
        assert_eq!(effective_user_config(Some(&user_config_model(&eff))), eff);
    }

    #[test]
    fn a_declared_rate_and_outage_size_the_backlog_with_a_quarter_more() {
        // 1 MiB/s for 60 s is 60 MiB, plus a quarter: 75 MiB.
        assert_eq!(backlog_for(1024, 60), 75);
        assert_eq!(backlog_for(1, 1), 1);
        let declared = UserConfigModel {
            expected_write_kib_per_second: Some(512),
            longest_link_outage_seconds: Some(60),
            ..Default::default()
        };
        let values = effective_user_config(Some(&declared));
        assert_eq!(values.repl_backlog_size, 38);
        // The record keeps the declaration; the block reads back with both and the size.
        let block = user_config_model(&values);
        assert_eq!(
            (block.expected_write_kib_per_second, block.repl_backlog_size),
            (Some(512), Some(38))
        );
        assert_eq!(
            user_config_model(&UserConfigValues::default()).expected_write_kib_per_second,
            None
        );
    }

    #[test]
    fn live_settings_translate_back_to_user_config() {
        let settings = HashMap::from([
            ("maxmemory-policy".to_string(), "allkeys-lru".to_string()),
            ("save".to_string(), "".to_string()),
            ("timeout".to_string(), "10".to_string()),
            ("io-threads".to_string(), "2".to_string()),
            ("repl-timeout".to_string(), "7".to_string()),
        ]);
        let live = live_user_config(&settings, &UserConfigModel::default());
        assert_eq!(live.maxmemory_policy.as_deref(), Some("allkeys-lru"));
        assert_eq!(live.persistence.as_deref(), Some("off"));
        assert_eq!(
            (live.timeout, live.io_threads, live.repl_timeout),
            (Some(10), Some(2), Some(7))
        );
    }

    #[test]
    fn a_setting_changed_on_any_node_shows_as_drift() {
        let declared = UserConfigModel {
            maxmemory_policy: Some("noeviction".into()),
            timeout: Some(300),
            persistence: Some("rdb".into()),
            io_threads: Some(1),
            repl_timeout: Some(60),
            ..Default::default()
        };
        let node = |policy: &str| {
            HashMap::from([
                ("maxmemory-policy".to_string(), policy.to_string()),
                ("timeout".to_string(), "300".to_string()),
                ("save".to_string(), "3600 1".to_string()),
                ("io-threads".to_string(), "1".to_string()),
                ("repl-timeout".to_string(), "60".to_string()),
            ])
        };
        let (same_policy, other_policy) = (node("noeviction"), node("allkeys-lru"));
        let same = observed_user_config(Some(&declared), &[&same_policy, &same_policy]);
        assert_eq!(same.as_ref(), Some(&declared));
        let standby_drifted = observed_user_config(Some(&declared), &[&same_policy, &other_policy]);
        assert_eq!(
            standby_drifted.unwrap().maxmemory_policy.as_deref(),
            Some("allkeys-lru")
        );
        assert_eq!(observed_user_config(None, &[&other_policy]), None);
    }

    #[test]
    fn new_settings_read_back_as_declared_though_valkey_rewrites_them() {
        let declared = user_config_model(&UserConfigValues {
            notify_keyspace_events: "Ex".into(),
            pubsub_client_output_buffer_limit: 64,
            repl_backlog_size: 128,
            activedefrag: false,
            ..Default::default()
        });
        let settings = HashMap::from([
            ("notify-keyspace-events".to_string(), "xE".to_string()),
            (
                "client-output-buffer-limit".to_string(),
                "normal 0 0 0 slave 268435456 67108864 60 pubsub 67108864 16777216 60".to_string(),
            ),
            ("repl-backlog-size".to_string(), (128 * MIB).to_string()),
            ("activedefrag".to_string(), "no".to_string()),
            ("acl-pubsub-default".to_string(), "resetchannels".to_string()),
            ("databases".to_string(), "16".to_string()),
        ]);
        assert_eq!(live_user_config(&settings, &declared), declared);
        let mut changed = settings.clone();
        changed.insert("notify-keyspace-events".into(), "AK".into());
        let live = live_user_config(&changed, &declared);
        assert_eq!(live.notify_keyspace_events.as_deref(), Some("AK"));
        assert_eq!(event_classes("AK"), event_classes("Kg$lshzxetd"));
        let rendered = runtime_settings(&effective_user_config(Some(&declared)));
        assert!(rendered.contains(&("client-output-buffer-limit", "pubsub 64mb 16mb 60".to_string())));
        assert!(rendered.contains(&("repl-backlog-size", "128mb".to_string())));
    }

    #[test]
    fn a_block_that_leaves_a_setting_unset_shows_it_only_when_it_drifted() {
        let declared = UserConfigModel {
            timeout: Some(0),
            ..Default::default()
        };
        let at_defaults: HashMap<String, String> = HashMap::from([
            ("timeout".to_string(), "0".to_string()),
            ("lfu-log-factor".to_string(), "10".to_string()),
        ]);
        assert_eq!(
            observed_user_config(Some(&declared), &[&at_defaults]),
            Some(declared.clone())
        );
        let mut drifted = at_defaults.clone();
        drifted.insert("lfu-log-factor".into(), "30".into());
        let seen = observed_user_config(Some(&declared), &[&drifted]).unwrap();
        assert_eq!(
            (seen.timeout, seen.lfu_log_factor, seen.repl_timeout),
            (Some(0), Some(30), None)
        );
    }
}
