//! Every example in examples/ is applied for real, so none rots.

#[path = "support/docker.rs"]
mod docker_hosts;
mod support;

use support::{Terraform, connect};

/// Applies an example, checks a second plan is empty, destroys it, and checks nothing is left.
fn apply_cleanly(example: &str) -> Terraform {
    let tf = Terraform::from_example(example);
    tf.apply();
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "second plan of examples/{example} should be empty:\n{plan}");
    tf
}

fn destroy(tf: &Terraform) {
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(tf.live_node_pids().is_empty(), "processes left behind");
}

#[test]
fn the_demo_example_applies_with_a_primary_and_a_replica() {
    let tf = apply_cleanly("");
    assert_eq!(tf.output("replication_status"), "up");
    let mut primary = connect(&tf.output("service_uri"));
    redis::cmd("SET").arg("hello").arg("world").exec(&mut primary).unwrap();
    redis::cmd("WAIT").arg(1).arg(5000).exec(&mut primary).unwrap();
    let mut replica = connect(&tf.output("replica_uri"));
    let got: String = redis::cmd("GET").arg("hello").query(&mut replica).unwrap();
    assert_eq!(got, "world");
    destroy(&tf);
}

#[test]
fn the_provider_example_plans() {
    let tf = Terraform::from_example("provider");
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "{plan}");
}

#[test]
fn the_resource_examples_apply() {
    for example in ["resources/valkey_service", "resources/valkey_read_replica"] {
        let tf = apply_cleanly(example);
        destroy(&tf);
    }
}

/// The user example, then each data source example reading what it made (its data directory
/// is the user example's, as a second configuration on the same machine would share it).
#[test]
fn the_user_and_data_source_examples_apply() {
    let owner = apply_cleanly("resources/valkey_user");
    let password = owner.output("reporting_password");
    for example in ["valkey_service", "valkey_read_replica", "valkey_user"] {
        let reader = Terraform::from_example(&format!("data-sources/{example}"));
        std::os::unix::fs::symlink(owner.data_dir(), reader.data_dir()).unwrap();
        reader.apply();
        let (changes, plan) = reader.plan_has_changes();
        assert!(!changes, "{example}: {plan}");
        match example {
            "valkey_service" => assert_eq!(reader.ok(&["output", "-json", "sentinels"]).matches(':').count(), 3),
            "valkey_read_replica" => assert!(reader.output("replication").starts_with("up from ")),
            _ => assert_eq!(reader.output("reporting_password"), password),
        }
        std::fs::remove_file(reader.data_dir()).unwrap();
    }
    destroy(&owner);
}

#[test]
fn the_multi_region_example_applies_in_declared_regions() {
    let tf = apply_cleanly("multi-region");
    assert!(tf.output("current_primary").starts_with("127.0.10.1:"));
    let json: serde_json::Value = serde_json::from_str(&tf.ok(&["output", "-json", "sentinels"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    destroy(&tf);
}

#[test]
fn the_module_example_applies() {
    let tf = apply_cleanly("module-usage");
    let json: serde_json::Value = serde_json::from_str(&tf.ok(&["output", "-json", "replica_uris"])).unwrap();
    assert_eq!(json.as_object().unwrap().len(), 2);
    destroy(&tf);
}

/// The docker example, on the test engines it names (two over their sockets, one over TLS).
#[test]
fn the_docker_example_applies_across_hosts_and_engines_over_tls() {
    docker_hosts::settings();
    docker_hosts::remove_everything_named("orders-example");
    let _cleanup = docker_hosts::Cleanup("orders-example".into());
    let tf = apply_cleanly("docker");
    let mut primary = connect(&tf.output("service_uri"));
    redis::cmd("SET").arg("hello").arg("docker").exec(&mut primary).unwrap();
    redis::cmd("WAIT").arg(1).arg(5000).exec(&mut primary).unwrap();
    let mut replica = connect(&tf.output("replica_uri"));
    let got: String = redis::cmd("GET").arg("hello").query(&mut replica).unwrap();
    assert_eq!(got, "docker");
    assert!(tf.output("replica_uri").contains("@10.77.0.13:"));
    let json: serde_json::Value = serde_json::from_str(&tf.ok(&["output", "-json", "sentinels"])).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(3));
    docker_hosts::destroy_leaves_nothing(&tf, "orders-example");
}
