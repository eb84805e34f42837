//! The replication group as one unit, through real Terraform and a real Sentinel-aware client
//! (valkey-py, configured as docs/guides/failover.md says): one password works on whichever
//! member is the primary, powering members off and on never moves the primary, destroying the
//! current primary hands over first, and the Sentinels forget nodes that are removed.

mod support;

use std::time::{Duration, Instant};

use support::group::{GroupAccess, SentinelWriter, missing, now_ms, replication, wait_consistent};
use support::{Terraform, kill9};

struct Member<'a> {
    name: &'a str,
    region: u8,
    priority: u32,
    promote: bool,
    powered: bool,
}

/// A primary service `main` (plan `plan`, `powered`) and read replicas.
fn config(plan: &str, powered: bool, replicas: &[Member]) -> String {
    let mut text = format!(
        r#"
resource "valkey_service" "main" {{
  name    = "main"
  plan    = "{plan}"
  region  = "local-1"
  powered = {powered}
  failover {{
    down_after_ms = 2000
  }}
}}
"#
    );
    for r in replicas {
        text += &format!(
            r#"
resource "valkey_read_replica" "{name}" {{
  name              = "{name}"
  primary_service   = valkey_service.main.name
  plan              = "startup-4"
  region            = "local-{region}"
  failover_priority = {priority}
  promote           = {promote}
  powered           = {powered}
}}
"#,
            name = r.name,
            region = r.region,
            priority = r.priority,
            promote = r.promote,
            powered = r.powered,
        );
    }
    text
}

fn replica(name: &str, region: u8, priority: u32) -> Member<'_> {
    Member {
        name,
        region,
        priority,
        promote: false,
        powered: true,
    }
}

/// Once the group is consistent with `primary` as its primary, the Sentinel client starts
/// writing through it.
fn start_writing(tf: &Terraform, access: &GroupAccess, members: &[String], primary: &str) -> SentinelWriter {
    wait_consistent(access, members, Some(primary), Duration::from_secs(10));
    let writer = SentinelWriter::start(access, tf.dir.path().join("writer.log"), "w");
    std::thread::sleep(Duration::from_millis(500));
    writer
}

fn refresh(tf: &Terraform) {
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
}

fn addr(tf: &Terraform, resource: &str) -> String {
    let state = tf.state_attributes(resource);
    format!("{}:{}", state["host"].as_str().unwrap(), state["port"])
}

fn assert_plan_empty(tf: &Terraform, when: &str) {
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "{when}: the plan should be empty:\n{plan}");
}

/// Once the group is consistent with `primary` as its primary (see `wait_consistent`), a
/// refresh shows it in every resource's state.
fn assert_group_settled_on(
    tf: &Terraform,
    access: &GroupAccess,
    members: &[String],
    primary: &str,
    resources: &[&str],
) {
    wait_consistent(access, members, Some(primary), Duration::from_secs(10));
    refresh(tf);
    assert_state_agrees(tf, resources, primary);
}

/// Every resource's state names `primary` as the current primary, and the roles match.
fn assert_state_agrees(tf: &Terraform, resources: &[&str], primary: &str) {
    for resource in resources {
        let state = tf.state_attributes(resource);
        assert_eq!(state["current_primary"].as_str(), Some(primary), "{resource}");
        let own = format!("{}:{}", state["host"].as_str().unwrap(), state["port"]);
        let role = if own == primary { "primary" } else { "replica" };
        assert_eq!(state["role"].as_str(), Some(role), "{resource}");
        if resource.starts_with("valkey_read_replica") {
            let status = if own == primary { "none" } else { "up" };
            assert_eq!(state["replication_status"].as_str(), Some(status), "{resource}");
        }
    }
}

#[test]
fn a_sentinel_client_configured_as_documented_follows_a_kill_of_the_primary() {
    let tf = Terraform::new(&config(
        "startup-4",
        true,
        &[replica("eu", 2, 10), replica("us", 3, 50)],
    ));
    tf.apply();
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let (main, eu, us) = (
        addr(&tf, "valkey_service.main"),
        addr(&tf, "valkey_read_replica.eu"),
        addr(&tf, "valkey_read_replica.us"),
    );
    // One password for the whole group: every member accepts the service's password.
    for member in [&main, &eu, &us] {
        let mut conn = access.node(member).unwrap();
        redis::cmd("PING").exec(&mut conn).unwrap();
    }
    let writer = start_writing(&tf, &access, &[main.clone(), eu.clone(), us.clone()], &main);

    kill9(tf.node_pid("main", "node-0"));
    let killed = now_ms();
    // The promoted node's own first accepted write, beside the client's.
    let start = Instant::now();
    let node_ready = loop {
        if let Ok(mut conn) = access.node(&eu)
            && redis::cmd("SET").arg("probe").arg(1).exec(&mut conn).is_ok()
        {
            break now_ms();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "eu never took writes");
        std::thread::sleep(Duration::from_millis(5));
    };
    let first = writer
        .wait_for_acks_after(killed, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the Sentinel client never wrote again: {:?}", writer.errors()));
    eprintln!(
        "kill -9 -> promoted node takes writes {} ms; -> Sentinel client's first acknowledged write {} ms",
        node_ready - killed,
        first.at_ms - killed
    );

    // Apply brings the old primary back as a replica; the group is consistent, the plan empty.
    tf.apply();
    assert_group_settled_on(
        &tf,
        &access,
        &[main.clone(), eu.clone(), us.clone()],
        &eu,
        &[
            "valkey_service.main",
            "valkey_read_replica.eu",
            "valkey_read_replica.us",
        ],
    );
    assert_plan_empty(&tf, "after the failover and the apply");
    std::thread::sleep(Duration::from_millis(300));
    let acks = writer.stop();
    let lost = missing(&mut access.node(&eu).unwrap(), "w", &acks);
    let late: Vec<_> = lost.iter().filter(|a| a.at_ms > killed).collect();
    eprintln!(
        "{} writes acknowledged, {} lost, all in the asynchronous window before the kill",
        acks.len(),
        lost.len()
    );
    assert!(
        late.is_empty(),
        "writes acknowledged after the kill were lost: {late:?}"
    );
}

#[test]
fn powering_members_off_and_on_in_any_order_never_moves_the_primary() {
    let members = |eu_promote: bool, eu_powered: bool| {
        [
            Member {
                name: "eu",
                region: 2,
                priority: 10,
                promote: eu_promote,
                powered: eu_powered,
            },
            replica("us", 3, 20),
        ]
    };
    let tf = Terraform::new(&config("startup-4", true, &members(false, true)));
    tf.apply();
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let (main, eu, us) = (
        addr(&tf, "valkey_service.main"),
        addr(&tf, "valkey_read_replica.eu"),
        addr(&tf, "valkey_read_replica.us"),
    );
    let all = [main.clone(), eu.clone(), us.clone()];
    let outlast_down_after = || std::thread::sleep(Duration::from_millis(2000 * 2 + 500));
    let assert_nobody_promoted = |running: &[&String], following: &str| {
        for node in running {
            let r = replication(&mut access.node(node).unwrap()).unwrap();
            assert_eq!(r.role, "slave", "{node} was promoted while the primary was powered off");
            assert_eq!(r.following.as_deref(), Some(following), "{node}");
        }
    };

    // The primary service off, then on.
    tf.apply_config(&config("startup-4", false, &members(false, true)));
    outlast_down_after();
    assert_nobody_promoted(&[&eu, &us], &main);
    assert_plan_empty(&tf, "with the primary powered off");
    tf.apply_config(&config("startup-4", true, &members(false, true)));
    assert_group_settled_on(
        &tf,
        &access,
        &all,
        &main,
        &["valkey_service.main", "valkey_read_replica.eu"],
    );
    assert_plan_empty(&tf, "after powering the primary back on");

    // eu promoted, then powered off and on while it is the primary.
    tf.apply_config(&config("startup-4", true, &members(true, true)));
    wait_consistent(&access, &all, Some(&eu), Duration::from_secs(10));
    tf.apply_config(&config("startup-4", true, &members(true, false)));
    outlast_down_after();
    assert_nobody_promoted(&[&main, &us], &eu);
    assert_plan_empty(&tf, "with the promoted replica powered off");

    // Now the service off too, then both on in the other order: the service first (it comes
    // back as a replica of eu, although eu is still off), then eu.
    tf.apply_config(&config("startup-4", false, &members(true, false)));
    assert_plan_empty(&tf, "with both powered off");
    tf.apply_config(&config("startup-4", true, &members(true, false)));
    outlast_down_after();
    assert_nobody_promoted(&[&main, &us], &eu);
    assert_plan_empty(&tf, "with the service back on and eu still off");
    tf.apply_config(&config("startup-4", true, &members(true, true)));
    assert_group_settled_on(
        &tf,
        &access,
        &all,
        &eu,
        &[
            "valkey_service.main",
            "valkey_read_replica.eu",
            "valkey_read_replica.us",
        ],
    );
    assert_plan_empty(&tf, "after powering everything back on");
}

#[test]
fn destroying_the_current_primary_hands_over_without_losing_acknowledged_writes() {
    let promoted_us = Member {
        promote: true,
        ..replica("us", 3, 50)
    };
    let tf = Terraform::new(&config("startup-4", true, &[replica("eu", 2, 10), promoted_us]));
    tf.apply();
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let (main, eu, us) = (
        addr(&tf, "valkey_service.main"),
        addr(&tf, "valkey_read_replica.eu"),
        addr(&tf, "valkey_read_replica.us"),
    );
    let writer = start_writing(&tf, &access, &[main.clone(), eu.clone(), us.clone()], &us);

    // us leaves the configuration: it hands over to eu (the best failover_priority), then goes.
    tf.apply_config(&config("startup-4", true, &[replica("eu", 2, 10)]));
    std::thread::sleep(Duration::from_millis(500));
    let acks = writer.stop();
    let remaining = [main.clone(), eu.clone()];
    wait_consistent(&access, &remaining, Some(&eu), Duration::from_secs(10));
    let lost = missing(&mut access.node(&eu).unwrap(), "w", &acks);
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost in the hand-over",
        lost.len()
    );
    assert!(
        acks.len() > 100,
        "the client kept writing ({} acknowledged)",
        acks.len()
    );
    // The Sentinels forgot the destroyed node.
    for known in access.sentinel_replicas() {
        assert!(
            !known.contains(&us),
            "a Sentinel still lists the destroyed {us}: {known:?}"
        );
    }
    refresh(&tf);
    assert_state_agrees(&tf, &["valkey_service.main", "valkey_read_replica.eu"], &eu);
    assert_plan_empty(&tf, "after the hand-over");
}

#[test]
fn a_primary_no_member_can_take_over_from_is_not_destroyed() {
    let promoted = Member {
        promote: true,
        ..replica("us", 3, 50)
    };
    let tf = Terraform::new(&config("startup-4", true, &[promoted]));
    tf.apply();
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let (main, us) = (addr(&tf, "valkey_service.main"), addr(&tf, "valkey_read_replica.us"));
    wait_consistent(&access, &[main.clone(), us.clone()], Some(&us), Duration::from_secs(10));
    // The only other member is down: nobody can take over.
    kill9(tf.node_pid("main", "node-0"));
    let text = tf.fails(&[
        "destroy",
        "-target=valkey_read_replica.us",
        "-auto-approve",
        "-input=false",
        "-no-color",
    ]);
    assert!(
        text.contains("us is the primary of replication group \"main\"")
            && text.contains("no other member can take over"),
        "{text}"
    );
    assert_eq!(
        replication(&mut access.node(&us).unwrap()).unwrap().role,
        "master",
        "the primary must be left running"
    );
    // Once the service runs again, the destroy hands over to it.
    tf.apply();
    tf.ok(&[
        "destroy",
        "-target=valkey_read_replica.us",
        "-auto-approve",
        "-input=false",
        "-no-color",
    ]);
    let r = replication(&mut access.node(&main).unwrap()).unwrap();
    assert_eq!(r.role, "master");
}

#[test]
fn scaling_the_primary_down_makes_the_sentinels_forget_the_removed_standby() {
    let tf = Terraform::new(&config("business-4", true, &[replica("eu", 2, 10)]));
    tf.apply();
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let nodes = tf.state_attributes("valkey_service.main")["nodes"].clone();
    let standby = format!("{}:{}", nodes[1]["host"].as_str().unwrap(), nodes[1]["port"]);
    let start = Instant::now();
    while !access.sentinel_replicas().iter().all(|k| k.contains(&standby)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the Sentinels never found the standby"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tf.apply_config(&config("startup-4", true, &[replica("eu", 2, 10)]));
    for known in access.sentinel_replicas() {
        assert!(
            !known.contains(&standby),
            "a Sentinel still lists the removed standby: {known:?}"
        );
    }
    assert_plan_empty(&tf, "after scaling down");
}

#[test]
fn drift_on_a_standby_is_seen_and_repaired() {
    // Settings are compared when the configuration declares them.
    let declared = config("business-4", true, &[replica("eu", 2, 10)]).replace(
        "  failover {",
        "  valkey_user_config {\n    maxmemory_policy = \"noeviction\"\n  }\n  failover {",
    );
    let tf = Terraform::new(&declared);
    tf.apply();
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let nodes = tf.state_attributes("valkey_service.main")["nodes"].clone();
    let (primary, standby) = (
        format!("{}:{}", nodes[0]["host"].as_str().unwrap(), nodes[0]["port"]),
        format!("{}:{}", nodes[1]["host"].as_str().unwrap(), nodes[1]["port"]),
    );
    assert_eq!(nodes[1]["replicates_from"].as_str(), Some(primary.as_str()));

    // A setting changed on the standby only.
    let mut conn = access.node(&standby).unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .exec(&mut conn)
        .unwrap();
    let (changes, plan) = tf.plan_has_changes();
    assert!(changes, "a setting changed on a standby must show:\n{plan}");
    assert!(
        support::flatten(&plan).contains(r#"maxmemory_policy = "allkeys-lru" -> "noeviction""#),
        "{plan}"
    );
    tf.apply();
    let policy: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(&mut conn)
        .unwrap();
    assert_eq!(policy[1], "noeviction");

    // The standby detached: a second writable node in the group.
    redis::cmd("REPLICAOF").arg("NO").arg("ONE").exec(&mut conn).unwrap();
    let (changes, plan) = tf.plan_has_changes();
    assert!(changes, "a detached standby must show:\n{plan}");
    assert!(support::flatten(&plan).contains("nodes = ["), "{plan}");
    tf.apply();
    let eu = addr(&tf, "valkey_read_replica.eu");
    wait_consistent(
        &access,
        &[primary.clone(), standby, eu],
        Some(&primary),
        Duration::from_secs(10),
    );
    assert_plan_empty(&tf, "after the repair");
}

#[test]
fn an_update_shows_only_what_it_changes() {
    let tf = Terraform::new(&config("startup-4", true, &[replica("eu", 2, 10)]));
    tf.apply();
    refresh(&tf);
    let changed = config("startup-4", true, &[replica("eu", 2, 10)])
        .replace("  failover {", "  termination_protection = true\n  failover {")
        .replace("failover_priority = 10", "failover_priority = 15");
    tf.write_config(&changed);
    let (changes, plan) = tf.plan_has_changes();
    assert!(changes, "{plan}");
    let flat = support::flatten(&plan);
    assert!(flat.contains("termination_protection = false -> true"), "{plan}");
    assert!(flat.contains("failover_priority = 10 -> 15"), "{plan}");
    // Only the lag, which changes on every read, may be recomputed.
    let unknown: Vec<&str> = plan.lines().filter(|l| l.contains("(known after apply)")).collect();
    assert!(
        unknown.iter().all(|l| l.contains("replication_lag_bytes")),
        "an update must keep the computed values it does not change:\n{plan}"
    );
    tf.apply();
    assert_plan_empty(&tf, "after the update");
    tf.apply_config(&changed.replace("termination_protection = true", "termination_protection = false"));
}

#[test]
fn a_sentinel_that_dies_while_the_service_is_powered_off_is_restarted() {
    let members = |powered: bool| {
        let promoted = Member {
            promote: true,
            ..replica("eu", 2, 10)
        };
        config("startup-4", powered, &[promoted])
    };
    let tf = Terraform::new(&members(true));
    tf.apply();
    // eu is the primary; the service, only a replica now, is powered off.
    tf.apply_config(&members(false));
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    assert_eq!(tf.state_attributes("valkey_service.main")["sentinel_status"], "running");
    let pid = tf.node_pid("main", "sentinel-0");
    kill9(pid);
    let (changes, plan) = tf.plan_has_changes();
    assert!(changes, "{plan}");
    assert!(
        support::flatten(&plan).contains(r#"sentinel_status = "degraded" -> "running""#),
        "{plan}"
    );
    tf.apply();
    let eu = addr(&tf, "valkey_read_replica.eu");
    let views = access.sentinel_views();
    assert!(views.iter().all(|v| v.as_deref() == Some(eu.as_str())), "{views:?}");
    assert_plan_empty(&tf, "after the Sentinel's restart");
}
