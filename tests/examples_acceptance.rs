//! Every example in examples/ is applied for real, so none rots.

mod support;

use std::path::Path;

use support::{Terraform, connect};

#[test]
fn the_demo_example_applies_with_a_primary_and_a_replica() {
    let tf = Terraform::from_example(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"));
    tf.apply();
    assert_eq!(tf.output("replication_status"), "up");
    let mut primary = connect(&tf.output("service_uri"));
    redis::cmd("SET").arg("hello").arg("world").exec(&mut primary).unwrap();
    redis::cmd("WAIT").arg(1).arg(5000).exec(&mut primary).unwrap();
    let mut replica = connect(&tf.output("replica_uri"));
    let got: String = redis::cmd("GET").arg("hello").query(&mut replica).unwrap();
    assert_eq!(got, "world");
    assert!(!tf.plan_has_changes().0);
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(tf.live_node_pids().is_empty());
}
