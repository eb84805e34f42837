//! Data sources, tags, valkey_version and termination protection on replicas, through real
//! Terraform: one workstation owns a group; a second one, with its own state and provider
//! process, reads it by name and connects with what it read.

mod support;

use support::{Terraform, flatten};

fn owner_config(protected: bool) -> String {
    format!(
        r#"
resource "valkey_service" "main" {{
  name   = "ds-main"
  plan   = "startup-4"
  region = "local-1"
  tags = {{
    team = "payments"
    env  = "test"
  }}
}}

resource "valkey_read_replica" "eu" {{
  name                   = "ds-eu"
  primary_service        = valkey_service.main.name
  plan                   = "startup-4"
  region                 = "local-2"
  termination_protection = {protected}
  tags = {{
    team = "payments"
  }}
}}

resource "valkey_user" "app" {{
  service    = valkey_service.main.name
  username   = "app"
  keys       = ["app:*"]
  categories = ["+@read", "+@write", "+@connection"]
}}
"#
    )
}

const READER: &str = r#"
data "valkey_service" "main" {
  name = "ds-main"
}

data "valkey_read_replica" "eu" {
  name = "ds-eu"
}

data "valkey_user" "app" {
  service          = "ds-main"
  username         = "app"
  include_password = true
}

data "valkey_user" "rules_only" {
  service  = "ds-main"
  username = "app"
}

output "main" {
  value     = data.valkey_service.main
  sensitive = true
}

output "eu" {
  value     = data.valkey_read_replica.eu
  sensitive = true
}

output "app" {
  value     = data.valkey_user.app
  sensitive = true
}

output "rules_only" {
  value     = data.valkey_user.rules_only
  sensitive = true
}
"#;

fn output(tf: &Terraform, name: &str) -> serde_json::Value {
    serde_json::from_str(&tf.ok(&["output", "-json", name])).unwrap()
}

#[test]
fn a_second_configuration_reads_a_group_by_name_and_connects_with_what_it_read() {
    let owner = Terraform::new(&owner_config(true));
    owner.apply();
    owner.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false"]);
    let (changes, plan) = owner.plan_has_changes();
    assert!(!changes, "{plan}");
    let main = owner.state_attributes("valkey_service.main");
    assert_eq!(main["tags"]["team"], "payments");
    let version = main["valkey_version"].as_str().unwrap().to_string();
    assert!(version.chars().next().unwrap().is_ascii_digit(), "{version}");
    assert_eq!(
        owner.state_attributes("valkey_read_replica.eu")["valkey_version"],
        version.as_str()
    );

    let reader = Terraform::sharing_data_dir(&owner, READER);
    reader.apply();
    let read_main = output(&reader, "main");
    for attr in [
        "service_uri",
        "password",
        "host",
        "port",
        "sentinel_addresses",
        "sentinel_password",
        "tags",
        "valkey_version",
    ] {
        assert_eq!(read_main[attr], main[attr], "{attr}");
    }
    assert_eq!(read_main["read_replicas"], serde_json::json!(["ds-eu"]));
    let read_eu = output(&reader, "eu");
    assert_eq!(read_eu["primary_service"], "ds-main");
    assert_eq!(read_eu["termination_protection"], true);
    assert_eq!(read_eu["replication_status"], "up");
    let app = output(&reader, "app");
    let password = owner.state_attributes("valkey_user.app")["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app["password"], password.as_str());
    assert_eq!(app["acl_rules"], "~app:* +@read +@write +@connection");
    assert_eq!(app["keys"], serde_json::json!(["app:*"]));
    let rules_only = output(&reader, "rules_only");
    assert_eq!(rules_only["password"], serde_json::Value::Null);
    assert_eq!(rules_only["acl_rules"], app["acl_rules"]);

    // What the reader got is enough to connect: the user on the replica it read.
    let eu_addr = format!("{}:{}", read_eu["host"].as_str().unwrap(), read_eu["port"]);
    let mut conn = redis::Client::open(format!("redis://app:{password}@{eu_addr}").as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    let (changes, plan) = reader.plan_has_changes();
    assert!(!changes, "{plan}");

    // A name that does not exist is an error at the argument.
    reader.write_config("data \"valkey_service\" \"gone\" {\n  name = \"ds-none\"\n}\n");
    let out = reader.fails(&["plan", "-input=false", "-no-color"]);
    assert!(out.contains("there is no service named \"ds-none\""), "{out}");
    reader.write_config("data \"valkey_service\" \"replica\" {\n  name = \"ds-eu\"\n}\n");
    let out = reader.fails(&["plan", "-input=false", "-no-color"]);
    assert!(out.contains("import it as a valkey_read_replica"), "{out}");

    // Tags change in place; a protected replica is not destroyed until unprotected.
    owner.write_config(&owner_config(true).replace("env  = \"test\"", "env  = \"prod\""));
    let plan = flatten(&owner.ok(&["plan", "-input=false", "-no-color"]));
    assert!(plan.contains("1 to change, 0 to destroy"), "{plan}");
    owner.apply();
    assert_eq!(owner.state_attributes("valkey_service.main")["tags"]["env"], "prod");
    let out = owner.fails(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(
        out.contains("termination_protection is true on read replica \"ds-eu\""),
        "{out}"
    );
    owner.apply_config(&owner_config(false).replace("env  = \"test\"", "env  = \"prod\""));
    owner.ok(&["destroy", "-auto-approve", "-input=false"]);
    assert!(owner.live_node_pids().is_empty());
}
