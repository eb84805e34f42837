//! valkey_user through real Terraform: an application user with a write-only password on
//! every member of a replication group, used by a Sentinel-aware client across a kill -9
//! failover, with no trace of the password in state or plan; drift put back; a read replica
//! added later; the default user's password rotated write-only; import on a second
//! workstation.

mod support;

use std::time::Duration;

use support::group::{GroupAccess, SentinelWriter, now_ms};
use support::{Terraform, flatten, kill9, wait_for};

const APP_PASSWORD: &str = "app-Pw-7f3c9e21b8";

fn group(prefix: &str, extra: &str) -> String {
    format!(
        r#"
variable "app_password" {{
  type      = string
  sensitive = true
  ephemeral = true
}}

resource "valkey_service" "main" {{
  name   = "{prefix}-main"
  plan   = "startup-4"
  region = "local-1"
  failover {{
    down_after_ms = 2000
  }}
}}

resource "valkey_read_replica" "eu" {{
  name              = "{prefix}-eu"
  primary_service   = valkey_service.main.name
  plan              = "startup-4"
  region            = "local-2"
  failover_priority = 10
}}

resource "valkey_read_replica" "us" {{
  name              = "{prefix}-us"
  primary_service   = valkey_service.main.name
  plan              = "startup-4"
  region            = "local-3"
  failover_priority = 50
}}

resource "valkey_user" "app" {{
  service             = valkey_service.main.name
  username            = "app"
  password_wo         = var.app_password
  password_wo_version = 1
  keys                = ["app:*"]
  categories          = ["+@read", "+@write", "+@connection"]
}}

resource "valkey_user" "reader" {{
  service    = valkey_service.main.name
  username   = "reader"
  keys       = ["*"]
  categories = ["+@read", "+@connection"]
}}
{extra}
"#
    )
}

/// A working directory whose ephemeral variable comes from terraform.tfvars, as a user would
/// give it (or through TF_VAR_app_password).
fn workstation(config: &str, password: &str) -> Terraform {
    let tf = Terraform::new(config);
    std::fs::write(
        tf.work().join("terraform.tfvars"),
        format!("app_password = \"{password}\"\n"),
    )
    .unwrap();
    tf
}

/// host:port of every member of the group (one node each), from state.
fn member_addresses(tf: &Terraform) -> Vec<String> {
    [
        "valkey_service.main",
        "valkey_read_replica.eu",
        "valkey_read_replica.us",
    ]
    .iter()
    .map(|r| {
        let state = tf.state_attributes(r);
        format!("{}:{}", state["host"].as_str().unwrap(), state["port"])
    })
    .collect()
}

/// A connection to `addr` logged in as `user`.
fn login(addr: &str, user: &str, password: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://{user}:{password}@{addr}").as_str())?
        .get_connection_with_timeout(Duration::from_secs(2))
}

/// Every file Terraform wrote about the resources: the state, `terraform show -json` of it, a
/// saved plan and `terraform show -json` of that plan, and each entry of the plan's zip.
fn everything_terraform_keeps(tf: &Terraform) -> Vec<(String, String)> {
    let mut kept = vec![
        (
            "terraform.tfstate".to_string(),
            std::fs::read_to_string(tf.work().join("terraform.tfstate")).unwrap(),
        ),
        ("show -json".to_string(), tf.ok(&["show", "-json"])),
    ];
    tf.ok(&["plan", "-input=false", "-out=saved.tfplan"]);
    kept.push((
        "show -json saved.tfplan".to_string(),
        tf.ok(&["show", "-json", "saved.tfplan"]),
    ));
    let unzip = std::process::Command::new("unzip")
        .args(["-p", "saved.tfplan"])
        .current_dir(tf.work())
        .output()
        .unwrap();
    assert!(unzip.status.success());
    kept.push((
        "saved.tfplan (unzipped)".to_string(),
        String::from_utf8_lossy(&unzip.stdout).into_owned(),
    ));
    kept
}

#[test]
fn an_application_user_with_a_write_only_password_works_through_a_kill_9_failover() {
    let tf = workstation(&group("users", ""), APP_PASSWORD);
    tf.apply();
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "a second plan must be empty:\n{plan}");

    // No trace of the password, nor of the SHA-256 the nodes hold, in anything Terraform keeps.
    let hash = sha256_hex(APP_PASSWORD);
    for (what, text) in everything_terraform_keeps(&tf) {
        assert!(!text.contains(APP_PASSWORD), "{what} holds the write-only password");
        assert!(!text.contains(&hash), "{what} holds the password's hash");
        if what.starts_with("show -json") {
            assert!(text.contains("\"password_wo\":null"), "{what}: {text}");
        }
    }
    let app = tf.state_attributes("valkey_user.app");
    assert_eq!(app["password"], "");
    assert_eq!(app["id"], "users-main/app");
    assert_eq!(app["acl_rules"], "~app:* +@read +@write +@connection");

    // The user is on every member; it may write app:* and nothing else; the reader only reads.
    let members = member_addresses(&tf);
    assert_eq!(members.len(), 3);
    let mut primary = login(&members[0], "app", APP_PASSWORD).unwrap();
    redis::cmd("SET").arg("app:first").arg("1").exec(&mut primary).unwrap();
    redis::cmd("WAIT").arg(2).arg(5000).exec(&mut primary).unwrap();
    let refused = redis::cmd("SET")
        .arg("other:first")
        .arg("1")
        .exec(&mut primary)
        .unwrap_err();
    assert!(refused.to_string().contains("No permissions"), "{refused}");
    let reader_password = tf.state_attributes("valkey_user.reader")["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(reader_password.len(), 32);
    for addr in &members {
        let mut conn = login(addr, "app", APP_PASSWORD).unwrap_or_else(|e| panic!("app on {addr}: {e}"));
        let got: Option<String> = redis::cmd("GET").arg("app:first").query(&mut conn).unwrap();
        assert_eq!(got.as_deref(), Some("1"), "{addr}");
        let mut reader = login(addr, "reader", &reader_password).unwrap();
        let denied = redis::cmd("SET").arg("app:x").arg("1").exec(&mut reader).unwrap_err();
        assert!(denied.to_string().contains("no permissions"), "{denied}");
    }
    assert!(login(&members[1], "app", "wrong-password").is_err());

    // A Sentinel-aware client logged in as the user keeps writing through a kill -9 of the
    // primary's node.
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false"]);
    let mut access = GroupAccess::of(&tf, "valkey_service.main");
    access.username = Some("app".into());
    access.password = APP_PASSWORD.into();
    let writer = SentinelWriter::start(&access, tf.dir.path().join("writer.log"), "app");
    let pid = tf.node_pid("users-main", "node-0");
    let killed_at = now_ms();
    kill9(pid);
    wait_for("a promotion", Duration::from_secs(20), || {
        access.sentinel_primary().is_some_and(|p| p != members[0])
    });
    let resumed = writer
        .wait_for_acks_after(killed_at + 1000, Duration::from_secs(20))
        .expect("the client writes again as app after the failover");
    let new_primary = access.sentinel_primary().unwrap();
    eprintln!(
        "app user: writes resumed {} ms after kill -9, on {new_primary}",
        resumed.at_ms - killed_at
    );
    let acks = writer.stop();
    let errors_after: Vec<_> = std::fs::read_to_string(tf.dir.path().join("writer.log"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("E ") && l[2..].split(' ').next().unwrap().parse::<u64>().unwrap() > resumed.at_ms)
        .map(str::to_string)
        .collect();
    assert!(errors_after.is_empty(), "errors once writes resumed: {errors_after:?}");
    let mut promoted = login(&new_primary, "app", APP_PASSWORD).unwrap();
    let last = acks.last().unwrap();
    let kept: Option<String> = redis::cmd("GET")
        .arg(format!("app:{}", last.n))
        .query(&mut promoted)
        .unwrap();
    assert!(kept.is_some(), "the last acknowledged write is on the new primary");

    // The next apply brings the killed node back as a replica, with the user from its config.
    tf.apply();
    wait_for(
        "the old primary's node to answer as app",
        Duration::from_secs(10),
        || login(&members[0], "app", APP_PASSWORD).is_ok(),
    );
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "plan after the failover converged:\n{plan}");

    // A user changed on one member outside Terraform is drift; the apply puts it back.
    let mut us = login(&members[2], "default", &access_password(&tf)).unwrap();
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("+flushall")
        .exec(&mut us)
        .unwrap();
    let (changes, plan) = tf.plan_has_changes();
    let flat = flatten(&plan);
    assert!(
        changes && flat.contains("# valkey_user.app will be updated in-place"),
        "{plan}"
    );
    assert!(flat.contains("differs on users-us-0"), "{plan}");
    assert!(!plan.contains(APP_PASSWORD));
    tf.apply();
    let rules: Vec<String> = redis::cmd("ACL").arg("LIST").query(&mut us).unwrap();
    assert!(!rules.iter().any(|l| l.contains("flushall")), "{rules:?}");
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "{plan}");

    tf.ok(&["destroy", "-auto-approve", "-input=false"]);
    assert!(tf.live_node_pids().is_empty());
}

fn access_password(tf: &Terraform) -> String {
    tf.state_attributes("valkey_service.main")["password"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sha256_hex(text: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

fn small_group(users: &str, second_replica: bool) -> String {
    let late = if second_replica {
        r#"
resource "valkey_read_replica" "late" {
  name            = "rot-late"
  primary_service = valkey_service.main.name
  plan            = "startup-4"
  region          = "local-3"
}
"#
    } else {
        ""
    };
    format!(
        r#"
variable "app_password" {{
  type      = string
  sensitive = true
  ephemeral = true
}}

resource "valkey_service" "main" {{
  name   = "rot-main"
  plan   = "hobbyist"
  region = "local-1"
}}

resource "valkey_read_replica" "eu" {{
  name            = "rot-eu"
  primary_service = valkey_service.main.name
  plan            = "startup-4"
  region          = "local-2"
}}
{late}
{users}
"#
    )
}

fn users(version: u32, default_version: u32) -> String {
    format!(
        r#"
resource "valkey_user" "app" {{
  service             = valkey_service.main.name
  username            = "app"
  password_wo         = var.app_password
  password_wo_version = {version}
  keys                = ["app:*"]
  channels            = ["events:*"]
  categories          = ["+@all", "-@dangerous"]
  commands            = ["-keys"]
}}

resource "valkey_user" "default" {{
  service             = valkey_service.main.name
  username            = "default"
  password_wo         = "default-{default_version}-Secret"
  password_wo_version = {default_version}
}}

resource "valkey_user" "worker" {{
  service    = valkey_service.main.name
  username   = "worker"
  keys       = ["jobs:*"]
  categories = ["+@list", "+@connection"]
}}

resource "valkey_user" "ops" {{
  service    = valkey_service.main.name
  username   = "ops"
  password   = "ops-Password-{version}"
  categories = ["+@connection"]
  commands   = ["+info"]
}}
"#
    )
}

fn set_password(tf: &Terraform, password: &str) {
    std::fs::write(
        tf.work().join("terraform.tfvars"),
        format!("app_password = \"{password}\"\n"),
    )
    .unwrap();
}

#[test]
fn users_reach_later_replicas_rotate_and_import_on_a_second_workstation() {
    let tf = workstation(&small_group(&users(1, 1), false), "first-App-Pw");
    tf.apply();
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "{plan}");

    // The default user's write-only password: nowhere in the service's state, and the only
    // one the nodes take; the provider still administers the group with it.
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false"]);
    let main = tf.state_attributes("valkey_service.main");
    assert_eq!(main["password"], "");
    let main_addr = format!("{}:{}", main["host"].as_str().unwrap(), main["port"]);
    assert_eq!(main["service_uri"], format!("valkey://{main_addr}"));
    let shown = tf.ok(&["show", "-json"]);
    assert!(!shown.contains("default-1-Secret"), "{shown}");
    assert!(login(&main_addr, "default", "default-1-Secret").is_ok());

    // A replica created after the users has them from its first start.
    tf.write_config(&small_group(&users(1, 1), true));
    tf.apply();
    let late = tf.state_attributes("valkey_read_replica.late");
    let late_addr = format!("{}:{}", late["host"].as_str().unwrap(), late["port"]);
    let mut app = login(&late_addr, "app", "first-App-Pw").expect("app logs in to a replica made later");
    let denied = redis::cmd("KEYS").arg("*").exec(&mut app).unwrap_err();
    assert!(denied.to_string().contains("no permissions"), "{denied}");
    let worker_password = tf.state_attributes("valkey_user.worker")["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(login(&late_addr, "worker", &worker_password).is_ok());
    assert!(login(&late_addr, "default", "default-1-Secret").is_ok());
    assert!(
        login(&late_addr, "ops", "ops-Password-1").is_ok(),
        "a password given in the configuration"
    );

    // New write-only passwords take effect on every member when their version changes; the old
    // ones stop working.
    set_password(&tf, "second-App-Pw");
    tf.write_config(&small_group(&users(2, 2), true));
    let plan = flatten(&tf.ok(&["plan", "-input=false", "-no-color"]));
    assert!(plan.contains("password_wo_version = 1 -> 2"), "{plan}");
    assert!(!plan.contains("second-App-Pw") && !plan.contains("default-2-Secret"));
    tf.apply();
    for addr in [&main_addr, &late_addr] {
        assert!(login(addr, "app", "second-App-Pw").is_ok(), "{addr}");
        assert!(login(addr, "app", "first-App-Pw").is_err(), "{addr}");
        assert!(login(addr, "default", "default-2-Secret").is_ok(), "{addr}");
        assert!(login(addr, "default", "default-1-Secret").is_err(), "{addr}");
        assert!(login(addr, "ops", "ops-Password-2").is_ok(), "{addr}");
    }
    // The provider still manages the group: a power cycle of the service.
    tf.write_config(
        &small_group(&users(2, 2), true)
            .replace("region = \"local-1\"\n}", "region = \"local-1\"\n  powered = false\n}"),
    );
    tf.apply();
    tf.write_config(&small_group(&users(2, 2), true));
    tf.apply();
    assert!(login(&main_addr, "app", "second-App-Pw").is_ok(), "after a power cycle");
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "{plan}");

    // A user deleted outside Terraform on every member is drift; the apply makes it again.
    for addr in [&main_addr, &late_addr] {
        let mut admin = login(addr, "default", "default-2-Secret").unwrap();
        redis::cmd("ACL").arg("DELUSER").arg("worker").exec(&mut admin).unwrap();
    }
    let (changes, plan) = tf.plan_has_changes();
    assert!(changes && flatten(&plan).contains("missing on rot-main-0"), "{plan}");
    tf.apply();
    assert!(login(&late_addr, "worker", &worker_password).is_ok());

    // A second workstation imports the generated-password user and plans no change.
    let second = Terraform::sharing_data_dir(
        &tf,
        r#"
resource "valkey_user" "worker" {
  service    = "rot-main"
  username   = "worker"
  keys       = ["jobs:*"]
  categories = ["+@list", "+@connection"]
}
"#,
    );
    second.ok(&["import", "-input=false", "valkey_user.worker", "rot-main/worker"]);
    let (changes, plan) = second.plan_has_changes();
    assert!(!changes, "{plan}");
    assert_eq!(
        second.state_attributes("valkey_user.worker")["password"],
        worker_password
    );
    let wrong = second.fails(&["import", "-input=false", "valkey_user.worker", "rot-main"]);
    assert!(wrong.contains("is not SERVICE/USERNAME"), "{wrong}");
    second.ok(&["state", "rm", "valkey_user.worker"]);

    // Destroying a user removes it from every member.
    tf.write_config(
        &small_group(&users(2, 2), true)
            .replace(
                "resource \"valkey_user\" \"worker\"",
                "resource \"valkey_user\" \"gone\"",
            )
            .replace("username   = \"worker\"", "username   = \"gone\""),
    );
    tf.apply();
    assert!(login(&late_addr, "worker", &worker_password).is_err());

    // A command Valkey does not know passes the plan's syntax check; the first member refuses
    // it at apply, at the attribute, and no member gets the user.
    let unknown = "\nresource \"valkey_user\" \"odd\" {\n  service  = valkey_service.main.name\n  username = \"odd\"\n  password = \"odd-Password-1\"\n  commands = [\"+nosuchcommand\"]\n}\n";
    tf.write_config(&(small_group(&users(2, 2), true) + unknown));
    let out = tf.fails(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(
        out.contains("Valkey refused the user's rules") && out.contains("Fix commands"),
        "{out}"
    );
    assert!(
        out.contains("commands = [\"+nosuchcommand\"]"),
        "the error points at commands: {out}"
    );
    for addr in [&main_addr, &late_addr] {
        assert!(login(addr, "odd", "odd-Password-1").is_err(), "{addr}");
    }

    // Destroying the default user's resource leaves its password as it is.
    tf.write_config(&small_group(&users(2, 2), true).replace("resource \"valkey_user\" \"default\"", "resource \"terraform_data\" \"was_default\"").replace("  service             = valkey_service.main.name\n  username            = \"default\"\n  password_wo         = \"default-2-Secret\"\n  password_wo_version = 2\n", "  input = \"x\"\n"));
    tf.apply();
    assert!(login(&main_addr, "default", "default-2-Secret").is_ok());
    tf.ok(&["destroy", "-auto-approve", "-input=false"]);
}

#[test]
fn bad_rules_and_a_users_service_are_refused_at_their_attribute() {
    let tf = Terraform::new(
        r#"
resource "valkey_user" "bad" {
  service    = "nowhere"
  username   = "sentinel"
  categories = ["read"]
  commands   = ["+@read"]
  keys       = ["a b"]
}
"#,
    );
    let out = tf.fails(&["plan", "-input=false", "-no-color"]);
    for expected in [
        "\"sentinel\" is the user the provider's replication or Sentinels run as",
        "categories[0]: \"read\" must start with +@ (allow) or -@ (deny)",
        "commands[0]: \"+@read\" is a category; put it in categories",
        "keys[0]: \"a b\" has whitespace",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in {out}");
    }
    tf.write_config(
        r#"
resource "valkey_user" "orphan" {
  service  = "nowhere"
  username = "app"
}
"#,
    );
    let out = tf.fails(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(out.contains("there is no service named \"nowhere\""), "{out}");
}
