//! Hosts lost and found again, through real Terraform and a Sentinel client: a group spread
//! over hosts 4, 5 and 6 (one region each, engines reached over TCP with TLS), whose engines
//! this test alone uses, so it may hang one, stop one, and cut another off the network. One
//! test, so no two faults overlap.

#[path = "support/docker.rs"]
mod docker_hosts;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::Terraform;
use support::group::{GroupAccess, SentinelWriter, now_ms, stop_and_check_writes, wait_consistent};

/// The longest a plan may take with a host gone before the test calls it hung: refresh asks
/// each engine for at most 10 s.
const HUNG: Duration = Duration::from_secs(60);

fn config(marker: &str) -> String {
    format!(
        r#"
resource "valkey_service" "main" {{
  name   = "main-{marker}"
  cloud  = "docker"
  plan   = "startup-4"
  region = "east"
  failover {{
    down_after_ms = 2000
  }}
}}

resource "valkey_read_replica" "west" {{
  name            = "west-{marker}"
  cloud           = "docker"
  primary_service = valkey_service.main.name
  plan            = "startup-4"
  region          = "west"
}}

resource "valkey_read_replica" "south" {{
  name            = "south-{marker}"
  cloud           = "docker"
  primary_service = valkey_service.main.name
  plan            = "startup-4"
  region          = "south"
}}
"#
    )
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().unwrap();
    assert!(status.success(), "ip {args:?}");
}

fn engine_pid(i: usize) -> i32 {
    std::fs::read_to_string(format!("/run/vk-docker-{i}.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Undoes the faults whatever happens: links up, engines running again.
struct Faults;

impl Faults {
    /// Host `i` off the network: its engine's API and its published ports stop answering.
    fn cut(&self, i: usize) {
        ip(&["link", "set", &format!("vkh{i}"), "down"]);
    }

    fn reconnect(&self, i: usize) {
        ip(&["link", "set", &format!("vkh{i}"), "up"]);
    }

    /// Host `i`'s engine stops answering (its containers run on).
    fn hang_engine(&self, i: usize) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(engine_pid(i)), nix::sys::signal::SIGSTOP).unwrap();
    }

    fn resume_engine(&self, i: usize) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(engine_pid(i)), nix::sys::signal::SIGCONT).unwrap();
    }
}

impl Faults {
    /// `scripts/docker-hosts.sh engine stop|start I`: host I's engine stopped as a host going
    /// down would stop it, or started again.
    fn engine(&self, action: &str, i: usize) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/docker-hosts.sh");
        let status = Command::new(script)
            .args(["engine", action, &i.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "engine {action} {i}");
    }
}

impl Drop for Faults {
    fn drop(&mut self) {
        if !std::path::Path::new("/run/vk-docker-6.sock").exists() {
            self.engine("start", 6);
        }
        for i in 4..=6 {
            let _ = Command::new("ip")
                .args(["link", "set", &format!("vkh{i}"), "up"])
                .status();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(engine_pid(i)), nix::sys::signal::SIGCONT);
        }
    }
}

/// A plan, timed: it must finish, succeed and change nothing.
fn timed_plan(tf: &Terraform, what: &str) -> String {
    let started = Instant::now();
    let out = tf.run(&["plan", "-input=false", "-no-color", "-detailed-exitcode"]);
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("plan with {what}: {:.1} s", took.as_secs_f64());
    assert!(took < HUNG, "the plan with {what} took {took:?}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the plan with {what} failed or changed something:\n{text}"
    );
    text
}

#[test]
fn hung_and_stopped_engines_and_a_lost_primary_region_never_hang_a_plan_and_come_back_as_replicas() {
    let marker = docker_hosts::marker();
    let _cleanup = docker_hosts::Cleanup(marker.clone());
    let faults = Faults;
    let tf = Terraform::new("");
    tf.write_config_with_provider(
        &docker_hosts::provider_block_for(&docker_hosts::tls_settings()),
        &config(&marker),
    );
    tf.apply();
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let (main, west, south) = (
        tf.address("valkey_service.main"),
        tf.address("valkey_read_replica.west"),
        tf.address("valkey_read_replica.south"),
    );
    assert!(main.starts_with("10.77.0.14:") && west.starts_with("10.77.0.15:") && south.starts_with("10.77.0.16:"));
    let members = [main.clone(), west.clone(), south.clone()];
    let access = GroupAccess::of(&tf, "valkey_service.main");
    wait_consistent(&access, &members, Some(&main), Duration::from_secs(20));

    // South's engine hangs: the plan finishes, names the node it could not reach, and plans
    // nothing (a node that cannot be seen is not a node to start).
    faults.hang_engine(6);
    let text = timed_plan(&tf, "host 6's engine hung");
    assert!(
        text.contains(&format!("Some nodes of south-{marker} could not be reached")) && text.contains(&south),
        "{text}"
    );
    // What the refresh records meanwhile (the docker guide's words): the node is not known to be
    // stopped, so powered stays; the Sentinel there is unreachable, not degraded.
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let south_state = tf.state_attributes("valkey_read_replica.south");
    assert_eq!(
        (south_state["state"].as_str(), south_state["powered"].as_bool()),
        (Some("DEGRADED"), Some(true))
    );
    assert_eq!(
        tf.state_attributes("valkey_service.main")["sentinel_status"],
        "unreachable"
    );
    faults.resume_engine(6);
    let text = timed_plan(&tf, "every host back");
    assert!(!text.contains("could not be reached"), "{text}");

    // South goes down with its engine (which stops its containers) and comes back: the plan
    // meanwhile reports it, the engine restarts the Sentinel but not the data node, and the
    // apply starts that as a replica again.
    faults.engine("stop", 6);
    let text = timed_plan(&tf, "host 6's engine stopped");
    assert!(
        text.contains(&format!("Some nodes of south-{marker} could not be reached")),
        "{text}"
    );
    faults.engine("start", 6);
    let (changes, text) = tf.plan_has_changes();
    assert!(changes && text.contains("powered"), "{text}");
    tf.apply();
    wait_consistent(&access, &members, Some(&main), Duration::from_secs(30));
    let text = timed_plan(&tf, "host 6 back");
    assert!(text.contains("No changes"), "{text}");
    // The engine stopped south's container as a host going down does (SIGTERM: it saved its
    // dataset and replication offset), so it resumed with a partial resync.
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(tf.state_attributes("valkey_read_replica.south")["full_resyncs"], 0);
    // South's host off the network for 5 s while the primary takes writes: it catches up
    // from the backlog.
    let mut primary = access.node(&main).unwrap();
    faults.cut(6);
    for i in 0..2000 {
        redis::cmd("SET")
            .arg(format!("during-cut:{i}"))
            .arg("x".repeat(100))
            .exec(&mut primary)
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(5));
    faults.reconnect(6);
    wait_consistent(&access, &members, Some(&main), Duration::from_secs(30));
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(tf.state_attributes("valkey_read_replica.south")["full_resyncs"], 0);
    let mut south_node = access.node(&south).unwrap();
    support::wait_for("south to catch up", Duration::from_secs(10), || {
        redis::cmd("EXISTS")
            .arg("during-cut:1999")
            .query::<i64>(&mut south_node)
            .unwrap_or(0)
            == 1
    });

    // East, the primary's region (and the records' host), is cut off. The Sentinels in west
    // and south promote a replica; the client follows it.
    let writer = SentinelWriter::start(&access, tf.dir.path().join("writer.log"), "w");
    std::thread::sleep(Duration::from_millis(500));
    faults.cut(4);
    let cut = now_ms();
    let first = writer
        .wait_for_acks_after(cut, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the Sentinel client never wrote again: {:?}", writer.errors()));
    eprintln!(
        "east cut -> the Sentinel client's first acknowledged write: {} ms",
        first.at_ms - cut
    );
    let promoted = access.sentinel_primary().unwrap();
    assert!(promoted == west || promoted == south, "{promoted}");

    // The plan neither hangs nor fails: it says what it could not refresh and keeps the rest.
    let text = timed_plan(&tf, "host 4 cut off");
    assert!(text.contains(&format!("Could not refresh main-{marker}")), "{text}");

    // East comes back; the apply makes its node a replica of the promoted primary.
    faults.reconnect(4);
    tf.apply();
    wait_consistent(&access, &members, Some(&promoted), Duration::from_secs(30));
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let state = tf.state_attributes("valkey_service.main");
    assert_eq!(
        (state["role"].as_str(), state["current_primary"].as_str()),
        (Some("replica"), Some(promoted.as_str()))
    );
    let text = timed_plan(&tf, "east back");
    assert!(text.contains("No changes"), "{text}");

    // The replica not promoted continued from the promoted one.
    for replica in ["west", "south"] {
        assert_eq!(
            tf.state_attributes(&format!("valkey_read_replica.{replica}"))["full_resyncs"],
            0,
            "{replica}"
        );
    }

    std::thread::sleep(Duration::from_millis(300));
    stop_and_check_writes(writer, &access, &promoted, cut, "cut");

    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(docker_hosts::containers_named(&marker), Vec::<(String, String)>::new());
}
