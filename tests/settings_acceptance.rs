//! The fuller valkey_user_config through real Terraform: every setting applied without a
//! restart where Valkey allows it (databases restarts the nodes), read back for drift (Valkey
//! rewrites some, such as the keyspace event flags, without that being drift), and the
//! settings a plan or a build cannot take refused at plan with the reason.

mod support;

use support::{Terraform, config_get, config_set, connect, flatten};

fn config(databases: u32, backlog: u32, defrag: bool) -> String {
    format!(
        r#"
resource "valkey_service" "main" {{
  name   = "cfg-main"
  plan   = "startup-4"
  region = "local-1"
  valkey_user_config {{
    maxmemory_policy                  = "allkeys-lfu"
    notify_keyspace_events            = "Ex"
    number_of_databases               = {databases}
    lfu_log_factor                    = 20
    lfu_decay_time                    = 5
    active_expire_effort              = 4
    activedefrag                      = {defrag}
    pubsub_client_output_buffer_limit = 64
    acl_channels_default              = "allchannels"
    repl_backlog_size                 = {backlog}
    rdb_compression                   = false
  }}
}}

resource "valkey_read_replica" "eu" {{
  name            = "cfg-eu"
  primary_service = valkey_service.main.name
  plan            = "startup-4"
  region          = "local-2"
  valkey_user_config {{
    number_of_databases = {databases}
    repl_backlog_size   = {backlog}
  }}
}}

output "uris" {{
  value     = [valkey_service.main.service_uri, valkey_read_replica.eu.service_uri]
  sensitive = true
}}
"#
    )
}

fn uris(tf: &Terraform) -> Vec<String> {
    serde_json::from_str(&tf.ok(&["output", "-json", "uris"])).unwrap()
}

fn node_pid(tf: &Terraform, name: &str) -> String {
    std::fs::read_to_string(tf.data_dir().join(format!("services/{name}/node-0/valkey.pid"))).unwrap()
}

#[test]
fn every_setting_applies_reads_back_and_refuses_what_it_cannot_take() {
    let tf = Terraform::new(&config(16, 128, false));
    tf.apply();
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "Valkey's rewrites of the settings are not drift:\n{plan}");
    let uris = uris(&tf);
    let mut main = connect(&uris[0]);
    for (setting, expected) in [
        ("notify-keyspace-events", "xE"),
        ("databases", "16"),
        ("lfu-log-factor", "20"),
        ("lfu-decay-time", "5"),
        ("active-expire-effort", "4"),
        ("activedefrag", "no"),
        ("acl-pubsub-default", "allchannels"),
        ("repl-backlog-size", "134217728"),
        ("rdbcompression", "no"),
    ] {
        assert_eq!(config_get(&mut main, setting), expected, "{setting}");
    }
    assert!(config_get(&mut main, "client-output-buffer-limit").contains("pubsub 67108864 16777216 60"));
    let mut eu = connect(&uris[1]);
    assert_eq!(config_get(&mut eu, "repl-backlog-size"), "134217728");
    // Settings the replica's block leaves unset are at their defaults.
    assert_eq!(config_get(&mut eu, "lfu-log-factor"), "10");
    assert_eq!(config_get(&mut eu, "rdbcompression"), "yes");

    // A setting changed outside Terraform is drift, put back without a restart.
    let pid = node_pid(&tf, "cfg-main");
    config_set(&mut main, "lfu-decay-time", "60");
    config_set(&mut main, "notify-keyspace-events", "KA");
    let (changes, plan) = tf.plan_has_changes();
    let flat = flatten(&plan);
    assert!(changes && flat.contains("lfu_decay_time = 60 -> 5"), "{plan}");
    assert!(flat.contains("notify_keyspace_events = \"AK\" -> \"Ex\""), "{plan}");
    tf.apply();
    assert_eq!(config_get(&mut main, "lfu-decay-time"), "5");
    assert_eq!(node_pid(&tf, "cfg-main"), pid, "CONFIG SET, no restart");

    // More databases restart the nodes; the new ones take keys. Fewer are refused at plan.
    tf.write_config(&config(32, 128, false));
    tf.apply();
    assert_ne!(node_pid(&tf, "cfg-main"), pid);
    let mut main = connect(&uris[0]);
    assert_eq!(config_get(&mut main, "databases"), "32");
    redis::cmd("SELECT").arg(20).exec(&mut main).unwrap();
    redis::cmd("SET").arg("in-db-20").arg("1").exec(&mut main).unwrap();
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "{plan}");
    tf.write_config(&config(16, 128, false));
    let out = tf.fails(&["plan", "-input=false", "-no-color"]);
    assert!(
        out.contains("16 is fewer than the 32 the nodes have; keys in databases 16 to 31 would be lost"),
        "{out}"
    );

    // A replica with fewer databases than its primary: the primary's writes to the others
    // would land in the wrong database there.
    tf.write_config(&format!(
        "{}{}",
        config(32, 128, false),
        r#"
resource "valkey_read_replica" "us" {
  name            = "cfg-us"
  primary_service = valkey_service.main.name
  plan            = "startup-4"
  region          = "local-3"
}
"#
    ));
    let out = flatten(&tf.fails(&["plan", "-input=false", "-no-color"]));
    assert!(
        out.contains("16 is fewer than the 32 of primary service \"cfg-main\"; its writes to databases 16 to 31 would fail on this replica"),
        "{out}"
    );

    // A backlog bigger than the plan allows, and defragmentation on a build that cannot.
    tf.write_config(&config(32, 2048, false));
    let out = tf.fails(&["plan", "-input=false", "-no-color"]);
    assert!(
        out.contains("2048 MiB is not allowed on plan \"startup-4\", whose nodes may keep from 1 MiB to a quarter of their memory (1024 MiB)"),
        "{out}"
    );
    tf.write_config(&config(32, 128, true));
    let out = tf.fails(&["plan", "-input=false", "-no-color"]);
    assert!(
        out.contains("cannot defragment: active defragmentation needs a build with Valkey's own jemalloc"),
        "{out}"
    );
    tf.write_config(&config(32, 128, false));
    tf.ok(&["destroy", "-auto-approve", "-input=false"]);
}

/// Debian 13's valkey-server uses the system jemalloc, without the hooks defragmentation needs:
/// the plan refuses it there too, before any node could fail to start on it.
#[test]
fn active_defragmentation_is_refused_on_debians_build_before_anything_starts() {
    let binary = std::env::var("VALKEY_TLS_SERVER").expect("VALKEY_TLS_SERVER (CI builds it)");
    let tf = Terraform::new("");
    tf.write_config_with_provider(
        &format!("valkey_server = \"{binary}\"\n"),
        r#"
resource "valkey_service" "defrag" {
  name   = "cfg-defrag"
  plan   = "hobbyist"
  region = "local-1"
  valkey_user_config {
    activedefrag = true
  }
}
"#,
    );
    let out = tf.fails(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(out.contains("cannot defragment"), "{out}");
    assert!(out.contains(&binary), "{out}");
    assert!(!tf.data_dir().join("services/cfg-defrag").exists(), "nothing was made");
}
