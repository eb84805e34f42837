//! valkey_read_replica through real Terraform: cross-region replicas wired for real, and the
//! limits a user hits caught by `terraform plan` before anything is made.

mod support;

use support::{Terraform, connect, free_port, start_server};

const PRIMARY: &str = r#"
resource "valkey_service" "primary" {
  name   = "primary"
  plan   = "startup-4"
  region = "local-1"
}

output "primary_uri" {
  value     = valkey_service.primary.service_uri
  sensitive = true
}
"#;

fn replica(name: &str, region: &str, plan: &str) -> String {
    format!(
        r#"
resource "valkey_read_replica" "{name}" {{
  name            = "{name}"
  primary_service = valkey_service.primary.name
  plan            = "{plan}"
  region          = "{region}"
}}

output "{name}_uri" {{
  value     = valkey_read_replica.{name}.service_uri
  sensitive = true
}}
"#
    )
}

#[test]
fn primary_with_two_cross_region_replicas() {
    let config = format!(
        "{PRIMARY}{}{}",
        replica("eu", "local-2", "startup-4"),
        replica("us", "local-3", "startup-4")
    );
    let tf = Terraform::new(&config);
    tf.apply();

    let mut primary = connect(&tf.output("primary_uri"));
    redis::cmd("SET").arg("order:1").arg("paid").exec(&mut primary).unwrap();
    redis::cmd("WAIT").arg(2).arg(5000).exec(&mut primary).unwrap();
    for name in ["eu", "us"] {
        let uri = tf.output(&format!("{name}_uri"));
        let mut conn = connect(&uri);
        let got: String = redis::cmd("GET").arg("order:1").query(&mut conn).unwrap();
        assert_eq!(got, "paid", "replica {name} must see the primary's write");
        let refused = redis::cmd("SET")
            .arg("order:1")
            .arg("refunded")
            .exec(&mut conn)
            .unwrap_err();
        assert!(refused.to_string().to_lowercase().contains("read only"), "{refused}");
        let state = tf.state_attributes(&format!("valkey_read_replica.{name}"));
        assert_eq!(state["role"], "replica");
        assert_eq!(state["replication_status"], "up");
        assert!(state["replication_lag_bytes"].as_i64().is_some());
        assert_ne!(
            state["host"], "127.0.1.1",
            "replicas live in their own region's address"
        );
    }
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "second plan should be empty:\n{plan}");

    // A refresh shows the topology on the primary.
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let state = tf.state_attributes("valkey_service.primary");
    assert_eq!(state["read_replicas"], serde_json::json!(["eu", "us"]));

    // Import of a replica by name gives the same state back.
    tf.ok(&["state", "rm", "valkey_read_replica.eu"]);
    tf.ok(&["import", "-input=false", "-no-color", "valkey_read_replica.eu", "eu"]);
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "plan after import should be empty:\n{plan}");

    // A primary whose replicas live on is not destroyed silently.
    let orphaned = format!(
        "{}{}",
        replica("eu", "local-2", "startup-4").replace("valkey_service.primary.name", "\"primary\""),
        replica("us", "local-3", "startup-4").replace("valkey_service.primary.name", "\"primary\"")
    );
    tf.write_config(&orphaned);
    let text = tf.fails(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(text.contains("still has read replicas (eu, us)"), "{text}");
    redis::cmd("PING").exec(&mut primary).unwrap();

    // Destroying everything in one run works: Terraform removes the replicas first.
    tf.write_config(&config);
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(tf.live_node_pids().is_empty());
}

#[test]
fn limits_fail_at_plan_and_create_nothing() {
    let six: String = (1..=6)
        .map(|i| replica(&format!("r{i}"), "local-2", "startup-4"))
        .collect();
    let tf = Terraform::new(&format!("{PRIMARY}{six}"));
    let text = tf.fails(&["plan", "-input=false", "-no-color"]);
    assert!(text.contains("Too many read replicas"), "{text}");
    assert!(text.contains("would have 6 read replicas"), "{text}");
    assert!(text.contains("at most 5"), "{text}");
    assert!(text.contains("primary_service"), "{text}");

    // With count, the refused instance is the same on every plan: the last by name.
    tf.write_config(&format!(
        r#"{PRIMARY}
resource "valkey_read_replica" "r" {{
  count           = 6
  name            = "r-${{count.index}}"
  primary_service = valkey_service.primary.name
  plan            = "startup-4"
  region          = "local-2"
}}
"#
    ));
    for _ in 0..3 {
        let text = tf.fails(&["plan", "-input=false", "-no-color"]);
        assert_eq!(text.matches("Too many read replicas").count(), 1, "{text}");
        assert!(text.contains("with valkey_read_replica.r[5]"), "{text}");
    }

    tf.write_config(&format!("{PRIMARY}{}", replica("big", "local-2", "business-4")));
    let text = tf.fails(&["plan", "-input=false", "-no-color"]);
    assert!(
        text.contains("read replicas are offered only on plan \"startup-4\""),
        "{text}"
    );

    let missing = replica("lonely", "local-2", "startup-4").replace("valkey_service.primary.name", "\"nowhere\"");
    tf.write_config(&missing);
    let text = tf.fails(&["plan", "-input=false", "-no-color"]);
    assert!(text.contains("no valkey_service named \"nowhere\""), "{text}");

    let made = std::fs::read_dir(tf.data_dir().join("services"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(made, 0, "a failed plan must create nothing");
}

#[test]
fn five_replicas_are_fine_and_a_sixth_added_later_fails_at_plan() {
    let five: String = (1..=5)
        .map(|i| replica(&format!("r{i}"), "local-2", "startup-4"))
        .collect();
    let tf = Terraform::new(&format!("{PRIMARY}{five}"));
    tf.apply();
    assert_eq!(
        tf.live_node_pids().len(),
        9,
        "six nodes and the three Sentinels of the group"
    );
    let six: String = (1..=6)
        .map(|i| replica(&format!("r{i}"), "local-2", "startup-4"))
        .collect();
    tf.write_config(&format!("{PRIMARY}{six}"));
    let text = tf.fails(&["plan", "-input=false", "-no-color"]);
    assert!(
        text.contains("would have 6 read replicas (r1, r2, r3, r4, r5, r6)"),
        "{text}"
    );
}

fn external_replica(uri: &str) -> String {
    format!(
        r#"
resource "valkey_read_replica" "copy" {{
  name        = "copy"
  primary_uri = "{uri}"
  plan        = "startup-4"
  region      = "local-4"
}}

output "copy_uri" {{
  value     = valkey_read_replica.copy.service_uri
  sensitive = true
}}
"#
    )
}

#[test]
fn an_external_valkey_primary_is_replicated_and_redis_is_refused_at_plan() {
    let scratch = tempfile::tempdir().unwrap();
    let redis_binary = "/usr/bin/redis-server";
    assert!(
        std::path::Path::new(redis_binary).is_file(),
        "Debian's redis-server is needed at {redis_binary} (apt-get install redis-server)"
    );
    let redis_port = free_port();
    let _redis = start_server(redis_binary, redis_port, "redispw", scratch.path(), &[]);
    let tf = Terraform::new(&external_replica(&format!(
        "valkey://default:redispw@127.0.0.1:{redis_port}"
    )));
    let raw = tf.fails_raw(&["plan", "-input=false", "-no-color"]);
    let text = support::flatten(&raw);
    assert!(text.contains("is not Valkey"), "{text}");
    assert!(text.contains("redis_version 7."), "{text}");
    assert!(text.contains("with valkey_read_replica.copy"), "{text}");
    // Terraform quotes the configuration line; the provider's own words never hold the password.
    let provider_words: String = raw.lines().filter(|l| !l.contains("primary_uri =")).collect();
    assert!(!provider_words.contains("redispw"), "the password leaked: {raw}");

    let valkey_dir = tempfile::tempdir().unwrap();
    let valkey_port = free_port();
    let binary = support::valkey_server();
    let _valkey = start_server(
        binary.to_str().unwrap(),
        valkey_port,
        "valkeypw",
        valkey_dir.path(),
        &[],
    );
    let source_uri = format!("valkey://default:valkeypw@127.0.0.1:{valkey_port}");
    let mut source = connect(&source_uri);
    redis::cmd("SET").arg("migrated").arg("yes").exec(&mut source).unwrap();
    tf.write_config(&external_replica(&source_uri));
    tf.apply();
    let mut copy = connect(&tf.output("copy_uri"));
    let got: String = redis::cmd("GET").arg("migrated").query(&mut copy).unwrap();
    assert_eq!(got, "yes");
    let state = tf.state_attributes("valkey_read_replica.copy");
    assert_eq!(state["replication_status"], "up");
    assert!(!tf.plan_has_changes().0);
}
