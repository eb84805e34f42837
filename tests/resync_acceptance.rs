//! Replicas resume where they stopped, through real Terraform, a real Sentinel client writing
//! all along, and the nodes' own counters: a restart by apply, a power cycle, a switchover, a
//! failover and a link cut each end in a partial resync, never in a full copy of the dataset,
//! even on replicas without persistence; `full_resyncs` in state says so, and moves when a full
//! resync was the only way (a replica killed with nothing on disk). The backlog is sized from a
//! declared write rate and outage, and its reach shows in state.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::group::{GroupAccess, SentinelWriter, wait_consistent};
use support::{Terraform, config_get, kill9};

/// 512 KiB/s for 60 s with a quarter more: 38 MiB; at 512 KiB/s it holds 76 s.
const BACKLOG_MIB: i64 = 38;
const REACH_SECONDS: i64 = 76;

fn config(near_threads: u32, near_powered: bool, near_promote: bool) -> String {
    format!(
        r#"
resource "valkey_service" "main" {{
  name   = "main"
  plan   = "startup-4"
  region = "local-1"
  failover {{
    down_after_ms = 2000
  }}
  valkey_user_config {{
    expected_write_kib_per_second = 512
    longest_link_outage_seconds   = 60
  }}
}}

resource "valkey_read_replica" "near" {{
  name              = "near"
  primary_service   = valkey_service.main.name
  plan              = "startup-4"
  region            = "local-2"
  failover_priority = 10
  powered           = {near_powered}
  promote           = {near_promote}
  valkey_user_config {{
    persistence = "off"
    io_threads  = {near_threads}
  }}
}}

resource "valkey_read_replica" "far" {{
  name              = "far"
  primary_service   = valkey_service.main.name
  plan              = "startup-4"
  region            = "local-3"
  failover_priority = 20
  valkey_user_config {{
    persistence = "off"
  }}
}}
"#
    )
}

fn refresh(tf: &Terraform) {
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
}

fn full_resyncs(tf: &Terraform, replica: &str) -> i64 {
    tf.state_attributes(&format!("valkey_read_replica.{replica}"))["full_resyncs"]
        .as_i64()
        .unwrap_or_else(|| panic!("{replica} reports no full_resyncs"))
}

/// Per node process (run_id): its full and partial syncs served, from INFO stats.
fn sync_counters(access: &GroupAccess, nodes: &[String]) -> HashMap<String, (i64, i64)> {
    let mut seen = HashMap::new();
    for addr in nodes {
        let Ok(mut conn) = access.node(addr) else { continue };
        let Ok(info): redis::RedisResult<String> = redis::cmd("INFO").arg("everything").query(&mut conn) else {
            continue;
        };
        let field = |k: &str| support::info_field(&info, k).unwrap_or_default();
        seen.insert(
            field("run_id"),
            (
                field("sync_full").parse().unwrap_or(0),
                field("sync_partial_ok").parse().unwrap_or(0),
            ),
        );
    }
    seen
}

/// How many (full, partial) syncs the group served between two readings: a node process that
/// started meanwhile counts from zero.
fn served(before: &HashMap<String, (i64, i64)>, after: &HashMap<String, (i64, i64)>) -> (i64, i64) {
    after.iter().fold((0, 0), |(full, partial), (run_id, (f, p))| {
        let (f0, p0) = before.get(run_id).copied().unwrap_or((0, 0));
        (full + f - f0, partial + p - p0)
    })
}

#[test]
fn restarts_power_cycles_switchovers_failovers_and_link_cuts_resume_with_partial_resyncs() {
    let tf = Terraform::new(&config(1, true, false));
    tf.apply();
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let (main, near, far) = (
        tf.address("valkey_service.main"),
        tf.address("valkey_read_replica.near"),
        tf.address("valkey_read_replica.far"),
    );
    let members = [main.clone(), near.clone(), far.clone()];
    wait_consistent(&access, &members, Some(&main), Duration::from_secs(20));

    // The backlog sized from what the user declared, on the node and in state, and its reach.
    let service = tf.state_attributes("valkey_service.main");
    assert_eq!(service["valkey_user_config"]["repl_backlog_size"], BACKLOG_MIB);
    let mut primary = access.node(&main).unwrap();
    assert_eq!(
        config_get(&mut primary, "repl-backlog-size"),
        (BACKLOG_MIB * 1024 * 1024).to_string()
    );
    assert_eq!(service["backlog_reach_seconds"], REACH_SECONDS);
    assert_eq!(
        tf.state_attributes("valkey_read_replica.far")["backlog_reach_seconds"],
        REACH_SECONDS
    );
    let (changes, text) = tf.plan_has_changes();
    assert!(!changes, "a declared backlog plans nothing once applied:\n{text}");

    // A dataset worth keeping, then a Sentinel client writing through every event.
    let value = "x".repeat(1000);
    for chunk in 0..20 {
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.cmd("SET").arg(format!("data:{chunk}:{i}")).arg(&value).ignore();
        }
        let _: () = pipe.query(&mut primary).unwrap();
    }
    let writer = SentinelWriter::start(&access, tf.dir.path().join("writer.log"), "w");
    for replica in ["near", "far"] {
        assert_eq!(full_resyncs(&tf, replica), 0, "{replica} right after its creation");
    }

    let event = |name: &str, act: &mut dyn FnMut(), primary_after: &str| {
        let before = sync_counters(&access, &members);
        act();
        wait_consistent(&access, &members, Some(primary_after), Duration::from_secs(30));
        let (full, partial) = served(&before, &sync_counters(&access, &members));
        refresh(&tf);
        eprintln!("{name}: {full} full, {partial} partial");
        (full, partial)
    };

    // A setting that restarts the replica (persistence off: it saves on the way down anyway).
    let (full, partial) = event(
        "restart by apply",
        &mut || {
            tf.apply_config(&config(2, true, false));
        },
        &main,
    );
    assert_eq!((full, full_resyncs(&tf, "near")), (0, 0));
    assert!(partial >= 1, "the restarted replica resumed: {partial}");

    let (full, partial) = event(
        "power off/on",
        &mut || {
            tf.apply_config(&config(2, false, false));
            tf.apply_config(&config(2, true, false));
        },
        &main,
    );
    assert_eq!((full, full_resyncs(&tf, "near")), (0, 0));
    assert!(partial >= 1, "{partial}");

    // A switchover to near: main and far continue from it.
    let (full, partial) = event(
        "switchover",
        &mut || {
            tf.apply_config(&config(2, true, true));
        },
        &near,
    );
    assert_eq!((full, full_resyncs(&tf, "far")), (0, 0));
    assert!(partial >= 2, "main and far both continued from near: {partial}");

    // A restart by apply of the group's primary itself (near, persistence off): it stays the
    // primary (its Sentinels pause meanwhile), comes back with its dataset and history, and
    // nobody copies the dataset.
    let before = sync_counters(&access, &members);
    tf.apply_config(&config(3, true, true));
    let primary_now = wait_consistent(&access, &members, None, Duration::from_secs(30));
    assert_eq!(primary_now, near, "a restart does not move the primary");
    let (full, partial) = served(&before, &sync_counters(&access, &members));
    refresh(&tf);
    eprintln!("restart of the primary by apply: {full} full, {partial} partial");
    assert_eq!((full, full_resyncs(&tf, "near"), full_resyncs(&tf, "far")), (0, 0, 0));
    let mut now_primary = access.node(&primary_now).unwrap();
    let kept: usize = redis::cmd("EVAL")
        .arg("return #redis.call('KEYS', 'data:*')")
        .arg(0)
        .query(&mut now_primary)
        .unwrap();
    assert_eq!(kept, 20_000, "the restarted primary kept its dataset");

    // The replica's link down for 3 s (its password to the primary wrong, its link closed),
    // well within the backlog: it resumes.
    let (full, partial) = event(
        "link cut 3 s",
        &mut || {
            let mut conn = access.node(&far).unwrap();
            let right = config_get(&mut conn, "masterauth");
            support::config_set(&mut conn, "masterauth", "cut-off");
            let _: redis::RedisResult<()> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("master")
                .query(&mut conn);
            std::thread::sleep(Duration::from_secs(3));
            support::config_set(&mut conn, "masterauth", &right);
        },
        &near,
    );
    assert_eq!((full, full_resyncs(&tf, "far")), (0, 0));
    assert!(partial >= 1, "{partial}");

    // The primary (near) killed: main (priority) or far is promoted, the other continues from
    // it. near comes back by apply with nothing on disk (killed, persistence off): a full
    // resync is the only way, and its counter says so.
    tf.apply_config(&config(3, true, false));
    let pid = tf.node_pid("near", "node-0");
    kill9(pid);
    let survivors = [main.clone(), far.clone()];
    support::wait_for("a promotion", Duration::from_secs(30), || {
        access.sentinel_primary().is_some_and(|p| p != near)
    });
    let promoted = access.sentinel_primary().unwrap();
    wait_consistent(&access, &survivors, Some(&promoted), Duration::from_secs(30));
    tf.apply_config(&config(3, true, false));
    wait_consistent(&access, &members, Some(&promoted), Duration::from_secs(30));
    refresh(&tf);
    assert_eq!(full_resyncs(&tf, "far"), 0, "far continued from the promoted node");
    assert_eq!(full_resyncs(&tf, "near"), 1, "near was killed with nothing on disk");
    assert_eq!(tf.state_attributes("valkey_read_replica.near")["role"], "replica");

    writer.stop();
    let (changes, text) = tf.plan_has_changes();
    assert!(!changes, "{text}");
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(tf.live_node_pids().is_empty());
}
