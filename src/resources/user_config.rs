//! The user config block: defaults, how it maps to a record, and how nodes' live settings read
//! back as the block (drift).

use std::collections::HashMap;

use super::common_model::UserConfigModel;
use crate::runtime::UserConfigValues;

/// The settings read back from nodes for drift detection.
pub const DRIFT_SETTINGS: &[&str] = &["maxmemory-policy", "timeout", "save", "io-threads", "repl-timeout"];

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
    }
}

/// The block an import puts in state: absent when every setting is at its default, so a
/// configuration without the block plans no change after an import.
pub fn imported_user_config(values: &UserConfigValues) -> Option<UserConfigModel> {
    (*values != UserConfigValues::default()).then(|| user_config_model(values))
}

/// The user config a node reports, for drift detection.
pub fn live_user_config(settings: &HashMap<String, String>, fallback: &UserConfigModel) -> UserConfigModel {
    let get = |k: &str| settings.get(k).cloned();
    UserConfigModel {
        maxmemory_policy: get("maxmemory-policy").or_else(|| fallback.maxmemory_policy.clone()),
        timeout: get("timeout").and_then(|t| t.parse().ok()).or(fallback.timeout),
        persistence: get("save")
            .map(|s| {
                if s.trim().is_empty() {
                    "off".to_string()
                } else {
                    "rdb".to_string()
                }
            })
            .or_else(|| fallback.persistence.clone()),
        io_threads: get("io-threads").and_then(|t| t.parse().ok()).or(fallback.io_threads),
        repl_timeout: get("repl-timeout")
            .and_then(|t| t.parse().ok())
            .or(fallback.repl_timeout),
    }
}

/// The declared user config block, overlaid with what the nodes report: the first node that
/// answers with a setting other than the declared one shows it (a standby changed out of band
/// is drift as much as the first node).
/// `reported` holds the settings of each node that answered.
pub fn observed_user_config(
    declared: Option<&UserConfigModel>,
    reported: &[&HashMap<String, String>],
) -> Option<UserConfigModel> {
    let declared = declared?;
    let drifted = reported
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| live_user_config(s, declared))
        .find(|live| live != declared);
    Some(drifted.unwrap_or_else(|| declared.clone()))
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
}
