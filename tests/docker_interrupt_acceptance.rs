//! The docker cloud under interruption and contention, through real Terraform: applies and
//! destroys killed part-way converge on the next run with no container or volume left over,
//! and two working directories (two workstations with their own state) adding replicas to one
//! primary at once never get more than 5 between them.

#[path = "support/docker.rs"]
mod docker_hosts;
mod support;

use std::time::Duration;

use support::Terraform;

fn group(marker: &str, plan: &str) -> String {
    format!(
        r#"
resource "valkey_service" "main" {{
  name   = "main-{marker}"
  cloud  = "docker"
  plan   = "{plan}"
  region = "region-a"
}}

resource "valkey_read_replica" "far" {{
  name            = "far-{marker}"
  cloud           = "docker"
  primary_service = valkey_service.main.name
  plan            = "startup-4"
  region          = "region-b"
}}
"#
    )
}

/// Kills Terraform and the provider part-way through creates, destroys and resizes (which add
/// or remove a node), at points spread over those runs; after each, the next apply converges.
#[test]
fn applies_and_destroys_killed_part_way_converge_and_leave_no_container_or_volume() {
    let marker = docker_hosts::marker();
    let _cleanup = docker_hosts::Cleanup(marker.clone());
    let tf = docker_hosts::workdir(&group(&marker, "business-4"));
    for (run, after_ms) in [700u64, 1900, 3100, 1300, 2500, 4300].into_iter().enumerate() {
        let resize = |plan: &str| tf.write_config_with_provider(&docker_hosts::provider_block(), &group(&marker, plan));
        tf.interrupt_then_converge(run, Duration::from_millis(after_ms), resize, "fixed points");
    }
    docker_hosts::destroy_leaves_nothing(&tf, &marker);
}

fn replicas(marker: &str, names: &[&str]) -> String {
    names
        .iter()
        .map(|name| {
            format!(
                r#"
resource "valkey_read_replica" "{name}" {{
  name            = "{name}-{marker}"
  cloud           = "docker"
  primary_service = "main-{marker}"
  plan            = "startup-4"
  region          = "region-b"
}}
"#
            )
        })
        .collect()
}

/// What one working directory's apply said and whether it succeeded.
fn apply_in(tf: &Terraform) -> (bool, String) {
    let out = tf.run(&["apply", "-auto-approve", "-input=false", "-no-color", "-parallelism=3"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn two_workstations_adding_replicas_at_once_get_five_between_them() {
    let marker = docker_hosts::marker();
    let _cleanup = docker_hosts::Cleanup(marker.clone());
    let owner = docker_hosts::workdir(&format!(
        r#"
resource "valkey_service" "main" {{
  name   = "main-{marker}"
  cloud  = "docker"
  plan   = "hobbyist"
  region = "region-a"
}}
"#
    ));
    owner.apply();
    // Each plans 3 against the 0 that exist: both plans pass, the limit is met at apply.
    let first = docker_hosts::workdir(&replicas(&marker, &["a1", "a2", "a3"]));
    let second = docker_hosts::workdir(&replicas(&marker, &["b1", "b2", "b3"]));
    for tf in [&first, &second] {
        let (changes, plan) = tf.plan_has_changes();
        assert!(changes && plan.contains("3 to add"), "{plan}");
    }
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| apply_in(&first));
        let b = scope.spawn(|| apply_in(&second));
        (a.join().unwrap(), b.join().unwrap())
    });
    let created = |tf: &Terraform| {
        tf.ok(&["state", "list"])
            .lines()
            .filter(|l| l.starts_with("valkey_read_replica."))
            .count()
    };
    let (made_a, made_b) = (created(&first), created(&second));
    eprintln!(
        "concurrent applies: {made_a} + {made_b} replicas created; applies succeeded: {}, {}",
        a.0, b.0
    );
    assert_eq!(made_a + made_b, 5, "first:\n{}\nsecond:\n{}", a.1, b.1);
    let (refused, text) = if a.0 { (&b, &second) } else { (&a, &first) };
    assert!(!refused.0, "one apply must fail: both succeeded");
    assert!(
        support::flatten(&refused.1).contains("a primary can have at most 5"),
        "the refused apply must say the limit:\n{}",
        refused.1
    );
    // The replica data containers on the engines: 5, no more.
    let nodes: Vec<_> = docker_hosts::containers_named(&marker)
        .into_iter()
        .filter(|(_, name)| (name.starts_with("vk-a") || name.starts_with("vk-b")) && !name.contains("sentinel"))
        .collect();
    assert_eq!(nodes.len(), 5, "{nodes:?}");
    // One group came of the two runs: the primary's three Sentinels each watch all five
    // replicas, wherever each run placed them.
    owner.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let main = owner.state_attributes("valkey_service.main");
    assert_eq!(main["sentinel_status"], "running");
    let access = support::group::GroupAccess::of(&owner, "valkey_service.main");
    assert_eq!(access.sentinels.len(), 3);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let views = access.sentinel_replicas();
        if views.len() == 3 && views.iter().all(|v| v.len() == 5) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the Sentinels' replicas: {views:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The refused one is refused again, at plan now that the others exist.
    let out = text.run(&["plan", "-input=false", "-no-color"]);
    let plan = support::flatten(&String::from_utf8_lossy(&out.stderr));
    assert!(
        !out.status.success() && plan.contains("Too many read replicas"),
        "{plan}"
    );

    // As the limits guide says: a configuration the plan refuses is destroyed without the
    // refresh that plans it as it is.
    for tf in [&first, &second] {
        tf.ok(&[
            "destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-refresh=false",
        ]);
    }
    docker_hosts::destroy_leaves_nothing(&owner, &marker);
}
