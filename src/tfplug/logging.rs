//! Logs as hclog JSON lines on stderr, the form go-plugin parses and Terraform shows under
//! TF_LOG: `{"@level":"info","@message":"...","@timestamp":"...","@module":"...",...}`.
//! The level comes from TF_LOG_PROVIDER, else TF_LOG; warnings and errors otherwise.

use std::io::Write;

use serde_json::{Map, Value as Json};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// Maps a TF_LOG value to a level filter; `JSON` is Terraform's "trace, as JSON".
pub fn level_from_env_value(value: Option<&str>) -> LevelFilter {
    match value.map(|v| v.trim().to_ascii_uppercase()).as_deref() {
        Some("TRACE" | "JSON") => LevelFilter::TRACE,
        Some("DEBUG") => LevelFilter::DEBUG,
        Some("INFO") => LevelFilter::INFO,
        Some("WARN") => LevelFilter::WARN,
        Some("ERROR") => LevelFilter::ERROR,
        Some("OFF") => LevelFilter::OFF,
        _ => LevelFilter::WARN,
    }
}

/// Installs the stderr JSON logger for the whole process.
pub fn init() {
    let value = std::env::var("TF_LOG_PROVIDER")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| std::env::var("TF_LOG").ok());
    let filter = level_from_env_value(value.as_deref());
    let subscriber = Registry::default().with(HclogLayer.with_filter(filter));
    let _ = tracing::subscriber::set_global_default(subscriber);
    // A panic becomes one log line, never a Rust backtrace in front of the user.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, "internal error (please report it): {message}");
    }));
}

struct HclogLayer;

#[derive(Default)]
struct Fields(Map<String, Json>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), Json::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Json::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Json::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Json::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Json::from(value));
    }
}

/// One hclog JSON line (without the newline) for an event's level, target and fields.
pub fn format_line(level: &Level, target: &str, mut fields: Map<String, Json>) -> String {
    let message = fields.remove("message").unwrap_or(Json::String(String::new()));
    let mut line = Map::new();
    line.insert("@level".into(), Json::String(level.as_str().to_ascii_lowercase()));
    line.insert("@message".into(), message);
    line.insert(
        "@module".into(),
        Json::String(format!("valkey.{}", target.replace("::", "."))),
    );
    line.insert(
        "@timestamp".into(),
        Json::String(humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()),
    );
    line.extend(fields);
    Json::Object(line).to_string()
}

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let line = format_line(meta.level(), meta.target(), fields.0);
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_log_values_map_to_levels() {
        assert_eq!(level_from_env_value(Some("trace")), LevelFilter::TRACE);
        assert_eq!(level_from_env_value(Some("JSON")), LevelFilter::TRACE);
        assert_eq!(level_from_env_value(Some("DEBUG")), LevelFilter::DEBUG);
        assert_eq!(level_from_env_value(None), LevelFilter::WARN);
        assert_eq!(level_from_env_value(Some("off")), LevelFilter::OFF);
    }

    #[test]
    fn lines_have_the_fields_go_plugin_parses() {
        let mut fields = Map::new();
        fields.insert("message".into(), Json::String("node started".into()));
        fields.insert("port".into(), Json::from(6380));
        let line = format_line(&Level::INFO, "terraform_provider_valkey::runtime", fields);
        let parsed: Json = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["@level"], "info");
        assert_eq!(parsed["@message"], "node started");
        assert_eq!(parsed["port"], 6380);
        assert!(parsed["@timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
