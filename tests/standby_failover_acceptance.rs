//! High availability a service's plan pays for, through real Terraform and a real
//! Sentinel-aware client (valkey-py, configured as docs/guides/failover.md says): a business-4
//! or premium-4 service with no read replica is watched by Sentinels and its standby is promoted
//! when the primary dies; the bound on what a cut-off primary acknowledges is on every node, and
//! the provider's own operations (power off, restart, switchover, scale down, destroy) never
//! make a healthy primary refuse writes because of it.

mod support;

use std::time::{Duration, Instant};

use support::group::{GroupAccess, SentinelWriter, missing, now_ms, wait_consistent};
use support::{Terraform, config_get, kill9};

fn service(plan: &str, powered: bool, failover: &str) -> String {
    format!(
        r#"
resource "valkey_service" "main" {{
  name    = "main"
  plan    = "{plan}"
  region  = "local-1"
  powered = {powered}
  failover {{
    down_after_ms = 2000
{failover}  }}
}}
"#
    )
}

/// What a node runs with: (min-replicas-to-write, min-replicas-max-lag).
fn bound(access: &GroupAccess, addr: &str) -> (String, String) {
    let mut conn = access.node(addr).unwrap();
    (
        config_get(&mut conn, "min-replicas-to-write"),
        config_get(&mut conn, "min-replicas-max-lag"),
    )
}

/// Kills the primary of a service with standbys and no read replica while the Sentinel client
/// writes: a standby takes over, the client writes again with nothing acknowledged lost, and
/// the next apply brings the old primary back as a standby with an empty plan after it.
fn standby_takes_over(tf: &Terraform, plan: &str) {
    tf.refresh();
    let state = tf.state_attributes("valkey_service.main");
    assert_eq!(state["sentinel_status"].as_str(), Some("running"), "{plan} alone");
    assert_eq!(state["sentinel_addresses"].as_array().unwrap().len(), 3);
    let access = GroupAccess::of(tf, "valkey_service.main");
    let members = tf.node_addresses("valkey_service.main");
    wait_consistent(&access, &members, Some(&members[0]), Duration::from_secs(10));
    let writer = SentinelWriter::start(&access, tf.dir.path().join(format!("{plan}.log")), plan);
    std::thread::sleep(Duration::from_millis(500));

    kill9(tf.node_pid("main", "node-0"));
    let killed = now_ms();
    writer.written_again_after(killed, &format!("{plan}: kill -9 of the primary"));
    let promoted = access.wait_new_primary(&members[0], Duration::from_secs(10));
    assert!(
        members[1..].contains(&promoted),
        "a standby is promoted, not {promoted}"
    );

    // Apply restarts the old primary as a standby of the new one; nothing else to do.
    tf.apply();
    wait_consistent(&access, &members, Some(&promoted), Duration::from_secs(10));
    tf.refresh();
    assert_eq!(
        tf.state_attributes("valkey_service.main")["current_primary"].as_str(),
        Some(promoted.as_str())
    );
    tf.assert_plan_empty(&format!("{plan} after the failover and the apply"));
    std::thread::sleep(Duration::from_millis(300));
    writer.stop_and_assert_none_lost(&access, &promoted);
}

#[test]
fn a_business_4_standby_is_promoted_without_read_replicas_and_the_service_lives_on() {
    let tf = Terraform::new(&service("business-4", true, ""));
    let out = tf.apply();
    assert!(
        out.contains("does not survive the loss of a host"),
        "the plan says what a single machine cannot survive:\n{out}"
    );
    standby_takes_over(&tf, "business-4");
    let access = GroupAccess::of(&tf, "valkey_service.main");
    // Two data nodes: a bound would leave a promoted standby refusing every write.
    for node in tf.node_addresses("valkey_service.main") {
        assert_eq!(bound(&access, &node).0, "0", "{node}");
    }

    // Power off and on: the primary does not move and the group comes back as it was.
    let primary = access.sentinel_primary().unwrap();
    tf.apply_config(&service("business-4", false, ""));
    tf.assert_plan_empty("powered off");
    tf.apply_config(&service("business-4", true, ""));
    let members = tf.node_addresses("valkey_service.main");
    wait_consistent(&access, &members, Some(&primary), Duration::from_secs(10));
    tf.assert_plan_empty("powered on again");

    // Scale up and down: a third node joins and the bound asks for one replica; scaled back,
    // the group of two runs without one.
    tf.apply_config(&service("premium-4", true, ""));
    let members = tf.node_addresses("valkey_service.main");
    assert_eq!(members.len(), 3);
    wait_consistent(&access, &members, Some(&primary), Duration::from_secs(10));
    for node in &members {
        assert_eq!(bound(&access, node), ("1".into(), "2".into()), "{node}");
    }
    tf.assert_plan_empty("scaled to premium-4");
    tf.apply_config(&service("business-4", true, ""));
    let members = tf.node_addresses("valkey_service.main");
    assert_eq!(members.len(), 2);
    wait_consistent(&access, &members, None, Duration::from_secs(10));
    for node in &members {
        assert_eq!(bound(&access, node).0, "0", "{node}");
    }
    tf.assert_plan_empty("scaled back to business-4");

    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(
        tf.live_node_pids(),
        Vec::<i32>::new(),
        "destroy leaves no node or Sentinel"
    );
}

#[test]
fn a_premium_4_standby_is_promoted_and_the_new_primary_keeps_the_bound() {
    let tf = Terraform::new(&service("premium-4", true, ""));
    tf.apply();
    standby_takes_over(&tf, "premium-4");
    // Three data nodes: after losing one, the new primary still hears from a replica, so the
    // bound stays on and it takes writes.
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let primary = access.sentinel_primary().unwrap();
    assert_eq!(bound(&access, &primary), ("1".into(), "2".into()));
    // Changed outside Terraform, the bound shows in the plan and apply puts it back.
    let mut conn = access.node(&primary).unwrap();
    support::config_set(&mut conn, "min-replicas-to-write", "0");
    let (changes, plan) = tf.plan_has_changes();
    assert!(changes && plan.contains("min_replicas_to_write"), "{plan}");
    tf.apply();
    assert_eq!(bound(&access, &primary).0, "1");
    tf.assert_plan_empty("after the bound was put back");
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
}

#[test]
fn the_providers_own_operations_never_make_a_healthy_primary_refuse_writes() {
    // A bound that asks for every other node: whatever the provider takes away would make the
    // primary refuse writes unless it lowers the bound first.
    let with_replica = |replica_powered: bool, io_threads: u8, promote: bool| {
        service("business-4", true, "    min_replicas_to_write = 2\n")
            + &format!(
                r#"
resource "valkey_read_replica" "eu" {{
  name              = "eu"
  primary_service   = valkey_service.main.name
  plan              = "startup-4"
  region            = "local-2"
  failover_priority = 10
  powered           = {replica_powered}
  promote           = {promote}
  valkey_user_config {{
    io_threads = {io_threads}
  }}
}}
"#
            )
    };
    let tf = Terraform::new(&with_replica(true, 1, false));
    tf.apply();
    // The replica in another region moved two of the standbys' Sentinels there: the service's
    // state learns their addresses at its next refresh.
    tf.refresh();
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let main = tf.node_addresses("valkey_service.main");
    let eu = tf.address("valkey_read_replica.eu");
    let all: Vec<String> = main.iter().cloned().chain([eu.clone()]).collect();
    wait_consistent(&access, &all, Some(&main[0]), Duration::from_secs(10));
    assert_eq!(bound(&access, &main[0]), ("2".into(), "2".into()));
    let writer = SentinelWriter::start(&access, tf.dir.path().join("writer.log"), "ops");
    let started = now_ms();

    let steps: [(&str, String); 5] = [
        ("power off the read replica", with_replica(false, 1, false)),
        ("power it on", with_replica(true, 1, false)),
        ("restart it by apply (io_threads)", with_replica(true, 2, false)),
        ("promote it", with_replica(true, 2, true)),
        (
            "destroy it (it hands over first)",
            service("business-4", true, "    min_replicas_to_write = 2\n"),
        ),
    ];
    for (step, config) in steps {
        let at = Instant::now();
        tf.apply_config(&config);
        eprintln!("{step}: {:.1} s", at.elapsed().as_secs_f64());
        tf.assert_plan_empty(step);
    }
    let refused: Vec<String> = writer
        .errors()
        .into_iter()
        .filter(|e| e.contains("NOREPLICAS") || e.contains("not enough good replicas"))
        .collect();
    let acks = writer.stop();
    let primary = access.sentinel_primary().unwrap();
    let lost = missing(&mut access.node(&primary).unwrap(), "ops", &acks);
    eprintln!(
        "{} writes acknowledged over {} ms of planned operations, {} refused for want of replicas, {} lost",
        acks.len(),
        now_ms() - started,
        refused.len(),
        lost.len()
    );
    assert!(
        refused.is_empty(),
        "the primary refused {} writes, the first: {:?}",
        refused.len(),
        &refused[..refused.len().min(3)]
    );
    assert!(lost.is_empty(), "acknowledged writes were lost: {lost:?}");
    // Two data nodes left: the declared 2 is capped at the one other node.
    for node in tf.node_addresses("valkey_service.main") {
        assert_eq!(bound(&access, &node).0, "1", "{node}");
    }
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
}
