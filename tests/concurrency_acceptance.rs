//! Two Terraform runs against one data_dir at once: the data_dir lock serialises them and the
//! 5-replica limit holds; the run that loses gets a clear error.

mod support;

use support::Terraform;

fn replica(name: &str, primary: &str) -> String {
    format!(
        r#"
resource "valkey_read_replica" "{name}" {{
  name            = "{name}"
  primary_service = {primary}
  plan            = "startup-4"
  region          = "local-2"
}}
"#
    )
}

#[test]
fn concurrent_applies_cannot_exceed_five_replicas() {
    let four: String = (1..=4)
        .map(|i| replica(&format!("r{i}"), "valkey_service.primary.name"))
        .collect();
    let owner = Terraform::new(&format!(
        "resource \"valkey_service\" \"primary\" {{\n  name   = \"primary\"\n  plan   = \"startup-4\"\n  region = \"local-1\"\n}}\n{four}"
    ));
    owner.apply();

    // Two other configurations each add a fifth replica; each plan alone is within the limit,
    // and both are saved before either is applied, so only the apply-time check can stop one.
    let team_a = Terraform::sharing_data_dir(&owner, &replica("a5", "\"primary\""));
    let team_b = Terraform::sharing_data_dir(&owner, &replica("b5", "\"primary\""));
    team_a.ok(&["plan", "-input=false", "-out=tfplan"]);
    team_b.ok(&["plan", "-input=false", "-out=tfplan"]);

    let args = ["apply", "-input=false", "-no-color", "tfplan"];
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| team_a.run(&args));
        let b = s.spawn(|| team_b.run(&args));
        (a.join().unwrap(), b.join().unwrap())
    });
    let outcomes = [a.status.success(), b.status.success()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "exactly one apply may win: {outcomes:?}"
    );
    let loser = if outcomes[0] { &b } else { &a };
    let text = support::flatten(&format!(
        "{}{}",
        String::from_utf8_lossy(&loser.stdout),
        String::from_utf8_lossy(&loser.stderr)
    ));
    // Terraform re-plans every resource while applying a saved plan, so the run that comes
    // second is refused either by that re-plan (the other replica exists by then) or, when both
    // get that far together, by the apply-time check under the data_dir lock.
    let refused_at_apply = text.contains("already has 5 read replicas");
    let refused_at_replan = text.contains("would have 6 read replicas");
    assert!(refused_at_apply || refused_at_replan, "{text}");
    assert!(text.contains("a primary can have at most 5"), "{text}");

    // The data_dir holds exactly five replicas of the primary, and the losing run left nothing.
    let markers = std::fs::read_dir(owner.data_dir().join("services/primary/replicas"))
        .unwrap()
        .count();
    assert_eq!(markers, 5);
    let loser_name = if outcomes[0] { "b5" } else { "a5" };
    assert!(!owner.data_dir().join("services").join(loser_name).exists());

    // Clean up in dependency order: the extra replica's owner first.
    let winner = if outcomes[0] { &team_a } else { &team_b };
    winner.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
}
