//! TLS on the docker cloud, through real Terraform, on three Docker Engines as three hosts in
//! two regions, with the Debian-based Valkey 8.1 image `scripts/docker-hosts.sh` builds
//! (`valkey-tls-test:local`): nodes and Sentinels in containers serve TLS only, replicate
//! across hosts over TLS, and a Sentinel client over TLS follows a killed primary container.

#[path = "support/docker.rs"]
mod docker_hosts;
mod support;

use std::time::Duration;

use support::group::{GroupAccess, SentinelWriter, now_ms, stop_and_check_writes, wait_consistent};
use support::{ping, tls_client};

const TLS_IMAGE: &str = "valkey-tls-test:local";

fn body(marker: &str, promote: bool) -> String {
    format!(
        r#"
resource "valkey_service" "main" {{
  name   = "main-{marker}"
  cloud  = "docker"
  plan   = "startup-4"
  region = "region-a"
  tls {{}}
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
  promote         = {promote}
}}
"#
    )
}

#[test]
fn a_tls_group_on_three_hosts_serves_only_tls_and_a_sentinel_client_follows_a_killed_primary_container() {
    let marker = docker_hosts::marker();
    let _cleanup = docker_hosts::Cleanup(marker.clone());
    let mut settings = docker_hosts::settings();
    settings.image = TLS_IMAGE.into();
    let tf = support::Terraform::new("");
    let provider = docker_hosts::provider_block_for(&settings);
    tf.write_config_with_provider(&provider, &body(&marker, false));
    tf.apply();
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let state = tf.state_attributes("valkey_service.main");
    assert!(state["service_uri"].as_str().unwrap().starts_with("valkeys://"));
    let (main, far) = (tf.address("valkey_service.main"), tf.address("valkey_read_replica.far"));
    let members = [main.clone(), far.clone()];
    wait_consistent(&access, &members, Some(&main), Duration::from_secs(10));

    // The certificates name each host's advertised address; plaintext and strangers are refused.
    let password = state["password"].as_str().unwrap();
    let ca = std::fs::read(access.ca_file.as_ref().unwrap()).unwrap();
    assert_eq!(ping(tls_client(&format!("rediss://:{password}@{far}"), &ca)), "PONG");
    let plain = ping(redis::Client::open(format!("redis://:{password}@{main}").as_str()));
    assert!(plain.starts_with("refused"), "plaintext: {plain}");

    let writer = SentinelWriter::start(&access, tf.dir.path().join("writer.log"), "w");
    std::thread::sleep(Duration::from_millis(500));
    let (engine, container) = (docker_hosts::host(1).0, format!("vk-main-{marker}-0"));
    let pid = docker_hosts::inspect(&engine, &container)[0]["State"]["Pid"]
        .as_i64()
        .unwrap();
    support::kill9(pid as i32);
    let killed = now_ms();
    let first = writer
        .wait_for_acks_after(killed, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the Sentinel client never wrote again: {:?}", writer.errors()));
    eprintln!(
        "docker, TLS: kill -9 of the primary's container -> the Sentinel client's first acknowledged write: {} ms",
        first.at_ms - killed
    );
    tf.apply();
    wait_consistent(&access, &members, Some(&far), Duration::from_secs(20));
    stop_and_check_writes(writer, &access, &far, killed, "kill");

    // A switchover back on Valkey 8.1 across hosts, over TLS.
    tf.write_config_with_provider(&provider, &body(&marker, true));
    tf.apply();
    wait_consistent(&access, &members, Some(&far), Duration::from_secs(20));
    let (changes, text) = tf.plan_has_changes();
    assert!(!changes, "{text}");
    docker_hosts::destroy_leaves_nothing(&tf, &marker);
}
