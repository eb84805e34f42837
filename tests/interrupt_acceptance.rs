//! Terraform and the provider killed at arbitrary points of create, update and delete: the next
//! run converges, with no orphaned process, no data left without a state entry, and a clean
//! plan. CI kills at 21 points spread over a run; `make soak` kills at random points
//! (INTERRUPT_RUNS runs, INTERRUPT_SEED or a seed from the clock, printed to replay).

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::Terraform;

const GROUP: &str = r#"
resource "valkey_service" "primary" {
  name   = "primary"
  plan   = "business-4"
  region = "local-1"
}

resource "valkey_read_replica" "replica" {
  name            = "replica"
  primary_service = valkey_service.primary.name
  plan            = "startup-4"
  region          = "local-2"
}
"#;

/// Processes whose working directory is inside `data_dir`: every node and Sentinel runs in
/// its own directory there, so this finds them even when their pid files are gone.
fn processes_in(data_dir: &Path) -> Vec<i32> {
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir.to_path_buf());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| support::is_alive(*pid))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&data_dir)))
        .collect()
}

/// When to kill each run: INTERRUPT_RUNS random points when asked, else 21 points spread over
/// the plan, the creates, the Sentinel group, the deletes, and updates that add or remove a
/// standby node (business-4 <-> premium-4). Also says how to replay them.
fn kill_points() -> (Vec<Duration>, String) {
    let runs: Option<u64> = std::env::var("INTERRUPT_RUNS").ok().and_then(|r| r.parse().ok());
    let Some(runs) = runs else {
        let spread = (0..21u64).map(|run| Duration::from_millis(150 + (run * 97) % 900));
        return (spread.collect(), "the 21 spread points".into());
    };
    let seed = std::env::var("INTERRUPT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    let mut rng = StdRng::seed_from_u64(seed);
    let random = (0..runs).map(|_| Duration::from_millis(rng.random_range(50..1500)));
    (random.collect(), format!("INTERRUPT_RUNS={runs} INTERRUPT_SEED={seed}"))
}

#[test]
fn interrupted_creates_updates_and_destroys_all_converge() {
    let tf = Terraform::new(GROUP);
    let destroy = ["destroy", "-auto-approve", "-input=false", "-no-color"];
    let (points, replay) = kill_points();
    eprintln!(
        "killing terraform and the provider at {} points ({replay})",
        points.len()
    );
    for (run, after) in points.into_iter().enumerate() {
        tf.interrupt_then_converge(
            run,
            after,
            |plan| tf.write_config(&GROUP.replace("business-4", plan)),
            &replay,
        );
    }
    tf.ok(&destroy);
    let orphans = processes_in(&tf.data_dir());
    assert!(orphans.is_empty(), "orphaned processes: {orphans:?}");
    let left: Vec<_> = std::fs::read_dir(tf.data_dir().join("services"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "data left without a state entry: {left:?}");
}

#[test]
fn ctrl_c_stops_an_apply_cleanly_and_the_next_apply_converges() {
    let tf = Terraform::new(GROUP);
    let child = tf
        .command(&["apply", "-auto-approve", "-input=false", "-no-color"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    // Ctrl-C in a terminal signals the whole foreground process group.
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked") && !text.contains("RUST_BACKTRACE"), "{text}");
    // However far it got, the next apply finishes the job and leaves a clean plan.
    tf.apply();
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "{plan}");
}
